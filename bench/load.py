"""Load: N pushes over M repositories through the local runner (EventBridge rule → ingest → table stream → fan-out),
then check that no move was lost (every stream tag equals ECR) and no history entry was duplicated. Prints
events/second and the ratio of ingest time to the irreducible AWS calls (same server, same run).

    make load                              # 10,000 pushes over 500 repositories
    .venv/bin/python bench/load.py --pushes 500 --repositories 25
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT / "local"), str(ROOT)]

from bench.run import _irreducible  # noqa: E402
from imagestreams_local.embedded import EmbeddedAws  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=10_000)
    parser.add_argument("--repositories", type=int, default=500)
    parser.add_argument("--batch", type=int, default=25, help="pushes between two deliveries (events pile up)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    ingest_times: list[float] = []

    with EmbeddedAws() as aws:
        aws.deploy()
        ingest = aws.functions["IngestFunction"]
        handler_of = ingest.handler

        def timed_handler():  # type: ignore[no-untyped-def]
            handler = handler_of()

            def run(event, context):  # type: ignore[no-untyped-def]
                begin = time.perf_counter()  # the handler alone, not the runner's bookkeeping around it
                try:
                    return handler(event, context)
                finally:
                    ingest_times.append(time.perf_counter() - begin)

            return run

        ingest.handler = timed_handler  # type: ignore[method-assign]
        raw: list[float] = []
        ecr = aws.client("ecr")
        repos = [f"load/r{n:04d}" for n in range(args.repositories)]
        for repo in repos:
            ecr.create_repository(repositoryName=repo)
        truth: dict[tuple[str, str], str] = {}
        begin = time.perf_counter()
        for n in range(args.pushes):
            repo = rng.choice(repos)
            tag = rng.choice(("latest", "latest", "edge"))
            event = aws.push_image(repo, tag, seed=f"{n}", also=(f"b{n}",))
            truth[(repo, tag)] = event["detail"]["image-digest"]
            truth[(repo, f"b{n}")] = event["detail"]["image-digest"]
            if (n + 1) % args.batch == 0:
                aws.pump(max_rounds=10_000)
                # the irreducible calls, sampled in the same conditions (same server, same table size, same moment)
                from imagestreams import aws as clients

                raw.append(_irreducible(clients.client("dynamodb"), clients.client("ecr"),
                                        aws.outputs["StreamsTableName"], len(raw), "sha256:" + "0" * 64, repo, tag))
        aws.pump(max_rounds=10_000)
        elapsed = time.perf_counter() - begin

        aws.use_function_env("IngestFunction")
        from imagestreams import aws as clients
        from imagestreams.bootstrap import services
        from imagestreams.model import StreamTag

        store = services().store
        lost, duplicated, entries_total = [], [], 0
        for repo in repos:
            heads = {h.stream_tag.tag: h for h in store.heads(repo)}
            for (r, tag), digest in truth.items():
                if r == repo and (tag not in heads or heads[tag].digest != digest or heads[tag].deleted):
                    lost.append(f"{repo}:{tag}")
            for tag, head in heads.items():
                entries = store.history(StreamTag(repo, tag), 1000)
                entries_total += len(entries)
                if [e.generation for e in entries] != list(range(head.generation, 0, -1))[:len(entries)] or any(
                        a.digest == b.digest for a, b in zip(entries, entries[1:], strict=False)):
                    duplicated.append(f"{repo}:{tag}")
        events = len([i for i in aws.invocations if i.function == "IngestFunction"])
    ratio = statistics.median(ingest_times) / statistics.median(raw)
    print(f"{args.pushes} pushes ({events} ECR events: one per tag) over {args.repositories} repositories in "
          f"{elapsed:.1f} s: {events / elapsed:.0f} events/s end to end")
    print(f"stream tags checked: {len(truth)}; lost moves: {len(lost)}; tags with duplicate history entries: "
          f"{len(duplicated)}; history entries: {entries_total}")
    print(f"ingest handler time / irreducible calls (medians; {len(ingest_times)} events, {len(raw)} raw samples "
          f"interleaved): {statistics.median(ingest_times) * 1000:.2f} / {statistics.median(raw) * 1000:.2f} ms = "
          f"{ratio:.2f}")
    for problem in (lost + duplicated)[:20]:
        print("  problem:", problem)
    return 1 if lost or duplicated else 0


if __name__ == "__main__":
    sys.exit(main())
