"""Use cases: observe a tag (ingest), fan a head move out to triggers, fire a trigger, read streams.

Orchestrates ports only; no boto3, no Lambda event shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from .errors import ConcurrentUpdate, Invalid, NotFound, TargetError, TransientTargetError
from .model import (
    EcsTarget,
    Head,
    HistoryEntry,
    Move,
    StreamTag,
    Trigger,
    rfc3339,
    trigger_id,
    utcnow,
)
from .ports import FireQueue, Registry, StreamStore, TargetDriver

log = logging.getLogger(__name__)

DEFAULT_HISTORY_LIMIT = 50


class ImageStreams:
    """The use cases, over the ports they are given (see :mod:`imagestreams.bootstrap`)."""

    def __init__(self, store: StreamStore, registry: Registry, drivers: Mapping[str, TargetDriver],
                 fire_queue: FireQueue | None = None, *, history_limit: int = DEFAULT_HISTORY_LIMIT,
                 clock: Callable[[], datetime] = utcnow, max_attempts: int = 8) -> None:
        self.store = store
        self.registry = registry
        self.drivers = drivers
        self.fire_queue = fire_queue
        self.history_limit = history_limit
        self.clock = clock
        self.max_attempts = max_attempts

    # ------------------------------------------------------------------------------------ ingest (§3.1)

    def observe(self, stream_tag: StreamTag, *, cause: str = "push", actor: str = "ecr") -> Move | None:
        """Bring a stream tag in line with ECR. Returns the move made, or None when the head was already right.

        Order matters: the head is read *before* ECR is asked, and the write is conditional on that read, so a
        slow resolve can never move a tag backwards; on a conflict we start over with fresh reads.
        """
        for _ in range(self.max_attempts):
            head = self.store.get_head(stream_tag)
            seen = self.registry.resolve(stream_tag.stream, stream_tag.tag)
            if seen is None:
                if head is None or head.deleted:
                    return None
                new = Head(
                    stream_tag, head.digest, head.generation + 1, self.clock(), "delete", actor, head.registry,
                    head.media_type, head.alias_of, deleted=True,
                )
            elif head is not None and not head.deleted and head.digest == seen.digest:
                return None
            else:
                new = Head(
                    stream_tag, seen.digest, (head.generation if head else 0) + 1, self.clock(), cause, actor,
                    seen.registry, seen.media_type, head.alias_of if head else None,
                )
            try:
                self._commit(head, new)
            except ConcurrentUpdate:
                log.info("head of %s changed under us; starting over", stream_tag)
                continue
            return Move(stream_tag, head.digest if head and not head.deleted else None,
                        None if new.deleted else new.digest, new.generation, new.cause)
        raise ConcurrentUpdate(f"{stream_tag}: head kept changing, gave up after {self.max_attempts} attempts")

    def observe_deleted_digest(self, stream: str, digest: str, *, actor: str = "ecr") -> list[Move]:
        """A DELETE without tag (delete by digest, lifecycle expiry): re-resolve every tag whose head is it."""
        moves = []
        for head in self.store.heads(stream):
            if not head.deleted and head.digest == digest:
                move = self.observe(head.stream_tag, cause="import", actor=actor)
                if move:
                    moves.append(move)
        return moves

    def _commit(self, expected: Head | None, new: Head) -> None:
        drop = new.generation - self.history_limit
        self.store.commit(expected, new, drop if drop >= 1 else None)

    # -------------------------------------------------------------------------------------- fan-out

    def head_moved(self, head: Head) -> list[Trigger]:
        """A head changed (from the table's change stream): queue a fire for every unpaused trigger on it.

        A tombstone fires nothing: its triggers keep their digest and report ``WaitingForImage`` (§3.4).
        """
        _, triggers = self.store.head_and_triggers(head.stream_tag)
        if head.deleted:
            for trigger in triggers:
                if trigger.status != "WaitingForImage":
                    self.store.save_trigger(trigger.with_outcome(
                        status="WaitingForImage", last_error=f"{head.stream_tag} was deleted; keeping the current image"))
            return []
        due = [t for t in triggers if not t.paused]
        if due and self.fire_queue is not None:
            self.fire_queue.enqueue(due, head)
        return due

    # ----------------------------------------------------------------------------------------- firing

    def fire_by_id(self, stream_tag: StreamTag, trigger_id_: str, *, force: bool = False) -> Trigger | None:
        """Deployer entry point: fire the trigger against the head as it is *now* (not as queued)."""
        head, triggers = self.store.head_and_triggers(stream_tag)
        trigger = next((t for t in triggers if t.id == trigger_id_), None)
        if trigger is None:
            log.info("trigger %s on %s no longer exists; nothing to do", trigger_id_, stream_tag)
            return None
        return self.fire(trigger, head, force=force)

    def fire(self, trigger: Trigger, head: Head | None, *, force: bool = False) -> Trigger:
        """Put the head's pinned ref into the trigger's target if it runs anything else (§3.5, §3.6).

        Raises :class:`TransientTargetError` after recording it, so the queue retries; a permanent
        :class:`TargetError` is recorded as ``Failed`` and not retried.
        """
        if trigger.paused and not force:
            return trigger
        if head is None or head.deleted:
            return self._save(trigger, trigger.with_outcome(status="WaitingForImage"))
        driver = self.drivers.get(trigger.target.type)
        if driver is None:
            return self._save(trigger, trigger.with_outcome(
                status="Failed", last_error=f"no driver for target type {trigger.target.type}"))
        image = head.pinned
        try:
            result = driver.apply(trigger.target, image)
        except TargetError as exc:
            return self._save(trigger, trigger.with_outcome(status="Failed", last_error=str(exc)))
        except TransientTargetError as exc:
            self._save(trigger, trigger.with_outcome(status="Failed", last_error=f"will retry: {exc}"))
            raise
        if result.changed:
            status = "Deployed" if result.rollout_state == "COMPLETED" else "Deploying"
            updated = trigger.with_outcome(
                status=status, last_triggered_digest=head.digest, last_triggered_at=self.clock(),
                last_error=None, rollout_state=result.rollout_state, drift=None, deployed_image=image)
        else:
            updated = trigger.with_outcome(
                status="Deployed" if trigger.status != "Deploying" else trigger.status,
                last_triggered_digest=head.digest,
                last_triggered_at=trigger.last_triggered_at or self.clock(),
                last_error=None, drift=None, deployed_image=image)
        return self._save(trigger, updated)

    def _save(self, before: Trigger, after: Trigger) -> Trigger:
        if after != before and not self.store.save_trigger(after):
            log.info("trigger %s was removed while firing", before.id)
        return after

    # --------------------------------------------------------------------------------------- triggers

    def add_trigger(self, stream_tag: StreamTag, target: EcsTarget, *, paused: bool = False) -> Trigger:
        """Register; fire at once when the tag already has a head (like OpenShift). Idempotent per target."""
        trigger = Trigger(trigger_id(stream_tag, target), stream_tag, target, paused=paused)
        if not self.store.add_trigger(trigger):
            existing = self.store.get_trigger(trigger.id)
            if existing is not None:
                return existing
        head = self.store.get_head(stream_tag)
        if paused:
            return trigger
        return self.fire(trigger, head)

    def list_triggers(self, stream_tag: StreamTag | None = None) -> list[Trigger]:
        if stream_tag is None:
            triggers = self.store.all_triggers()
        else:
            _, triggers = self.store.head_and_triggers(stream_tag)
        return sorted(triggers, key=lambda t: (str(t.stream_tag), t.id))

    def get_trigger(self, trigger_id_: str) -> Trigger:
        trigger = self.store.get_trigger(trigger_id_)
        if trigger is None:
            raise NotFound(f"no trigger with id {trigger_id_}")
        return trigger

    # ----------------------------------------------------------------------------------------- reads

    def describe(self, stream: str) -> dict:
        heads = [h for h in self.store.heads(stream) if not h.deleted]
        triggers = self.store.stream_triggers(stream)
        if not heads and not triggers:
            raise NotFound(f"stream {stream} has no tags and no triggers")
        by_tag: dict[str, list[str]] = {}
        for trigger in triggers:
            by_tag.setdefault(trigger.stream_tag.tag, []).append(trigger.id)
        tags = []
        for head in sorted(heads, key=lambda h: h.stream_tag.tag):
            tags.append({
                "tag": head.stream_tag.tag,
                "digest": head.digest,
                "generation": head.generation,
                "at": rfc3339(head.at),
                "cause": head.cause,
                "alias_of": head.alias_of,
                "pinned": head.pinned,
                "triggers": sorted(by_tag.pop(head.stream_tag.tag, [])),
            })
        for tag, ids in sorted(by_tag.items()):  # triggers waiting for a tag that has no head yet
            tags.append({"tag": tag, "digest": None, "generation": 0, "at": None, "cause": None,
                         "alias_of": None, "pinned": None, "triggers": sorted(ids)})
        return {"stream": stream, "tags": tags}

    def history(self, stream_tag: StreamTag, limit: int | None = None) -> list[HistoryEntry]:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise Invalid("limit must be a positive integer")
        entries = self.store.history(stream_tag, limit or self.history_limit)
        if not entries:
            raise NotFound(f"{stream_tag} has no history")
        return entries
