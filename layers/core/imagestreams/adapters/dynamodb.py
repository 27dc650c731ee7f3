"""StreamStore on one DynamoDB table.

Key design (one partition per stream, so a tag's head and its triggers come back in one query)::

    pk = "S#<repo>"
    sk = "T#<tag>#H"              head or tombstone     kind=HEAD; a live head gsi1pk="HEADS#<repo>",
                                                        gsi1sk="<tag>" ("<tag>#A" for an alias); in a stream with
                                                        a policy tag also gsi3pk=pk, gsi3sk="H#<tag>"
         "T#<tag>#P"              policy tag            kind=POLICY, gsi1pk="POLICY", gsi1sk=<stream>:<tag>,
                                                        gsi3pk=pk, gsi3sk="P#<tag>"
         "T#<tag>#R#<trigger id>" trigger               kind=TRIGGER, gsi1pk="TRIGGER", gsi1sk=<id>; while its gates
                                                        hold it (Gated/Blocked) also gsi3pk=pk, gsi3sk="W#<tag>#<id>"
         "T#<tag>#V#<generation>" history entry         kind=HIST (generation zero-padded: sorts newest last)
    pk = "LEASE#<name>", sk = "LEASE"  a lease (one writer per target resource, one reconciler run)  kind=LEASE,
                                        expiresAt for TTL clean-up (never fanned out: the stream filter wants HEAD)

'#' sorts before every tag character, so ``begins_with("T#web#")`` never matches tag ``web-2``; and
``H`` < ``R`` < ``V``, so head + triggers are one contiguous ``BETWEEN`` range.

The sparse index ``ByStream`` (gsi3) lists per stream only its policy tags, the triggers its gates hold and, in a
stream that has a policy tag, its heads; never the history (up to 50 entries per tag) nor the other triggers: a head
move or a gate event reads that small list instead of the whole partition. ``H`` < ``P`` < ``W``: read backwards,
policies and held triggers come first, so one item tells whether a stream has anything to evaluate at all.

``ByKind`` (keys only) also lists every live head under ``HEADS#<repo>``: the reconciler counts a repository's
live heads in one Query of a few bytes per tag, never reading their history, and finds the repositories with live
heads without scanning the table. Those keys change only when a head is created, deleted or made (no longer) an
alias, so a head move writes nothing to that index.

In ``ByStream`` a head is listed only where a policy tag needs it: a head move in any other stream writes no index
entry (two write units less per push). A head write keeps whatever listing the stored head had (it is an update,
not a put); a new tag's first head is listed in its own commit when its stream has a policy tag (one ``ByStream``
item read), and by the fan-out of that move (``policy_view(moved=...)``) should a policy tag have been set a moment
ago; setting a stream's first policy tag lists its heads (``stream_view``). A listing is never taken back: a
stream whose last policy tag is removed keeps its heads listed (a removal racing a new policy tag could hide a
candidate from it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ..errors import ConcurrentUpdate
from ..gates import GateState, gates_from_dicts
from ..model import Head, HistoryEntry, StreamTag, Target, TaskPins, Trigger, cap_text, parse_target, target_key
from ..policytags import Policy

log = logging.getLogger(__name__)
_ser = TypeSerializer()
_de = TypeDeserializer()
TRIGGER_INDEX = "ByKind"
TARGET_INDEX = "ByTarget"
STREAM_INDEX = "ByStream"
HELD = ("Gated", "Blocked")
SEEK_ITEMS = 10  # items a head seek reads: one head and a little of what follows (one read unit)
BACKFILL_SERIAL = 8  # index-keys updates made one after the other; more go 16 at a time


def pk(stream: str) -> str:
    return f"S#{stream}"


def head_sk(tag: str) -> str:
    return f"T#{tag}#H"


def policy_sk(tag: str) -> str:
    return f"T#{tag}#P"


def trigger_sk(tag: str, trigger_id: str) -> str:
    return f"T#{tag}#R#{trigger_id}"


def history_sk(tag: str, generation: int) -> str:
    return f"T#{tag}#V#{generation:012d}"


def stream_keys(item: dict[str, Any], *, policy_stream: bool = False) -> dict[str, str] | None:
    """The ``ByStream`` keys of a table item: policy tags always, a trigger only while its gates hold it, a head when
    its stream has a policy tag (``policy_stream``); None for everything else (history, leases, other triggers)."""
    kind, stream, tag = item.get("kind"), item.get("stream"), item.get("tag")
    if kind == "HEAD" and policy_stream:
        return {"gsi3pk": pk(stream), "gsi3sk": f"H#{tag}"}  # type: ignore[arg-type]
    if kind == "POLICY":
        return {"gsi3pk": pk(stream), "gsi3sk": f"P#{tag}"}  # type: ignore[arg-type]
    if kind == "TRIGGER" and item.get("status") in HELD and item.get("gates"):
        return {"gsi3pk": pk(stream), "gsi3sk": f"W#{tag}#{item['id']}"}  # type: ignore[arg-type]
    return None


def _dump(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def _load(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _ints(value: Any) -> Any:
    """Numbers as DynamoDB hands them back (Decimal) turned into the ints they were written as."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    return value


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


HEADS = "HEADS#"  # ByKind partition of a repository's live heads
ALIAS_MARK = "#A"  # ByKind sort key suffix of a live head that is an alias ('#' is never in a tag)


def live_keys(head: Head) -> dict[str, str] | None:
    """The ``ByKind`` keys of a live head (None for a tombstone): its repository's partition, its tag."""
    if head.deleted:
        return None
    return {"gsi1pk": HEADS + head.stream_tag.stream,
            "gsi1sk": head.stream_tag.tag + (ALIAS_MARK if head.alias_of else "")}


def head_item(head: Head, tombstone_ttl: timedelta | None = None, *, listed: bool = False) -> dict[str, Any]:
    """The head's table item; ``listed`` adds its ``ByStream`` keys (its stream has a policy tag)."""
    st = head.stream_tag
    item = {
        "pk": pk(st.stream), "sk": head_sk(st.tag), "kind": "HEAD", "stream": st.stream, "tag": st.tag,
        "digest": head.digest, "generation": head.generation, "at": head.at.isoformat(), "cause": head.cause,
        "actor": head.actor, "registry": head.registry, "mediaType": head.media_type, "aliasOf": head.alias_of,
        "deleted": head.deleted, "rev": head.rev, "aliases": list(head.aliases),
        "keptInRegistry": head.kept_in_registry or None,
        "pushedAt": head.pushed_at.isoformat() if head.pushed_at else None,
    }
    if head.deleted and tombstone_ttl is not None:
        item["expiresAt"] = int((head.at + tombstone_ttl).timestamp())
    item.update(live_keys(head) or {"gsi1pk": None, "gsi1sk": None})
    item.update(stream_keys(item, policy_stream=listed) or {})
    return item


def head_update(item: dict[str, Any], *, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """An ``Update`` writing a head item whole but for the attributes in ``keep``: every attribute set, the ones it
    has as None removed. ``ByStream`` keys are written only when ``item`` has them (a listed head): otherwise the
    stored listing stays as it is."""
    item = {"expiresAt": None, **item}
    sets, removes = [], []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    for n, (name, value) in enumerate(item.items()):
        if name in ("pk", "sk", *keep):
            continue
        names[f"#h{n}"] = name
        if value is None:
            removes.append(f"#h{n}")
        else:
            values[f":h{n}"] = value
            sets.append(f"#h{n} = :h{n}")
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    return {"Key": _dump({"pk": item["pk"], "sk": item["sk"]}), "UpdateExpression": expression,
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": _dump(values)}


def head_from_item(item: dict[str, Any]) -> Head:
    return Head(
        StreamTag(item["stream"], item["tag"]), item["digest"], int(item["generation"]), _dt(item["at"]),
        item["cause"], item["actor"], item["registry"], item.get("mediaType"), item.get("aliasOf"),
        bool(item.get("deleted", False)), int(item.get("rev", 0)), tuple(item.get("aliases") or ()),
        bool(item.get("keptInRegistry", False)), _dt(item.get("pushedAt")),
    )


def head_from_image(image: dict[str, Any]) -> Head:
    """A head from a stream record's ``NewImage`` (DynamoDB JSON)."""
    return head_from_item(_load(image))


def _entry_from_item(item: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(item["digest"], int(item["generation"]), _dt(item["at"]), item["cause"], item["actor"],
                        bool(item.get("pruned", False)))


def _trigger_state(trigger: Trigger) -> dict[str, Any]:
    return {
        "status": trigger.status,
        "lastTriggeredDigest": trigger.last_triggered_digest,
        "lastTriggeredAt": trigger.last_triggered_at.isoformat() if trigger.last_triggered_at else None,
        "lastError": cap_text(trigger.last_error),  # outside text: capped wherever a trigger is written
        "rolloutState": trigger.rollout_state,
        "drift": cap_text(trigger.drift),
        "deployedImage": trigger.deployed_image,
        "deployment": trigger.deployment,
        "failures": trigger.failures or None,
        "retryAt": trigger.retry_at.isoformat() if trigger.retry_at else None,
        "pins": {k: v for k, v in trigger.pins.as_dict().items() if v} if trigger.pins else None,
        "gate": _gate_detail(trigger.gate),
        "gateState": trigger.gate_state.as_dict() if trigger.gate_state else None,
        "rolloutAt": trigger.rollout_at.isoformat() if trigger.rollout_at else None,
    }


def _gate_detail(gate: dict[str, Any] | None) -> dict[str, Any] | None:
    """The public gate detail, its reason (it may quote outside text) capped like every outside text."""
    if not gate:
        return None
    return {**gate, "reason": cap_text(gate.get("reason"))}


def trigger_item(trigger: Trigger) -> dict[str, Any]:
    st = trigger.stream_tag
    item = {
        "pk": pk(st.stream), "sk": trigger_sk(st.tag, trigger.id), "kind": "TRIGGER",
        "gsi1pk": "TRIGGER", "gsi1sk": trigger.id, "gsi2pk": target_key(trigger.target), "gsi2sk": trigger.id,
        "id": trigger.id, "stream": st.stream, "tag": st.tag,
        "target": trigger.target.as_dict(), "paused": trigger.paused, **_trigger_state(trigger),
        **({"gates": [g.as_dict() for g in trigger.gates]} if trigger.gates else {}),
    }
    item.update(stream_keys(item) or {})
    return item


def trigger_from_item(item: dict[str, Any]) -> Trigger:
    target: Target = parse_target(dict(item["target"]))
    return Trigger(
        item["id"], StreamTag(item["stream"], item["tag"]), target, bool(item.get("paused", False)),
        item.get("status", "WaitingForImage"), item.get("lastTriggeredDigest"), _dt(item.get("lastTriggeredAt")),
        item.get("lastError"), item.get("rolloutState"), item.get("drift"), item.get("deployedImage"),
        item.get("deployment"), int(item.get("failures") or 0), _dt(item.get("retryAt")),
        TaskPins.from_dict(item["pins"]) if item.get("pins") else None,
        gates_from_dicts(_ints(item.get("gates"))), dict(item["gate"]) if item.get("gate") else None,
        GateState.from_dict(item.get("gateState")), _dt(item.get("rolloutAt")),
    )


def policy_item(policy: Policy) -> dict[str, Any]:
    st = policy.stream_tag
    item = {
        "pk": pk(st.stream), "sk": policy_sk(st.tag), "kind": "POLICY", "gsi1pk": "POLICY",
        "gsi1sk": f"{st.stream}:{st.tag}", "stream": st.stream, "tag": st.tag, "policy": _number(policy.policy),
        "gates": _number(list(policy.gates)), "held": policy.held, "status": policy.status,
        "selected": policy.selected, "digest": policy.digest, "gate": _number(policy.gate),
        "gateState": _number(policy.gate_state),
        "rev": policy.rev, "at": policy.at.isoformat() if policy.at else None,
    }
    item.update(stream_keys(item) or {})
    return item


def _number(value: Any) -> Any:
    """Floats as DynamoDB takes them (Decimal), inside dicts and lists too."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_number(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: integers as int again (gate minutes), others as float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def policy_from_item(item: dict[str, Any]) -> Policy:
    return Policy(
        StreamTag(item["stream"], item["tag"]), _plain(item["policy"]),
        tuple(_plain(g) for g in item.get("gates") or ()), bool(item.get("held", False)),
        item.get("status") or "NoCandidate", item.get("selected"), item.get("digest"),
        _plain(item["gate"]) if item.get("gate") else None,
        _plain(item["gateState"]) if item.get("gateState") else None, int(item.get("rev", 0)), _dt(item.get("at")),
    )


def lease_key(name: str) -> dict[str, str]:
    return {"pk": f"LEASE#{name}", "sk": "LEASE"}


class DynamoStore:
    def __init__(self, client: Any, table: str, *, tombstone_ttl: timedelta = timedelta(days=90),
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.tombstone_ttl = tombstone_ttl
        self.clock = clock  # epoch seconds, for lease expiry

    # ------------------------------------------------------------------------------------------ heads

    def get_head(self, stream_tag: StreamTag) -> Head | None:
        out = self.client.get_item(
            TableName=self.table, Key=_dump({"pk": pk(stream_tag.stream), "sk": head_sk(stream_tag.tag)}),
            ConsistentRead=True,
        )
        return head_from_item(_load(out["Item"])) if "Item" in out else None

    def commit(self, expected: Head | None, new: Head, drop_generation: int | None) -> None:
        st = new.stream_tag
        same = expected is not None and live_keys(expected) == live_keys(new)
        # a move of a live head keeps its ByKind keys as stored: no index write (and no listing of a head an older
        # version wrote without them; the reconciler lists those once, see live_streams)
        # a new head item is listed in ByStream at once when its stream has a policy tag (its fan-out lists it too,
        # should a policy tag have been set a moment ago): a lost fan-out cannot hide it from later evaluations
        listed = expected is None and self._has_policy(st.stream)
        update = head_update(head_item(new, self.tombstone_ttl, listed=listed),
                             keep=("gsi1pk", "gsi1sk") if same else ())
        if expected is None:
            update["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            update["ConditionExpression"] = "#r = :r"
            update["ExpressionAttributeNames"]["#r"] = "rev"
            update["ExpressionAttributeValues"][":r"] = _ser.serialize(expected.rev)
        entry = new.entry()
        history = {
            "pk": pk(st.stream), "sk": history_sk(st.tag, new.generation), "kind": "HIST", "stream": st.stream,
            "tag": st.tag, "digest": entry.digest, "generation": entry.generation, "at": entry.at.isoformat(),
            "cause": entry.cause, "actor": entry.actor,
        }
        items: list[dict[str, Any]] = [
            {"Update": {"TableName": self.table, **update}},  # an update: the head keeps its index listing
            {"Put": {"TableName": self.table, "Item": _dump(history),
                     "ConditionExpression": "attribute_not_exists(sk)"}},
        ]
        if drop_generation is not None:
            items.append({"Delete": {"TableName": self.table,
                                     "Key": _dump({"pk": pk(st.stream), "sk": history_sk(st.tag, drop_generation)})}})
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            codes = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
            if codes & {"ConditionalCheckFailed", "TransactionConflict"}:
                raise ConcurrentUpdate(str(st)) from exc
            raise

    def _has_policy(self, stream: str) -> bool:
        """Whether the stream has a policy tag: one ``ByStream`` item read (eventually consistent)."""
        out = self.client.query(TableName=self.table, IndexName=STREAM_INDEX, Limit=1, ProjectionExpression="pk",
                                KeyConditionExpression="gsi3pk = :pk AND begins_with(gsi3sk, :p)",
                                ExpressionAttributeValues=_dump({":pk": pk(stream), ":p": "P#"}))
        return bool(out["Items"])

    def relink(self, expected: Head, new: Head) -> None:
        st = new.stream_tag
        values: dict[str, Any] = {":r": expected.rev, ":n": new.rev, ":aliases": list(new.aliases)}
        expression = "SET #rev = :n, aliases = :aliases"
        keys = live_keys(new)
        if keys is not None and keys != live_keys(expected):  # became (or stopped being) an alias: ByKind says so
            values.update({":g1pk": keys["gsi1pk"], ":g1sk": keys["gsi1sk"]})
            expression += ", gsi1pk = :g1pk, gsi1sk = :g1sk"
        if new.alias_of:
            values[":of"] = new.alias_of
            expression += ", aliasOf = :of"
        else:
            expression += " REMOVE aliasOf"
        try:
            self.client.update_item(
                TableName=self.table, Key=_dump({"pk": pk(st.stream), "sk": head_sk(st.tag)}),
                UpdateExpression=expression, ConditionExpression="#rev = :r",
                ExpressionAttributeNames={"#rev": "rev"}, ExpressionAttributeValues=_dump(values),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConcurrentUpdate(str(st)) from exc
            raise

    def _partition(self, stream: str, kinds: tuple[str, ...], **extra: Any) -> list[dict[str, Any]]:
        names = {"#k": "kind"}
        values = {":pk": pk(stream), **{f":k{i}": k for i, k in enumerate(kinds)}}
        kwargs = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "#k IN (" + ", ".join(f":k{i}" for i in range(len(kinds))) + ")",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _dump(values),
            **extra,
        }
        return self._query(kwargs)

    def _query(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(**kwargs):
            items.extend(_load(i) for i in page["Items"])
        return items

    def heads(self, stream: str) -> list[Head]:
        return [head_from_item(i) for i in self._partition(stream, ("HEAD",), ConsistentRead=True)]

    def history(self, stream_tag: StreamTag, limit: int) -> list[HistoryEntry]:
        out = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=_dump({":pk": pk(stream_tag.stream), ":prefix": f"T#{stream_tag.tag}#V#"}),
            ScanIndexForward=False, Limit=limit, ConsistentRead=True,
        )
        return [_entry_from_item(_load(i)) for i in out["Items"]]

    def histories(self, stream: str) -> dict[str, list[HistoryEntry]]:
        """Every tag's history of a stream (newest first), in one pass over its partition (prune)."""
        out: dict[str, list[HistoryEntry]] = {}
        for item in self._partition(stream, ("HIST",), ConsistentRead=True):
            out.setdefault(item["tag"], []).append(_entry_from_item(item))
        for entries in out.values():
            entries.sort(key=lambda e: e.generation, reverse=True)
        return out

    def mark_pruned(self, stream: str, marks: list[tuple[str, int]]) -> None:
        """Mark these history entries (tag, generation) ``pruned``: the image is gone, the entry stays for audit. An
        entry dropped meanwhile (the history cap) is left dropped."""
        for tag, generation in marks:
            try:
                self.client.update_item(
                    TableName=self.table, Key=_dump({"pk": pk(stream), "sk": history_sk(tag, generation)}),
                    UpdateExpression="SET pruned = :t", ConditionExpression="attribute_exists(sk)",
                    ExpressionAttributeValues=_dump({":t": True}))
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def purge_history(self, stream_tag: StreamTag, up_to_generation: int, written_by: datetime) -> int:
        """Delete a tag's history entries up to a generation and written no later than ``written_by`` (the
        tombstone's time): a tag pushed again after its tombstone expired restarts at generation 1, and those new
        entries are newer, so they stay."""
        keys = self._query({
            "TableName": self.table, "ProjectionExpression": "pk, sk",
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "FilterExpression": "#at <= :at", "ExpressionAttributeNames": {"#at": "at"},
            "ExpressionAttributeValues": _dump({":pk": pk(stream_tag.stream), ":lo": history_sk(stream_tag.tag, 0),
                                                ":hi": history_sk(stream_tag.tag, up_to_generation),
                                                ":at": written_by.isoformat()}),
            "ConsistentRead": True,
        })
        requests = [{"DeleteRequest": {"Key": _dump({"pk": k["pk"], "sk": k["sk"]})}} for k in keys]
        for start in range(0, len(requests), 25):
            pending = {self.table: requests[start : start + 25]}
            for _ in range(8):
                out = self.client.batch_write_item(RequestItems=pending)
                pending = out.get("UnprocessedItems") or {}
                if not pending:
                    break
            else:
                raise RuntimeError(f"BatchWriteItem kept leaving items unprocessed for {stream_tag}")
        return len(requests)

    # --------------------------------------------------------------------------------------- triggers

    def head_and_triggers(self, stream_tag: StreamTag) -> tuple[Head | None, list[Trigger]]:
        items = self._query({
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": _dump({
                ":pk": pk(stream_tag.stream), ":lo": head_sk(stream_tag.tag), ":hi": f"T#{stream_tag.tag}#R$"}),
            "ConsistentRead": True,
        })
        head = next((head_from_item(i) for i in items if i["kind"] == "HEAD"), None)
        return head, [trigger_from_item(i) for i in items if i["kind"] == "TRIGGER"]

    def stream_state(self, stream: str) -> tuple[list[Head], list[Trigger]]:
        """Heads and triggers of a stream in one pass over its partition."""
        items = self._partition(stream, ("HEAD", "TRIGGER"), ConsistentRead=True)
        return ([head_from_item(i) for i in items if i["kind"] == "HEAD"],
                [trigger_from_item(i) for i in items if i["kind"] == "TRIGGER"])

    def stream_view(self, stream: str) -> tuple[list[Head], list[Trigger], list[Policy]]:
        """Heads (tombstones included), triggers and policy tags of a stream: one consistent Query of its
        partition (history items are filtered out by DynamoDB)."""
        items = self._partition(stream, ("HEAD", "TRIGGER", "POLICY"), ConsistentRead=True)
        self._backfill(items)
        return ([head_from_item(i) for i in items if i["kind"] == "HEAD"],
                [trigger_from_item(i) for i in items if i["kind"] == "TRIGGER"],
                [policy_from_item(i) for i in items if i["kind"] == "POLICY"])

    def policy_view(self, stream: str, moved: Head | None = None) -> tuple[list[Head], list[Policy]]:
        """Heads (tombstones included) and policy tags of a stream from the ``ByStream`` index, or ``([], [])``
        when the stream has no policy tag. Eventually consistent: a caller that acts on it re-reads what it acts
        on. ``moved`` (a head of the stream the caller read consistently) is listed from now on if the index does
        not list it yet and the stream has a policy tag (a first head whose commit did not see the policy tag)."""
        items = self._stream_index(stream, upto="W")
        if moved is not None and items and not any(
                i["kind"] == "HEAD" and i["tag"] == moved.stream_tag.tag for i in items):
            self._backfill([head_item(moved)], policy_stream=True)
        return ([head_from_item(i) for i in items if i["kind"] == "HEAD"],
                [policy_from_item(i) for i in items if i["kind"] == "POLICY"])

    def gate_view(self, stream: str) -> tuple[list[Head], list[Trigger], list[Policy]]:
        """What can wait on a gate in a stream, from the ``ByStream`` index: the triggers its gates hold and its
        policy tags (no heads: ``[]``), in one Query that reads nothing else. Eventually consistent: a held
        trigger is re-fired, and a fire re-reads everything."""
        items = self._query(self._index_query(stream, above="P"))
        return ([], [trigger_from_item(i) for i in items if i["kind"] == "TRIGGER"],
                [policy_from_item(i) for i in items if i["kind"] == "POLICY"])

    def _index_query(self, stream: str, *, above: str | None = None, below: str | None = None) -> dict[str, Any]:
        condition, values = "gsi3pk = :pk", {":pk": pk(stream)}
        if above:
            condition += " AND gsi3sk > :above"
            values[":above"] = above
        if below:
            condition += " AND gsi3sk < :below"
            values[":below"] = below
        return {"TableName": self.table, "IndexName": STREAM_INDEX, "ScanIndexForward": False,
                "KeyConditionExpression": condition, "ExpressionAttributeValues": _dump(values)}

    def _stream_index(self, stream: str, upto: str) -> list[dict[str, Any]]:
        """The stream's ``ByStream`` entries below ``upto`` (its heads and policy tags), in one Query (pages only past
        1 MB); nothing when none of them is a policy tag."""
        items = self._query(self._index_query(stream, below=upto))
        return items if any(i.get("kind") == "POLICY" for i in items) else []

    def _backfill(self, items: list[dict[str, Any]], *, policy_stream: bool | None = None) -> None:
        """Give items their ``ByStream`` keys where they lack them (once: a consistent view of the stream — the
        reconciler's policy evaluation, ``describe``, a policy tag just set — finds them): items written before the
        index, and the heads of a stream that has (``policy_stream``; by default: ``items`` hold) a policy tag. A
        trigger no longer held leaves the index; a head never does. Each item is updated only when its keys are not
        what they should be, and only if it still exists."""
        if policy_stream is None:
            policy_stream = any(i.get("kind") == "POLICY" for i in items)
        updates: list[dict[str, Any]] = []
        for item in items:
            keys = stream_keys(item, policy_stream=policy_stream)
            if keys is not None and all(item.get(k) == v for k, v in keys.items()):
                continue
            if keys is None and ("gsi3pk" not in item or item.get("kind") == "HEAD"):
                continue
            update = "SET gsi3pk = :pk, gsi3sk = :sk" if keys else "REMOVE gsi3pk, gsi3sk"
            values = ({"ExpressionAttributeValues": _dump({":pk": keys["gsi3pk"], ":sk": keys["gsi3sk"]})}
                      if keys else {})
            updates.append({"TableName": self.table, "Key": _dump({"pk": item["pk"], "sk": item["sk"]}),
                            "UpdateExpression": update, "ConditionExpression": "attribute_exists(pk)", **values})
        if len(updates) <= BACKFILL_SERIAL:
            for update in updates:
                self._keys_update(update)
            return
        # a stream's first policy tag lists all its heads: 16 at a time (a client is safe to share across threads),
        # so 10,000 tags take seconds, not the admin call's minute
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(self._keys_update, updates))

    def _keys_update(self, update: dict[str, Any]) -> None:
        """One index-keys update; best effort where the item changed meanwhile: gone (the condition), or a
        transaction on it in flight (a push: it keeps or sets the listing itself, and the next view tries again)."""
        try:
            self.client.update_item(**update)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "TransactionConflictException":
                log.info("index keys of %s left for the next view: a write on it is in flight", update["Key"])
            elif code != "ConditionalCheckFailedException":
                raise

    # ----------------------------------------------------------------------------------- policy tags

    def get_policy(self, stream_tag: StreamTag) -> Policy | None:
        out = self.client.get_item(TableName=self.table, ConsistentRead=True,
                                   Key=_dump({"pk": pk(stream_tag.stream), "sk": policy_sk(stream_tag.tag)}))
        return policy_from_item(_load(out["Item"])) if "Item" in out else None

    def put_policy(self, policy: Policy, expect: Policy | None) -> Policy:
        """Write ``policy`` (its ``rev`` one above ``expect``'s) on condition that the stored one is still
        ``expect`` (None: none stored). Raises ``ConcurrentUpdate`` otherwise. Returns what was written."""
        policy = policy._replace(rev=(expect.rev if expect else 0) + 1)
        if expect is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {"ConditionExpression": "#r = :r", "ExpressionAttributeNames": {"#r": "rev"},
                         "ExpressionAttributeValues": _dump({":r": expect.rev})}
        try:
            self.client.put_item(TableName=self.table, Item=_dump(policy_item(policy)), **condition)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConcurrentUpdate(str(policy.stream_tag)) from exc
            raise
        return policy

    def delete_policy(self, stream_tag: StreamTag) -> None:
        self.client.delete_item(TableName=self.table,
                                Key=_dump({"pk": pk(stream_tag.stream), "sk": policy_sk(stream_tag.tag)}))

    def policies(self, stream: str) -> list[Policy]:
        return self.stream_view(stream)[2]

    def all_policies(self) -> list[Policy]:
        """Every policy tag: listed by the ByKind index (keys only), read whole from the table."""
        return [policy_from_item(i) for i in self.index_items(TRIGGER_INDEX, "gsi1pk", "POLICY")]

    def all_triggers(self) -> list[Trigger]:
        """Every trigger, read consistently from the table: the index only lists their keys."""
        return [trigger_from_item(i) for i in self.index_items(TRIGGER_INDEX, "gsi1pk", "TRIGGER")]

    def triggers_for_target(self, key: str) -> list[Trigger]:
        """Triggers whose target has this :func:`~imagestreams.model.target_key` (eventually consistent: callers
        that write re-read the trigger with :meth:`refresh_trigger`)."""
        return [trigger_from_item(i) for i in self.index_items(TARGET_INDEX, "gsi2pk", key, consistent=False)]

    def index_items(self, index: str, attribute: str, value: str, *, consistent: bool = True) -> list[dict[str, Any]]:
        """The table's items an index lists under ``attribute = value``. The indexes project keys only (an
        item's update then writes no index unless its index keys change), so the items themselves come from the
        table, 100 a ``BatchGetItem`` (consistent unless asked otherwise); an item removed between the two reads is
        left out, and one just added may not be listed yet (the index lags)."""
        keys = self._query({
            "TableName": self.table, "IndexName": index, "ProjectionExpression": "pk, sk",
            "KeyConditionExpression": "#a = :v", "ExpressionAttributeNames": {"#a": attribute},
            "ExpressionAttributeValues": _dump({":v": value}),
        })
        return self._batch_get([{"pk": k["pk"], "sk": k["sk"]} for k in keys], consistent=consistent)

    def _batch_get(self, keys: list[dict[str, Any]], *, consistent: bool = True) -> list[dict[str, Any]]:
        """BatchGetItem of these keys (in their order), 100 a call; unprocessed keys are retried."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            chunk = {(k["pk"], k["sk"]): k for k in keys[start : start + 100]}  # a key listed twice is read once
            pending: dict[str, Any] = {self.table: {"Keys": [_dump(k) for k in chunk.values()],
                                                    "ConsistentRead": consistent}}
            for attempt in range(8):
                out = self.client.batch_get_item(RequestItems=pending)
                for raw in out.get("Responses", {}).get(self.table, []):
                    item = _load(raw)
                    found[(item["pk"], item["sk"])] = item
                pending = out.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError("BatchGetItem kept leaving keys unprocessed")
        return [found[(k["pk"], k["sk"])] for k in keys if (k["pk"], k["sk"]) in found]

    def get_trigger(self, trigger_id: str) -> Trigger | None:
        out = self.client.query(
            TableName=self.table, IndexName=TRIGGER_INDEX,
            KeyConditionExpression="gsi1pk = :t AND gsi1sk = :id",
            ExpressionAttributeValues=_dump({":t": "TRIGGER", ":id": trigger_id}),
            ProjectionExpression="pk, sk",
        )
        if not out["Items"]:
            return None
        key = out["Items"][0]
        got = self.client.get_item(TableName=self.table, Key={"pk": key["pk"], "sk": key["sk"]}, ConsistentRead=True)
        return trigger_from_item(_load(got["Item"])) if "Item" in got else None

    def add_trigger(self, trigger: Trigger) -> bool:
        try:
            self.client.put_item(TableName=self.table, Item=_dump(trigger_item(trigger)),
                                 ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def save_trigger(self, trigger: Trigger, *, expect: Trigger | None = None) -> bool:
        """Update the trigger's state fields only; ``paused`` is owned by :meth:`set_paused`. With ``expect``, on
        condition that the stored ``deployment``, ``lastTriggeredAt``, ``status`` and gate decisions are still
        ``expect``'s (a fire, a gate judgment or a decision made since wins)."""
        state = _trigger_state(trigger)
        held = trigger.status in HELD and bool(trigger.gates)
        state.update({"gsi3pk": pk(trigger.stream_tag.stream) if held else None,  # ByStream while its gates hold it
                      "gsi3sk": f"W#{trigger.stream_tag.tag}#{trigger.id}" if held else None})
        sets = {k: v for k, v in state.items() if v is not None}
        removes = [k for k, v in state.items() if v is None]
        names = {f"#{k}": k for k in state}
        values = {f":{k}": v for k, v in sets.items()}
        expression = "SET " + ", ".join(f"#{k} = :{k}" for k in sets)
        if removes:
            expression += " REMOVE " + ", ".join(f"#{k}" for k in removes)
        condition = ""
        if expect is not None:
            seen = _trigger_state(expect)
            parts = []
            for field in ("deployment", "lastTriggeredAt", "status"):
                if seen[field] is None:
                    parts.append(f"attribute_not_exists(#{field})")
                else:
                    parts.append(f"#{field} = :seen_{field}")
                    values[f":seen_{field}"] = seen[field]
            # and the gate state it read: an approval, a rejection or a forced deploy recorded since wins
            gate = seen["gateState"] or {}
            names["#gs"] = "gateState"
            for i, key in enumerate(("digest", "approvedBy", "rejectedBy", "forcedBy")):
                names[f"#gs{i}"] = key
                if gate.get(key) is None:
                    parts.append(f"attribute_not_exists(#gs.#gs{i})")
                else:
                    parts.append(f"#gs.#gs{i} = :seen_gs{i}")
                    values[f":seen_gs{i}"] = gate[key]
            condition = " AND ".join(parts)
        return self._update_trigger(trigger, UpdateExpression=expression, ExpressionAttributeNames=names,
                                    ExpressionAttributeValues=_dump(values), condition=condition)

    def refresh_trigger(self, trigger: Trigger) -> Trigger | None:
        st = trigger.stream_tag
        got = self.client.get_item(TableName=self.table, ConsistentRead=True,
                                   Key=_dump({"pk": pk(st.stream), "sk": trigger_sk(st.tag, trigger.id)}))
        return trigger_from_item(_load(got["Item"])) if "Item" in got else None

    def set_paused(self, trigger: Trigger, paused: bool) -> bool:
        return self._update_trigger(trigger, UpdateExpression="SET paused = :p",
                                    ExpressionAttributeValues=_dump({":p": paused}))

    def set_gates(self, trigger: Trigger, gates: tuple[Any, ...]) -> bool:
        """Set only ``gates`` (``trigger.gates``); False when the trigger no longer exists."""
        if not gates:
            return self._update_trigger(trigger, UpdateExpression="REMOVE gates")
        return self._update_trigger(trigger, UpdateExpression="SET gates = :g",
                                    ExpressionAttributeValues=_dump({":g": [g.as_dict() for g in gates]}))

    def set_gate_state(self, trigger: Trigger, state: GateState | None) -> bool:
        """Set only ``gateState`` (an approval, a rejection, a forced deploy); False when the trigger is gone."""
        if state is None:
            return self._update_trigger(trigger, UpdateExpression="REMOVE gateState")
        return self._update_trigger(trigger, UpdateExpression="SET gateState = :s",
                                    ExpressionAttributeValues=_dump({":s": state.as_dict()}))

    def _update_trigger(self, trigger: Trigger, condition: str = "", **update: Any) -> bool:
        """UpdateItem on an existing trigger (and ``condition``); False when it was removed or the condition
        failed meanwhile."""
        st = trigger.stream_tag
        try:
            self.client.update_item(
                TableName=self.table, Key=_dump({"pk": pk(st.stream), "sk": trigger_sk(st.tag, trigger.id)}),
                ConditionExpression="attribute_exists(pk)" + (f" AND {condition}" if condition else ""), **update)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ------------------------------------------------------------------------------ reconciler support

    _CURSOR_KEY = {"pk": "RECONCILER", "sk": "CURSOR"}

    def load_cursor(self) -> dict[str, Any]:
        out = self.client.get_item(TableName=self.table, Key=_dump(self._CURSOR_KEY), ConsistentRead=True)
        item = _load(out["Item"]) if "Item" in out else {}
        return {k: int(v) if isinstance(v, Decimal) else v for k, v in item.items()
                if k not in ("pk", "sk", "kind") and v not in (None, "")}

    def save_cursor(self, cursor: dict[str, Any]) -> None:
        item = {**self._CURSOR_KEY, "kind": "CURSOR", **{k: v for k, v in cursor.items() if v}}
        self.client.put_item(TableName=self.table, Item=_dump(item))

    _LAST_RUN_KEY = {"pk": "RECONCILER", "sk": "LASTRUN"}

    def record_run(self, at: datetime, errors: int, complete: bool) -> None:
        """When the reconciler's last run ended, with its error count (read by ``check``)."""
        item = {**self._LAST_RUN_KEY, "kind": "LASTRUN", "lastRunAt": at.isoformat(), "errors": errors,
                "complete": complete}
        self.client.put_item(TableName=self.table, Item=_dump(item))

    def last_run(self) -> dict[str, Any] | None:
        out = self.client.get_item(TableName=self.table, Key=_dump(self._LAST_RUN_KEY), ConsistentRead=True)
        if "Item" not in out:
            return None
        item = _load(out["Item"])
        return {"at": item.get("lastRunAt"), "errors": int(item.get("errors") or 0),
                "complete": bool(item.get("complete"))}

    _HEADS_LISTED_KEY = {"pk": "RECONCILER", "sk": "HEADS-LISTED"}

    def live_streams(self) -> list[str]:
        """Repositories with a live head, from a Scan of the keys-only ``ByKind`` index (a few bytes per live head,
        never the history). Once per table — heads written before that index listed them — a Scan of the table
        itself finds them and lists them."""
        out = self.client.get_item(TableName=self.table, Key=_dump(self._HEADS_LISTED_KEY), ConsistentRead=True)
        if "Item" not in out:
            return self._list_unlisted_heads()
        streams: set[str] = set()
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table, IndexName=TRIGGER_INDEX, FilterExpression="begins_with(gsi1pk, :h)",
            ProjectionExpression="gsi1pk", ExpressionAttributeValues=_dump({":h": HEADS}))
        for page in pages:
            streams.update(_load(i)["gsi1pk"][len(HEADS):] for i in page["Items"])
        return sorted(streams)

    def _list_unlisted_heads(self) -> list[str]:
        streams: set[str] = set()
        unfinished = False
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table, FilterExpression="#k = :h AND (attribute_not_exists(deleted) OR deleted = :f)",
            ProjectionExpression="pk, sk, #s, #t, #a, gsi1pk",
            ExpressionAttributeNames={"#k": "kind", "#s": "stream", "#t": "tag", "#a": "aliasOf"},
            ExpressionAttributeValues=_dump({":h": "HEAD", ":f": False}))
        for page in pages:
            for item in (_load(i) for i in page["Items"]):
                streams.add(item["stream"])
                if "gsi1pk" in item:
                    continue
                sk = item["tag"] + (ALIAS_MARK if item.get("aliasOf") else "")
                try:  # still live, still what was read (a move or relink meanwhile keeps or sets the keys itself)
                    self.client.update_item(
                        TableName=self.table, Key=_dump({"pk": item["pk"], "sk": item["sk"]}),
                        UpdateExpression="SET gsi1pk = :pk, gsi1sk = :sk",
                        ConditionExpression="attribute_exists(pk) AND #d = :f AND attribute_not_exists(gsi1pk)",
                        ExpressionAttributeNames={"#d": "deleted"},
                        ExpressionAttributeValues=_dump({":pk": HEADS + item["stream"], ":sk": sk, ":f": False}))
                except ClientError as exc:
                    if exc.response["Error"]["Code"] == "TransactionConflictException":
                        unfinished = True  # a push on it in flight: this pass runs again next time
                    elif exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
        if not unfinished:
            self.client.put_item(TableName=self.table, Item=_dump({**self._HEADS_LISTED_KEY, "kind": "MARKER"}))
        return sorted(streams)

    def live_head_keys(self, stream: str, after: str, limit: int) -> list[str]:
        """Up to ``limit`` live heads of a stream after ``after``, as their ``ByKind`` sort keys (the tag, ``#A``
        appended for an alias), in order: one Query per page of the keys-only index (about 1,000 keys in 100 KB),
        never reading a head or its history. Eventually consistent: a head created or deleted a moment ago may be
        missing or still there."""
        keys: list[str] = []
        values = {":pk": HEADS + stream, **({":after": after} if after else {})}
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": TRIGGER_INDEX, "Limit": limit,
            "KeyConditionExpression": "gsi1pk = :pk" + (" AND gsi1sk > :after" if after else ""),
            "ExpressionAttributeValues": _dump(values)}
        while len(keys) < limit:
            out = self.client.query(**kwargs)
            keys += [_load(i)["gsi1sk"] for i in out["Items"]]
            if "LastEvaluatedKey" not in out:
                break
            kwargs["ExclusiveStartKey"], kwargs["Limit"] = out["LastEvaluatedKey"], limit - len(keys)
        return keys[:limit]

    def heads_after(self, stream: str, after: str, limit: int) -> list[Head]:
        """Up to ``limit`` heads of a stream with a tag after ``after``, in tag order, without reading the tags'
        history: a tag's head is its first item (``H`` < ``R`` < ``V``), so each Query seeks to the start of the
        next tag (``sk > "T#<tag>$"``) and reads a few items; whatever follows a head (its triggers, its history) is
        skipped by the next seek."""
        heads: list[Head] = []
        start = f"T#{after}$" if after else "T#"
        while len(heads) < limit:
            out = self.client.query(
                TableName=self.table, KeyConditionExpression="pk = :pk AND sk > :from",
                ExpressionAttributeValues=_dump({":pk": pk(stream), ":from": start}),
                Limit=SEEK_ITEMS, ConsistentRead=True)
            items = [_load(i) for i in out["Items"]]
            for item in items:
                if item.get("kind") == "HEAD" and len(heads) < limit:
                    heads.append(head_from_item(item))
            if not items or "LastEvaluatedKey" not in out:
                break
            start = f"T#{items[-1]['sk'].split('#')[1]}$"  # past every item of the last tag seen
        return heads

    def heads_of(self, stream: str, tags: list[str], *, consistent: bool = True) -> list[Head]:
        """BatchGetItem of these tags' heads, 100 keys a call, consistent unless asked (half the read units: the
        reconciler's bulk comparison, a hint its re-resolve re-reads); unprocessed keys are retried."""
        heads: list[Head] = []
        for start in range(0, len(tags), 100):
            keys = [_dump({"pk": pk(stream), "sk": head_sk(tag)}) for tag in tags[start : start + 100]]
            pending: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": consistent}}
            for attempt in range(8):
                out = self.client.batch_get_item(RequestItems=pending)
                heads += [head_from_item(_load(i)) for i in out.get("Responses", {}).get(self.table, [])]
                pending = out.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"BatchGetItem kept leaving keys unprocessed for {stream}")
        return heads

    def remove_trigger(self, trigger: Trigger) -> None:
        st = trigger.stream_tag
        self.client.delete_item(TableName=self.table,
                                Key=_dump({"pk": pk(st.stream), "sk": trigger_sk(st.tag, trigger.id)}))

    # ------------------------------------------------------------------------------------------ leases

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        """Conditional PutItem: succeeds when the lease is absent, expired, or already ours. ``expiresAt`` (epoch
        seconds) is both the expiry the condition checks and the table's TTL attribute, so DynamoDB removes
        abandoned leases eventually; an expired one still present is simply taken over."""
        now = int(self.clock())
        item = {**lease_key(name), "kind": "LEASE", "owner": owner, "expiresAt": now + max(int(seconds), 1)}
        try:
            self.client.put_item(
                TableName=self.table, Item=_dump(item),
                ConditionExpression="attribute_not_exists(pk) OR #e <= :now OR #o = :o",
                ExpressionAttributeNames={"#e": "expiresAt", "#o": "owner"},
                ExpressionAttributeValues=_dump({":now": now, ":o": owner}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_lease(self, name: str, owner: str) -> None:
        """Conditional DeleteItem on the owner: a lease that expired and was taken over is not ours to delete."""
        try:
            self.client.delete_item(TableName=self.table, Key=_dump(lease_key(name)),
                                    ConditionExpression="#o = :o", ExpressionAttributeNames={"#o": "owner"},
                                    ExpressionAttributeValues=_dump({":o": owner}))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
