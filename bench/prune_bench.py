"""Prune at scale on the in-memory ports: one repository of 5,000 images of which 200 are protected (heads and kept
revisions of 20 tags, what 20 targets run now and what they last received, young images, tagged indexes and their
children). Prints the DescribeImages pages the dry run used (goal: at most one per 1,000 images), how many protected
digests were among the candidates (goal: 0), then the same for a confirmed prune followed through its ``next``
cursors, and the wall times.

    .venv/bin/python bench/prune_bench.py [--images 5000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore  # noqa: E402
from imagestreams.admin import dispatch  # noqa: E402
from imagestreams.model import EcsTarget, StreamTag, pinned_ref  # noqa: E402
from imagestreams.services import ImageStreams  # noqa: E402

REPO = "bench/prune"
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=60)
TAGS, REVISIONS, KEEP = 20, 10, 3
TARGETS, YOUNG, INDEXES, CHILDREN = 20, 20, 20, 3


def digest(n: object) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def build(images: int) -> tuple[ImageStreams, MemoryRegistry, set[str]]:
    store, registry, ecs = MemoryStore(), MemoryRegistry(REG), MemoryEcs()
    streams = ImageStreams(store, registry, {"ecs": ecs}, None, clock=lambda: NOW)
    protected: set[str] = set()
    made = 0

    def image(**kw: object) -> str:
        nonlocal made
        made += 1
        d = digest(made)
        registry.push(REPO, d, **{"pushed_at": OLD, "size": 50_000_000, **kw})  # type: ignore[arg-type]
        return d

    for t in range(TAGS):  # 10 revisions per tag: the newest 3 are kept
        revisions = []
        for _ in range(REVISIONS):
            d = image()
            registry.set(REPO, f"t{t}", d)
            streams.sync(StreamTag(REPO, f"t{t}"))
            revisions.append(d)
        protected |= set(revisions[-KEEP:])
        if t < TARGETS:  # a target per tag: runs revision 2 now (rolled back by hand), last received revision 4
            target = EcsTarget("prod", f"svc{t}", "app")
            ecs.images[("prod", f"svc{t}")] = {"app": pinned_ref(REG, REPO, revisions[-1])}
            trigger = streams.add_trigger(StreamTag(REPO, f"t{t}"), target)
            ecs.images[("prod", f"svc{t}")] = {"app": pinned_ref(REG, REPO, revisions[1])}
            store.triggers[trigger.id] = trigger.with_outcome(last_triggered_digest=revisions[3])
            protected |= {revisions[1], revisions[3]}
    for _ in range(YOUNG):
        protected.add(image(pushed_at=NOW - timedelta(minutes=10)))
    for i in range(INDEXES):  # tagged multi-arch indexes: the index and its children are kept
        kids = {f"arch{c}": image() for c in range(CHILDREN)}
        index = image(children=kids)
        registry.set(REPO, f"multi{i}", index)
        streams.sync(StreamTag(REPO, f"multi{i}"))
        protected |= {index, *kids.values()}
    while made < images:
        image()
    return streams, registry, protected


def run(streams: ImageStreams, command: dict) -> tuple[list[dict], float]:
    answers, started, cursor = [], time.perf_counter(), None
    while True:
        answer = dispatch(streams, {**command, **({"cursor": cursor} if cursor else {})})
        assert answer["ok"], answer
        answers.append(answer["result"])
        cursor = answer["result"]["next"]
        if not cursor:
            return answers, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5_000)
    args = parser.parse_args()
    streams, registry, protected = build(args.images)
    command = {"action": "prune", "stream": REPO, "keepTagRevisions": KEEP}

    registry.describe_pages = 0
    dry, dry_seconds = run(streams, command)
    candidates = {c["digest"] for a in dry for c in a["candidates"]}
    first_call_pages = dry[0]["describeImagesPages"]
    registry.describe_pages = 0
    done, confirm_seconds = run(streams, {**command, "confirm": True})
    deleted = {c["digest"] for a in done for c in a["deleted"]}
    left = registry.images[REPO]
    figures = {
        "images": args.images,
        "protected": len(protected),
        "candidates": len(candidates),
        "dry_run_calls": len(dry),
        "describe_images_pages_per_call": first_call_pages,
        "describe_images_pages_goal": math.ceil(args.images / 1000),
        "protected_among_candidates": len(candidates & protected),
        "dry_run_seconds": round(dry_seconds, 3),
        "confirm_calls": len(done),
        "confirm_describe_images_pages": registry.describe_pages,
        "batch_delete_image_calls": registry.delete_calls,
        "deleted": len(deleted),
        "protected_deleted": len(deleted & protected),
        "protected_still_in_registry": len(protected & left),
        "confirm_seconds": round(confirm_seconds, 3),
    }
    print(json.dumps(figures, indent=2))
    ok = (first_call_pages <= figures["describe_images_pages_goal"] and not candidates & protected
          and not deleted & protected and deleted == candidates and protected <= left)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
