"""Reconciler at scale on the embedded AWS: one repository of N tags whose push events were all lost. Prints, per
run, the AWS calls the reconciler function made (per repository and per 1,000 tags) and its wall time per 1,000
tags: the import run (every tag missed), a run with everything in sync, and a run after a few tags were deleted
and moved unseen.

    .venv/bin/python bench/reconcile_scale.py --tags 2000
    .venv/bin/python bench/reconcile_scale.py --repositories 1000 --tags 50    # many small repositories, in sync

With ``--repositories`` above 1 the streams are written straight into the table (a head and its history entry
per tag, as ingest would have left them: importing 50,000 tags one by one would take the reconciler half an hour
here) and the runs measured are "in sync" and "a few changed": ECR calls per repository, table calls per stream
and wall time per 1,000 tags, over as many scheduled runs as the reconciler needs (each resumes from its cursor).

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
    parser.add_argument("--repositories", type=int, default=1, help="repositories of --tags tags each")
    args = parser.parse_args()
    if args.repositories > 1:
        return many_repositories(args.repositories, args.tags, args.changed)
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
            _counting(aws, count)
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


def _counting(aws: EmbeddedAws, count: Any) -> None:
    """The reconciler function's environment, and ``count`` called before each of its ECR and DynamoDB calls."""
    aws.use_function_env("ReconcilerFunction")
    for service in ("ecr", "dynamodb"):
        clients.client(service).meta.events.register(f"before-call.{service}", count, unique_id=f"bench-{service}")


def _seed_heads(aws: EmbeddedAws, table: str, pushed: dict[str, dict[str, str]]) -> None:
    """Heads and first history entries for every pushed tag, written straight into the table."""
    from datetime import datetime, timezone

    from imagestreams.adapters.dynamodb import _dump, head_item, history_sk, pk
    from imagestreams.model import Head, StreamTag

    registry = f"{aws.client('sts').get_caller_identity()['Account']}.dkr.ecr.{aws.region}.amazonaws.com"
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    items = []
    for repo, tags in pushed.items():
        for tag, digest in tags.items():
            head = Head(StreamTag(repo, tag), digest, 1, at, "push", "ecr", registry, rev=1)
            items.append(head_item(head))
            items.append({"pk": pk(repo), "sk": history_sk(tag, 1), "kind": "HIST", "stream": repo, "tag": tag,
                          "digest": digest, "generation": 1, "at": at.isoformat(), "cause": "push", "actor": "ecr"})
    ddb = aws.client("dynamodb")
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": _dump(i)}} for i in items[start : start + 25]]}
        while pending:
            pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def many_repositories(repositories: int, per_repo: int, changed: int) -> int:
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    total = repositories * per_repo
    with EmbeddedAws() as aws:
        aws.deploy()
        ecr = aws.client("ecr")
        begin = time.perf_counter()
        pushed: dict[str, dict[str, str]] = {}
        for r in range(repositories):
            repo = f"bench/r{r:04d}"
            ecr.create_repository(repositoryName=repo)
            pushed[repo] = {}
            for n in range(per_repo):
                tag = f"v{n:03d}"
                event = aws.push_image(repo, tag, seed=f"{repo}:{tag}", emit=False)
                pushed[repo][tag] = event["detail"]["image-digest"]
        print(f"pushed {total} tags in {repositories} repositories (events lost) in "
              f"{time.perf_counter() - begin:.1f}s")
        aws.use_function_env("ReconcilerFunction")
        begin = time.perf_counter()
        _seed_heads(aws, aws.functions["ReconcilerFunction"].environment["TABLE_NAME"], pushed)
        print(f"wrote {total} heads + history entries into the table in {time.perf_counter() - begin:.1f}s")

        def run(title: str) -> None:
            _counting(aws, count)
            calls.clear()
            begin, runs, moves = time.perf_counter(), 0, 0
            while True:
                report = aws.run_schedule("ReconcilerFunction")
                runs += 1
                moves += report["moves"]
                if report["complete"] or runs >= 20:
                    break
            took = time.perf_counter() - begin
            per_k = 1000 / total
            ecr_calls = sum(n for op, n in calls.items() if op.startswith("ecr:"))
            queries = calls["dynamodb:Query"]
            print(f"\n{title}: {runs} scheduled run(s), complete={report['complete']}, moves={moves}, wall "
                  f"{took:.1f}s = {took * per_k:.2f}s per 1,000 tags")
            print(f"  ECR calls per repository {ecr_calls / repositories:.2f}; table Query calls per repository "
                  f"{queries / repositories:.2f}; table calls per tag "
                  f"{sum(n for op, n in calls.items() if op.startswith('dynamodb:')) / total:.3f}")
            for op, n in sorted(calls.items()):
                print(f"  {op:32} {n:7}  ({n * per_k:.1f} per 1,000 tags, {n / repositories:.2f} per repository)")

        run("1. in sync")
        repos = sorted(pushed)
        for i in range(changed):
            repo = repos[(i * len(repos)) // max(1, changed)]
            ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v000"}])
            aws.push_image(repo, "v001", seed=f"again-{repo}", emit=False)
        run(f"2. {changed} tags deleted and {changed} moved unseen, in {changed} repositories")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
