"""What every part of ``check`` shares: the statuses, a finding, and the error a read raises when it cannot read."""

from __future__ import annotations

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
