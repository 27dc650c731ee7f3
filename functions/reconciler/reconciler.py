"""Reconciler: scheduled (EventBridge Scheduler), re-resolves every stream tag from ECR and re-checks every trigger's
target, then one bounded pass over the lifecycle policy previews (expiry risk: RISK items
and the ExpiryRisk metric). Stops ~20 s before its timeout and resumes from a saved cursor on the next run.

One run at a time without reserved concurrency: a run holds the lease ``reconciler`` (a conditional write with an
expiry a little beyond the function's timeout, so a crashed run never blocks the next for longer); a run that finds
it held skips cleanly.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams.bootstrap import reconciler, services

logger = Logger()
metrics = Metrics()
SAFETY_MS = 20_000
LEASE = "reconciler"
LEASE_MARGIN_S = 30  # beyond the run's remaining time: a run killed at its timeout frees the lease soon after


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    store = services().store
    owner = context.aws_request_id
    if not store.acquire_lease(LEASE, owner, context.get_remaining_time_in_millis() // 1000 + LEASE_MARGIN_S):
        logger.info("another reconciler run holds the lease; skipping this one")
        metrics.add_metric(name="ReconcileSkipped", unit=MetricUnit.Count, value=1)
        return {"skipped": "another reconciler run is in progress"}
    try:
        run = reconciler()
        report = run.run(lambda: context.get_remaining_time_in_millis() < SAFETY_MS)
        expiry_risk = getattr(run, "expiry_risk", None)  # (a stand-in run in tests may have none)
        expiry = expiry_risk(lambda: context.get_remaining_time_in_millis() < SAFETY_MS // 2) if expiry_risk else None
    finally:
        store.release_lease(LEASE, owner)
    if expiry is not None:
        report["expiry"] = expiry
        if expiry.get("atRisk") is not None:  # running or kept digests a lifecycle rule would expire
            metrics.add_metric(name="ExpiryRisk", unit=MetricUnit.Count, value=expiry["atRisk"])
        metrics.add_metric(name="ExpiryRiskErrors", unit=MetricUnit.Count, value=len(expiry.get("errors") or []))
    for name, key in (("ReconcileMoves", "moves"), ("ReconcileFires", "fired"), ("TargetsDrifted", "drift"),
                      ("FiresRetried", "retried"), ("ReconcileErrors", "errors")):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=len(report[key]))
    logger.info("reconciled", **{k: v for k, v in report.items() if k != "moves"}, moves=len(report["moves"]))
    return {k: (len(v) if isinstance(v, list) else v) for k, v in report.items() if k != "expiry"} | (
        {"expiry": {k: (len(v) if isinstance(v, list) else v) for k, v in expiry.items()}} if expiry else {})
