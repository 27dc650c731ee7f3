"""Fan-out of one push to many triggers on the embedded AWS: N ECS services follow one stream tag, the tag moves
once, and the fan-out step queues one fire per trigger. Prints the SendMessageBatch calls it took (goal: at most
one per 10 triggers) and how many distinct FIFO message groups the fires landed in (goal: one per target, so fires
of distinct services never wait behind each other), then checks the queue holds exactly those messages.

    .venv/bin/python bench/fanout_bench.py [--triggers 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT / "local"), str(ROOT)]

from imagestreams_local.embedded import EmbeddedAws  # noqa: E402

REPO = "bench/fan"
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def measure(aws: EmbeddedAws, triggers: int) -> dict[str, Any]:
    """Calls and message groups of one head move with ``triggers`` unpaused ECS triggers on distinct services."""
    from bench.cost import CapacityMeter
    from imagestreams import aws as clients
    from imagestreams.bootstrap import build
    from imagestreams.config import Settings
    from imagestreams.model import EcsTarget, StreamTag

    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="fan")
    td = ecs.register_task_definition(family="fan", containerDefinitions=[
        {"name": "app", "image": f"{REG}/{REPO}:latest", "memory": 128}])["taskDefinition"]["taskDefinitionArn"]
    aws.use_function_env("FanoutFunction")
    streams = build(Settings.from_env())
    stream_tag = StreamTag(REPO, f"t{triggers}")
    for n in range(triggers):  # the tag has no head yet: adding a trigger fires nothing
        ecs.create_service(cluster="fan", serviceName=f"svc{triggers}-{n}", taskDefinition=td, desiredCount=1)
        streams.add_trigger(stream_tag, EcsTarget("fan", f"svc{triggers}-{n}", "app"))

    calls: Counter[str] = Counter()
    groups: set[str] = set()
    messages = 0

    def count(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def entries(params: dict[str, Any], **_: Any) -> None:  # the API parameters, before serialization
        nonlocal messages
        messages += len(params["Entries"])
        groups.update(e["MessageGroupId"] for e in params["Entries"])

    sqs, ddb = clients.client("sqs"), clients.client("dynamodb")
    for client in (sqs, ddb):
        client.meta.events.register("before-call.*.*", count, unique_id="fanout-bench")
    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", entries, unique_id="fanout-entries")
    aws.push_image(REPO, stream_tag.tag, seed=f"fan-{triggers}", emit=False)
    streams.sync(stream_tag)  # what ingest does with the push event: the head moves
    head, _ = streams.store.head_and_triggers(stream_tag)
    meter = CapacityMeter().attach(ddb)
    calls.clear()
    groups.clear()
    messages = 0
    started = time.perf_counter()
    queued = streams.head_moved(head)  # what the fan-out function does with the head's stream record
    took = time.perf_counter() - started
    units = meter.take()
    meter.detach()
    for client in (sqs, ddb):
        client.meta.events.unregister("before-call.*.*", unique_id="fanout-bench")
    sqs.meta.events.unregister("provide-client-params.sqs.SendMessageBatch", unique_id="fanout-entries")

    # what the queue holds: one message per trigger, each in its target's group
    url = aws.outputs.get("FireQueueUrl") or sqs.get_queue_url(QueueName=sqs.list_queues()["QueueUrls"][0]
                                                                .rsplit("/", 1)[1])["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return {
        "triggers": triggers,
        "queued": len(queued),
        "messages_sent": messages,
        "send_calls": calls["sqs:SendMessageBatch"],
        "groups": len(groups),
        "dynamodb_calls": sum(n for k, n in calls.items() if k.startswith("dynamodb:")),
        "calls": dict(calls),
        "units": units,
        "queue_depth": int(attrs["ApproximateNumberOfMessages"]),
        "ms": round(took * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triggers", type=int, default=100)
    parser.add_argument("--write", action="store_true", help="add fanout_* keys to bench/results.json")
    args = parser.parse_args()
    with EmbeddedAws() as aws:
        aws.deploy()
        aws.client("ecr").create_repository(repositoryName=REPO)
        one = measure(aws, 1)
        many = measure(aws, args.triggers)
    depth = one["queue_depth"] + many["messages_sent"]
    print(f"one push, {many['triggers']} triggers on {many['triggers']} ECS services: "
          f"{many['messages_sent']} messages in {many['send_calls']} SendMessageBatch calls (goal <= "
          f"{-(-many['triggers'] // 10)}), {many['groups']} distinct FIFO groups (goal {many['triggers']}), "
          f"{many['dynamodb_calls']} DynamoDB calls, {many['ms']} ms; queue holds {many['queue_depth']} "
          f"(expected {depth})")
    print(f"one push, 1 trigger: {one['calls']}, {one['units']}, {one['ms']} ms")
    if args.write:
        path = ROOT / "bench" / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        results.update({
            f"fanout_send_calls_{args.triggers}": many["send_calls"],
            f"fanout_groups_{args.triggers}": many["groups"],
            f"fanout_messages_{args.triggers}": many["messages_sent"],
            "fanout_calls_1": one["calls"],
            "fanout_ms_1": one["ms"],
            "fanout_units_1": one["units"],
        })
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    ok = many["send_calls"] <= -(-many["triggers"] // 10) and many["groups"] == many["triggers"]
    return 0 if ok and many["queue_depth"] == depth else 1


if __name__ == "__main__":
    raise SystemExit(main())
