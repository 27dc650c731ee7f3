"""The ByStream index on the deployed table (DynamoDB Local when present): a head move in a stream with long
histories reads no history item and a fraction of the read units of the whole partition; a policy evaluated on a
view that lags behind the table still ends on the best candidate, in ECR too."""

from __future__ import annotations

from typing import Any

from bench.cost import CapacityMeter
from bench.stream_view_bench import ScanCounter, seed, version_tag
from imagestreams import aws as clients
from imagestreams.model import StreamTag


def _fanout(stack: Any) -> Any:
    from imagestreams.bootstrap import build
    from imagestreams.config import Settings

    stack.use_function_env("FanoutFunction")
    settings = Settings.from_env()
    return build(settings), settings


def test_a_head_move_in_a_stream_with_long_histories_reads_no_history_item(stack):
    streams, settings = _fanout(stack)
    ddb = clients.client("dynamodb")
    heads = seed(ddb, settings.table, "team/big", tags=40, history=50)
    meter, counter = CapacityMeter().attach(ddb), ScanCounter(ddb)
    try:
        streams.head_moved(heads[version_tag(7)])
        after = {**meter.take(), **counter.take()}
        streams.store.stream_view("team/big")  # the one query of the partition the fan-out made before
        before = {**meter.take(), **counter.take()}
    finally:
        meter.detach()
        counter.detach()
    assert after["history_items"] == 0
    assert after["items"] <= 40 + 2  # heads + the policy tag (+ the moved tag's own head-and-triggers range)
    assert before["items"] >= 39 * 50
    if before["rru"]:  # DynamoDB Local reports consumed capacity (moto may not)
        assert after["rru"] * 10 <= before["rru"]
    policy = streams.store.get_policy(StreamTag("team/big", "stable"))
    assert policy.selected == version_tag(38)  # already on its selection: nothing moved


def test_a_policy_evaluated_on_a_lagging_index_still_ends_on_the_best_candidate(stack):
    streams, _ = _fanout(stack)
    stack.client("ecr").create_repository(repositoryName="team/lag")
    digests = {}

    def push(n: int) -> Any:
        tag = f"v1.{n}.0"
        digests[tag] = stack.push_image("team/lag", tag, seed=f"lag-{n}", emit=False)["detail"]["image-digest"]
        streams.sync(StreamTag("team/lag", tag))
        return streams.store.get_head(StreamTag("team/lag", tag))

    for n in range(2):
        streams.head_moved(push(n))
    streams.set_policy(StreamTag("team/lag", "stable"), {"semver": "^1"})
    store = streams.store
    frozen = store.policy_view("team/lag")  # the index stops here
    assert [p.selected for p in frozen[1]] == ["v1.1.0"]
    store.policy_view = lambda stream, moved=None: frozen  # type: ignore[method-assign]
    records = [push(2), push(3)]
    for head in reversed(records):  # and the records come in any order
        streams.head_moved(head)
    for _ in range(3):  # the policy tag's own moves come back through the table stream
        streams.head_moved(store.get_head(StreamTag("team/lag", "stable")))
    assert store.get_head(StreamTag("team/lag", "stable")).digest == digests["v1.3.0"]
    described = stack.client("ecr").describe_images(repositoryName="team/lag", imageIds=[{"imageTag": "stable"}])
    assert described["imageDetails"][0]["imageDigest"] == digests["v1.3.0"]
    policy = store.get_policy(StreamTag("team/lag", "stable"))
    assert (policy.status, policy.selected) == ("Selected", "v1.3.0")
