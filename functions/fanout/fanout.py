"""Fan-out: the table's change stream (head items only) → one FIFO message per unpaused trigger; and when
DynamoDB's TTL removes a tombstone, the tag's history goes too.

The head write and "a fire is owed" are the same DynamoDB write (the stream is our outbox), so a crash between
ingest and fan-out cannot lose a fire. Failed records are reported individually (partial batch response).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams import batch
from imagestreams.adapters.dynamodb import head_from_image
from imagestreams.bootstrap import services

logger = Logger()
metrics = Metrics()


def record_handler(record: dict[str, Any]) -> None:
    try:
        _handle(record)
    except Exception:
        # After the last retry Lambda parks only a pointer into the table stream (shard, sequence numbers) in the
        # fan-out DLQ, and the stream forgets the record 24 h after the write: log the record itself, so a human
        # can see what was not fanned out (the reconciler re-fires triggers left behind within one period).
        dynamodb = record.get("dynamodb") or {}
        logger.error("fan-out of a head change failed; if this was the last retry, replay with "
                     "`imagestreams deploy --from <stream>:<tag>` or wait for the reconciler",
                     event_name=record.get("eventName"), sequence=dynamodb.get("SequenceNumber"),
                     keys=dynamodb.get("Keys"), new_image=dynamodb.get("NewImage"),
                     old_image=dynamodb.get("OldImage") if record.get("eventName") == "REMOVE" else None)
        raise


def _handle(record: dict[str, Any]) -> None:
    if record.get("eventName") == "REMOVE":  # a tombstone expired (TTL): its history goes with it
        old_image = record["dynamodb"].get("OldImage") or {}
        if old_image.get("kind", {}).get("S") == "HEAD":
            purged = services().tombstone_expired(head_from_image(old_image))
            metrics.add_metric(name="HistoryPurged", unit=MetricUnit.Count, value=purged)
        return
    image = record["dynamodb"].get("NewImage")
    if not image or image.get("kind", {}).get("S") != "HEAD":
        return  # not a head: nothing to fire
    old = record["dynamodb"].get("OldImage") or {}
    if old.get("generation") == image.get("generation"):
        return  # an alias link changed, not the digest: no move, no fire
    head = head_from_image(image)
    queued = services().head_moved(head)
    metrics.add_metric(name="FiresQueued", unit=MetricUnit.Count, value=len(queued))
    logger.info("head moved", tag=str(head.stream_tag), digest=head.digest, generation=head.generation,
                deleted=head.deleted, fires=[t.id for t in queued])


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch.process(event, record_handler, identifier=batch.dynamodb_sequence)
