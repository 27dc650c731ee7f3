"""What every part of ``check`` shares: the statuses, a finding, the error a read raises when it cannot read, and
the reading of a resource policy's statements."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .model import cap_text

OK, WARN, ERROR = "ok", "warn", "error"


class Unreadable(Exception):
    """The diagnosis could not read something (no permission, a preview still running, a throttle): a warning,
    with the reason. ``denied`` names the IAM action the admin function's role lacks."""

    def __init__(self, message: str, denied: str | None = None) -> None:
        super().__init__(message)
        self.denied = denied


def finding(check: str, subject: str, status: str, message: str, fix: str = "") -> dict[str, str]:
    """One finding; the message may carry outside text (API errors, image strings), held to 1 KB."""
    return {"check": check, "subject": subject, "status": status, "message": cap_text(message) or "", "fix": fix}


def as_list(value: Any) -> list[Any]:
    """An IAM policy field that may be one value or a list of them, as a list."""
    return value if isinstance(value, list) else [value]


def service_allows(policy_text: str | None, service: str) -> Iterator[tuple[dict[str, Any], set[str]]]:
    """The ``Allow`` statements of a resource policy (JSON text; none when absent or not a JSON object) whose
    principal is ``"*"`` or names ``service`` (e.g. ``lambda.amazonaws.com``), each with its actions lowercased."""
    if not policy_text:
        return
    try:
        policy = json.loads(policy_text)
    except ValueError:
        return
    for statement in as_list(policy.get("Statement", []) if isinstance(policy, dict) else []):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")  # {"AWS": "*"} (a topic's default policy) admits no service
        services = as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
        if principal != "*" and service not in services:
            continue
        yield statement, {str(a).lower() for a in as_list(statement.get("Action", []))}
