"""Deployer: one FIFO message per trigger fire (grouped by trigger id) → update that target by digest.

Fires against the head as it is *now*, so a late message can never deploy an older digest. A permanent target
error marks the trigger ``Failed`` and consumes the message; a transient one is retried by SQS and, after the
queue's maxReceiveCount, parked in the DLQ — without holding up other targets' messages (a failure skips only the
rest of its own message group, i.e. its own trigger).
"""

from __future__ import annotations

import json
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
    trigger = services().fire_by_id(StreamTag.parse(body["from"], "from"), validate_trigger_id(body["trigger"]))
    if trigger is None:
        return
    metrics.add_metric(name="Fires" + trigger.status, unit=MetricUnit.Count, value=1)
    logger.info("fired", trigger=trigger.id, status=trigger.status, digest=trigger.last_triggered_digest,
                error=trigger.last_error)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch.process(event, record_handler, identifier=batch.sqs_message_id, group=batch.sqs_group)
