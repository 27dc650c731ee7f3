"""EventPublisher on EventBridge ``PutEvents`` (the stack's bus; the default bus when none is named)."""

from __future__ import annotations

from typing import Any

from ..notifications import Notification, chunks


class EventBridgePublisher:
    def __init__(self, client: Any, bus: str | None = None) -> None:
        self.client = client
        self.bus = bus or None

    def publish(self, notifications: list[Notification]) -> list[str | None]:
        """One ``PutEvents`` call per 10 entries (and 256 KB); per notification None when EventBridge accepted it,
        else its error code and message. A failed call raises (botocore has retried throttling and 5xx)."""
        errors: list[str | None] = []
        for batch in chunks([n.entry(self.bus) for n in notifications]):
            out = self.client.put_events(Entries=batch)
            results = out.get("Entries") or []
            for i in range(len(batch)):
                result = results[i] if i < len(results) else {"ErrorCode": "Missing", "ErrorMessage": "no result"}
                errors.append(f"{result['ErrorCode']}: {result.get('ErrorMessage') or ''}".strip()
                              if result.get("ErrorCode") else None)
        return errors
