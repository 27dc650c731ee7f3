"""Reconciler: scheduled (EventBridge Scheduler), re-resolves every stream tag from ECR and re-checks every trigger's
target (DESIGN §3.11). Stops ~20 s before its timeout and resumes from a saved cursor on the next run."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams.bootstrap import reconciler

logger = Logger()
metrics = Metrics()
SAFETY_MS = 20_000


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = reconciler().run(lambda: context.get_remaining_time_in_millis() < SAFETY_MS)
    for name, key in (("ReconcileMoves", "moves"), ("ReconcileFires", "fired"), ("TargetsDrifted", "drift"),
                      ("FiresRetried", "retried"), ("ReconcileErrors", "errors")):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=len(report[key]))
    logger.info("reconciled", **{k: v for k, v in report.items() if k != "moves"}, moves=len(report["moves"]))
    return {k: (len(v) if isinstance(v, list) else v) for k, v in report.items()}
