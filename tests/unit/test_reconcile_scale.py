"""The reconciler at scale (issue 12 item 4): a repository bigger than one run's budget is paged, resumed exactly
where it stopped, and cannot keep the other repositories and the triggers from being reconciled; memory is bounded
by a page, not by the size of a repository."""

from __future__ import annotations

import math
import tracemalloc
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imagestreams.adapters.ecr import EcrRegistry
from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.model import EcsTarget, StreamTag
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams
from tests.conftest import digest

REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class Killed(BaseException):
    """Lambda's timeout: the run ends where it is, nothing is caught, no cursor is saved."""


class Meter:
    """Work costs time: every read the reconciler makes costs 1 per call plus 1 per item it returns, a re-resolve
    and a target inspection 5. A run gets ``budget`` of it and is killed when it overruns (like Lambda)."""

    # a key of the keys-only index (tag and repository, ~100 bytes) costs a tenth of a whole head item
    ITEM_WEIGHT = {"live_head_keys": 0.1}
    READS = {"registry": ("tags", "present", "repositories"),
             "store": ("heads", "heads_after", "heads_of", "live_head_keys", "live_streams", "all_triggers")}

    def __init__(self, registry: MemoryRegistry, store: MemoryStore, ecs: MemoryEcs,
                 slow: dict[str, int] | None = None) -> None:
        self.slow = slow or {}  # extra cost of a read, by method name
        self.now = 0
        self.deadline = math.inf
        self.spent = 0
        self.most_items = 0  # the most items one read handed to the reconciler
        self.calls: Counter[str] = Counter()
        for owner, names in ((registry, self.READS["registry"]), (store, self.READS["store"])):
            for name in names:
                if hasattr(owner, name):
                    setattr(owner, name, self._read(name, getattr(owner, name), self.slow.get(name, 0)))
        registry.resolve = self._fixed(registry.resolve, 5)
        ecs.inspect = self._fixed(ecs.inspect, 5)

    def _spend(self, cost: int) -> None:
        self.now += cost
        self.spent += cost
        if self.now > self.deadline:
            raise Killed()

    def _read(self, name: str, method: Any, extra: int) -> Any:
        def read(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            out = method(*args, **kwargs)
            items = out[0] if isinstance(out, tuple) else out
            n = len(items) if items is not None else 0
            self.most_items = max(self.most_items, n)
            self._spend(1 + math.ceil(n * self.ITEM_WEIGHT.get(name, 1)) + extra)
            return out

        return read

    def _fixed(self, method: Any, cost: int) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self._spend(cost)
            return method(*args, **kwargs)

        return call


def world(*, big: int, others: int, triggers: int, page: int = 1000):
    """A huge repository ``team/a-huge`` (first in order), small repositories each with a missed push, and
    triggers whose fire was lost; in the huge one a few pushes were missed and a few tags deleted unseen."""
    store, registry, ecs, queue = MemoryStore(), MemoryRegistry(), MemoryEcs(), ListQueue()
    registry.page_size = page
    streams = ImageStreams(store, registry, {"ecs": ecs}, queue)
    for n in range(big):
        registry.set("team/a-huge", f"v{n:05d}", digest(n))
        streams.sync(StreamTag("team/a-huge", f"v{n:05d}"))
    for n in range(0, big, max(1, big // 5)):
        registry.set("team/a-huge", f"v{n:05d}", digest(f"moved-{n}"))  # missed pushes
    for n in range(3, big, max(1, big // 4)):
        registry.remove("team/a-huge", f"v{n:05d}")  # deleted, DELETE event lost
    for n in range(others):
        registry.set(f"team/r{n}", "latest", digest(f"r{n}-1"))
        streams.sync(StreamTag(f"team/r{n}", "latest"))
        registry.set(f"team/r{n}", "latest", digest(f"r{n}-2"))  # the PUSH event was lost
    ids = []
    for n in range(triggers):
        stream_tag = StreamTag(f"team/t{n}", "latest")
        ecs.images[("prod", f"svc{n}")] = {"web": "nginx:latest"}
        registry.set(stream_tag.stream, "latest", digest(f"t{n}-1"))
        streams.sync(stream_tag)
        ids.append(streams.add_trigger(stream_tag, EcsTarget("prod", f"svc{n}", "web")).id)
        registry.set(stream_tag.stream, "latest", digest(f"t{n}-2"))
        streams.sync(stream_tag)  # ingested, but the fan-out of this move was lost: the reconciler must fire
    queue.items.clear()
    return streams, store, registry, ecs, queue, ids


def state(store: MemoryStore) -> dict[StreamTag, tuple[str, bool]]:
    return {st: (h.digest, h.deleted) for st, h in store.heads_by_tag.items()}


def test_a_repository_bigger_than_a_run_cannot_starve_the_others_or_the_triggers():
    budget, safety = 1_000, 250  # safety >= the most one step between two deadline checks can cost
    setup = dict(big=3_000, others=5, triggers=4, page=100)

    # the work of one whole pass, measured without a deadline on a twin
    streams, store, registry, ecs, _, _ = world(**setup)
    meter = Meter(registry, store, ecs)
    assert Reconciler(streams, registry, store).run()["complete"]
    work, expected = meter.spent, state(store)
    assert work <= 4 * setup["big"] * 2  # linear in the repository: listing, its heads, one count, one gone pass

    streams, store, registry, ecs, queue, ids = world(**setup)
    meter = Meter(registry, store, ecs)
    reconciler = Reconciler(streams, registry, store)
    # every run does at least (budget - safety) of work, less at most one redone step (re-reading the page it
    # stopped in, <= safety); so one whole pass needs at most this many runs
    bound = math.ceil(work / (budget - 2 * safety)) + 1
    reports: list[dict[str, Any]] = []
    done_at: dict[str, int] = {}
    for run in range(1, 3 * bound + 1):
        meter.now, meter.deadline = 0, budget
        try:
            report = reconciler.run(out_of_time=lambda: meter.now >= budget - safety)
        except Killed:
            report = {"killed": True, "moves": [], "fired": [], "complete": False}
        reports.append(report)
        for move in report["moves"]:
            done_at.setdefault(move["tag"], run)
        for trigger_id in report["fired"]:
            done_at.setdefault(trigger_id, run)
        if report["complete"]:
            break
    assert not any(r.get("killed") for r in reports), "a run overran its deadline and lost its work"
    assert reports[-1]["complete"] and len(reports) <= bound, (len(reports), bound)
    assert len(reports) > 2  # the huge repository really is bigger than one run
    for n in range(setup["others"]):  # every other repository and every trigger, within the bound
        assert done_at[f"team/r{n}:latest"] <= bound
    assert sorted(t for t in done_at if t in ids) == sorted(ids)
    assert state(store) == expected  # the same result as one uninterrupted pass
    # never restarted from scratch: each run resumes where the last one stopped, and all runs together did about
    # one pass of work (at most one redone step per run)
    for before, after in zip(reports, reports[1:], strict=False):
        assert after["resumed_from"] == before["cursor"]
    assert meter.spent <= work + len(reports) * safety


def test_a_run_killed_in_a_phase_s_bulk_read_keeps_the_phases_before_it():
    """Finding deleted repositories scans the table; when a run has too little time left for that scan and is
    killed in it, the next run starts at the scan, not at the first repository again."""
    streams, store, registry, ecs, _, ids = world(big=0, others=30, triggers=3)
    meter = Meter(registry, store, ecs, slow={"live_streams": 800})
    reconciler = Reconciler(streams, registry, store)
    fired, killed = set(), 0
    for _ in range(5):
        meter.now, meter.deadline = 0, 1_000
        try:
            report = reconciler.run(out_of_time=lambda: meter.now >= 750)
        except Killed:
            killed += 1
            continue
        fired |= set(report["fired"])
        if report["complete"]:
            break
    assert killed == 1 and fired == set(ids) and report["complete"]


@pytest.mark.parametrize("checks", [2, 3, 5])
def test_runs_resume_exactly_inside_a_repository(checks):
    """Stopped after every few deadline checks, the runs end where one pass ends, re-resolve each differing tag
    exactly once (missed pushes, gone tags over a paged listing, a re-pushed tombstone, a deleted repository), and
    every run moves the cursor forward."""

    def build():
        streams, store, registry, ecs, queue, _ = world(big=250, others=2, triggers=0, page=7)
        registry.set("team/gone", "a", digest("g"))
        registry.set("team/gone", "b", digest("g"))
        streams.sync(StreamTag("team/gone", "a"))
        streams.sync(StreamTag("team/gone", "b"))
        registry.tag_map = {k: v for k, v in registry.tag_map.items() if k[0] != "team/gone"}
        registry.images.pop("team/gone")  # the whole repository was deleted
        streams.untag(StreamTag("team/a-huge", "v00100"))  # a tombstone ...
        registry.set("team/a-huge", "v00100", digest("again"))  # ... whose tag was pushed again, event lost
        streams.untag(StreamTag("team/a-huge", "v00101"), keep_in_registry=True)  # untagged, kept in ECR: alone
        registry.resolves = 0
        return streams, store, registry

    streams, store, registry = build()
    assert Reconciler(streams, registry, store).run()["complete"]
    expected, resolves = state(store), registry.resolves
    assert store.get_head(StreamTag("team/a-huge", "v00003")).deleted  # gone, seen over a paged listing
    assert not store.get_head(StreamTag("team/a-huge", "v00100")).deleted
    assert store.get_head(StreamTag("team/a-huge", "v00101")).kept_in_registry

    streams, store, registry = build()
    reconciler = Reconciler(streams, registry, store)
    cursors = []
    for _ in range(2_000):
        asked = iter(range(10**9))
        report = reconciler.run(out_of_time=lambda asked=asked: next(asked) >= checks)
        if report["complete"]:
            break
        assert report["cursor"] not in cursors  # progress: never the same place twice
        cursors.append(report["cursor"])
    assert report["complete"] and len(cursors) >= 5
    assert any("repo" in c for c in cursors)  # it did stop inside a repository
    assert state(store) == expected
    assert registry.resolves == resolves  # each differing tag re-resolved once, however often the runs stopped


def test_memory_is_bounded_by_a_page_for_a_10000_tag_repository():
    streams, store, registry, ecs, _, _ = world(big=10_000, others=0, triggers=0)
    meter = Meter(registry, store, ecs)
    reconciler = Reconciler(streams, registry, store)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        report = reconciler.run()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert report["complete"] and report["moves"]
    # no read hands over more than one ECR page (1,000 images) or the heads of one page: never the repository;
    # held at once: one page of the listing and its heads (2,000 items)
    assert meter.most_items <= registry.page_size
    assert peak < 200_000, f"peak {peak} bytes while reconciling 10,000 tags"  # the whole listing: ~600 kB

    # in sync: one listing call per 1,000 images, no presence check, no re-resolve; the live heads counted from
    # their keys, 1,000 a call, no head read
    meter.calls.clear()
    resolves = registry.resolves
    assert reconciler.run()["moves"] == []
    assert (meter.calls["tags"], meter.calls["present"], registry.resolves - resolves) == (10, 0, 0)
    live = sum(1 for h in store.heads("team/a-huge") if not h.deleted)
    assert meter.calls["live_head_keys"] == math.ceil((live + 1) / 1000) and meter.calls["heads_after"] == 0


def test_a_tag_that_fails_is_reported_and_its_repository_goes_on():
    streams, store, registry, ecs, _, _ = world(big=50, others=0, triggers=0, page=10)
    resolve = registry.resolve

    def flaky(stream, tag):
        if tag == "v00000":
            raise RuntimeError("ECR 500 after retries")
        return resolve(stream, tag)

    registry.resolve = flaky
    report = Reconciler(streams, registry, store).run()
    assert report["complete"] and report["errors"] == ["team/a-huge:v00000: RuntimeError: ECR 500 after retries"]
    assert store.get_head(StreamTag("team/a-huge", "v00010")).digest == digest("moved-10")  # the others moved
    assert store.get_head(StreamTag("team/a-huge", "v00003")).deleted


# ------------------------------------------------------------------------------------------ the ECR adapter


def ecr_stub():
    client = boto3.client("ecr", region_name="us-east-1")
    return EcrRegistry(client), Stubber(client)


def image(tags: list[str], n: int) -> dict[str, Any]:
    return {"registryId": "123456789012", "repositoryName": "team/web", "imageDigest": digest(n), "imageTags": tags}


def test_ecr_listing_is_one_call_per_page_of_1000_images_and_resumes_from_its_token():
    registry, stub = ecr_stub()
    base = {"repositoryName": "team/web", "filter": {"tagStatus": "TAGGED"}, "maxResults": 1000}
    stub.add_response("describe_images", {"imageDetails": [image(["a", "b"], 1)], "nextToken": "t2"}, base)
    stub.add_response("describe_images", {"imageDetails": [image(["c"], 2)]}, {**base, "nextToken": "t2"})
    with stub:
        assert registry.tags("team/web") == ({"a": digest(1), "b": digest(1)}, "t2")
        assert registry.tags("team/web", "t2") == ({"c": digest(2)}, None)
    stub.assert_no_pending_responses()


def test_ecr_presence_check_is_one_call_and_finds_a_missing_tag_by_halves():
    registry, stub = ecr_stub()
    tags = [f"t{n}" for n in range(8)]
    with stub:
        stub.add_response("describe_images", {"imageDetails": [image(tags, 1)]},
                          {"repositoryName": "team/web", "imageIds": [{"imageTag": t} for t in tags]})
        assert registry.present("team/web", tags) == set(tags)
        calls = 0

        def answer(ids: list[str]) -> None:
            nonlocal calls
            calls += 1
            expected = {"repositoryName": "team/web", "imageIds": [{"imageTag": t} for t in ids]}
            if "t5" in ids:
                stub.add_client_error("describe_images", "ImageNotFoundException", expected_params=expected)
            else:
                stub.add_response("describe_images", {"imageDetails": [image(ids, 1)]}, expected)

        for ids in (tags, tags[:4], tags[4:], tags[4:6], ["t4"], ["t5"], tags[6:]):  # the order bisection asks
            answer(ids)
        assert registry.present("team/web", tags) == set(tags) - {"t5"}
    assert calls == 7  # 1 + 2 per halving level (log2 8 = 3)
    stub.assert_no_pending_responses()
