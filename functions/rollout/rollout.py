"""Rollout tracking: EventBridge ``ECS Deployment State Change`` → the trigger whose fire started that deployment
gets ``rolloutState`` IN_PROGRESS / COMPLETED / FAILED (a FAILED digest is then not re-fired automatically, §3.8)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams.bootstrap import services
from imagestreams.events import parse_ecs_deployment_event

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    change = parse_ecs_deployment_event(event)
    updated = services().rollout_event(change.target_key, change.deployment, change.state, change.reason)
    metrics.add_metric(name="Rollout" + change.state.title().replace("_", ""), unit=MetricUnit.Count,
                       value=len(updated))
    logger.info("rollout", service=change.target_key, deployment=change.deployment, state=change.state,
                triggers=[t.id for t in updated])
    return {"state": change.state, "triggers": [t.id for t in updated]}
