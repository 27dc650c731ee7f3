"""Benchmark: AWS calls per push and per fire, ingest overhead over its irreducible calls, handler import cost.

Everything runs against the embedded AWS (moto server + DynamoDB Local when present) in one process, so ratios
compare like with like on the same noisy machine. Prints a table and writes bench/results.json.

    make bench            # or: .venv/bin/python bench/run.py [--events 40] [--imports 9]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT / "local")]

from imagestreams_local.embedded import EmbeddedAws  # noqa: E402

sys.path.insert(0, str(ROOT))
from bench.cost import CapacityMeter, measure_idle_reconciler, summarize  # noqa: E402

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
HANDLERS = {"ingest": "functions/ingest", "fanout": "functions/fanout", "deployer": "functions/deployer",
            "admin": "functions/admin", "notify": "functions/notify", "gates": "functions/gates",
            "rollout": "functions/rollout", "reconciler": "functions/reconciler"}


class CallCounter:
    """Counts API calls made by the cached clients, using botocore's own event hooks."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, *clients: Any) -> None:
        for client in clients:
            service = client.meta.service_model.service_name
            client.meta.events.register(
                "before-call.*.*", lambda model, _s=service, **_: self.calls.update([f"{_s}:{model.name}"]))
            # the same call once more under its index, when it reads one (the API parameters, before serialization)
            client.meta.events.register(
                "provide-client-params.*.*", lambda model, params, _s=service, **_: self.calls.update(
                    [f"{_s}:{model.name}@{params['IndexName']}"] if params.get("IndexName") else []))

    def take(self) -> Counter[str]:
        out, self.calls = self.calls, Counter()
        return out


def total(calls: Counter[str], prefix: str = "") -> int:
    return sum(n for k, n in calls.items() if k.startswith(prefix) and "@" not in k)  # "@index": counted twice


def writes(calls: Counter[str]) -> int:
    return sum(n for k, n in calls.items() if k.split(":")[1] in WRITES)


def lease_writes(calls: Counter[str]) -> int:
    """A fire's lease on its target: one conditional PutItem and one conditional DeleteItem (nothing else in a fire
    puts or deletes an item)."""
    return calls.get("dynamodb:PutItem", 0) + calls.get("dynamodb:DeleteItem", 0)


def bench_calls_and_overhead(aws: EmbeddedAws, events: int) -> dict[str, Any]:
    from imagestreams import aws as clients
    from imagestreams.model import StreamTag

    aws.deploy(parameters={"LambdaFunctionPattern": "bench-*"})  # the default stack refuses Lambda targets
    aws.client("ecr").create_repository(repositoryName="bench/web")
    aws.use_function_env("IngestFunction")
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the handler's Logger
    with contextlib.redirect_stdout(sink):  # Logger binds stdout when the module is imported
        handler = aws.functions["IngestFunction"].handler()

    class Ctx:
        function_name, memory_limit_in_mb, aws_request_id = "bench", 256, "r"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

    ddb, ecr, ecs = clients.client("dynamodb"), clients.client("ecr"), clients.client("ecs")
    counter = CallCounter()
    counter.attach(ddb, ecr, ecs, clients.client("events"))  # events: notifications must stay off this path
    meter = CapacityMeter().attach(ddb)
    table = aws.outputs["StreamsTableName"]

    def ingest(event: dict[str, Any]) -> None:
        with contextlib.redirect_stdout(sink):  # INFO logs and EMF metrics go to stdout, as in Lambda
            handler(event, Ctx())

    # warm up: clients built, code paths imported (a warm container)
    ingest(aws.push_image("bench/web", "warm", seed="warm", emit=False))
    counter.take()
    meter.take()

    fresh_calls, dup_calls, ingest_times, raw_times, fresh_units = [], [], [], [], []
    for i in range(events):
        event = aws.push_image("bench/web", "latest", seed=f"v{i}", emit=False)
        started = time.perf_counter()
        ingest(event)
        ingest_times.append(time.perf_counter() - started)
        fresh_calls.append(counter.take())
        fresh_units.append(meter.take())
        ingest(event)  # the same event delivered twice
        dup_calls.append(counter.take())
        raw_times.append(_irreducible(ddb, ecr, table, i, event["detail"]["image-digest"]))
        counter.take()
        meter.take()

    # ECS fire: a new digest, then the same digest again (already pinned)
    ecs_raw = aws.client("ecs")
    ecs_raw.create_cluster(clusterName="bench")
    td = ecs_raw.register_task_definition(family="web", containerDefinitions=[
        {"name": "web", "image": f"{REG}/bench/web:latest", "memory": 128},
        {"name": "sidecar", "image": "fluent-bit:2", "memory": 64}])["taskDefinition"]["taskDefinitionArn"]
    ecs_raw.create_service(cluster="bench", serviceName="web", taskDefinition=td, desiredCount=1)
    from imagestreams.bootstrap import services

    streams = services()
    stream_tag = StreamTag("bench/web", "latest")
    added = streams.add_trigger(stream_tag, _target(), paused=True)
    counter.take()
    meter.take()
    started = time.perf_counter()
    fired = streams.fire_by_id(stream_tag, added.id, force=True)
    fire_ms = (time.perf_counter() - started) * 1000
    fire_new, fire_units = counter.take(), meter.take()
    assert fired.last_triggered_digest and fired.status != "Failed", fired
    streams.fire_by_id(stream_tag, added.id, force=True)
    fire_pinned = counter.take()
    rollout = _bench_rollout_event(streams, counter, meter, fired)

    eks_lambda = _bench_eks_lambda(aws, streams, counter, stream_tag)

    def med(values: list[Counter[str]], fn: Any, *args: Any) -> float:
        return statistics.median(fn(v, *args) for v in values)

    return {
        "ingest_calls_fresh": med(fresh_calls, total),
        "ingest_writes_fresh": med(fresh_calls, writes),
        "ingest_calls_duplicate": med(dup_calls, total),
        "ingest_writes_duplicate": med(dup_calls, writes),
        "ingest_calls_fresh_detail": dict(fresh_calls[-1]),
        "ingest_events_calls": sum(total(c, "events:") for c in fresh_calls + dup_calls),
        "ecs_fire_calls": total(fire_new, "ecs:"),
        "ecs_fire_calls_pinned": total(fire_pinned, "ecs:"),
        "ecs_fire_dynamodb_writes": writes(fire_new) - lease_writes(fire_new),
        "ecs_fire_dynamodb_writes_pinned": writes(fire_pinned) - lease_writes(fire_pinned),
        "ecs_fire_lease_writes": lease_writes(fire_new),
        "ecs_fire_detail": dict(fire_new),
        "ecs_fire_ms": round(fire_ms, 2),
        "ecs_fire_units": fire_units,
        "ingest_units_fresh": {k: statistics.median(u[k] for u in fresh_units) for k in ("rru", "wru")},
        **rollout,
        "ingest_ms_median": round(statistics.median(ingest_times) * 1000, 2),
        "irreducible_ms_median": round(statistics.median(raw_times) * 1000, 2),
        "ingest_overhead_ratio": round(statistics.median(ingest_times) / statistics.median(raw_times), 3),
        "events": events,
        "dynamodb_backend": aws.dynamodb_backend,
        **eks_lambda,
    }


def _bench_rollout_event(streams: Any, counter: CallCounter, meter: CapacityMeter, fired: Any) -> dict[str, Any]:
    """What the rollout function does with the two ECS deployment events about the deployment a fire started:
    IN_PROGRESS (the fire already recorded it: reads only) and COMPLETED (one conditional trigger write)."""
    from imagestreams.model import target_key

    out: dict[str, Any] = {}
    for state in ("IN_PROGRESS", "COMPLETED"):
        counter.take()
        meter.take()
        started = time.perf_counter()
        updated = streams.rollout_event(target_key(fired.target), fired.deployment, state)
        took = (time.perf_counter() - started) * 1000
        assert bool(updated) == (state == "COMPLETED"), (state, updated)
        key = f"rollout_{state.lower()}"
        out.update({f"{key}_ms": round(took, 2), f"{key}_calls": dict(counter.take()), f"{key}_units": meter.take()})
    return out


def _bench_eks_lambda(aws: EmbeddedAws, streams: Any, counter: CallCounter, stream_tag: Any) -> dict[str, Any]:
    """HTTP calls per EKS fire (first, then new digest, then already pinned) and Lambda calls per fire."""
    from imagestreams import aws as clients
    from imagestreams.model import EksTarget, LambdaTarget
    from imagestreams_local.kube import FakeKubeApi

    counter.attach(clients.client("eks"), clients.client("lambda"))
    out: dict[str, Any] = {}
    with FakeKubeApi() as kube:
        aws.add_eks_cluster("bench", kube)
        kube.add("Deployment", "apps", "web", [{"name": "web", "image": f"{REG}/bench/web:latest"}])
        eks = streams.add_trigger(stream_tag, EksTarget("bench", "apps", "Deployment", "web", "web"), paused=True)
        aws.create_image_function("bench-fn", f"{REG}/bench/web:latest")
        fn = streams.add_trigger(stream_tag, LambdaTarget("bench-fn"), paused=True)
        counter.take()
        api = streams.drivers["eks"].api

        def eks_fire() -> tuple[int, int]:
            before = api.calls
            streams.fire_by_id(stream_tag, eks.id, force=True)
            return api.calls - before, total(counter.take(), "eks:")

        out["eks_fire_http_first"], out["eks_fire_aws_calls_first"] = eks_fire()  # pinned by the ECS bench head
        kube.objects[("deployments", "apps", "web")]["spec"]["template"]["spec"]["containers"][0]["image"] = "x:1"
        out["eks_fire_http"], out["eks_fire_aws_calls"] = eks_fire()
        out["eks_fire_http_pinned"], _ = eks_fire()
        streams.fire_by_id(stream_tag, fn.id, force=True)
        calls = counter.take()
        out["lambda_fire_calls"] = total(calls, "lambda:")
        out["lambda_fire_ecr_calls"] = total(calls, "ecr:")
        out["lambda_fire_detail"] = dict(calls)
        streams.fire_by_id(stream_tag, fn.id, force=True)
        out["lambda_fire_calls_pinned"] = total(counter.take(), "lambda:")
    return out


def _target() -> Any:
    from imagestreams.model import EcsTarget

    return EcsTarget("bench", "web", "web")


def _irreducible(ddb: Any, ecr: Any, table: str, i: int, digest: str, repository: str = "bench/web",
                 tag: str = "latest") -> float:
    """The three calls a fresh push cannot do without, made raw: head read, ECR resolve, one transaction."""
    key = {"pk": {"S": "S#bench/raw"}, "sk": {"S": "T#t#H"}}
    started = time.perf_counter()
    ddb.get_item(TableName=table, Key=key, ConsistentRead=True)
    ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": {**key, "digest": {"S": digest}, "generation": {"N": str(i + 1)}},
                 "ConditionExpression": "attribute_not_exists(pk) OR generation = :g",
                 "ExpressionAttributeValues": {":g": {"N": str(i)}}}},
        {"Put": {"TableName": table, "Item": {"pk": key["pk"], "sk": {"S": f"T#t#V#{i + 1:012d}"},
                                              "digest": {"S": digest}},
                 "ConditionExpression": "attribute_not_exists(sk)"}},
    ])
    return time.perf_counter() - started


def _artifact(target: Path, compiled: bool) -> Path:
    """A copy of what Lambda gets: /opt/python (the core layer) and each function's code directory. With
    ``compiled``, the .pyc files ``make build`` ships (unchecked-hash, so they are used as they are)."""
    shutil.copytree(ROOT / "layers" / "core" / "imagestreams", target / "opt" / "imagestreams")
    for name, path in HANDLERS.items():
        shutil.copytree(ROOT / path, target / name)
    if compiled:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                        str(target)], check=True)
    return target


def bench_imports(runs: int) -> dict[str, Any]:
    """Median import time of each handler module in fresh processes, over bare ``import boto3``, for the artifact
    as ``make build`` ships it (.pyc included) and as plain source (what ``sam build`` alone ships)."""
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    for key in [k for k in env if k.startswith("AWS_ENDPOINT_URL")]:
        env.pop(key)

    def once(module: str, base: Path | None, *, handler: bool = True) -> float:
        paths = [] if base is None else ([str(base / module)] if handler else []) + [str(base / "opt")]
        code = (f"import sys, time\nsys.path[:0] = {paths!r}\n"
                f"t = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - t)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        return float(out.stdout.strip())

    with tempfile.TemporaryDirectory() as tmp:
        built = _artifact(Path(tmp) / "built", compiled=True)
        source = _artifact(Path(tmp) / "source", compiled=False)
        samples: dict[str, list[float]] = {"boto3": [], "eks path": []}
        for _ in range(runs):  # interleaved, so machine noise hits every module alike
            samples["boto3"].append(once("boto3", None))
            samples["eks path"].append(once("imagestreams.adapters.eks", built, handler=False))
            for name in HANDLERS:
                samples.setdefault(name, []).append(once(name, built))
                samples.setdefault(f"{name} (source)", []).append(once(name, source))
        ingest_pulls_eks = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.path[:0] = [{str(built / 'ingest')!r}, {str(built / 'opt')!r}]; "
             "import ingest; print('imagestreams.adapters.eks' in sys.modules)"],
            capture_output=True, text=True, env=env, check=True).stdout.strip() == "True"
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "eks_path_import_ratio": round(medians["eks path"] / medians["boto3"], 3),
        "ingest_imports_eks_path": ingest_pulls_eks,
        "import_ms": {k: round(v * 1000, 1) for k, v in medians.items()},
        "import_ratio": {name: round(medians[name] / medians["boto3"], 3) for name in HANDLERS},
        "import_ratio_source": {name: round(medians[f"{name} (source)"] / medians["boto3"], 3) for name in HANDLERS},
        "import_runs": runs,
    }


def bench_fanout(aws: EmbeddedAws) -> dict[str, Any]:
    """One head move with 1 trigger (its calls, units and time, for the cost model) and with 100 triggers on 100
    ECS services (SendMessageBatch calls and distinct FIFO groups)."""
    from bench.fanout_bench import REPO, measure

    aws.client("ecr").create_repository(repositoryName=REPO)
    one, many = measure(aws, 1), measure(aws, 100)
    return {"fanout_calls_1": one["calls"], "fanout_ms_1": one["ms"], "fanout_units_1": one["units"],
            "fanout_send_calls_100": many["send_calls"], "fanout_groups_100": many["groups"],
            "fanout_messages_100": many["messages_sent"]}


def bench_gate_noop(aws: EmbeddedAws) -> dict[str, Any]:
    """A scan event for a digest no gate waits on (the stream has a trigger whose scan gate waits on another
    digest): the gates function's table reads and writes."""
    from imagestreams import aws as clients
    from imagestreams.admin import dispatch
    from imagestreams.bootstrap import services
    from imagestreams.model import StreamTag

    aws.client("ecr").create_repository(repositoryName="bench/gates")
    waited = aws.push_image("bench/gates", "latest", seed="gate-1", emit=False)["detail"]["image-digest"]
    other = [aws.push_image("bench/gates", f"other-{i}", seed=f"gate-{i}", emit=False)["detail"]["image-digest"]
             for i in (2, 3)]
    aws.use_function_env("AdminFunction")
    streams = services()
    streams.sync(StreamTag("bench/gates", "latest"))
    answer = dispatch(streams, {"action": "trigger.add", "from": "bench/gates:latest", "target": _target().as_dict(),
                                "gates": [{"type": "scan", "blockAt": "CRITICAL"}]})
    assert answer["ok"] and answer["result"]["trigger"]["status"] == "Gated", answer
    aws.use_function_env("GatesFunction")
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the handler's Logger
    with contextlib.redirect_stdout(sink):
        handler = aws.functions["GatesFunction"].handler()

    class Ctx:
        function_name, memory_limit_in_mb, aws_request_id = "bench", 256, "r"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

    def scan(digest: str) -> None:
        event = {"source": "aws.ecr", "detail-type": "ECR Image Scan", "account": "123456789012",
                 "region": aws.region, "detail": {"scan-status": "COMPLETE", "repository-name": "bench/gates",
                                                  "image-digest": digest, "finding-severity-counts": {}}}
        with contextlib.redirect_stdout(sink):
            handler(event, Ctx())

    scan(other[0])  # warm: clients built, code paths imported
    counter = CallCounter()
    counter.attach(clients.client("dynamodb"))
    scan(other[1])
    calls = counter.take()
    assert waited not in other
    return {"gate_event_noop_reads": total(calls, "dynamodb:") - writes(calls),
            "gate_event_noop_writes": writes(calls)}


def bench_notify(aws: EmbeddedAws) -> dict[str, Any]:
    """The notify function over one batch of 10 table-stream records (10 head moves, one event each), as the
    event source mapping delivers them (BatchSize 10): its EventBridge calls, counted on the client it uses."""
    from datetime import datetime, timezone

    from boto3.dynamodb.types import TypeSerializer

    from imagestreams import aws as clients
    from imagestreams.adapters.dynamodb import head_item
    from imagestreams.model import Head, StreamTag

    aws.use_function_env("NotifyFunction")
    counter = CallCounter()
    counter.attach(clients.client("events"))
    ser, now = TypeSerializer(), datetime.now(timezone.utc)
    stream_arn = str(aws.resolver.attrs[("StreamsTable", "StreamArn")])

    def image(generation: int) -> dict[str, Any]:
        head = Head(StreamTag("bench/web", "latest"), f"sha256:{generation:064x}", generation, now, "push", "ecr", REG)
        return {k: ser.serialize(v) for k, v in head_item(head).items() if v is not None}

    records = [{"eventName": "MODIFY", "eventSource": "aws:dynamodb", "eventSourceARN": stream_arn,
                "dynamodb": {"SequenceNumber": str(100 + n), "OldImage": image(n), "NewImage": image(n + 1)}}
               for n in range(1, 11)]
    out = aws.invoke("NotifyFunction", {"Records": records}, "dynamodb")
    calls = counter.take()
    received = aws.notifications()
    assert out == {"batchItemFailures": []} and len(received) == 10, (out, len(received))
    return {"notify_putevents_per_batch": calls["events:PutEvents"], "notify_records_per_batch": len(records),
            "notify_events_received": len(received)}


READS = {"GetItem", "Query", "Scan", "BatchGetItem"}


def bench_policies(aws: EmbeddedAws, policies: int = 20) -> dict[str, Any]:
    """A stream with ``policies`` policy tags (half semver ranges, half a numeric pattern): the fan-out of a push
    that changes no selection (table reads and writes; ECR writes, which must be none), then of one that changes the
    pattern policies' selection (ECR writes: one per policy tag that moved). A new tag's first push is measured
    apart (its head is listed in the ``ByStream`` index by its own commit, so its fan-out writes nothing either).
    Plus the slowest match of the worst patterns the limits allow against a hostile 128-character tag."""
    from imagestreams import aws as clients
    from imagestreams.bootstrap import build
    from imagestreams.config import Settings
    from imagestreams.model import StreamTag
    from tests.corpus import worst_pattern_match_ms

    repo = "bench/pol"
    aws.client("ecr").create_repository(repositoryName=repo)
    aws.use_function_env("FanoutFunction")
    streams = build(Settings.from_env())
    for n in range(5):
        aws.push_image(repo, f"v1.{n}.0", seed=f"pol-{n}", emit=False)
        streams.sync(StreamTag(repo, f"v1.{n}.0"))
    for i in range(policies):
        spec = ({"semver": f"~1.{i % 5}"} if i < policies // 2 else
                {"pattern": r"v1\.(?P<m>[0-9]+)\.0", "order": "numeric", "extract": "m"})
        streams.set_policy(StreamTag(repo, f"p{i:02d}"), spec)
    for head in streams.store.heads(repo):  # the fan-outs the table stream delivers for those moves
        streams.head_moved(head)
    counter = CallCounter()
    counter.attach(clients.client("dynamodb"), clients.client("ecr"))

    def fan_out(tag: str, seed: str) -> Counter[str]:
        aws.push_image(repo, tag, seed=seed, emit=False)
        streams.sync(StreamTag(repo, tag))  # what ingest does with the push
        head = streams.store.get_head(StreamTag(repo, tag))
        counter.take()
        streams.head_moved(head)  # what the fan-out does with the head's stream record
        return counter.take()

    first = fan_out("latest", "pol-latest")  # a new tag no policy selects
    unchanged = fan_out("latest", "pol-latest-2")  # it moves: no policy selects it
    changed = fan_out("v1.9.0", "pol-9")  # the pattern policies now select it
    reads = sum(n for k, n in unchanged.items()
                if k.startswith("dynamodb:") and "@" not in k and k.split(":")[1] in READS)
    return {
        "policy_tags": policies,
        # the evaluation's own reads: queries of the stream's heads and policy tags (the ByStream index); the
        # fan-out's read of the moved tag's head and triggers is what every push costs, policies or not
        "policy_eval_reads_per_push": unchanged.get("dynamodb:Query@ByStream", 0),
        "fanout_reads_per_push_with_policies": reads,
        "policy_retags_unchanged": unchanged.get("ecr:PutImage", 0),
        "policy_eval_writes_unchanged": writes(unchanged),
        "policy_new_tag_listing_writes": writes(first),
        "policy_retags_changed": changed.get("ecr:PutImage", 0),
        "policy_retags_changed_expected": policies - policies // 2,
        "policy_eval_detail_unchanged": dict(unchanged),
        "policy_eval_detail_changed": dict(changed),
        "policy_regex_worst_ms": round(min(worst_pattern_match_ms() for _ in range(3)), 3),
    }


def bench_big_stream(aws: EmbeddedAws) -> dict[str, Any]:
    """Read units of one head move in a stream with 100 tags x 50 history entries (one policy tag, or none), and
    of the whole-partition query the fan-out made before the ByStream index."""
    from bench.stream_view_bench import measure

    m = measure(aws)
    return {"fanout_rru_per_push_big_stream": m["after_policy"]["rru"],
            "fanout_rru_per_push_big_stream_no_policy": m["after_no_policy"]["rru"],
            "fanout_rru_per_push_big_stream_before": m["before_policy"]["rru"],
            "fanout_items_read_big_stream": {k: {"items": v["items"], "history_items": v["history_items"]}
                                             for k, v in m.items() if isinstance(v, dict)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--imports", type=int, default=15)
    args = parser.parse_args()
    with EmbeddedAws(quiet=False) as aws:  # logging at INFO and EMF metrics on, as deployed
        results = bench_calls_and_overhead(aws, args.events)
    with EmbeddedAws() as aws:  # a fresh stack: the idle reconciler sees only its own tags
        aws.deploy()
        results.update(measure_idle_reconciler(aws, 100))
        results.update(bench_fanout(aws))
        results.update(bench_gate_noop(aws))
        results.update(bench_notify(aws))
        results.update(bench_policies(aws))
        results.update(bench_big_stream(aws))
    results.update(summarize(results))
    results.update(bench_imports(args.imports))
    rows = [
        ("ingest: AWS calls per fresh push", results["ingest_calls_fresh"], "<= 3"),
        ("ingest: AWS calls per duplicate event", results["ingest_calls_duplicate"], "<= 2"),
        ("ingest: DynamoDB writes per duplicate event", results["ingest_writes_duplicate"], "0"),
        ("gate event for a digest nobody waits on: table reads / writes",
         f"{results['gate_event_noop_reads']} / {results['gate_event_noop_writes']}", "<= 1 / 0"),
        ("ingest: EventBridge calls (notifications are sent from the table stream)", results["ingest_events_calls"],
         "0"),
        (f"notify: PutEvents calls per batch of {results['notify_records_per_batch']} records",
         results["notify_putevents_per_batch"], "<= 1"),
        ("ECS fire: ECS calls (new digest)", results["ecs_fire_calls"], "<= 4"),
        ("ECS fire: ECS calls (already pinned)", results["ecs_fire_calls_pinned"], "<= 2"),
        ("ECS fire: trigger writes (new / pinned)",
         f"{results['ecs_fire_dynamodb_writes']} / {results['ecs_fire_dynamodb_writes_pinned']}", "<= 1"),
        ("ECS fire: lease writes (put + delete)", results["ecs_fire_lease_writes"], "2"),
        (f"ingest time / irreducible calls ({results['ingest_ms_median']} / {results['irreducible_ms_median']} ms)",
         results["ingest_overhead_ratio"], "<= 1.3"),
    ]
    rows += [
        ("EKS fire: HTTP calls, first fire (+ DescribeCluster AWS calls)",
         f"{results['eks_fire_http_first']} (+{results['eks_fire_aws_calls_first']})", "-"),
        ("EKS fire: HTTP calls after the first (new digest / pinned)",
         f"{results['eks_fire_http']} / {results['eks_fire_http_pinned']}", "<= 2"),
        ("Lambda fire: Lambda calls (new digest / pinned), + ECR calls",
         f"{results['lambda_fire_calls']} / {results['lambda_fire_calls_pinned']} +{results['lambda_fire_ecr_calls']}",
         "-"),
        (f"import EKS path (imagestreams.adapters.eks) / import boto3; in ingest's imports: "
         f"{'yes' if results['ingest_imports_eks_path'] else 'no'}", results["eks_path_import_ratio"], "off ingest"),
    ]
    rows += [(f"import {name} / import boto3 ({results['import_ms'][name]} / {results['import_ms']['boto3']} ms; "
              f"without .pyc: {results['import_ratio_source'][name]})", ratio, "<= 1.3")
             for name, ratio in results["import_ratio"].items()]
    rows += [
        ("fan-out of 100 triggers: SendMessageBatch calls / distinct FIFO groups",
         f"{results['fanout_send_calls_100']} / {results['fanout_groups_100']}", "<= 10 / 100"),
        (f"policy tags: evaluation reads per push to a stream with {results['policy_tags']} policy tags "
         f"(fan-out reads in all: {results['fanout_reads_per_push_with_policies']})",
         results["policy_eval_reads_per_push"], "<= 1"),
        ("head move in a stream of 100 tags x 50 history entries: read units (before the ByStream index "
         f"{results['fanout_rru_per_push_big_stream_before']})",
         f"{results['fanout_rru_per_push_big_stream']} (no policy tag: "
         f"{results['fanout_rru_per_push_big_stream_no_policy']})", "<= 10"),
        ("policy tags: ECR writes for policy tags whose selection did not change", results["policy_retags_unchanged"],
         "0"),
        ("policy tags: fan-out table writes for a push that changes no selection (a new tag's first push)",
         f"{results['policy_eval_writes_unchanged']} ({results['policy_new_tag_listing_writes']})", "0 (0)"),
        (f"policy tags: ECR writes when {results['policy_retags_changed_expected']} selections change",
         results["policy_retags_changed"], str(results["policy_retags_changed_expected"])),
        ("policy pattern: slowest match of an allowed pattern on a hostile 128-char tag (ms)",
         results["policy_regex_worst_ms"], "< 50"),
        ("cost per 1,000 pushes, one ECS trigger each (USD)", results["cost_usd_per_1000_pushes"], "<= 0.01"),
        (f"cost of an idle month, reconciler over {results['reconcile_idle_tags']} tags + FIFO polling (USD)",
         results["cost_usd_idle_month"], "<= 0.50"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value':>8}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {str(value):>8}  {target}")
    print(f"\n{results['events']} events, DynamoDB backend: {results['dynamodb_backend']}, "
          f"imports: median of {results['import_runs']} fresh processes, Python {sys.version.split()[0]}")
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
