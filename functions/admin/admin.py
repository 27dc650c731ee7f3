"""Admin: the manual-invoke JSON contract (docs/concepts.md) (``aws lambda invoke``, ``sam remote invoke``, CLI).

Not reachable without IAM: no function URL, no API. ``actor`` is self-asserted by the caller; CloudTrail's record
of the Invoke is the verified attribution.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from imagestreams.admin import dispatch
from imagestreams.bootstrap import services

logger = Logger()


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    answer = dispatch(services, event)
    action = event.get("action") if isinstance(event, dict) else None
    if answer["ok"]:
        logger.info("admin command done", action=action)
    else:
        logger.warning("admin command refused", action=action, error=answer["error"])
    return answer
