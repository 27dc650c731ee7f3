"""Review of the sparse ``ByStream`` listing of heads (heads listed only in streams with a policy tag; a head write
is an update that keeps the stored listing). Each test states what a user or an operator would notice.

DynamoDB behaviour comes from the stack's table on moto (``moto_streams_table``); where moto does not model a
DynamoDB behaviour (a non-transactional write racing a transaction on the same item), the test injects the error
DynamoDB documents for it and says so.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagestreams.adapters.dynamodb import STREAM_INDEX, _dump, _load, pk
from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry
from imagestreams.model import EcsTarget, Head, StreamTag, Trigger, trigger_id
from imagestreams.services import ImageStreams
from tests.conftest import digest

ROOT = Path(__file__).resolve().parents[2]
S = "team/web"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture
def dynamo(moto_streams_table):
    return moto_streams_table  # the stack's table on moto (tests/conftest.py): a DynamoStore and its client


def index_keys(client: Any, stream: str) -> list[str]:
    out = client.query(TableName="streams", IndexName=STREAM_INDEX, KeyConditionExpression="gsi3pk = :p",
                       ExpressionAttributeValues=_dump({":p": pk(stream)}))
    return sorted(_load(i)["gsi3sk"] for i in out["Items"])


def _push(streams: ImageStreams, registry: MemoryRegistry, tag: str, n: int) -> Head:
    """A push of ``tag`` onto ``digest(n)`` as ingest records it (no fan-out: the caller decides)."""
    registry.set(S, tag, digest(n), pushed_at=T0 + timedelta(minutes=n))
    streams.sync(StreamTag(S, tag))
    head = streams.store.get_head(StreamTag(S, tag))
    assert head is not None
    return head


# ------------------------------------------------------------------------------------- a lost first fan-out


def test_a_new_tag_whose_first_fan_out_was_lost_still_wins_the_policy_at_the_next_push(dynamo):
    """The head's listing is no longer part of its commit: it is written by the fan-out of the tag's first move.
    When that fan-out never happens (its record failed every retry and aged out, or was skipped), the tag stays
    out of the index, and every later evaluation from the index picks among the other tags: the next push of a
    lesser version moves the policy tag (and deploys its triggers) to that lesser version while the best one is
    in the table, and the policy tag's own fan-out leaves it there. Only the reconciler's next full pass repairs
    it (and then deploys a second time). Before, the commit itself listed the head, so a lost fan-out never hid a
    tag from later pushes."""
    store, _ = dynamo
    registry = MemoryRegistry()
    queue = ListQueue()
    streams = ImageStreams(store, registry, {"ecs": MemoryEcs()}, queue)
    for n in range(2):
        streams.head_moved(_push(streams, registry, f"v1.{n}.0", n))
    stable = StreamTag(S, "stable")
    streams.set_policy(stable, {"semver": "^1"})
    streams.head_moved(store.get_head(stable))
    target = EcsTarget("prod", "web", "app")
    streams.store.add_trigger(Trigger(trigger_id(stable, target), stable, target))
    assert store.get_head(stable).digest == digest(1)

    _push(streams, registry, "v1.5.0", 5)  # its fan-out is lost
    streams.head_moved(_push(streams, registry, "v1.2.0", 2))  # the next push, fanned out
    for _ in range(2):  # the policy tag's own moves come back through the table stream
        streams.head_moved(store.get_head(stable))
    deployed = [d for st, _, d in queue.items if st == stable]
    assert digest(2) not in deployed, "the policy tag's trigger was sent v1.2.0 while v1.5.0 is in the stream"
    assert store.get_head(stable).digest == digest(5)


# ------------------------------------------------------------------------ a listing write that meets a push


class ConflictingHeadUpdates:
    """The DynamoDB client, except that a plain ``UpdateItem`` of a head item is refused with
    ``TransactionConflictException``: what DynamoDB answers a non-transactional write of an item while a
    ``TransactWriteItems`` (a push's head commit) on that item is in flight. moto does not model that race, and
    botocore does not retry that error code."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def update_item(self, **kwargs: Any) -> Any:
        if _load(kwargs["Key"])["sk"].endswith("#H"):
            raise ClientError({"Error": {"Code": "TransactionConflictException",
                                         "Message": "Transaction is ongoing for the item"}}, "UpdateItem")
        return self.client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_describe_of_a_policy_stream_answers_while_a_new_tag_of_it_is_being_pushed(dynamo):
    """``describe`` is a read, yet its consistent view of a policy stream now also writes the listing of every
    head the index lacks (a new tag whose fan-out has not run yet: the moment right after any first push). When
    that best-effort write meets the next push of the same tag (a transaction in flight on the item), DynamoDB
    refuses it with ``TransactionConflictException``, which nothing catches: ``describe`` fails, and so do
    ``policy set`` (after the policy is stored, before it is evaluated) and the reconciler's policy pass of that
    stream."""
    store, client = dynamo
    registry = MemoryRegistry()
    streams = ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue())
    streams.head_moved(_push(streams, registry, "v1.0.0", 0))
    streams.set_policy(StreamTag(S, "stable"), {"semver": "^1"})
    _push(streams, registry, "v1.1.0", 1)  # a new tag: written unlisted, its fan-out not run yet
    store.client = ConflictingHeadUpdates(client)
    out = streams.describe(S)  # raises ClientError (TransactionConflictException) today
    assert "v1.1.0" in [t["tag"] for t in out["tags"]]


# --------------------------------------------------------------------------------------------- the claims


def test_the_readme_cost_figure_is_the_measured_one():
    """The README's benchmark table (and its cost paragraph) still report $0.010006 per 1,000 pushes, "over the
    goal", and name "give heads index keys only in streams that have a policy tag" as the next lever, while
    bench/results.json, measured after that lever was pulled, says 0.00864."""
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    readme = (ROOT / "README.md").read_text()
    row = re.search(r"^\| cost per 1,000 pushes, one ECS trigger each \(USD\) \| ([0-9.]+) \|", readme, re.M)
    assert row is not None
    assert float(row.group(1)) == results["cost_usd_per_1000_pushes"]
