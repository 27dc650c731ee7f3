"""What an ECR event means for the streams."""

from __future__ import annotations

from typing import NamedTuple

from .errors import NotOurs
from .events import EcrEvent
from .model import Move, StreamTag
from .services import ImageStreams

NOT_OURS = "not ours: "


class IngestOutcome(NamedTuple):
    status: str  # moved | unchanged | ignored
    moves: tuple[Move, ...] = ()
    reason: str = ""

    @property
    def not_ours(self) -> bool:
        """Ignored because the repository is outside RepositoryPattern or IAM does not let us read it."""
        return self.status == "ignored" and self.reason.startswith(NOT_OURS)

    def as_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "moves": [m.as_dict() for m in self.moves]}


def handle_ecr_event(streams: ImageStreams, event: EcrEvent) -> IngestOutcome:
    """What one ECR event changes. A repository we may not read is not ours: the event is ignored (never a
    failure, so it never reaches the DLQ)."""
    try:
        return _handle(streams, event)
    except NotOurs as exc:
        return IngestOutcome("ignored", reason=NOT_OURS + exc.message)


def _handle(streams: ImageStreams, event: EcrEvent) -> IngestOutcome:
    owns = getattr(streams.registry, "owns", None)  # RepositoryPattern, known without asking ECR
    if owns is not None and not owns(event.stream):
        raise NotOurs(event.stream)
    if event.result != "SUCCESS":
        return IngestOutcome("ignored", reason=f"result {event.result}")
    if event.tag is None:
        if event.action == "DELETE" and event.digest:
            moves = streams.observe_deleted_digest(event.stream, event.digest)
            return IngestOutcome("moved" if moves else "unchanged", tuple(moves), "delete by digest re-resolved")
        return IngestOutcome("ignored", reason="push without a tag moves no tag")
    stream_tag = StreamTag(event.stream, event.tag)
    # A PUSH/REPLICATE that finds the tag moved is a push; anything else that finds it moved is an import.
    cause = "push" if event.action in ("PUSH", "REPLICATE") else "import"
    moves = streams.sync(stream_tag, cause=cause)
    if not moves:
        return IngestOutcome("unchanged", reason="head already matches ECR")
    return IngestOutcome("moved", tuple(moves))
