"""Fan-out: the table's change stream (head items only) → one FIFO message per unpaused trigger.

The head write and "a fire is owed" are the same DynamoDB write (the stream is our outbox), so a crash between
ingest and fan-out cannot lose a fire. Failed records are reported individually (partial batch response).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from boto3.dynamodb.types import TypeDeserializer
from imagestreams.adapters.dynamodb import head_from_item
from imagestreams.bootstrap import services

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
_de = TypeDeserializer()


def record_handler(record: Any) -> None:
    image = record.raw_event["dynamodb"].get("NewImage")
    if not image:
        return  # REMOVE (tombstone expired by TTL): nothing to fire
    item = {k: _de.deserialize(v) for k, v in image.items()}
    if item.get("kind") != "HEAD":
        return
    head = head_from_item(item)
    queued = services().head_moved(head)
    metrics.add_metric(name="FiresQueued", unit=MetricUnit.Count, value=len(queued))
    logger.info("head moved", tag=str(head.stream_tag), digest=head.digest, generation=head.generation,
                deleted=head.deleted, fires=[t.id for t in queued])


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
