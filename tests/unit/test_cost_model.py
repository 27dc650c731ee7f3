"""The cost model's arithmetic on fixed counts, and the fan-out's batching of 100 fires (SQS adapter, counting fake
client). Timings play no part here: the bench measures them, these tests check what is done with them."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from bench.cost import CapacityMeter, Step, idle_steps, push_steps, summarize, total
from bench.prices import PRICES
from imagestreams.adapters.sqs import MAX_BATCH, SqsFireQueue
from imagestreams.model import EcsTarget, Head, StreamTag, Trigger, trigger_id

ONES = dict.fromkeys(PRICES, 1.0)


def test_each_unit_is_priced_once_per_invocation() -> None:
    # prices of 1: the cost parts read back the quantities billed
    step = Step("s", invocations=3, ms=100, memory_mb=512, rru=2, wru=5, sqs_requests=4, schedules=1)
    parts = step.cost(ONES)
    assert parts["lambda"] == pytest.approx(3 + 3 * 0.1 * 0.5)  # 3 requests + 0.15 GB-s
    assert parts["dynamodb"] == pytest.approx(3 * (2 + 5))
    assert parts["sqs"] == pytest.approx(3 * 4)
    assert parts["scheduler"] == pytest.approx(3)
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))


def test_lambda_duration_is_billed_in_whole_milliseconds() -> None:
    assert Step("s", 1, 10.2, memory_mb=1024).cost(ONES)["lambda"] == pytest.approx(1 + 0.011)
    assert Step("s", 1, 10.0, memory_mb=1024).cost(ONES)["lambda"] == pytest.approx(1 + 0.010)


def test_published_prices_reproduce_a_worked_example() -> None:
    # three 100 ms invocations at 256 MB, 1 RRU + 4 WRU and 3 FIFO requests: about $0.0057 per 1,000 pushes
    steps = [Step("a", 1, 100, rru=1, wru=4, sqs_requests=3), Step("b", 1, 100), Step("c", 1, 100)]
    lam = 3 * (0.20e-6 + 0.1 * 0.25 * 0.0000133334)
    assert 1000 * total(steps) == pytest.approx(1000 * (lam + 0.125e-6 + 4 * 0.625e-6 + 3 * 0.50e-6))
    assert round(1000 * total(steps), 4) == 0.0057


def _measured(**overrides: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "ingest_ms_median": 30.0, "ingest_units_fresh": {"rru": 1, "wru": 4},
        "fanout_calls_1": {"dynamodb:Query": 1, "sqs:SendMessageBatch": 1}, "fanout_ms_1": 20.0,
        "fanout_units_1": {"rru": 1, "wru": 0},
        "ecs_fire_ms": 200.0, "ecs_fire_units": {"rru": 2, "wru": 5},
        "rollout_in_progress_ms": 20.0, "rollout_in_progress_units": {"rru": 1.5, "wru": 0},
        "rollout_completed_ms": 20.0, "rollout_completed_units": {"rru": 1.5, "wru": 3},
        "reconcile_idle_ms": 1000.0, "reconcile_idle_units": {"rru": 128, "wru": 5}, "reconcile_idle_tags": 100,
    }
    r.update(overrides)
    return r


def test_cost_per_push_adds_ingest_fanout_fire_and_both_rollout_events(monkeypatch: Any) -> None:
    monkeypatch.setattr("bench.cost.rollout_states", lambda: {"IN_PROGRESS", "COMPLETED", "FAILED"})  # both delivered
    r = _measured()
    steps = {s.name: s for s in push_steps(r)}
    assert steps["fanout"].sqs_requests == 1  # the SendMessageBatch the bench counted
    assert steps["deployer"].sqs_requests == 2  # the poller's receive and delete of that message
    wru = 4 + 0 + 5 + 0 + 3
    rru = 1 + 1 + 2 + 1.5 + 1.5
    gb_s = (30 + 20 + 200 + 20 + 20) / 1000 * 0.25
    expected = (5 * PRICES["lambda_request"] + gb_s * PRICES["lambda_arm_gb_second"] + wru * PRICES["dynamodb_wru"]
                + rru * PRICES["dynamodb_rru"] + 3 * PRICES["sqs_fifo_request"])
    assert summarize(r)["cost_usd_per_1000_pushes"] == pytest.approx(1000 * expected, abs=1e-6)
    # more write units measured -> a higher figure: the key follows the counts, it is not a constant
    more = summarize(_measured(ecs_fire_units={"rru": 2, "wru": 15}))["cost_usd_per_1000_pushes"]
    assert more == pytest.approx(summarize(r)["cost_usd_per_1000_pushes"] + 1000 * 10 * PRICES["dynamodb_wru"],
                                 abs=1e-6)


def test_idle_month_prices_reconciler_runs_and_empty_receives() -> None:
    r = _measured()
    runs = 730 * 4  # every 15 minutes
    steps = {s.name: s for s in idle_steps(r)}
    assert steps["reconciler"].invocations == runs
    assert steps["reconciler"].memory_mb == 512
    receives = 730 * 60 * 15
    assert steps["sqs poller (empty receives)"].cost()["sqs"] == pytest.approx(receives * 0.50e-6)
    expected = (runs * (PRICES["lambda_request"] + 1.0 * 0.5 * PRICES["lambda_arm_gb_second"]
                        + 128 * PRICES["dynamodb_rru"] + 5 * PRICES["dynamodb_wru"] + PRICES["scheduler_invocation"])
                + receives * PRICES["sqs_fifo_request"])
    assert summarize(r)["cost_usd_idle_month"] == pytest.approx(expected, abs=1e-4)


def test_meter_doubles_transactional_writes_and_bills_lost_conditions() -> None:
    meter = CapacityMeter()
    op = lambda name: SimpleNamespace(name=name)  # noqa: E731
    meter._add(op("TransactWriteItems"), {"ConsumedCapacity": [{"CapacityUnits": 2.0}]})
    meter._add(op("GetItem"), {"ConsumedCapacity": {"CapacityUnits": 1.0}})
    meter._add(op("UpdateItem"), {"Error": {"Code": "ConditionalCheckFailedException"}})
    meter._add(op("DescribeTable"), {"Table": {}})
    assert meter.take() == {"rru": 1.0, "wru": 5.0}
    assert meter.take() == {"rru": 0.0, "wru": 0.0}


class CountingSqs:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        assert len(Entries) <= MAX_BATCH
        self.batches.append(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def _head(stream_tag: StreamTag) -> Head:
    return Head(stream_tag, "sha256:" + "a" * 64, 7, datetime(2026, 1, 1, tzinfo=UTC), "push", "ecr",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com")


@pytest.mark.parametrize("count", [1, 10, 11, 100])
def test_fanout_of_many_triggers_batches_ten_per_call_one_group_per_service(count: int) -> None:
    tag = StreamTag("app/web", "prod")
    targets = [EcsTarget("prod", f"svc-{n}", "app") for n in range(count)]
    triggers = [Trigger(trigger_id(tag, t), tag, t) for t in targets]
    sqs = CountingSqs()
    SqsFireQueue(sqs, "https://sqs/fires.fifo").enqueue(triggers, _head(tag))
    entries = [e for batch in sqs.batches for e in batch]
    assert len(sqs.batches) == -(-count // 10)
    assert len(entries) == count
    assert len({e["MessageGroupId"] for e in entries}) == count  # distinct services: never serialized
    assert len({e["MessageDeduplicationId"] for e in entries}) == count


def test_fires_of_one_service_share_a_group() -> None:
    tag = StreamTag("app/web", "prod")
    targets = [EcsTarget("prod", "svc", f"c{n}") for n in range(3)]  # three containers of one service
    triggers = [Trigger(trigger_id(tag, t), tag, t) for t in targets]
    sqs = CountingSqs()
    SqsFireQueue(sqs, "https://sqs/fires.fifo").enqueue(triggers, _head(tag))
    assert len({e["MessageGroupId"] for e in sqs.batches[0]}) == 1


def test_meter_takes_dynamodb_locals_doubled_figure_when_a_transaction_writes_an_index() -> None:
    """DynamoDB Local reports a plain figure for a transaction that writes no index, but the doubled one (table
    and index) when it does: the meter must not double that again."""
    meter = CapacityMeter()
    op = SimpleNamespace(name="TransactWriteItems")
    meter._add(op, {"ConsumedCapacity": [{"CapacityUnits": 6.0, "Table": {"CapacityUnits": 4.0},
                                          "GlobalSecondaryIndexes": {"ByStream": {"CapacityUnits": 2.0}}}]})
    assert meter.take() == {"rru": 0.0, "wru": 6.0}
    meter._add(op, {"ConsumedCapacity": [{"CapacityUnits": 2.0, "Table": {"CapacityUnits": 2.0}}]})
    assert meter.take() == {"rru": 0.0, "wru": 4.0}
