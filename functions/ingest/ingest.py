"""Ingest: EventBridge ``ECR Image Action`` (PUSH, DELETE) and ``ECR Replication Action`` (REPLICATE).

Events are hints; ECR is the truth. Errors propagate so the asynchronous invoke retries and then
parks the event in the on-failure destination; a malformed event raises at once with a clear message. An event for
a repository we may not read (outside RepositoryPattern, or denied by IAM) is not ours: logged, counted
(``EventsNotOurs``) and ignored, never a failed invocation.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams.bootstrap import services
from imagestreams.errors import Invalid
from imagestreams.events import parse_ecr_event
from imagestreams.ingest import handle_ecr_event

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        ecr_event = parse_ecr_event(event)
    except Invalid as exc:
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
        logger.error("malformed ECR event rejected", error=exc.message)
        raise
    outcome = handle_ecr_event(services(), ecr_event)
    if outcome.not_ours:
        metrics.add_metric(name="EventsNotOurs", unit=MetricUnit.Count, value=1)
        logger.info("event for a repository that is not ours ignored", action=ecr_event.action,
                    stream=ecr_event.stream, tag=ecr_event.tag, reason=outcome.reason)
        return outcome.as_dict()
    metrics.add_metric(name="TagsMoved", unit=MetricUnit.Count, value=len(outcome.moves))
    if outcome.status != "moved":
        metrics.add_metric(name="EventsNoOp", unit=MetricUnit.Count, value=1)
    logger.info("ingested", action=ecr_event.action, stream=ecr_event.stream, tag=ecr_event.tag, **outcome.as_dict())
    return outcome.as_dict()
