"""Rollout tracking: EventBridge ``ECS Deployment State Change`` → the trigger whose fire started that deployment
gets ``rolloutState`` IN_PROGRESS / COMPLETED / FAILED (a FAILED digest is then not re-fired automatically).

Events are hints, and anyone allowed to invoke this function can send one: an event about another account or
region, or of any other shape, is ignored with a log line and a metric (never a failed invocation, which would
land in the ops DLQ and alarm); only the trigger whose recorded deployment id the event names is touched.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams.bootstrap import services, settings
from imagestreams.errors import Invalid
from imagestreams.events import ForeignEvent, parse_ecs_deployment_event

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    stack = settings()
    try:
        change = parse_ecs_deployment_event(event, account=stack.account_id, region=stack.region,
                                            target_accounts=tuple(a.strip() for a in
                                                                  stack.allowed_target_accounts.split(",")
                                                                  if a.strip()))
    except Invalid as exc:
        kind = "RolloutForeign" if isinstance(exc, ForeignEvent) else "RolloutIgnored"
        metrics.add_metric(name=kind, unit=MetricUnit.Count, value=1)
        logger.warning("rollout event ignored", reason=exc.message)
        return {"ignored": exc.message}
    if not change.cluster_known:  # an old-format service ARN: found by its deployment id alone
        metrics.add_metric(name="RolloutOldFormatArn", unit=MetricUnit.Count, value=1)
        logger.info("old-format service ARN (no cluster): matching the deployment id", service=change.target_key)
    updated = services().rollout_event(change.target_key, change.deployment, change.state, change.reason)
    metrics.add_metric(name="Rollout" + change.state.title().replace("_", ""), unit=MetricUnit.Count,
                       value=len(updated))
    logger.info("rollout", service=change.target_key, deployment=change.deployment, state=change.state,
                triggers=[t.id for t in updated])
    return {"state": change.state, "triggers": [t.id for t in updated]}
