"""Deployer: one FIFO message per trigger fire (grouped by target resource) → update that target by digest.

Fires against the head as it is *now* (not as queued), so a late message can never deploy an older digest, and
under the target's lease, so two fires never write one resource at once (a busy target is retried by SQS). A
permanent target error marks the trigger ``Failed`` and consumes the message; a transient one is retried by SQS
and, after the queue's maxReceiveCount, parked in the DLQ — without holding up other targets' messages (a failure
skips only the rest of its own message group, i.e. its own target resource).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams import batch
from imagestreams.bootstrap import services
from imagestreams.model import StreamTag, validate_trigger_id

logger = Logger()
metrics = Metrics()


def record_handler(record: dict[str, Any]) -> None:
    body = json.loads(record["body"])
    force = body.get("force") is True  # a queued `deploy`
    queued_at = datetime.fromisoformat(body["at"].replace("Z", "+00:00")) if force and body.get("at") else None
    trigger = services().fire_by_id(StreamTag.parse(body["from"], "from"), validate_trigger_id(body["trigger"]),
                                    force=force, queued_at=queued_at, was_paused=body.get("paused") is True)
    if trigger is None:
        return
    metrics.add_metric(name="Fires" + trigger.status, unit=MetricUnit.Count, value=1)
    logger.info("fired", trigger=trigger.id, status=trigger.status, digest=trigger.last_triggered_digest,
                error=trigger.last_error)


# A fire may wait up to 40 s for a Lambda target's update; one is not started with less than this left.
FIRE_BUDGET_MS = 45_000


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch.process(event, record_handler, identifier=batch.sqs_message_id, group=batch.sqs_group,
                         out_of_time=lambda: context.get_remaining_time_in_millis() < FIRE_BUDGET_MS)
