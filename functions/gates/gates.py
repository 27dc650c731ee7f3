"""Gates: new evidence about an image wakes the gates waiting on it.

EventBridge ``ECR Image Scan`` / ``Inspector2 Scan`` (a scan finished), ``Signer Job Status Change`` (managed
signing; best effort, so the gates also poll ``DescribeImageSigningStatus``) and the gate clock's SQS messages (a
soak or a timeout is due) → the triggers held on that digest are fired again through the FIFO queue (the fire judges
the gates under the target's lease) and held policy tags of the stream are evaluated again. A digest nobody waits on
costs one table query and no write.

Events are hints: one about another account or region, of another shape, or for a repository that is not ours is
ignored with a log line and a metric, never a failed invocation. A clock message not due yet (SQS delays at most
15 minutes) is sent again for the rest of the wait.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from imagestreams import batch
from imagestreams.bootstrap import services, settings
from imagestreams.errors import Invalid, NotOurs
from imagestreams.events import ForeignEvent
from imagestreams.gate_events import parse_clock_message, parse_gate_event

logger = Logger()
metrics = Metrics()


def clock_record(record: dict[str, Any]) -> None:
    try:
        body = json.loads(record["body"])
        message = parse_clock_message(body)
    except (ValueError, Invalid) as exc:  # not ours to retry: it will never parse
        metrics.add_metric(name="GateClockIgnored", unit=MetricUnit.Count, value=1)
        logger.warning("gate clock message ignored", reason=getattr(exc, "message", str(exc)))
        return
    streams = services()
    if message.due > streams.clock() and streams.gate_clock is not None:
        streams.gate_clock.schedule(body, message.due)  # SQS delays at most 15 minutes: wait again
        metrics.add_metric(name="GateClockRequeued", unit=MetricUnit.Count, value=1)
        return
    try:
        outcome = streams.gate_wake(message.kind, message.key, message.digest)
    except NotOurs as exc:
        metrics.add_metric(name="GateEventsNotOurs", unit=MetricUnit.Count, value=1)
        logger.info("gate wake-up for a repository that is not ours ignored", reason=str(exc))
        return
    metrics.add_metric(name="GateWakeups", unit=MetricUnit.Count, value=1)
    logger.info("gate clock", kind=message.kind, key=message.key, **outcome)


def evidence(event: dict[str, Any]) -> dict[str, Any]:
    stack = settings()
    try:
        change = parse_gate_event(event, account=stack.account_id, region=stack.region)
    except Invalid as exc:
        kind = "GateEventsForeign" if isinstance(exc, ForeignEvent) else "GateEventsIgnored"
        metrics.add_metric(name=kind, unit=MetricUnit.Count, value=1)
        logger.warning("gate event ignored", reason=exc.message)
        return {"ignored": exc.message}
    streams = services()
    try:
        if change.stream is None:  # a signing event that names no image: every waiting signature gate
            outcomes = streams.recheck_signatures()
            metrics.add_metric(name="GateSignatureRechecks", unit=MetricUnit.Count, value=len(outcomes))
            return {"kind": change.kind, "rechecked": outcomes}
        owns = getattr(streams.registry, "owns", None)
        if owns is not None and not owns(change.stream):
            raise NotOurs(change.stream)
        outcome = streams.gate_evidence(change.stream, change.digest)  # type: ignore[arg-type]
    except NotOurs as exc:
        metrics.add_metric(name="GateEventsNotOurs", unit=MetricUnit.Count, value=1)
        logger.info("gate event for a repository that is not ours ignored", stream=change.stream, reason=str(exc))
        return {"ignored": f"{change.stream} is not ours"}
    metrics.add_metric(name="GateEvidence", unit=MetricUnit.Count, value=1)
    logger.info("gate evidence", kind=change.kind, status=change.status, **outcome)
    return {"kind": change.kind, **outcome}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if isinstance(event, dict) and "Records" in event:  # the gate clock (SQS)
        return batch.process(event, clock_record, identifier=batch.sqs_message_id)
    return evidence(event)
