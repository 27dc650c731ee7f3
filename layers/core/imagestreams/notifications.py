"""Notifications: the table's change stream → EventBridge events (``source: "imagestreams"``).

Each event is derived from ONE stream record (the item's old and new image), so it is published only after the
change was recorded, never for something that did not happen (a removed item, an unchanged item, an alias link
edit), and a record delivered twice gives the same event again (delivery is at least once). Pure: no AWS here;
the notify function sends what :func:`notifications` returns with one ``PutEvents`` call per batch.

===================  ===============================================  ==========================================
detail-type          detail fields                                    published when
===================  ===============================================  ==========================================
Stream Tag Moved     stream, tag, from, to, generation, cause, actor  a head's generation changes (``from`` null:
                                                                      a new tag; ``to`` null: the tag was removed)
Trigger Fired        id, from, target, digest                         ``lastTriggeredAt`` changes: ``digest`` was
                                                                      put into ``target``
Rollout Completed    id, target, digest, reason                       ``rolloutState`` becomes COMPLETED
Rollout Failed       id, target, digest, reason                       ``rolloutState`` becomes FAILED
Drift Detected       id, target, expected, running                    a trigger's ``drift`` is set or changes
Gate Waiting         id (trigger) or target (policy tag),             a gate starts waiting (its type, digest or
                     digest, gate, reason                             state changed); approval: gate.type approval
Gate Blocked         same as Gate Waiting                             a gate blocks
Policy Selected      target, selected, digest                         a policy tag moves to a new selection (or
                                                                      is found on it)
Expiry Risk          stream, digest, tags, triggers, rule, message    the reconciler records (or changes) a risk
                                                                      that a lifecycle rule expires an image in use
===================  ===============================================  ==========================================

Every event's ``resources`` is the stack's table ARN (rules of one stack match only its own events). Field values:
``from`` of a trigger and ``target`` of a policy tag are tag references ``stream:tag``; a trigger's
``target`` is the target object as ``trigger.list`` shows it (``{"type": "ecs", "cluster": …}``); ``gate`` is the
gate detail ``{"type", "state", "reason", "digest"}`` as the trigger or policy shows it; ``digest`` of a trigger's
events is the digest it last put in its target. ``Drift Detected``: ``expected`` is the image the trigger expects
and ``running`` what the target runs; when the drift is not an image (an ECS service switched task-definition family
or roles), ``expected`` is the image it last deployed and ``running`` says what changed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

SOURCE = "imagestreams"
STREAM_TAG_MOVED = "Stream Tag Moved"
TRIGGER_FIRED = "Trigger Fired"
ROLLOUT_COMPLETED = "Rollout Completed"
ROLLOUT_FAILED = "Rollout Failed"
DRIFT_DETECTED = "Drift Detected"
GATE_WAITING = "Gate Waiting"
GATE_BLOCKED = "Gate Blocked"
POLICY_SELECTED = "Policy Selected"
EXPIRY_RISK = "Expiry Risk"

# the detail fields of each detail-type (a gate event carries "id" for a trigger, "target" for a policy tag)
SCHEMAS: dict[str, tuple[str, ...]] = {
    STREAM_TAG_MOVED: ("stream", "tag", "from", "to", "generation", "cause", "actor"),
    TRIGGER_FIRED: ("id", "from", "target", "digest"),
    ROLLOUT_COMPLETED: ("id", "target", "digest", "reason"),
    ROLLOUT_FAILED: ("id", "target", "digest", "reason"),
    DRIFT_DETECTED: ("id", "target", "expected", "running"),
    GATE_WAITING: ("id", "digest", "gate", "reason"),
    GATE_BLOCKED: ("id", "digest", "gate", "reason"),
    POLICY_SELECTED: ("target", "selected", "digest"),
    EXPIRY_RISK: ("stream", "digest", "tags", "triggers", "rule", "message"),
}
KINDS = ("HEAD", "TRIGGER", "POLICY", "RISK")  # the items that can notify (the notify function's stream filter)

_GATE_STATES = {"waiting": GATE_WAITING, "blocked": GATE_BLOCKED}
_DRIFT_IMAGES = re.compile(r"runs (?P<running>\S+), not (?P<expected>\S+?)(?: |$)")


class Notification(NamedTuple):
    detail_type: str
    detail: dict[str, Any]
    resources: tuple[str, ...] = ()  # the stack's table ARN: tells two stacks on one bus apart

    def entry(self, bus: str | None = None) -> dict[str, Any]:
        """A ``PutEvents`` request entry (``bus`` None or empty: the default event bus)."""
        out: dict[str, Any] = {"Source": SOURCE, "DetailType": self.detail_type,
                               "Detail": json.dumps(self.detail, sort_keys=True, separators=(",", ":"))}
        if self.resources:
            out["Resources"] = list(self.resources)
        if bus:
            out["EventBusName"] = bus
        return out


class EventPublisher(Protocol):
    """Where notifications go (EventBridge in production)."""

    def publish(self, notifications: list[Notification]) -> list[str | None]:
        """Send them (in as few calls as the service allows); one entry per notification: None when it was
        accepted, else the error the service gave for it. Raises when the call itself failed."""


# ------------------------------------------------------------------------------------------ DynamoDB JSON

def _number(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def decode(value: dict[str, Any]) -> Any:
    """One attribute value from a stream record's DynamoDB JSON (``{"S": "x"}`` → ``"x"``)."""
    (kind, raw), = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        return _number(raw)
    if kind == "BOOL":
        return bool(raw)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: decode(v) for k, v in raw.items()}
    if kind == "L":
        return [decode(v) for v in raw]
    if kind == "SS":
        return sorted(raw)
    if kind == "NS":
        return sorted(_number(n) for n in raw)
    if kind == "B":
        return base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw
    if kind == "BS":
        return sorted(base64.b64encode(b).decode() if isinstance(b, bytes) else b for b in raw)
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def image(raw: dict[str, Any] | None) -> dict[str, Any]:
    return {k: decode(v) for k, v in (raw or {}).items()}


# ---------------------------------------------------------------------------------------------- events

def notifications(record: dict[str, Any]) -> list[Notification]:
    """The events one DynamoDB stream record (as Lambda delivers it) stands for; [] for most records."""
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return []  # a removed item (a trigger removed, a tombstone or risk expired) is nothing that happened
    dynamodb = record.get("dynamodb") or {}
    new = image(dynamodb.get("NewImage"))
    old = image(dynamodb.get("OldImage"))
    build = {"HEAD": _head, "TRIGGER": _trigger, "POLICY": _policy, "RISK": _risk}.get(new.get("kind"))
    if build is None:
        return []
    table = table_arn(record)
    return [n._replace(resources=(table,)) if table else n for n in build(old, new)]


def table_arn(record: dict[str, Any]) -> str | None:
    """The table's ARN from a stream record's ``eventSourceARN`` (``…:table/NAME/stream/LABEL``)."""
    source = record.get("eventSourceARN") or ""
    return source.split("/stream/", 1)[0] if "/stream/" in source else None


def for_batch(records: Iterable[dict[str, Any]]) -> list[tuple[int, Notification]]:
    """(index of the record, event) for every event of a batch, in record order."""
    return [(i, n) for i, record in enumerate(records) for n in notifications(record)]


def _head(old: dict[str, Any], new: dict[str, Any]) -> list[Notification]:
    if old and old.get("generation") == new.get("generation"):
        return []  # an alias link or a re-write of the same head: no move
    live_before = bool(old) and not old.get("deleted")
    return [Notification(STREAM_TAG_MOVED, {
        "stream": new["stream"], "tag": new["tag"],
        "from": old.get("digest") if live_before else None,
        "to": None if new.get("deleted") else new.get("digest"),
        "generation": new.get("generation"), "cause": new.get("cause"), "actor": new.get("actor"),
    })]


def _trigger(old: dict[str, Any], new: dict[str, Any]) -> list[Notification]:
    out: list[Notification] = []
    trigger_id, target, digest = new["id"], new.get("target"), new.get("lastTriggeredDigest")
    fired_at = new.get("lastTriggeredAt")
    if fired_at and digest and fired_at != old.get("lastTriggeredAt"):
        out.append(Notification(TRIGGER_FIRED, {
            "id": trigger_id, "from": f"{new['stream']}:{new['tag']}", "target": target, "digest": digest}))
    rollout = new.get("rolloutState")
    if rollout != old.get("rolloutState") and rollout in ("COMPLETED", "FAILED"):
        failed = rollout == "FAILED"
        out.append(Notification(ROLLOUT_FAILED if failed else ROLLOUT_COMPLETED, {
            "id": trigger_id, "target": target, "digest": digest,
            "reason": (new.get("lastError") or "rollout failed") if failed else None}))
    drift = new.get("drift")
    if drift and drift != old.get("drift"):
        out.append(Notification(DRIFT_DETECTED, {"id": trigger_id, "target": target, **_drift(drift, new)}))
    out += _gate(old, new, {"id": trigger_id})
    return out


def _drift(text: str, item: dict[str, Any]) -> dict[str, Any]:
    found = _DRIFT_IMAGES.match(text)
    if found:
        return {"expected": found["expected"], "running": found["running"]}
    return {"expected": item.get("deployedImage"), "running": text}


def _gate(old: dict[str, Any], new: dict[str, Any], subject: dict[str, Any]) -> list[Notification]:
    gate = new.get("gate")
    if not isinstance(gate, dict) or gate.get("state") not in _GATE_STATES:
        return []
    before = old.get("gate") if isinstance(old.get("gate"), dict) else {}
    if all(before.get(k) == gate.get(k) for k in ("type", "state", "digest")):
        return []  # the same gate still waits (or still blocks) for the same digest: said already
    return [Notification(_GATE_STATES[gate["state"]], {
        **subject, "digest": gate.get("digest"), "gate": gate, "reason": gate.get("reason")})]


def _policy(old: dict[str, Any], new: dict[str, Any]) -> list[Notification]:
    target = f"{new['stream']}:{new['tag']}"
    out: list[Notification] = []
    selected = new.get("selected")
    # the tag is on its selection only when the status says Selected: a selection its gates hold (Gated, Blocked)
    # is a Gate Waiting / Gate Blocked, and Policy Selected follows when the tag moves
    before = (old.get("selected"), old.get("digest")) if old.get("status", "Selected") == "Selected" else None
    if selected is not None and new.get("status", "Selected") == "Selected" and (selected, new.get("digest")) != before:
        out.append(Notification(POLICY_SELECTED, {"target": target, "selected": selected,
                                                  "digest": new.get("digest")}))
    return out + _gate(old, new, {"target": target})


_RISK_FIELDS = ("stream", "digest", "tags", "triggers", "rule", "message")


def _risk(old: dict[str, Any], new: dict[str, Any]) -> list[Notification]:
    detail = {k: new.get(k) for k in _RISK_FIELDS}
    for key in ("tags", "triggers"):
        detail[key] = list(detail[key] or [])
    if old and {k: old.get(k) for k in _RISK_FIELDS} == {k: new.get(k) for k in _RISK_FIELDS}:
        return []  # the reconciler saw the same risk again (only its time and expiry moved)
    return [Notification(EXPIRY_RISK, detail)]


# ------------------------------------------------------------------------------------------- sending

MAX_ENTRIES = 10  # PutEvents: entries per call
MAX_BYTES = 256 * 1024  # PutEvents: request size


def entry_size(entry: dict[str, Any]) -> int:
    """PutEvents' size of one entry (UTF-8 bytes of source, detail-type, detail and bus; 14 for the time)."""
    return 14 + sum(len(str(entry.get(k, "")).encode()) for k in ("Source", "DetailType", "Detail", "EventBusName"))


def chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split entries into PutEvents calls: at most 10 entries and 256 KB each (one call for a batch of 10
    records with one event each)."""
    out: list[list[dict[str, Any]]] = []
    size = 0
    for entry in entries:
        n = entry_size(entry)
        if not out or len(out[-1]) == MAX_ENTRIES or size + n > MAX_BYTES:
            out.append([])
            size = 0
        out[-1].append(entry)
        size += n
    return out
