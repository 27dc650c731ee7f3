"""The reconciler counts a repository's live heads from the keys-only ``ByKind`` index (``HEADS#<repo>``): one
Query per 1,000 tags whatever the history, no table Scan for the repositories with live heads, and a head move writes
nothing to that index (its keys change only when the head is created, deleted, or becomes or stops being an alias)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from imagestreams.adapters.dynamodb import TRIGGER_INDEX, _dump, _load, head_sk, pk
from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry
from imagestreams.model import Head, StreamTag
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams
from tests.conftest import digest

S = "team/web"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture
def dynamo(moto_streams_table):
    return moto_streams_table


def heads_index(client: Any, stream: str) -> list[str]:
    out = client.query(TableName="streams", IndexName=TRIGGER_INDEX, KeyConditionExpression="gsi1pk = :p",
                       ExpressionAttributeValues=_dump({":p": f"HEADS#{stream}"}))
    return [_load(i)["gsi1sk"] for i in out["Items"]]


def calls_of(client: Any) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    client.meta.events.register("provide-client-params.dynamodb.*",
                                lambda params, model, **_: seen.append((model.name, dict(params))))
    return seen


def _move(store: Any, tag: str, n: int, **fields: Any) -> Head:
    st = StreamTag(S, tag)
    before = store.get_head(st)
    new = Head(st, digest(n), (before.generation if before else 0) + 1, T0 + timedelta(minutes=n), "push", "ecr",
               REG, rev=(before.rev if before else 0) + 1, **fields)
    store.commit(before, new, None)
    return store.get_head(st)


def test_a_live_head_is_listed_a_tombstone_is_not_and_a_push_again_lists_it_again(dynamo):
    store, client = dynamo
    first = _move(store, "latest", 1)
    _move(store, "v1", 2)
    assert heads_index(client, S) == ["latest", "v1"]
    store.commit(first, first._replace(generation=2, deleted=True, rev=2), None)
    assert heads_index(client, S) == ["v1"]
    _move(store, "latest", 3)
    assert heads_index(client, S) == ["latest", "v1"]


def test_a_head_move_does_not_touch_its_index_keys(dynamo):
    store, client = dynamo
    _move(store, "latest", 1)
    seen = calls_of(client)
    _move(store, "latest", 2)
    (update,) = [item["Update"] for name, params in seen if name == "TransactWriteItems"
                 for item in params["TransactItems"] if "Update" in item]
    assert "gsi1pk" not in update["ExpressionAttributeNames"].values()  # no ByKind write for a move
    assert heads_index(client, S) == ["latest"]


def test_an_alias_is_marked_in_the_index_and_unmarked_when_it_stops_being_one(dynamo):
    store, client = dynamo
    _move(store, "latest", 1)
    edge = _move(store, "edge", 1)
    store.relink(edge, edge._replace(alias_of="latest", rev=edge.rev + 1))
    assert heads_index(client, S) == ["edge#A", "latest"]
    edge = store.get_head(StreamTag(S, "edge"))
    store.relink(edge, edge._replace(alias_of=None, rev=edge.rev + 1))
    assert heads_index(client, S) == ["edge", "latest"]


def test_live_head_keys_pages_in_order_from_where_it_stopped(dynamo):
    store, _ = dynamo
    for n in range(25):
        _move(store, f"v{n:02d}", n)
    first = store.live_head_keys(S, "", 10)
    second = store.live_head_keys(S, first[-1], 10)
    third = store.live_head_keys(S, second[-1], 10)
    assert first + second + third == [f"v{n:02d}" for n in range(25)] and len(third) == 5


def test_repositories_with_live_heads_come_from_the_index_once_old_heads_are_listed(dynamo):
    store, client = dynamo
    _move(store, "latest", 1)
    old = StreamTag("team/old", "v1")
    store.commit(None, Head(old, digest(9), 1, T0, "push", "ecr", REG, rev=1), None)
    client.update_item(TableName="streams", Key=_dump({"pk": pk("team/old"), "sk": head_sk("v1")}),
                       UpdateExpression="REMOVE gsi1pk, gsi1sk")  # as a version before the listing wrote it
    seen = calls_of(client)
    assert store.live_streams() == ["team/old", S]  # once: a Scan of the table, which lists what it finds unlisted
    assert [p.get("IndexName") for n, p in seen if n == "Scan"] == [None]
    assert heads_index(client, "team/old") == ["v1"]
    seen.clear()
    assert store.live_streams() == ["team/old", S]
    assert [p.get("IndexName") for n, p in seen if n == "Scan"] == [TRIGGER_INDEX]  # then the keys only


def test_the_reconciler_counts_a_stream_with_long_histories_in_one_query(dynamo):
    store, client = dynamo
    registry = MemoryRegistry(REG)
    streams = ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue())
    for n in range(8):  # 8 tags, 12 history entries each: more than one seek of the partition reads per tag
        for g in range(12):
            registry.set(S, f"v{n:02d}", digest(f"{n}-{g}"))
            streams.sync(StreamTag(S, f"v{n:02d}"))
    reconciler = Reconciler(streams, registry, store)
    assert reconciler.run()["complete"]  # lists what an older version left unlisted, if anything
    seen = calls_of(client)
    report = reconciler.run()
    assert report["complete"] and report["moves"] == []
    queries = [p for n, p in seen if n == "Query"]
    on_stream = [p for p in queries if ":pk" in p["ExpressionAttributeValues"]
                 and p["ExpressionAttributeValues"][":pk"] in ({"S": pk(S)}, {"S": f"HEADS#{S}"})]
    assert len(on_stream) == 1 and on_stream[0]["IndexName"] == TRIGGER_INDEX  # the count: keys only


def test_a_tag_gone_from_ecr_is_still_found_when_the_count_differs(dynamo):
    store, _ = dynamo
    registry = MemoryRegistry(REG)
    streams = ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue())
    for tag in ("latest", "v1", "v2"):
        registry.set(S, tag, digest(tag))
        streams.sync(StreamTag(S, tag))
    registry.remove(S, "v1")  # its DELETE event was lost
    Reconciler(streams, registry, store).run()
    assert store.get_head(StreamTag(S, "v1")).deleted
    assert not store.get_head(StreamTag(S, "v2")).deleted
