"""Notify: the table's change stream (head, trigger, policy and risk items) → EventBridge events
``source: "imagestreams"`` (detail-types and fields: imagestreams.notifications), one ``PutEvents`` call per batch.

Events come from the recorded change (the stream), so none is published for a write that did not happen. A record
whose events EventBridge did not accept (or that could not be read) is reported as a batch item failure, so Lambda
delivers it again (at least once: its other events may come twice); after the last retry the batch's pointer goes
to the notify DLQ.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams import batch, notifications
from imagestreams.bootstrap import publisher

logger = Logger()
metrics = Metrics()


def publish(event: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The events of every record, sent together; the partial batch response for the records not delivered."""
    found: list[tuple[str, notifications.Notification]] = []

    def collect(record: dict[str, Any]) -> None:
        found.extend((batch.dynamodb_sequence(record), n) for n in notifications.notifications(record))

    # a record that cannot be read is reported by the batch helper (and the invocation fails if none can)
    response = batch.process(event, collect, identifier=batch.dynamodb_sequence)
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    if found:
        errors = publisher().publish([n for _, n in found])
        for (sequence, note), error in zip(found, errors, strict=True):
            if error is None:
                metrics.add_metric(name="Notified" + note.detail_type.replace(" ", ""), unit=MetricUnit.Count,
                                   value=1)
            elif sequence not in failed:
                failed.add(sequence)
                metrics.add_metric(name="NotificationsFailed", unit=MetricUnit.Count, value=1)
                logger.error("EventBridge did not accept an event; its record is delivered again",
                             detail_type=note.detail_type, sequence=sequence, error=error)
    records = event.get("Records") or []
    if records and len(failed) == len(records):
        raise batch.BatchFailed(f"none of the {len(records)} records could be notified (see the log)")
    return {"batchItemFailures": [{"itemIdentifier": batch.dynamodb_sequence(r)} for r in records
                                  if batch.dynamodb_sequence(r) in failed]}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return publish(event)
