"""The small interfaces the domain needs from the outside world. Adapters implement them; fakes too."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, Protocol

from .model import Head, HistoryEntry, Observation, StreamTag, Target, TaskPins, Trigger
from .policytags import Policy


class StreamStore(Protocol):
    """Heads, history and triggers (DynamoDB in production)."""

    def get_head(self, stream_tag: StreamTag) -> Head | None:
        """Strongly consistent read of the head (or tombstone) of a stream tag."""

    def commit(self, expected: Head | None, new: Head, drop_generation: int | None) -> None:
        """Write ``new`` as head plus its history entry atomically, on condition that the stored head is still
        ``expected`` (same ``rev``; None: no head item at all). Drops the history entry ``drop_generation`` (the
        cap) in the same transaction. Raises :class:`~imagestreams.errors.ConcurrentUpdate` when the condition
        fails."""

    def relink(self, expected: Head, new: Head) -> None:
        """Write only the alias links of ``new`` (``alias_of``, ``aliases``) and its ``rev``, on condition that the
        stored head is still ``expected``. Raises ``ConcurrentUpdate`` otherwise."""

    def heads(self, stream: str) -> list[Head]:
        """Every head and tombstone of a stream."""

    def purge_history(self, stream_tag: StreamTag, up_to_generation: int, written_by: datetime) -> int:
        """Delete a tag's history entries up to ``up_to_generation`` written no later than ``written_by``."""

    def history(self, stream_tag: StreamTag, limit: int) -> list[HistoryEntry]:
        """History newest first, at most ``limit`` entries."""

    def head_and_triggers(self, stream_tag: StreamTag) -> tuple[Head | None, list[Trigger]]:
        """One consistent read of a tag's head and all triggers on it."""

    def stream_state(self, stream: str) -> tuple[list[Head], list[Trigger]]:
        """Every head (tombstones included) and every trigger of a stream, in one read."""

    def stream_view(self, stream: str) -> tuple[list[Head], list[Trigger], list[Policy]]:
        """Every head (tombstones included), trigger and policy tag of a stream, in one consistent read."""

    def policy_view(self, stream: str, moved: Head | None = None) -> tuple[list[Head], list[Policy]]:
        """The heads (tombstones included) and policy tags of a stream that has a policy tag, ``([], [])`` for any
        other, without reading its history or its triggers. May lag behind the last writes: a caller re-reads what
        it acts on. ``moved``, a head of the stream read consistently by the caller, is always part of what later
        views list."""

    def gate_view(self, stream: str) -> tuple[list[Head], list[Trigger], list[Policy]]:
        """What can wait on a gate in a stream: the triggers its gates hold and its policy tags (heads may be left
        out: ``[]``). May lag like :meth:`policy_view`."""

    def get_policy(self, stream_tag: StreamTag) -> Policy | None:
        """Consistent read of a tag's policy."""

    def put_policy(self, policy: Policy, expect: Policy | None) -> Policy:
        """Write ``policy`` on condition that the stored one is still ``expect`` (same ``rev``; None: none stored),
        raising ``ConcurrentUpdate`` otherwise; returns what was written (``rev`` one above ``expect``'s)."""

    def delete_policy(self, stream_tag: StreamTag) -> None: ...

    def policies(self, stream: str) -> list[Policy]: ...

    def all_policies(self) -> list[Policy]: ...

    def all_triggers(self) -> list[Trigger]: ...

    def get_trigger(self, trigger_id: str) -> Trigger | None: ...

    def add_trigger(self, trigger: Trigger) -> bool:
        """Insert if absent; False when a trigger with this id already exists."""

    def save_trigger(self, trigger: Trigger, *, expect: Trigger | None = None) -> bool:
        """Persist a trigger's state if it still exists; False when it was removed meanwhile. With ``expect``, only
        if the stored record of the last fire (deployment, lastTriggeredAt) is still ``expect``'s: a fire made since
        that read wins over what was learnt from it (False)."""

    def refresh_trigger(self, trigger: Trigger) -> Trigger | None:
        """A consistent read of this trigger's own record (indexes lag); None when it was removed."""

    def set_paused(self, trigger: Trigger, paused: bool) -> bool:
        """Set only ``paused``; False when the trigger no longer exists."""

    def remove_trigger(self, trigger: Trigger) -> None: ...

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        """Take the named lease for ``seconds`` if nobody holds it or the holder's time ran out (a crashed holder
        never blocks for longer). False when someone else holds it. Re-acquiring one's own lease extends it."""

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease back, only if ``owner`` still holds it (an expired lease taken over stays the taker's)."""


class Registry(Protocol):
    """ECR, the truth about where tags point."""

    def resolve(self, stream: str, tag: str) -> Observation | None:
        """Current digest of ``stream:tag``, or None when ECR has no such tag (or no such repository)."""

    def check_can_tag(self, stream: str, digest: str, tags: list[str]) -> None:
        """Raise ``NotFound`` (no such image) or ``Conflict`` (an immutable tag elsewhere) before any write."""

    def retag(self, stream: str, digest: str, tag: str) -> None:
        """Point ``tag`` at ``digest`` byte-exact (same manifest, same media type). ``Conflict`` when the tag is
        immutable and elsewhere; ``NotFound`` when the image is gone."""

    def untag(self, stream: str, tag: str) -> None:
        """Remove ``tag`` from ECR (the image stays if other tags or references hold it)."""

    def platform_digest(self, stream: str, digest: str, architecture: str) -> str:
        """The ``linux/<architecture>`` child of an index (``digest`` itself for a single-platform image);
        ``NotFound`` when the index has no such child."""


class ScanResult(NamedTuple):
    """An image's scan (basic or enhanced): its status and its finding counts per severity."""

    status: str  # COMPLETE | ACTIVE (enhanced, done) | IN_PROGRESS | PENDING | FAILED | … as ECR says
    counts: dict[str, int]


class SigningStatus(NamedTuple):
    """ECR managed signing of one image, summed over its signing profiles (COMPLETE only when every one did)."""

    status: str  # IN_PROGRESS | COMPLETE | FAILED
    reason: str | None = None


class GateEvidence(Protocol):
    """The registry reads gates need (ECR in production)."""

    def scan_result(self, stream: str, digest: str) -> ScanResult | None:
        """The image's scan status and severity counts; None when it has no scan (ECR: ScanNotFoundException)."""

    def signing_status(self, stream: str, digest: str) -> SigningStatus | None:
        """Managed signing's status for the image; None when no signing is configured or known for it."""

    def signature_referrers(self, stream: str, digest: str) -> list[str]:
        """The artifact types of the image's OCI referrers (signatures, SBOMs …)."""


class GateClock(Protocol):
    """Wakes waiting gates on time (SQS with per-message delay in production)."""

    def schedule(self, message: dict, due: datetime) -> None:
        """Deliver ``message`` to the gates function at ``due`` (or soon after)."""


class DriverResult(NamedTuple):
    changed: bool
    previous_image: str | None = None
    rollout_state: str | None = None
    detail: str | None = None
    deployment: str | None = None  # e.g. the ECS deployment id UpdateService started (or that runs the image)
    pins: TaskPins | None = None  # ECS: the family and roles of the revision the target runs (or was cloned)
    reason: str | None = None  # why the rollout of ``deployment`` is in its state, when the target says


class TargetState(NamedTuple):
    """What a target runs now, and how the rollout of ``deployment`` (ours) is going, if the driver can tell."""

    image: str
    rollout_state: str | None = None
    reason: str | None = None  # why the rollout is in that state (e.g. the circuit breaker's message)


class TargetDriver(Protocol):
    """Puts one image (a pinned ref) into one target container, changing nothing else."""

    def apply(self, target: Target, image: str) -> DriverResult:
        """Drivers that report ``pins`` in their result also take ``apply(target, image, pins=...)``: then they
        refuse (:class:`~imagestreams.errors.PinsChanged`, nothing written) a target whose pins differ."""

    def platform(self, target: Target) -> str | None:
        """The one architecture the target runs, when it cannot take an image index (Lambda); else None."""

    def inspect(self, target: Target, deployment: str | None) -> TargetState:
        """The image the target's container is configured with now, and the rollout state of ``deployment``."""


class FireQueue(Protocol):
    """Hands one fire per trigger to the deployer (SQS FIFO in production, grouped by target resource, so fires
    that write one resource run one after the other and distinct resources run in parallel)."""

    def enqueue(self, triggers: list[Trigger], head: Head, *, reason: str | None = None, force: bool = False,
                at: datetime | None = None) -> None:
        """One fire per trigger. Fires for the same trigger and head generation are de-duplicated unless a
        ``reason`` (e.g. a reconciler run) makes them distinct. ``force`` (an explicit ``deploy`` queued at
        ``at``) applies even to a paused trigger, unless it was paused or rolled back after ``at``."""
