"""Cost model: what the pipeline costs per 1,000 pushes and per idle month, priced from the AWS calls, DynamoDB
capacity units and Lambda durations the benchmarks measured, with the unit prices in ``bench/prices.py``.

    .venv/bin/python bench/cost.py          # after `make bench` (bench/run.py) wrote the counts to bench/results.json

Prints the breakdown and adds ``cost_usd_per_1000_pushes`` and ``cost_usd_idle_month`` to bench/results.json.
``bench/run.py`` calls the same model at its end, so ``make bench`` refreshes both keys.

What is measured and what is assumed:
- DynamoDB units are the ConsumedCapacity the table reported for each call (DynamoDB Local), except that a
  TransactWriteItems is billed at twice what a plain write of the same items costs (DynamoDB Local reports the
  plain figure — except when the transaction also writes an index: then it reports the doubled figure for the table
  and the index, which is what AWS bills, and it is taken as is) and a call that failed (a lost condition) is
  counted at one unit per item.
- Lambda durations are the handler's (or its use case's) wall time on the embedded AWS: local HTTP calls to moto and
  DynamoDB Local on a busy machine. Real AWS calls are not faster for DynamoDB, but ECS calls can be slower, and a
  cold start bills its init phase: the "slow" figure prices every invocation at a generous floor (``SLOW_MS``).
- SQS requests the Lambda poller makes (not visible to the bench): one receive that returns the fire and one delete
  per fire; when idle, the poller's empty long-poll receives (``IDLE_RECEIVES_PER_MINUTE``).
- ECS and ECR API calls are not billed; the ECR push event and the ECS deployment events reach EventBridge's default
  bus, which is free; Lambda's reads of the table stream are free.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.prices import PRICES  # noqa: E402

LAMBDA_MB = 256  # template.yaml: the functions' MemorySize (arm64)
RECONCILER_MB = 512  # template.yaml: the reconciler's MemorySize
HOURS_PER_MONTH = 730
RECONCILE_EVERY_MINUTES = 15
SQS_POLLER_REQUESTS_PER_FIRE = 2  # the receive that delivers the fire + its delete
# Lambda's SQS event source long-polls with several pollers even when the queue is empty; AWS's own troubleshooting
# note on unexpected SQS charges, and users who measured it, put this at about 15 empty receives a minute per queue.
IDLE_RECEIVES_PER_MINUTE = 15
SLOW_MS = {"ingest": 300, "fanout": 300, "deployer": 2000, "rollout": 300, "reconciler": 5000}

READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class CapacityMeter:
    """Read and write request units of the DynamoDB calls a client makes: asks DynamoDB for ConsumedCapacity on
    every data call and adds up what it reports."""

    def __init__(self) -> None:
        self.rru = 0.0
        self.wru = 0.0

    def attach(self, client: Any) -> CapacityMeter:
        self.client = client
        client.meta.events.register("provide-client-params.dynamodb.*", self._ask, unique_id=f"ask-{id(self)}")
        client.meta.events.register("after-call.dynamodb.*", self._add, unique_id=f"add-{id(self)}")
        return self

    def detach(self) -> None:
        self.client.meta.events.unregister("provide-client-params.dynamodb.*", unique_id=f"ask-{id(self)}")
        self.client.meta.events.unregister("after-call.dynamodb.*", unique_id=f"add-{id(self)}")

    @staticmethod
    def _ask(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in READS | WRITES:
            params.setdefault("ReturnConsumedCapacity", "INDEXES" if model.name == "TransactWriteItems" else "TOTAL")

    def _add(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        op = model.name
        if op not in READS | WRITES:
            return
        consumed = parsed.get("ConsumedCapacity")
        if consumed is None and "Error" in parsed:  # a lost condition is billed too
            units = 1.0
        else:
            items = consumed if isinstance(consumed, list) else [consumed] if consumed else []
            units = sum(float(c.get("CapacityUnits", 0)) for c in items)
        if op == "TransactWriteItems" and not any("GlobalSecondaryIndexes" in c for c in items):
            units *= 2  # DynamoDB Local reports the plain figure, unless an index is written: then it doubles it all
        if op in READS:
            self.rru += units
        else:
            self.wru += units

    def take(self) -> dict[str, float]:
        out = {"rru": self.rru, "wru": self.wru}
        self.rru = self.wru = 0.0
        return out


@dataclass(frozen=True)
class Step:
    """One kind of Lambda invocation: how often it runs per unit of work and what each run consumes."""

    name: str
    invocations: float
    ms: float
    memory_mb: int = LAMBDA_MB
    rru: float = 0.0
    wru: float = 0.0
    sqs_requests: float = 0.0
    schedules: float = 0.0

    def cost(self, prices: Mapping[str, float] = PRICES) -> dict[str, float]:
        billed_ms = math.ceil(self.ms)  # Lambda bills duration in 1 ms steps
        gb_s = self.invocations * billed_ms / 1000 * self.memory_mb / 1024
        parts = {
            "lambda": self.invocations * prices["lambda_request"] + gb_s * prices["lambda_arm_gb_second"],
            "dynamodb": self.invocations * (self.rru * prices["dynamodb_rru"] + self.wru * prices["dynamodb_wru"]),
            "sqs": self.invocations * self.sqs_requests * prices["sqs_fifo_request"],
            "scheduler": self.invocations * self.schedules * prices["scheduler_invocation"],
        }
        parts["total"] = sum(parts.values())
        return parts


def total(steps: list[Step], prices: Mapping[str, float] = PRICES) -> float:
    return sum(step.cost(prices)["total"] for step in steps)


def push_steps(r: Mapping[str, Any], *, slow: bool = False) -> list[Step]:
    """One push with one ECS trigger: ingest, fan-out, one deployer fire (lease included), the rollout events."""

    def ms(name: str, key: str) -> float:
        return max(float(r[key]), SLOW_MS[name]) if slow else float(r[key])

    fanout_sqs = float(r["fanout_calls_1"].get("sqs:SendMessageBatch", 0))
    return [
        Step("ingest", 1, ms("ingest", "ingest_ms_median"), **_units(r["ingest_units_fresh"])),
        Step("fanout", 1, ms("fanout", "fanout_ms_1"), sqs_requests=fanout_sqs, **_units(r["fanout_units_1"])),
        Step("deployer", 1, ms("deployer", "ecs_fire_ms"), sqs_requests=SQS_POLLER_REQUESTS_PER_FIRE,
             **_units(r["ecs_fire_units"])),
        # ECS reports each deployment as IN_PROGRESS, then COMPLETED (or FAILED); the rollout function is invoked
        # for the states its rule in template.yaml selects
        *([Step("rollout IN_PROGRESS", 1, ms("rollout", "rollout_in_progress_ms"),
                **_units(r["rollout_in_progress_units"]))] if "IN_PROGRESS" in rollout_states() else []),
        Step("rollout COMPLETED", 1, ms("rollout", "rollout_completed_ms"), **_units(r["rollout_completed_units"])),
    ]


def rollout_states(template: Path = ROOT / "template.yaml") -> set[str]:
    """The ECS deployment states whose events the rollout function's rule in template.yaml delivers."""
    sys.path.insert(0, str(ROOT / "local"))
    from imagestreams_local.template import load_template

    events = load_template(template)["Resources"]["RolloutFunction"]["Properties"]["Events"]
    names = [name for event in events.values() if event["Type"] == "EventBridgeRule"
             for name in event["Properties"]["Pattern"].get("detail", {}).get("eventName", [])]
    return {name.removeprefix("SERVICE_DEPLOYMENT_") for name in names}


def idle_steps(r: Mapping[str, Any], *, slow: bool = False) -> list[Step]:
    """A month with no push: the scheduled reconciler over the measured tags, and the SQS poller's empty receives."""
    runs = HOURS_PER_MONTH * 60 / RECONCILE_EVERY_MINUTES
    run_ms = max(float(r["reconcile_idle_ms"]), SLOW_MS["reconciler"]) if slow else float(r["reconcile_idle_ms"])
    receives = HOURS_PER_MONTH * 60 * IDLE_RECEIVES_PER_MINUTE
    return [
        Step("reconciler", runs, run_ms, memory_mb=RECONCILER_MB, schedules=1, **_units(r["reconcile_idle_units"])),
        Step("sqs poller (empty receives)", 1, 0, sqs_requests=receives),
    ]


def measure_idle_reconciler(aws: Any, tags: int = 100, repository: str = "bench/idle") -> dict[str, Any]:
    """On a fresh embedded stack: ``tags`` tags in sync, then one scheduled reconciler run as it happens every period
    of an idle month. Returns its wall time, AWS calls and DynamoDB units."""
    import time
    from collections import Counter

    from imagestreams import aws as clients

    aws.client("ecr").create_repository(repositoryName=repository)
    for n in range(tags):
        aws.push_image(repository, f"v{n:04d}", seed=f"idle-{n}", emit=False)
    aws.run_schedule("ReconcilerFunction")  # imports every tag (their events were never delivered)
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    ddb = clients.client("dynamodb")
    meter = CapacityMeter().attach(ddb)
    for service in ("ecr", "dynamodb"):
        clients.client(service).meta.events.register(f"before-call.{service}", count, unique_id="idle-count")
    aws.run_schedule("ReconcilerFunction")  # warm: clients built
    calls.clear()
    meter.take()
    started = time.perf_counter()
    report = aws.run_schedule("ReconcilerFunction")
    took = time.perf_counter() - started
    meter.detach()
    for service in ("ecr", "dynamodb"):
        clients.client(service).meta.events.unregister(f"before-call.{service}", unique_id="idle-count")
    assert report["complete"] and not report["moves"], report
    return {"reconcile_idle_tags": tags, "reconcile_idle_ms": round(took * 1000, 2),
            "reconcile_idle_calls": dict(calls), "reconcile_idle_units": meter.take()}


def _units(units: Mapping[str, float]) -> dict[str, float]:
    return {"rru": float(units["rru"]), "wru": float(units["wru"])}


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The cost keys for bench/results.json, from the measured keys in ``results``."""
    per_push, idle = push_steps(results), idle_steps(results)
    out = {
        "cost_usd_per_1000_pushes": round(1000 * total(per_push), 6),
        "cost_usd_per_1000_pushes_slow": round(1000 * total(push_steps(results, slow=True)), 6),
        "cost_usd_idle_month": round(total(idle), 4),
        "cost_usd_idle_month_slow": round(total(idle_steps(results, slow=True)), 4),
        "cost_breakdown_per_1000_pushes": {s.name: {k: round(1000 * v, 6) for k, v in s.cost().items()}
                                           for s in per_push},
        "cost_breakdown_idle_month": {s.name: {k: round(v, 4) for k, v in s.cost().items()} for s in idle},
    }
    return out


def print_summary(cost: Mapping[str, Any], results: Mapping[str, Any]) -> None:
    print("per 1,000 pushes, one ECS trigger each (USD):")
    for name, parts in cost["cost_breakdown_per_1000_pushes"].items():
        print(f"  {name:20} " + "  ".join(f"{k} {v:.6f}" for k, v in parts.items()))
    print(f"  total {cost['cost_usd_per_1000_pushes']:.6f} (goal <= 0.01); with slow floors "
          f"{SLOW_MS}: {cost['cost_usd_per_1000_pushes_slow']:.6f}")
    print(f"idle month, reconciler every {RECONCILE_EVERY_MINUTES} min over {results['reconcile_idle_tags']} tags "
          "+ FIFO long-polling (USD):")
    for name, parts in cost["cost_breakdown_idle_month"].items():
        print(f"  {name:28} " + "  ".join(f"{k} {v:.4f}" for k, v in parts.items()))
    print(f"  total {cost['cost_usd_idle_month']:.4f} (goal <= 0.50); reconciler at "
          f"{SLOW_MS['reconciler']} ms: {cost['cost_usd_idle_month_slow']:.4f}")


NEEDED = ["ingest_ms_median", "ingest_units_fresh", "fanout_calls_1", "fanout_ms_1", "fanout_units_1", "ecs_fire_ms",
          "ecs_fire_units", "rollout_in_progress_ms", "rollout_in_progress_units", "rollout_completed_ms",
          "rollout_completed_units", "reconcile_idle_ms", "reconcile_idle_units",
          "reconcile_idle_tags"]


def main() -> int:
    path = ROOT / "bench" / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    missing = [k for k in NEEDED if k not in results]
    if missing:
        print(f"bench/results.json lacks {', '.join(missing)}: run `make bench` (bench/run.py) first",
              file=sys.stderr)
        return 2
    cost = summarize(results)
    print_summary(cost, results)
    results.update(cost)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
