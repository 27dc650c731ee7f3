"""Reconciler at scale on the embedded AWS: one repository of N tags whose push events were all lost. Prints, per
run, the AWS calls the reconciler function made (per repository and per 1,000 tags) and its wall time per 1,000
tags: the import run (every tag missed), a run with everything in sync, and a run after a few tags were deleted
and moved unseen.

    .venv/bin/python bench/reconcile_scale.py --tags 2000

moto answers DescribeImages in one page whatever ``maxResults`` says; on ECR the listing is one call per 1,000
images, which the table below adds as "listing calls on ECR".
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT / "local"), str(ROOT)]

from imagestreams import aws as clients  # noqa: E402
from imagestreams_local.embedded import EmbeddedAws  # noqa: E402

REPO = "bench/big"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=2_000)
    parser.add_argument("--changed", type=int, default=10, help="tags deleted and as many moved before run 3")
    args = parser.parse_args()
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    with EmbeddedAws() as aws:
        aws.deploy()
        ecr = aws.client("ecr")
        ecr.create_repository(repositoryName=REPO)
        begin = time.perf_counter()
        tags = [f"v{n:05d}" for n in range(args.tags)]
        for tag in tags:
            aws.push_image(REPO, tag, seed=tag, emit=False)
        print(f"pushed {args.tags} tags (events lost) in {time.perf_counter() - begin:.1f}s")

        def run(title: str) -> None:
            aws.use_function_env("ReconcilerFunction")
            for service in ("ecr", "dynamodb"):
                clients.client(service).meta.events.register(f"before-call.{service}", count,
                                                             unique_id=f"bench-{service}")
            calls.clear()
            begin = time.perf_counter()
            report = aws.run_schedule("ReconcilerFunction")
            took = time.perf_counter() - begin
            per_k = 1000 / args.tags
            ecr_calls = sum(n for op, n in calls.items() if op.startswith("ecr:"))
            listing = calls["ecr:DescribeRepositories"] + math.ceil(args.tags / 1000)
            print(f"\n{title}: complete={report['complete']} moves={report['moves']} "
                  f"wall {took:.2f}s = {took * per_k:.2f}s per 1,000 tags")
            print(f"  ECR calls for the repository: {ecr_calls} here, {ecr_calls - calls['ecr:DescribeImages']}"
                  f" + listing {math.ceil(args.tags / 1000)} + per-tag {calls['ecr:DescribeImages'] - 1} on ECR"
                  f" (listing calls on ECR incl. DescribeRepositories: {listing})")
            for op, n in sorted(calls.items()):
                print(f"  {op:32} {n:6}  ({n * per_k:.1f} per 1,000 tags)")

        run("1. import (every push missed)")
        run("2. in sync")
        for tag in tags[:: max(1, args.tags // args.changed)][: args.changed]:
            ecr.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": tag}])
        for tag in tags[1 :: max(1, args.tags // args.changed)][: args.changed]:
            aws.push_image(REPO, tag, seed=f"again-{tag}", emit=False)
        run(f"3. {args.changed} tags deleted and {args.changed} moved unseen")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
