"""FireQueue on SQS FIFO: one message per trigger, de-duplicated per head move.

Messages are grouped by target *resource* (a short hash of its ``target_key``), not by trigger: fires of several
triggers on containers of one ECS service, Kubernetes workload or Lambda function queue behind each other (a FIFO
group has at most one message in flight), while distinct targets run in parallel.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from ..model import Head, Trigger, rfc3339, target_key

MAX_BATCH = 10  # SendMessageBatch takes at most 10 entries


def group_id(trigger: Trigger) -> str:
    """Stable, short and valid as a MessageGroupId (≤ 128 characters) whatever the target's names."""
    return "target-" + hashlib.sha256(target_key(trigger.target).encode()).hexdigest()[:32]


def message_body(trigger: Trigger, head: Head, *, force: bool = False, at: datetime | None = None) -> dict[str, Any]:
    """What the deployer receives. A queued ``deploy`` carries ``force``, when it was queued and whether the trigger
    was paused then, so a pause or target rollback after it still wins."""
    body: dict[str, Any] = {"trigger": trigger.id, "from": str(trigger.stream_tag), "digest": head.digest,
                            "generation": head.generation}
    if force:
        body.update(force=True, paused=trigger.paused, at=rfc3339(at) if at else None)
    return body


class SqsFireQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def enqueue(self, triggers: list[Trigger], head: Head, *, reason: str | None = None, force: bool = False,
                at: datetime | None = None) -> None:
        for start in range(0, len(triggers), MAX_BATCH):
            batch = triggers[start : start + MAX_BATCH]
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps(message_body(t, head, force=force, at=at)),
                    "MessageGroupId": group_id(t),
                    "MessageDeduplicationId": f"{t.id}-{head.generation}" + (f"-{reason}" if reason else ""),
                }
                for i, t in enumerate(batch)
            ]
            out = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if out.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed for {out['Failed']}")


MAX_DELAY_SECONDS = 900  # SQS's longest per-message delay; longer waits are re-queued for the remainder


def clock_delay(due: datetime, now: datetime) -> int:
    """Seconds to delay a gate-clock message due at ``due`` (0 when due, at most 900)."""
    return max(0, min(MAX_DELAY_SECONDS, int((due - now).total_seconds() + 0.999)))


class SqsGateClock:
    """The gate clock on a standard SQS queue: one message per wake-up, delayed up to 15 minutes; the gates
    function re-queues a message that is not due yet for the remaining time."""

    def __init__(self, client: Any, queue_url: str, clock: Any = None) -> None:
        from ..model import utcnow

        self.client = client
        self.queue_url = queue_url
        self.clock = clock or utcnow

    def schedule(self, message: dict[str, Any], due: datetime) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message),
                                 DelaySeconds=clock_delay(due, self.clock()))
