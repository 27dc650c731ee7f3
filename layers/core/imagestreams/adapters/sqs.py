"""FireQueue on SQS FIFO: one message per trigger, grouped by trigger id (no two fires of one target run at
once, and they run in order), de-duplicated per head move."""

from __future__ import annotations

import json
from typing import Any

from ..model import Head, Trigger


class SqsFireQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def enqueue(self, triggers: list[Trigger], head: Head, *, reason: str | None = None) -> None:
        for start in range(0, len(triggers), 10):
            batch = triggers[start : start + 10]
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"trigger": t.id, "from": str(t.stream_tag), "digest": head.digest,
                                               "generation": head.generation}),
                    "MessageGroupId": t.id,
                    "MessageDeduplicationId": f"{t.id}-{head.generation}" + (f"-{reason}" if reason else ""),
                }
                for i, t in enumerate(batch)
            ]
            out = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if out.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed for {out['Failed']}")
