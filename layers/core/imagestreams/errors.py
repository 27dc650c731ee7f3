"""Caller errors (answered as ``{"ok": false, "error": {...}}``) and internal signals.

Anything that is not an :class:`ImageStreamsError` is an unexpected fault and propagates, so Lambda reports
``FunctionError`` and the event source's retry policy and DLQ apply.
"""

from __future__ import annotations


class ImageStreamsError(Exception):
    """A caller error with one of the public error types (NotFound, Invalid, Conflict, Forbidden)."""

    type = "Invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


class Invalid(ImageStreamsError):
    type = "Invalid"


class NotFound(ImageStreamsError):
    type = "NotFound"


class Conflict(ImageStreamsError):
    type = "Conflict"


class Forbidden(ImageStreamsError):
    type = "Forbidden"


class NotOurs(Exception):
    """A repository we may not read: outside the configured ``RepositoryPattern``, or IAM denies it.

    Not a fault: ingest ignores events for such repositories (a log line and a metric, never a failed invocation),
    and admin commands answer ``Forbidden``.
    """

    def __init__(self, stream: str, detail: str = "") -> None:
        self.stream = stream
        detail = detail if len(detail) <= 200 else detail[:197] + "..."
        self.message = (f"repository {stream} is not managed by this stack (outside its RepositoryPattern, or IAM "
                        f"does not let the stack read it){': ' + detail if detail else ''}")
        super().__init__(self.message)


class ConcurrentUpdate(Exception):
    """The head changed between our read and our conditional write: start over."""


class TargetError(Exception):
    """A target cannot be updated for a reason retrying will not fix (missing service, unsupported controller).

    The trigger goes ``Failed`` with this message; the fire is not retried.
    """


class PinsChanged(TargetError):
    """An ECS service now runs a revision of another family or with other roles than recorded: a fire would pass
    roles nobody allowed, so nothing is registered until a person runs ``deploy``."""

    def __init__(self, message: str, seen: object = None) -> None:
        super().__init__(message)
        self.seen = seen


class TransientTargetError(Exception):
    """The target's API failed in a way worth retrying (throttling, 5xx). The fire is retried, then parked."""


class TargetChanged(TransientTargetError):
    """Someone else wrote the target between our read and our write (e.g. a Kubernetes 409). Nothing was written:
    the whole fire starts over (re-reading the trigger, so a pause or target rollback meanwhile wins)."""
