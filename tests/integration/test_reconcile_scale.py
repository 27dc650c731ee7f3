"""The reconciler at scale on the embedded AWS (moto ECR + DynamoDB Local): a repository bigger than one run is
finished over several runs that resume inside it, history is skipped, gone tags are found, and the calls it makes
stay per page, not per tag."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from imagestreams import aws
from imagestreams_local import embedded as embedded_module

BIG, LATER = "team/big", "team/later"
TAGS = 150


class Calls:
    """Counts the AWS calls the reconciler function's own clients make."""

    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()

    def hook(self) -> None:
        for service in ("ecr", "dynamodb"):
            aws.client(service).meta.events.register(f"before-call.{service}", self._count,
                                                     unique_id=f"reconcile-scale-{service}")

    def _count(self, model: Any, **_: Any) -> None:
        self.by_operation[f"{model.service_model.service_name}:{model.name}"] += 1

    def take(self) -> Counter[str]:
        out, self.by_operation = self.by_operation, Counter()
        return out


@pytest.fixture
def reconcile(stack, monkeypatch):
    """Run the scheduled reconciler; ``steps`` is how many times it may ask for the time before the Lambda's
    remaining time drops below its safety margin (None: no deadline)."""
    calls = Calls()
    budget: dict[str, Any] = {"left": None}

    def remaining() -> int:
        if budget["left"] is None:
            return 900_000
        budget["left"] -= 1
        return 900_000 if budget["left"] >= 0 else 10_000

    monkeypatch.setattr(embedded_module.FakeContext, "get_remaining_time_in_millis", staticmethod(remaining))

    def run(steps: int | None = None) -> dict[str, Any]:
        stack.use_function_env("ReconcilerFunction")
        calls.hook()
        budget["left"] = steps
        return stack.run_schedule("ReconcilerFunction")

    run.calls = calls  # type: ignore[attr-defined]
    return run


def heads(stack, stream: str) -> dict[str, tuple[str, bool]]:
    table = stack.client("dynamodb")
    out: dict[str, tuple[str, bool]] = {}
    for page in table.get_paginator("query").paginate(
            TableName=stack.outputs["StreamsTableName"], KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"S#{stream}"}}):
        for item in page["Items"]:
            if item["kind"]["S"] == "HEAD":
                out[item["tag"]["S"]] = (item["digest"]["S"], item.get("deleted", {}).get("BOOL", False))
    return out


def test_a_big_repository_is_finished_over_runs_that_resume_inside_it(stack, reconcile):
    ecr = stack.client("ecr")
    for repo in (BIG, LATER):
        ecr.create_repository(repositoryName=repo)
    for n in range(12):  # a tag with a long history: the head seeks must skip it, not read it
        stack.push_image(BIG, "latest", seed=f"latest-{n}", emit=False)
        assert reconcile()["complete"] is True
    pushed = {f"v{n:04d}": stack.push_image(BIG, f"v{n:04d}", seed=f"v{n}", emit=False)["detail"]["image-digest"]
              for n in range(TAGS)}  # every event lost
    later = stack.push_image(LATER, "latest", seed="later", emit=False)["detail"]["image-digest"]

    reports = []
    for _ in range(60):
        reports.append(reconcile(steps=30))
        if reports[-1]["complete"]:
            break
    assert reports[-1]["complete"] is True and len(reports) > 3
    assert sum(r["moves"] for r in reports) == TAGS + 1
    inside = [r["cursor"] for r in reports[:-1] if r["cursor"].get("repo") == BIG]
    assert inside, "no run stopped inside the big repository"
    for before, after in zip(reports, reports[1:], strict=False):  # each run resumes where the last one stopped
        assert after["resumed_from"] == before["cursor"]
    big = heads(stack, BIG)
    assert {tag: d for tag, (d, deleted) in big.items() if tag != "latest" and not deleted} == pushed
    assert heads(stack, LATER) == {"latest": (later, False)}

    # in sync: one listing call per repository (up to 1,000 images a call), and per-page table reads
    reconcile.calls.take()
    steady = reconcile()
    assert steady["complete"] is True and steady["moves"] == 0
    calls = reconcile.calls.take()
    ecr_calls = {op: n for op, n in calls.items() if op.startswith("ecr:")}
    assert ecr_calls == {"ecr:DescribeRepositories": 1, "ecr:DescribeImages": 2}  # two repositories
    assert calls["dynamodb:BatchGetItem"] == math.ceil((TAGS + 1) / 100) + 1
    assert calls["dynamodb:Query"] <= TAGS + 3  # a short seek per head (1 item read each, history skipped)

    # five tags deleted and five moved while the events were lost: found over pages, and re-resolved one by one
    gone = sorted(pushed)[::50]
    ecr.batch_delete_image(repositoryName=BIG, imageIds=[{"imageTag": t} for t in gone])
    moved = {t: stack.push_image(BIG, t, seed=f"again-{t}", emit=False)["detail"]["image-digest"]
             for t in sorted(pushed)[25::50]}
    report = reconcile()
    assert report["complete"] is True and report["moves"] == len(gone) + len(moved)
    big = heads(stack, BIG)
    assert all(big[t][1] for t in gone) and all(big[t] == (d, False) for t, d in moved.items())
    calls = reconcile.calls.take()
    # listing + one presence check per 100 live heads + halving to each gone tag + one resolve per differing tag
    halving = 2 * math.ceil(math.log2(100))
    assert calls["ecr:DescribeImages"] <= 2 + math.ceil(TAGS / 100) + len(gone) * halving + len(gone) + len(moved)


def test_head_pages_read_heads_not_history_on_dynamodb(stack):
    from datetime import datetime, timezone

    from imagestreams.adapters.dynamodb import SEEK_ITEMS, DynamoStore
    from imagestreams.model import EcsTarget, Head, StreamTag, Trigger, trigger_id
    from tests.conftest import digest
    from tests.integration.conftest import REG

    stack.use_function_env("ReconcilerFunction")
    store = DynamoStore(aws.client("dynamodb"), stack.outputs["StreamsTableName"])
    now = datetime.now(timezone.utc)
    long = {"a", "a.b", "z010", "z020", "z030", "z039"}  # full histories (50 entries, the default cap)
    tags = ["a", "a-1", "a.b", "a_c", "b", "c", *(f"z{n:03d}" for n in range(40))]
    for tag in tags:
        previous = None
        for g in range(1, (50 if tag in long else 1) + 1):
            head = Head(StreamTag("team/web", tag), digest(f"{tag}-{g}"), g, now, "push", "ecr", REG,
                        deleted=tag == "c", rev=g)
            store.commit(previous, head, None)
            previous = head
    target = EcsTarget("prod", "web", "web")
    store.add_trigger(Trigger(trigger_id(StreamTag("team/web", "b"), target), StreamTag("team/web", "b"), target))
    items = {tag: (51 if tag in long else 2) + (tag == "b") for tag in tags}

    read: Counter[str] = Counter()
    aws.client("dynamodb").meta.events.register(
        "after-call.dynamodb.Query", lambda parsed, **_: read.update(items=parsed.get("Count", 0), calls=1),
        unique_id="reconcile-scale-read")
    pages, after = [], ""
    while True:
        page = store.heads_after("team/web", after, 20)
        pages.append([h.stream_tag.tag for h in page])
        if len(page) < 20:
            break
        after = page[-1].stream_tag.tag
    assert [t for p in pages for t in p] == sorted(tags) and [len(p) for p in pages] == [20, 20, 6]
    # at most one seek's worth of each tag is read (plus one seek per page): the 50-entry histories are skipped
    assert read["items"] <= sum(min(n, SEEK_ITEMS) for n in items.values()) + SEEK_ITEMS * len(pages)
    assert read["items"] < sum(items.values()) / 2
    assert store.heads_after("team/web", "a", 2)[0].stream_tag.tag == "a-1"  # 'a' ends before 'a-1' starts
    assert store.heads_after("team/web", "z039", 20) == []
    found = store.heads_of("team/web", [*tags, "missing"])
    assert sorted(h.stream_tag.tag for h in found) == sorted(tags)
    assert next(h for h in found if h.stream_tag.tag == "c").deleted
