"""What one head move reads in a big stream: ``tags`` tags with ``history`` history entries each (the history cap is
50), one policy tag (already on its selection) or none. The fan-out's reads are priced by DynamoDB itself
(ConsumedCapacity, DynamoDB Local) and counted in items (``ScannedCount``: what a Query reads before its filter,
which is what DynamoDB bills); the figure before the ByStream index is the one query of the whole partition the
fan-out made then (``stream_view``).

    .venv/bin/python bench/stream_view_bench.py      # prints the figures (embedded AWS)
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core"), str(ROOT / "local")]

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
POLICY_TAG = "stable"


def version_tag(n: int) -> str:
    return f"v1.0.{n}"


def digest_of(stream: str, tag: str, generation: int) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(f"{stream}:{tag}:{generation}".encode()).hexdigest()


def seed(client: Any, table: str, stream: str, *, tags: int = 100, history: int = 50,
         policy: bool = True) -> dict[str, Any]:
    """Write the stream straight into the table: ``tags - 1`` version tags (or ``tags`` without a policy) with
    ``history`` entries each, and the policy tag ``stable`` (``semver ~1.0``) on the newest version. Returns the
    heads by tag."""
    from imagestreams.adapters.dynamodb import _dump, head_item, history_sk, pk, policy_item
    from imagestreams.model import Head, StreamTag
    from imagestreams.policytags import Policy

    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    versions = tags - 1 if policy else tags
    items: list[dict[str, Any]] = []
    heads: dict[str, Head] = {}
    for n in range(versions):
        tag = version_tag(n)
        for generation in range(1, history + 1):
            items.append({"pk": pk(stream), "sk": history_sk(tag, generation), "kind": "HIST", "stream": stream,
                          "tag": tag, "digest": digest_of(stream, tag, generation), "generation": generation,
                          "at": (at + timedelta(minutes=generation)).isoformat(), "cause": "push", "actor": "ecr"})
        heads[tag] = Head(StreamTag(stream, tag), digest_of(stream, tag, history), history,
                          at + timedelta(minutes=history), "push", "ecr", REGISTRY)
    if policy:
        best = heads[version_tag(versions - 1)]
        heads[POLICY_TAG] = best._replace(stream_tag=StreamTag(stream, POLICY_TAG), generation=1, cause="policy",
                                          actor="policy:semver")
        selected = Policy(StreamTag(stream, POLICY_TAG), {"semver": "~1.0"}, status="Selected",
                          selected=best.stream_tag.tag, digest=best.digest, rev=1, at=at)
        items.append(policy_item(selected))
    items += [head_item(h, listed=policy) for h in heads.values()]  # a policy stream's heads are listed in ByStream
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": _dump(i)}} for i in items[start : start + 25]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return heads


class ScanCounter:
    """Items every Query/Scan of a client read (``ScannedCount``, before any filter: what DynamoDB bills) and
    GetItem/BatchGetItem items; ``history_items`` counts the history items handed back (a filter hides the ones a
    whole-partition query reads and drops, which ``items`` still counts)."""

    def __init__(self, client: Any) -> None:
        self.client, self.items, self.history_items = client, 0, 0
        client.meta.events.register("after-call.dynamodb.*", self._add, unique_id=f"scan-{id(self)}")

    def _add(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name in ("Query", "Scan"):
            self.items += int(parsed.get("ScannedCount", 0))
        elif model.name == "GetItem":
            self.items += 1 if parsed.get("Item") else 0
        elif model.name == "BatchGetItem":
            self.items += sum(len(v) for v in parsed.get("Responses", {}).values())
        for raw in parsed.get("Items", []) + ([parsed["Item"]] if parsed.get("Item") else []):
            self.history_items += raw.get("kind", {}).get("S") == "HIST"

    def take(self) -> dict[str, int]:
        out = {"items": self.items, "history_items": self.history_items}
        self.items = self.history_items = 0
        return out

    def detach(self) -> None:
        self.client.meta.events.unregister("after-call.dynamodb.*", unique_id=f"scan-{id(self)}")


def measure(aws: Any, *, tags: int = 100, history: int = 50) -> dict[str, Any]:
    """One head move (a version tag re-pushed to the digest it has: no policy tag moves) in a stream with a policy
    tag and in one without; and the whole-partition query the fan-out made before the ByStream index."""
    from bench.cost import CapacityMeter
    from imagestreams import aws as clients
    from imagestreams.bootstrap import build
    from imagestreams.config import Settings

    aws.use_function_env("FanoutFunction")
    settings = Settings.from_env()
    streams = build(settings)
    ddb = clients.client("dynamodb")
    out: dict[str, Any] = {"tags": tags, "history": history}
    for name, policy in (("policy", True), ("no_policy", False)):
        stream = f"bench/big-{name.replace('_', '-')}"
        heads = seed(ddb, settings.table, stream, tags=tags, history=history, policy=policy)
        moved = heads[version_tag(3)]
        meter, counter = CapacityMeter().attach(ddb), ScanCounter(ddb)
        streams.head_moved(moved)
        out[f"after_{name}"] = {**meter.take(), **counter.take()}
        streams.store.stream_view(stream)  # what the fan-out read before: one query of the whole partition
        out[f"before_{name}"] = {**meter.take(), **counter.take()}
        meter.detach()
        counter.detach()
    return out


def main() -> int:
    from imagestreams_local.embedded import EmbeddedAws

    with EmbeddedAws() as aws:
        aws.deploy()
        print(measure(aws))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
