"""What a head move and a gate event read in a stream with long histories: the sparse ByStream index lists heads,
policy tags and gate-held triggers only, so neither reads a history item; a stream without policy tags costs one
index item; a policy evaluated on a lagging (eventually consistent) view still ends on the best candidate."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bench.stream_view_bench import POLICY_TAG, ScanCounter, seed, version_tag
from imagestreams.adapters.dynamodb import (
    STREAM_INDEX,
    _dump,
    _load,
    head_item,
    pk,
    policy_item,
    trigger_item,
    trigger_sk,
)
from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.gates import parse_gates
from imagestreams.model import EcsTarget, Head, StreamTag, Trigger, trigger_id
from imagestreams.policytags import Policy
from imagestreams.services import ImageStreams
from imagestreams_local.template import load_template
from tests.conftest import digest
from tests.unit.test_cost_levers import index_write_units

S = "team/web"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TARGET = EcsTarget("prod", "web", "app")
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture
def dynamo(moto_streams_table):
    return moto_streams_table  # the stack's table on moto (tests/conftest.py): a DynamoStore and its client


def streams_on(store: Any) -> ImageStreams:
    return ImageStreams(store, MemoryRegistry(), {"ecs": MemoryEcs()}, ListQueue())


def index_keys(client: Any, stream: str) -> list[str]:
    out = client.query(TableName="streams", IndexName=STREAM_INDEX, KeyConditionExpression="gsi3pk = :p",
                       ExpressionAttributeValues=_dump({":p": pk(stream)}))
    return sorted(_load(i)["gsi3sk"] for i in out["Items"])


# --------------------------------------------------------------------------------------- what is indexed


def test_the_index_lists_heads_policies_and_held_triggers_never_history_or_other_triggers(dynamo):
    store, client = dynamo
    seed(client, "streams", S, tags=4, history=5)
    web = StreamTag(S, version_tag(0))
    trigger = Trigger(trigger_id(web, TARGET), web, TARGET, gates=parse_gates([{"type": "approval"}]))
    assert store.add_trigger(trigger)
    plain = StreamTag(S, version_tag(1))
    assert store.add_trigger(Trigger(trigger_id(plain, TARGET), plain, TARGET))
    heads = [f"H#{version_tag(n)}" for n in range(3)] + [f"H#{POLICY_TAG}"]
    assert index_keys(client, S) == sorted(heads + [f"P#{POLICY_TAG}"])
    assert store.save_trigger(trigger.with_outcome(status="Gated"))  # its gates hold it: listed
    assert index_keys(client, S) == sorted(heads + [f"P#{POLICY_TAG}", f"W#{web.tag}#{trigger.id}"])
    assert store.save_trigger(trigger.with_outcome(status="Deploying"))  # released: off the index again
    assert index_keys(client, S) == sorted(heads + [f"P#{POLICY_TAG}"])


def test_fires_of_triggers_no_gate_holds_write_no_index():
    trigger = Trigger(trigger_id(StreamTag(S, "latest"), TARGET), StreamTag(S, "latest"), TARGET)
    fired = trigger.with_outcome(status="Deploying", rollout_state="IN_PROGRESS", last_error="x" * 900)
    assert index_write_units(trigger_item(fired), {"status", "rolloutState", "lastError"}) == 0
    gated = trigger.with_outcome(status="Gated", gates=parse_gates([{"type": "approval"}]))
    assert index_write_units(trigger_item(gated), {"status"}) >= 1  # only while held: that is the one listed


def test_policies_carry_the_index_keys_and_heads_only_where_a_policy_tag_needs_them():
    head = Head(StreamTag(S, "latest"), digest("a"), 1, T0, "push", "ecr", REG)
    assert "gsi3pk" not in head_item(head) and "gsi3sk" not in head_item(head)
    assert {head_item(head, listed=True)[k] for k in ("gsi3pk", "gsi3sk")} == {pk(S), "H#latest"}
    policy = Policy(StreamTag(S, "stable"), {"semver": "^1"})
    assert {policy_item(policy)[k] for k in ("gsi3pk", "gsi3sk")} == {pk(S), "P#stable"}
    template = load_template(__import__("pathlib").Path(__file__).resolve().parents[2] / "template.yaml")
    (index,) = [i for i in template["Resources"]["StreamsTable"]["Properties"]["GlobalSecondaryIndexes"]
                if i["IndexName"] == STREAM_INDEX]
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["gsi3pk", "gsi3sk"]


def _move(store: Any, tag: str, n: int) -> Head:
    """Commit ``tag`` onto ``digest(n)`` as the tag flow does (the stored head is the expected one)."""
    st = StreamTag(S, tag)
    before = store.get_head(st)
    new = Head(st, digest(n), (before.generation if before else 0) + 1, T0 + timedelta(minutes=n), "push", "ecr",
               REG, rev=(before.rev if before else 0) + 1)
    store.commit(before, new, None)
    return store.get_head(st)


def test_a_head_move_in_a_stream_without_a_policy_tag_writes_no_index_entry(dynamo):
    store, client = dynamo
    for n in range(3):
        _move(store, "latest", n)
    _move(store, "v1", 3)
    assert index_keys(client, S) == []  # nothing listed: no index write for any of these moves
    streams_on(store).head_moved(store.get_head(StreamTag(S, "latest")))
    store.stream_view(S)  # the consistent view (describe, the reconciler) lists nothing either
    assert index_keys(client, S) == []


def test_a_new_tag_of_a_policy_stream_is_listed_by_its_commit_and_stays_listed(dynamo):
    store, client = dynamo
    seed(client, "streams", S, tags=3, history=2)
    new = _move(store, "v1.0.7", 7)
    assert "H#v1.0.7" in index_keys(client, S)  # its stream has a policy tag: listed in the same transaction
    registry = MemoryRegistry()
    registry.set(S, "v1.0.7", digest(7))
    ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue()).head_moved(new)
    assert "H#v1.0.7" in index_keys(client, S)
    assert store.get_head(StreamTag(S, POLICY_TAG)).digest == digest(7)  # and the policy saw it
    moved = _move(store, "v1.0.7", 8)  # later moves keep the listing, with the new digest
    out = client.query(TableName="streams", IndexName=STREAM_INDEX,
                       KeyConditionExpression="gsi3pk = :p AND gsi3sk = :s",
                       ExpressionAttributeValues=_dump({":p": pk(S), ":s": "H#v1.0.7"}))
    assert [_load(i)["digest"] for i in out["Items"]] == [moved.digest]
    assert store.get_head(StreamTag(S, "v1.0.7")) == moved  # the update wrote the head whole


def test_a_new_tag_the_commit_did_not_list_is_listed_by_its_fan_out(dynamo, monkeypatch):
    store, client = dynamo
    seed(client, "streams", S, tags=3, history=2)
    monkeypatch.setattr(store, "_has_policy", lambda stream: False)  # the policy tag was set a moment ago
    new = _move(store, "v1.0.7", 7)
    monkeypatch.undo()
    assert "H#v1.0.7" not in index_keys(client, S)
    registry = MemoryRegistry()
    registry.set(S, "v1.0.7", digest(7))
    ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue()).head_moved(new)
    assert "H#v1.0.7" in index_keys(client, S)
    assert store.get_head(StreamTag(S, POLICY_TAG)).digest == digest(7)


def test_a_head_write_removes_what_the_new_head_no_longer_has(dynamo):
    store, _ = dynamo
    st = StreamTag(S, "latest")
    first = Head(st, digest(1), 1, T0, "push", "ecr", REG, media_type="application/vnd.oci.image.index.v1+json",
                 kept_in_registry=True, pushed_at=T0, rev=1)
    store.commit(None, first, None)
    assert store.get_head(st) == first
    gone = first._replace(generation=2, deleted=True, media_type=None, kept_in_registry=False, pushed_at=None, rev=2)
    store.commit(first, gone, None)
    assert store.get_head(st) == gone
    back = gone._replace(generation=3, deleted=False, digest=digest(2), rev=3)
    store.commit(gone, back, None)
    item = _load(dynamo[1].get_item(TableName="streams", Key=_dump({"pk": pk(S), "sk": "T#latest#H"}))["Item"])
    assert "expiresAt" not in item and "mediaType" not in item  # the tombstone's TTL went with it
    assert store.get_head(st) == back


def test_the_first_policy_tag_of_a_stream_lists_its_heads_and_removing_it_keeps_them(dynamo):
    store, client = dynamo
    registry = MemoryRegistry()
    streams = ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue())
    for n in range(3):
        registry.set(S, f"v1.{n}.0", digest(n), pushed_at=T0 + timedelta(minutes=n))
        streams.sync(StreamTag(S, f"v1.{n}.0"))
    assert index_keys(client, S) == []
    streams.set_policy(StreamTag(S, "stable"), {"semver": "^1"})
    listed = sorted(["H#v1.0.0", "H#v1.1.0", "H#v1.2.0", "H#stable", "P#stable"])  # stable's first head too
    assert index_keys(client, S) == listed
    assert store.get_head(StreamTag(S, "stable")).digest == digest(2)
    streams.remove_policy(StreamTag(S, "stable"))
    streams.describe(S)
    assert index_keys(client, S) == [k for k in listed if not k.startswith("P#")]  # a listing is never taken back


def test_items_written_before_the_index_get_their_keys_from_a_consistent_view(dynamo):
    store, client = dynamo
    seed(client, "streams", S, tags=3, history=2)
    for n in range(2):  # as an older version wrote them: no index keys
        client.update_item(TableName="streams", Key=_dump({"pk": pk(S), "sk": f"T#{version_tag(n)}#H"}),
                           UpdateExpression="REMOVE gsi3pk, gsi3sk")
    client.update_item(TableName="streams", Key=_dump({"pk": pk(S), "sk": f"T#{POLICY_TAG}#P"}),
                       UpdateExpression="REMOVE gsi3pk, gsi3sk")
    assert f"P#{POLICY_TAG}" not in index_keys(client, S)
    store.stream_view(S)  # the reconciler's evaluation of a stream with policy tags reads this
    assert index_keys(client, S) == sorted([f"H#{version_tag(0)}", f"H#{version_tag(1)}", f"H#{POLICY_TAG}",
                                            f"P#{POLICY_TAG}"])


# --------------------------------------------------------------------------------------- what is read


def test_a_head_move_in_a_stream_with_long_histories_reads_no_history_item(dynamo):
    store, client = dynamo
    heads = seed(client, "streams", S, tags=20, history=30)
    counter = ScanCounter(client)
    streams_on(store).head_moved(heads[version_tag(4)])
    read = counter.take()
    assert read["history_items"] == 0
    assert read["items"] <= 20 + 2  # the stream's heads and its policy tag (+ the moved tag's own range)
    store.stream_view(S)
    before = counter.take()  # what the fan-out read before the index: the whole partition
    assert before["items"] >= 19 * 30  # 19 version tags x 30 entries
    assert store.get_policy(StreamTag(S, POLICY_TAG)).selected == version_tag(18)  # nothing moved


def test_a_stream_without_policy_tags_reads_nothing_from_the_index(dynamo):
    store, client = dynamo
    heads = seed(client, "streams", S, tags=20, history=30, policy=False)
    counter = ScanCounter(client)
    assert store.policy_view(S) == ([], [])
    assert counter.take()["items"] == 0  # its heads are not listed: the query finds nothing (0.5 read unit)
    streams_on(store).head_moved(heads[version_tag(4)])
    assert counter.take() == {"items": 1, "history_items": 0}  # the tag's own head, nothing else


def test_a_gate_event_nobody_waits_on_is_one_query_of_what_can_wait(dynamo):
    store, client = dynamo
    heads = seed(client, "streams", S, tags=10, history=30, policy=False)
    counter = ScanCounter(client)
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    out = streams_on(store).gate_evidence(S, digest("nobody"))
    assert out["triggers"] == [] and out["policies"] is False
    assert counter.take() == {"items": 0, "history_items": 0} and calls == ["Query"]
    web = heads[version_tag(2)]  # a trigger held on another digest: the one item read, still one call
    from imagestreams.gates import GateState

    trigger = Trigger(trigger_id(web.stream_tag, TARGET), web.stream_tag, TARGET,
                      gates=parse_gates([{"type": "approval"}]), status="Gated", gate_state=GateState(web.digest, T0))
    assert store.add_trigger(trigger)
    calls.clear()
    assert streams_on(store).gate_evidence(S, digest("nobody"))["triggers"] == []
    assert counter.take() == {"items": 1, "history_items": 0} and calls == ["Query"]


def test_a_gate_event_finds_the_held_trigger_without_the_history(dynamo):
    store, client = dynamo
    heads = seed(client, "streams", S, tags=10, history=30, policy=False)
    web = heads[version_tag(2)]
    gates = parse_gates([{"type": "approval"}])
    trigger = Trigger(trigger_id(web.stream_tag, TARGET), web.stream_tag, TARGET, gates=gates)
    assert store.add_trigger(trigger)
    from imagestreams.gates import GateState

    assert store.save_trigger(trigger.with_outcome(status="Gated", gate_state=GateState(web.digest, T0)))
    queue = ListQueue()
    streams = ImageStreams(store, MemoryRegistry(), {"ecs": MemoryEcs()}, queue)
    counter = ScanCounter(client)
    out = streams.gate_evidence(S, web.digest)
    assert out["triggers"] == [trigger.id]
    assert counter.take()["history_items"] == 0


# --------------------------------------------------------------------------------- a lagging view


class LaggingStore:
    """A memory store whose ``policy_view`` answers what it held when :meth:`freeze` was called (an index that
    has not caught up); every other read is current."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner, self.frozen = inner, None

    def freeze(self) -> None:
        self.frozen = self.inner.policy_view(S)

    def policy_view(self, stream: str, moved: Head | None = None) -> Any:
        return self.frozen if self.frozen is not None else self.inner.policy_view(stream, moved)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _push(streams: ImageStreams, registry: MemoryRegistry, tag: str, n: int) -> Head:
    registry.set(S, tag, digest(n), pushed_at=T0 + timedelta(minutes=n))
    streams.sync(StreamTag(S, tag))
    return streams.store.get_head(StreamTag(S, tag))


@pytest.mark.parametrize("order", ["in order", "reversed"])
def test_a_policy_evaluated_on_a_lagging_view_ends_on_the_best_candidate(order):
    store, registry = LaggingStore(MemoryStore()), MemoryRegistry()
    streams = ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue())
    for n in range(2):
        streams.head_moved(_push(streams, registry, f"v1.{n}.0", n))
    streams.set_policy(StreamTag(S, "stable"), {"semver": "^1"})
    assert store.get_head(StreamTag(S, "stable")).digest == digest(1)
    store.freeze()  # the index stops here: it never learns of v1.2.0, v1.3.0, nor of the policy's moves
    records = [_push(streams, registry, "v1.2.0", 2), _push(streams, registry, "v1.3.0", 3)]
    for head in records if order == "in order" else records[::-1]:
        streams.head_moved(head)
    for _ in range(3):  # the policy tag's own head moves come back through the stream
        streams.head_moved(store.get_head(StreamTag(S, "stable")))
    assert store.get_head(StreamTag(S, "stable")).digest == digest(3)
    policy = store.get_policy(StreamTag(S, "stable"))
    assert (policy.status, policy.selected, policy.digest) == ("Selected", "v1.3.0", digest(3))


def test_a_policy_removed_while_the_view_lagged_does_not_move():
    store, registry = LaggingStore(MemoryStore()), MemoryRegistry()
    streams = ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue())
    streams.head_moved(_push(streams, registry, "v1.0.0", 0))
    streams.set_policy(StreamTag(S, "stable"), {"semver": "^1"})
    store.freeze()
    streams.remove_policy(StreamTag(S, "stable"))
    retags = registry.retags
    streams.head_moved(_push(streams, registry, "v1.1.0", 1))
    assert registry.retags == retags
    assert store.get_head(StreamTag(S, "stable")).digest == digest(0)


def test_a_trigger_state_write_after_release_takes_it_off_the_index(dynamo):
    store, client = dynamo
    web = StreamTag(S, "latest")
    trigger = Trigger(trigger_id(web, TARGET), web, TARGET, gates=parse_gates([{"type": "approval"}]),
                      status="Gated")
    assert store.add_trigger(trigger)  # added while held: listed from the start
    item = _load(client.get_item(TableName="streams",
                                 Key=_dump({"pk": pk(S), "sk": trigger_sk("latest", trigger.id)}))["Item"])
    assert item["gsi3sk"] == f"W#latest#{trigger.id}"
    assert store.save_trigger(trigger.with_outcome(status="Deployed"))
    assert index_keys(client, S) == []


def test_a_trigger_held_before_the_index_existed_is_still_woken_by_its_gate_clock(dynamo):
    store, client = dynamo
    heads = seed(client, "streams", S, tags=3, history=2, policy=False)
    web = heads[version_tag(1)]
    from imagestreams.gates import GateState

    trigger = Trigger(trigger_id(web.stream_tag, TARGET), web.stream_tag, TARGET,
                      gates=parse_gates([{"type": "approval"}]), status="Gated",
                      gate_state=GateState(web.digest, T0))
    assert store.add_trigger(trigger)
    client.update_item(TableName="streams", Key=_dump({"pk": pk(S), "sk": trigger_sk(web.stream_tag.tag, trigger.id)}),
                       UpdateExpression="REMOVE gsi3pk, gsi3sk")  # as an older version wrote it
    queue = ListQueue()
    streams = ImageStreams(store, MemoryRegistry(), {"ecs": MemoryEcs()}, queue)
    assert streams.gate_evidence(S, web.digest)["triggers"] == []  # the index does not list it
    assert streams.gate_wake("trigger", trigger.id, web.digest)["triggers"] == [trigger.id]
    assert [i for _, i, _ in queue.items] == [trigger.id]


class RefusingOnce(MemoryRegistry):
    """ECR refuses the first retag (e.g. a moment of IMMUTABLE tags), then takes them."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = True

    def retag(self, stream: str, digest: str, tag: str) -> None:
        if self.refuse:
            self.refuse = False
            from imagestreams.errors import Conflict

            raise Conflict(f"{stream}:{tag} is immutable")
        super().retag(stream, digest, tag)


def test_a_new_tag_its_own_fan_out_could_not_select_is_still_seen_by_the_next_push(dynamo):
    store, client = dynamo
    registry = RefusingOnce()
    registry.refuse = False
    streams = ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue())
    for n in range(2):
        registry.set(S, f"v1.{n}.0", digest(n), pushed_at=T0 + timedelta(minutes=n))
        streams.head_moved(_synced(streams, f"v1.{n}.0"))
    streams.set_policy(StreamTag(S, "stable"), {"semver": "^1"})
    streams.head_moved(store.get_head(StreamTag(S, "stable")))
    registry.set(S, "v1.5.0", digest(5), pushed_at=T0 + timedelta(minutes=5))
    registry.refuse = True
    streams.head_moved(_synced(streams, "v1.5.0"))  # its evaluation cannot move stable: ECR refuses
    assert store.get_head(StreamTag(S, "stable")).digest == digest(1)
    registry.set(S, "latest", digest(9), pushed_at=T0 + timedelta(minutes=9))
    streams.head_moved(_synced(streams, "latest"))  # any later move of the stream evaluates again, from the index
    assert store.get_head(StreamTag(S, "stable")).digest == digest(5)


def _synced(streams: ImageStreams, tag: str) -> Head:
    streams.sync(StreamTag(S, tag))
    return streams.store.get_head(StreamTag(S, tag))
