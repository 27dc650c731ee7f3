"""Where the expiry-risk pass keeps its findings and its state.

DynamoDB, in the streams table::

    pk = "S#<repo>",     sk = "RISK#<digest>"  kind=RISK: stream, digest, tags, triggers, rule, message, at,
                                                expiresAt (TTL)
    pk = "RECONCILER",   sk = "EXPIRY"          kind=CURSOR: the pass's state (previews pending, repositories without
                                                a lifecycle policy, digests at risk per repository)

``RISK#`` sorts before ``T#``, so the per-tag range reads of a stream never meet these items; whole-partition reads
select by ``kind``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .dynamodb import _dump, _load, pk

RISK_PREFIX = "RISK#"
_STATE_KEY = {"pk": "RECONCILER", "sk": "EXPIRY"}


def risk_sk(digest: str) -> str:
    return RISK_PREFIX + digest


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return sorted(_plain(v) for v in value) if isinstance(value, set) else [_plain(v) for v in value]
    return value


class DynamoRiskStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def load_expiry_state(self) -> dict[str, Any]:
        out = self.client.get_item(TableName=self.table, Key=_dump(_STATE_KEY), ConsistentRead=True)
        item = _plain(_load(out["Item"])) if "Item" in out else {}
        return {k: v for k, v in item.items() if k not in ("pk", "sk", "kind")}

    def save_expiry_state(self, state: dict[str, Any]) -> None:
        item = {**_STATE_KEY, "kind": "CURSOR", **{k: v for k, v in state.items() if v not in (None, "", {})}}
        self.client.put_item(TableName=self.table, Item=_dump(item))

    def risks(self, stream: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues=_dump({":pk": pk(stream), ":p": RISK_PREFIX}), ConsistentRead=True)
        for page in pages:
            items += [_plain(_load(i)) for i in page["Items"]]
        return items

    def put_risk(self, item: dict[str, Any]) -> None:
        full = {"pk": pk(item["stream"]), "sk": risk_sk(item["digest"]), "kind": "RISK", **item}
        self.client.put_item(TableName=self.table, Item=_dump(full))

    def delete_risk(self, stream: str, digest: str) -> None:
        self.client.delete_item(TableName=self.table, Key=_dump({"pk": pk(stream), "sk": risk_sk(digest)}))


class MemoryRiskStore:
    """The same in memory (tests, the model); counts its writes."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0

    def load_expiry_state(self) -> dict[str, Any]:
        return _copy(self.state)

    def save_expiry_state(self, state: dict[str, Any]) -> None:
        self.state = _copy(state)
        self.writes += 1

    def risks(self, stream: str) -> list[dict[str, Any]]:
        return [dict(v) for (s, _), v in sorted(self.items.items()) if s == stream]

    def put_risk(self, item: dict[str, Any]) -> None:
        self.items[(item["stream"], item["digest"])] = {**item, "kind": "RISK"}
        self.writes += 1

    def delete_risk(self, stream: str, digest: str) -> None:
        self.items.pop((stream, digest), None)
        self.writes += 1


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in state.items()}
