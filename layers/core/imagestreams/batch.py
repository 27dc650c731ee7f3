"""Partial batch responses for the DynamoDB-stream and SQS event sources (``ReportBatchItemFailures``).

Why not Powertools' batch utility: it imports ``asyncio`` and every event data class, measured at 48 ms on top of
boto3's ~210 ms import (bench/run.py), which alone breaks the cold-start budget of the two batch handlers; the
protocol itself is the few lines below. Semantics follow Powertools' processors:

* DynamoDB streams: every failing record is reported by its sequence number; Lambda retries from the lowest one.
* SQS FIFO: after a record fails, the rest of *its message group* in the batch is reported failed without being
  processed (Powertools' ``skip_group_on_error=True``), so per-target ordering holds and other targets go on.
* If every record failed, the invocation raises, like Powertools' ``BatchProcessingError``.
* ``out_of_time``: asked before every record after the first; once it says yes, the rest of the batch is reported
  failed without being processed (retried by the event source) instead of running into the function's timeout,
  which would return the whole batch, records already done included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class BatchFailed(Exception):
    """All records of a batch failed: the whole invocation fails so the event source retries it."""


def process(event: dict[str, Any], handle: Callable[[dict[str, Any]], None], *,
            identifier: Callable[[dict[str, Any]], str], group: Callable[[dict[str, Any]], str | None] | None = None,
            out_of_time: Callable[[], bool] | None = None) -> dict[str, list[dict[str, str]]]:
    records = event.get("Records") or []
    failures: list[str] = []
    failed_groups: set[str] = set()
    errors: list[BaseException] = []
    for index, record in enumerate(records):
        if index and out_of_time is not None and out_of_time():
            rest = [identifier(r) for r in records[index:]]
            log.warning("out of time: %d record(s) left for the event source to deliver again", len(rest))
            failures += rest
            break
        key = group(record) if group else None
        if key is not None and key in failed_groups:
            failures.append(identifier(record))
            continue
        try:
            handle(record)
        except Exception as exc:  # noqa: BLE001 - reported per record; the event source retries it
            log.exception("record %s failed", identifier(record))
            failures.append(identifier(record))
            errors.append(exc)
            if key is not None:
                failed_groups.add(key)
    if records and len(failures) == len(records) and errors:
        raise BatchFailed(f"all {len(records)} records failed; first error: {errors[0]!r}") from errors[0]
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failures]}


def dynamodb_sequence(record: dict[str, Any]) -> str:
    return record["dynamodb"]["SequenceNumber"]


def sqs_message_id(record: dict[str, Any]) -> str:
    return record["messageId"]


def sqs_group(record: dict[str, Any]) -> str | None:
    return (record.get("attributes") or {}).get("MessageGroupId")
