"""Use cases: observe a tag (ingest), fan a head move out to triggers, fire a trigger, read streams.

Orchestrates ports only; no boto3, no Lambda event shapes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from .errors import (
    ConcurrentUpdate,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PinsChanged,
    TargetChanged,
    TargetError,
    TransientTargetError,
)
from .model import (
    EcsTarget,
    Head,
    HistoryEntry,
    ImageRef,
    Move,
    StreamTag,
    Target,
    Trigger,
    pinned_ref,
    rfc3339,
    runs_digest,
    same_slot,
    short_name,
    target_identity,
    target_key,
    trigger_id,
    utcnow,
)
from .policy import TargetPolicy
from .ports import DriverResult, FireQueue, Registry, StreamStore, TargetDriver
from .prune import check_restorable

log = logging.getLogger(__name__)

DEFAULT_HISTORY_LIMIT = 50
MAX_ALIAS_DEPTH = 10  # alias links from a tag that tracks nothing to its deepest alias
MAX_ALIASES = 100  # tags tracking one tag (each is listed on the source's head item)
MAX_RETRY_DELAY = timedelta(hours=6)
FIRE_LEASE_SECONDS = 90  # longer than any function that fires may run (60 s): a live fire never outlasts its lease
MAX_TARGET_CHANGES = 3  # a target written by someone else between our read and write: fresh attempts per fire


ROLLOUT_DONE = ("COMPLETED", "FAILED")


def advance_rollout(trigger: Trigger, state: str | None, reason: str | None = None) -> Trigger:
    """The trigger after learning that its deployment is in ``state``. A deployment only moves forward
    (IN_PROGRESS → COMPLETED or FAILED): a late, duplicated or reordered report never moves it back, never clears
    ``Failed`` and never re-opens a digest whose rollout failed."""
    current = trigger.rollout_state
    if state not in ("IN_PROGRESS", *ROLLOUT_DONE) or state == current or current in ROLLOUT_DONE:
        return trigger
    if state == "IN_PROGRESS":
        return trigger.with_outcome(rollout_state="IN_PROGRESS")
    if state == "COMPLETED":  # a Failed of a later fire (API error) or a deleted tag keeps its status
        done = {"status": "Deployed", "last_error": None} if trigger.status == "Deploying" else {}
        return trigger.with_outcome(rollout_state="COMPLETED", **done)
    return trigger.with_outcome(status="Failed", rollout_state="FAILED",
                                last_error=f"rollout of {trigger.last_triggered_digest} failed: "
                                           f"{reason or 'no reason given'}")


def _move(old: Head | None, new: Head) -> Move:
    return Move(new.stream_tag, old.digest if old and not old.deleted else None,
                None if new.deleted else new.digest, new.generation, new.cause)


class ImageStreams:
    """The use cases, over the ports they are given (see :mod:`imagestreams.bootstrap`)."""

    def __init__(self, store: StreamStore, registry: Registry, drivers: Mapping[str, TargetDriver],
                 fire_queue: FireQueue | None = None, *, history_limit: int = DEFAULT_HISTORY_LIMIT,
                 clock: Callable[[], datetime] = utcnow, max_attempts: int = 8,
                 policy: TargetPolicy | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.registry = registry
        self.drivers = drivers
        self.fire_queue = fire_queue
        self.history_limit = history_limit
        self.clock = clock
        self.max_attempts = max_attempts
        self.policy = policy or TargetPolicy()
        self.sleep = sleep

    # ------------------------------------------------------------------------------------ ingest

    def sync(self, stream_tag: StreamTag, *, cause: str = "push", actor: str = "ecr", _depth: int = 0) -> list[Move]:
        """Bring a stream tag in line with ECR, then every tag tracking it (alias). Returns the moves."""
        move, head = self._observe(stream_tag, cause, actor)
        moves = [move] if move else []
        if head is not None and not head.deleted and head.aliases:
            moves += self._follow_aliases(head, actor, _depth)
        return moves

    def observe(self, stream_tag: StreamTag, *, cause: str = "push", actor: str = "ecr") -> Move | None:
        """Bring one stream tag in line with ECR (no alias following). None when the head was already right."""
        return self._observe(stream_tag, cause, actor)[0]

    def _observe(self, stream_tag: StreamTag, cause: str, actor: str) -> tuple[Move | None, Head | None]:
        """Order matters: the head is read *before* ECR is asked, and the write is conditional on that read, so a
        slow resolve can never move a tag backwards; on a conflict we start over with fresh reads."""
        for _ in range(self.max_attempts):
            head = self.store.get_head(stream_tag)
            seen = self.registry.resolve(stream_tag.stream, stream_tag.tag)
            if seen is None:
                if head is None or head.deleted:
                    return None, head
                new = self._tombstone(head, actor, kept_in_registry=False)
            elif head is not None and not head.deleted and head.digest == seen.digest:
                return None, head
            elif head is not None and head.deleted and head.kept_in_registry and head.digest == seen.digest:
                return None, head  # untagged from the stream but kept in ECR: not a move until it changes
            else:
                new = Head(
                    stream_tag, seen.digest, (head.generation if head else 0) + 1, self.clock(), cause, actor,
                    seen.registry, seen.media_type, head.alias_of if head else None, False,
                    (head.rev if head else 0) + 1, head.aliases if head else (),
                )
            try:
                self._commit(head, new)
            except ConcurrentUpdate:
                log.info("head of %s changed under us; starting over", stream_tag)
                continue
            return _move(head, new), new
        raise ConcurrentUpdate(f"{stream_tag}: head kept changing, gave up after {self.max_attempts} attempts")

    def _tombstone(self, head: Head, actor: str, *, kept_in_registry: bool) -> Head:
        """The tag leaves the stream: same digest (what its targets keep), next generation, cause ``delete``."""
        return head._replace(generation=head.generation + 1, at=self.clock(), cause="delete", actor=actor,
                             deleted=True, rev=head.rev + 1, kept_in_registry=kept_in_registry)

    def observe_deleted_digest(self, stream: str, digest: str, *, actor: str = "ecr") -> list[Move]:
        """A DELETE without tag (delete by digest, lifecycle expiry): re-resolve every tag whose head is it."""
        moves: list[Move] = []
        for head in self.store.heads(stream):
            if not head.deleted and head.digest == digest:
                moves += self.sync(head.stream_tag, cause="import", actor=actor)
        return moves

    def _commit(self, expected: Head | None, new: Head) -> None:
        drop = new.generation - self.history_limit
        self.store.commit(expected, new, drop if drop >= 1 else None)

    def _follow_aliases(self, source: Head, actor: str, depth: int) -> list[Move]:
        """Move every tag tracking ``source`` to the digest the source has *now*, in ECR (byte-exact) and in the
        table. Idempotent: an alias already there costs a few reads, so a retried event repairs what a failed attempt
        left behind. A chain deeper than ``MAX_ALIAS_DEPTH`` (refused at creation, but possibly older) is followed
        that far and no further, with a log line: ingest never fails because of it."""
        if depth >= MAX_ALIAS_DEPTH:
            log.warning("alias chain below %s is deeper than %d: not following %s", source.stream_tag,
                        MAX_ALIAS_DEPTH, ", ".join(source.aliases))
            return []
        moves: list[Move] = []
        for alias in source.aliases:
            moves += self._follow_alias(source.stream_tag, StreamTag(source.stream_tag.stream, alias), actor, depth)
        return moves

    def repair_alias(self, alias: StreamTag, *, actor: str = "reconciler") -> list[Move]:
        """Bring one alias back in line with its source (the reconciler's check): restore the source's back-link if
        it went missing, then follow the source's current digest."""
        head = self.store.get_head(alias)
        if head is None or head.deleted or not head.alias_of:
            return []
        source_tag = StreamTag(alias.stream, head.alias_of)
        source = self.store.get_head(source_tag)
        if source is None or source.deleted:
            return []
        if alias.tag not in source.aliases:
            self._link(alias, head.alias_of)
        return self._follow_alias(source_tag, alias, actor, 0)

    def _follow_alias(self, source_tag: StreamTag, alias_tag: StreamTag, actor: str, depth: int) -> list[Move]:
        """Bring one alias to its source's current digest. The source is re-read (consistently) before every retag
        and again after it: when two moves of the source are followed concurrently, the follower that retags last
        also checks last, and repeats while the source moved meanwhile, so after quiescence the alias equals its
        source (the digest a follower committed may already be stale when it gets to the alias)."""
        moves: list[Move] = []
        synced = False
        for _ in range(self.max_attempts):
            source = self.store.get_head(source_tag)
            head = self.store.get_head(alias_tag)
            if source is None or source.deleted or head is None or head.alias_of != source_tag.tag:
                return moves  # the source left the stream, or a stale link (re-tagged as a copy, or removed)
            if not head.deleted and head.digest == source.digest:
                if head.aliases and not synced:  # in line; its own aliases may not be (a failed attempt before)
                    moves += self._follow_aliases(head, actor, depth + 1)
                return moves
            self.registry.retag(alias_tag.stream, source.digest, alias_tag.tag)
            moves += self.sync(alias_tag, cause="alias", actor=actor, _depth=depth + 1)
            synced = True
        log.warning("%s kept moving while %s followed it; the follower of its latest move finishes the job",
                    source_tag, alias_tag)
        return moves

    # ------------------------------------------------------------------------------- manual

    def tag(self, source: ImageRef, targets: list[StreamTag], *, alias: bool = False,
            actor: str = "unknown") -> list[Move]:
        """Permanent copy of a tag's (or a digest's) image to other tags of the same stream, byte-exact in ECR;
        with ``alias`` the targets then track the source tag."""
        stream = source.stream
        for target in targets:
            if target.stream != stream:
                raise Invalid(f"{target} is not in repository {stream}: ECR's PutImage cannot copy between "
                              "repositories, so source and target must be in the same one")
            if source.tag == target.tag and source.digest is None:
                raise Invalid(f"{target} is the source itself")
        if len(set(targets)) != len(targets):
            raise Invalid("target lists a tag twice")
        if alias and source.tag is None:
            raise Invalid("alias: true needs a tag as source (a digest does not move)")
        if alias:  # before anything is written: the links alone decide
            self._refuse_alias_cycles(StreamTag(stream, source.tag or ""), targets)
        moves: list[Move] = []
        if source.digest is not None:
            digest = source.digest
        else:
            source_tag = StreamTag(stream, source.tag or "")
            moves += self.sync(source_tag, cause="import", actor=actor)
            head = self.store.get_head(source_tag)
            if head is None or head.deleted:
                raise NotFound(f"{source_tag} does not exist in ECR")
            digest = head.digest
        self.registry.check_can_tag(stream, digest, [t.tag for t in targets])
        for target in targets:
            self.registry.retag(stream, digest, target.tag)
            moves += self.sync(target, cause="tag", actor=actor)
            self._link(target, source.tag if alias else None)
            if alias:  # the source may have moved since we read it: catch up now that the link exists
                moves += self._follow_alias(StreamTag(stream, source.tag or ""), target, actor, 0)
        return moves

    def _refuse_alias_cycles(self, source: StreamTag, targets: list[StreamTag]) -> None:
        """Refuse (Invalid, nothing written) alias links that would make a cycle, a chain deeper than
        ``MAX_ALIAS_DEPTH`` or a tag with more than ``MAX_ALIASES`` aliases: ingest follows what exists, so what it
        could not follow must never be created."""
        names = {t.tag for t in targets}
        level = 0  # links from the root of the source's chain down to the source
        seen = {source.tag}
        source_head = head = self.store.get_head(source)
        while head is not None and head.alias_of:
            if head.alias_of in names or head.alias_of in seen:
                raise Invalid(f"alias cycle: {source} already tracks {source.stream}:{head.alias_of}")
            seen.add(head.alias_of)
            level += 1
            if level > MAX_ALIAS_DEPTH:
                break  # already too deep (an older chain); refused below
            head = self.store.get_head(StreamTag(source.stream, head.alias_of))
        below = max((self._alias_height(t) for t in targets), default=0)
        depth = level + 1 + below
        if depth > MAX_ALIAS_DEPTH:
            raise Invalid(f"alias chain would be {depth} links deep, and at most {MAX_ALIAS_DEPTH} are followed "
                          f"({source} is {level} link(s) below the start of its chain; the targets' own aliases go "
                          f"{below} link(s) further down)")
        current = set(source_head.aliases) if source_head is not None else set()
        count = len(current | names)
        if count > MAX_ALIASES:
            raise Invalid(f"{source} would have {count} aliases; at most {MAX_ALIASES} tags can track one tag")

    def _alias_height(self, top: StreamTag) -> int:
        """How many links deep the aliases below ``top`` go (0: none), reading at most a chain past the limit."""
        height, level, seen = 0, [top.tag], {top.tag}
        while level and height <= MAX_ALIAS_DEPTH:
            below = []
            for tag in level:
                head = self.store.get_head(StreamTag(top.stream, tag))
                for alias in head.aliases if head is not None else ():
                    if alias not in seen:
                        seen.add(alias)
                        below.append(alias)
            if not below:
                break
            height += 1
            level = below
        return height

    def _link(self, target: StreamTag, alias_of: str | None) -> None:
        """Make ``target`` track ``alias_of`` (or nothing), updating both ends of the link. The new source lists the
        alias first: if we stop half-way, a listed alias whose ``alias_of`` says otherwise is skipped as stale,
        whereas an ``alias_of`` its source does not list would silently never follow."""
        if self.store.get_head(target) is None:
            return
        if alias_of:
            def add(h: Head) -> Head:
                if target.tag in h.aliases:
                    return h
                if len(h.aliases) >= MAX_ALIASES:
                    raise Invalid(f"{h.stream_tag} already has {len(h.aliases)} aliases; at most {MAX_ALIASES}")
                return h._replace(aliases=(*h.aliases, target.tag))

            self._relink(StreamTag(target.stream, alias_of), add)
        linked = self._relink(target, lambda h: h._replace(alias_of=alias_of))
        if linked is None:
            return
        _, previous = linked
        if previous and previous != alias_of:
            self._relink(StreamTag(target.stream, previous),
                         lambda h: h._replace(aliases=tuple(a for a in h.aliases if a != target.tag)))

    def _relink(self, stream_tag: StreamTag, change: Callable[[Head], Head]) -> tuple[Head, str | None] | None:
        """Apply ``change`` to a head's links under the optimistic lock; returns (new head, previous alias_of)."""
        for _ in range(self.max_attempts):
            head = self.store.get_head(stream_tag)
            if head is None:
                return None
            new = change(head)
            if new == head:
                return new, head.alias_of
            try:
                self.store.relink(head, new._replace(rev=head.rev + 1))
            except ConcurrentUpdate:
                continue
            return new, head.alias_of
        raise ConcurrentUpdate(f"{stream_tag}: head kept changing while linking aliases")

    def untag(self, target: StreamTag, *, keep_in_registry: bool = False, actor: str = "unknown") -> list[Move]:
        """The tag leaves the stream (tombstone, history kept), and ECR unless ``keep_in_registry``."""
        head = self.store.get_head(target)
        if head is None or head.deleted:
            raise NotFound(f"{target} is not a tag of the stream")
        if head.alias_of:
            self._link(target, None)
        if not keep_in_registry:
            self.registry.untag(target.stream, target.tag)
            return self.sync(target, cause="delete", actor=actor)
        for _ in range(self.max_attempts):
            head = self.store.get_head(target)
            if head is None or head.deleted:
                return []
            new = self._tombstone(head, actor, kept_in_registry=True)
            try:
                self._commit(head, new)
            except ConcurrentUpdate:
                continue
            return [_move(head, new)]
        raise ConcurrentUpdate(f"{target}: head kept changing")

    def rollback_tag(self, target: StreamTag, *, to: str | None = None, steps: int | None = None,
                     actor: str = "unknown") -> list[Move]:
        """Move a tag back to a digest of its history (in ECR too): a new head with cause ``rollback``; its
        triggers fire like after any move."""
        head = self.store.get_head(target)
        if head is None or head.deleted:
            raise NotFound(f"{target} is not a live tag of the stream")
        if head.alias_of:  # an alias equals its source; rolled back alone, the next follow would undo it
            raise Invalid(f"{target} tracks {target.stream}:{head.alias_of}: roll back {target.stream}:"
                          f"{head.alias_of} (its aliases follow), or first make {target} a plain tag (tag without "
                          "alias)")
        entries = [e for e in self.store.history(target, self.history_limit) if e.cause != "delete"]
        if to is not None:
            if to not in {e.digest for e in entries}:
                raise NotFound(f"{to} is not in the history of {target}")
        else:
            steps = 1 if steps is None else steps
            if steps >= len(entries):
                raise NotFound(f"{target} has {len(entries)} history entries; cannot go back {steps}")
            to = entries[steps].digest
        if to == head.digest:
            raise Invalid(f"{target} already points to {to}")
        check_restorable(self.registry, target.stream, to, entries, must_exist=False)
        self.registry.check_can_tag(target.stream, to, [target.tag])
        self.registry.retag(target.stream, to, target.tag)
        return self.sync(target, cause="rollback", actor=actor)

    def rollback_target(self, trigger_id_: str, *, to: str | None = None, actor: str = "unknown",
                        wait: float | None = None) -> Trigger:
        """Redeploy one trigger's target to an older digest and pause the trigger, so the next move of the tag
        does not undo the rollback. ``resume`` or ``deploy`` brings it back to the head.

        Holds the target's lease from the pause to the write: a fire queued before it finds the trigger paused
        once it gets the target, and leaves the rolled-back image alone. ``wait``: see :meth:`fire`."""
        trigger = self.get_trigger(trigger_id_)
        self.policy.check(trigger.target)
        head = self.store.get_head(trigger.stream_tag)
        if head is None:
            raise NotFound(f"{trigger.stream_tag} has no head to roll back from")
        driver = self.drivers[trigger.target.type]
        with self._target_lease(trigger.target, wait):
            try:
                image = driver.inspect(trigger.target, trigger.deployment).image
            except (TargetError, TransientTargetError) as exc:
                raise Conflict(f"cannot read what {trigger.target.describe()} runs: {exc}") from exc
            entries = [e for e in self.store.history(trigger.stream_tag, self.history_limit) if e.cause != "delete"]
            digests = [e.digest for e in entries]
            running = runs_digest(image, head.registry, trigger.stream_tag.stream)
            if running not in digests:  # a tag, another image, or a platform child of an index (Lambda)
                running = trigger.last_triggered_digest or running
            if to is not None:
                if to not in digests:
                    raise NotFound(f"{to} is not in the history of {trigger.stream_tag}")
            else:
                start = digests.index(running) + 1 if running in digests else 1
                older = [d for d in digests[start:] if d != running]
                if not older:
                    raise NotFound(f"no digest older than {running} in the history of {trigger.stream_tag}")
                to = older[0]
            if to == running:
                raise Invalid(f"{trigger.target.describe()} already runs {to}")
            check_restorable(self.registry, trigger.stream_tag.stream, to, entries, must_exist=True)
            log.info("rolling %s back to %s for %s", trigger.target.describe(), to, actor)
            self.store.set_paused(trigger, True)
            return self._fire_locked(trigger, head._replace(digest=to, deleted=False), force=True, exact=True)

    # -------------------------------------------------------------------------------------- fan-out

    def head_moved(self, head: Head) -> list[Trigger]:
        """A head changed (from the table's change stream): queue a fire for every unpaused trigger on it.

        A tombstone fires nothing: its triggers keep their digest and report ``WaitingForImage``.
        """
        _, triggers = self.store.head_and_triggers(head.stream_tag)
        if head.deleted:
            for trigger in triggers:
                if trigger.status != "WaitingForImage":
                    self.store.save_trigger(trigger.with_outcome(
                        status="WaitingForImage",
                        last_error=f"{head.stream_tag} was deleted; keeping the current image"))
            return []
        due = [t for t in triggers if not t.paused]
        if due and self.fire_queue is not None:
            self.fire_queue.enqueue(due, head)
        return due

    def tombstone_expired(self, tombstone: Head) -> int:
        """DynamoDB TTL removed a tombstone (history is kept for audit until then): drop its history too.
        Only entries up to the tombstone's generation go; a tag pushed again since starts a fresh history."""
        if not tombstone.deleted:
            return 0
        return self.store.purge_history(tombstone.stream_tag, tombstone.generation, tombstone.at)

    # ----------------------------------------------------------------------------------------- firing

    def fire_by_id(self, stream_tag: StreamTag, trigger_id_: str, *, force: bool = False,
                   queued_at: datetime | None = None, was_paused: bool = False) -> Trigger | None:
        """Deployer entry point: fire the trigger against the head as it is *now* (not as queued). A busy target
        raises :class:`TransientTargetError` at once (the queue retries). ``queued_at``/``was_paused`` come with a
        queued ``deploy`` (``force``): a pause or target rollback after ``queued_at`` wins over it."""
        head, triggers = self.store.head_and_triggers(stream_tag)
        trigger = next((t for t in triggers if t.id == trigger_id_), None)
        if trigger is None:
            log.info("trigger %s on %s no longer exists; nothing to do", trigger_id_, stream_tag)
            return None
        return self.fire(trigger, head, force=force, queued_at=queued_at, was_paused=was_paused)

    def fire(self, trigger: Trigger, head: Head | None, *, force: bool = False, wait: float | None = None,
             queued_at: datetime | None = None, was_paused: bool = False) -> Trigger:
        """Put the head's pinned ref into the trigger's target if it runs anything else.

        One writer per target resource: the fire holds the lease ``target:<target_key>`` from its reads to
        its write, and once it holds it re-reads the trigger and the head — a trigger paused (or rolled back) since
        the caller looked is left alone unless ``force``, and a head that moved since is the one deployed. ``head``
        is what the caller saw; only the re-read one is used.

        A busy target: with ``wait`` None raise :class:`TransientTargetError` at once (a queue retries); else
        wait up to ``wait`` seconds, then :class:`Conflict`.

        Raises :class:`TransientTargetError` after recording it, so the queue retries; a permanent
        :class:`TargetError` is recorded as ``Failed`` and not retried.
        """
        if trigger.paused and not force:
            return trigger
        with self._target_lease(trigger.target, wait):
            return self._fire_locked(trigger, head, force=force, queued_at=queued_at, was_paused=was_paused)

    @contextmanager
    def _target_lease(self, target: Target, wait: float | None) -> Iterator[None]:
        name = "target:" + target_key(target)
        owner = uuid.uuid4().hex
        waited, pause = 0.0, 0.1
        while not self.store.acquire_lease(name, owner, FIRE_LEASE_SECONDS):
            if wait is None:
                raise TransientTargetError(f"{target.describe()} is busy: another fire is writing it")
            if waited >= wait:
                raise Conflict(f"target busy: another fire is writing {target.describe()}; retry")
            step = min(pause, wait - waited)
            self.sleep(step)
            waited, pause = waited + step, pause * 2
        try:
            yield
        finally:
            try:
                self.store.release_lease(name, owner)
            except Exception:  # noqa: BLE001 - the lease expires by itself; the fire's own outcome matters more
                log.warning("could not release lease %s; it expires in %d s", name, FIRE_LEASE_SECONDS,
                            exc_info=True)

    def _fire_locked(self, trigger: Trigger, head: Head | None, *, force: bool, exact: bool = False,
                     queued_at: datetime | None = None, was_paused: bool = False) -> Trigger:
        """The fire proper, under the target's lease. ``exact``: deploy ``head`` as given (a target rollback)."""
        for _ in range(MAX_TARGET_CHANGES):
            current_head, triggers = self.store.head_and_triggers(trigger.stream_tag)
            current = next((t for t in triggers if t.id == trigger.id), None)
            if current is None:
                log.info("trigger %s was removed; nothing to do", trigger.id)
                return trigger
            if current.paused and not force:
                log.info("trigger %s was paused meanwhile; leaving %s alone", current.id, current.target.describe())
                return current
            if queued_at is not None and current.paused and (
                    not was_paused or (current.last_triggered_at is not None
                                       and current.last_triggered_at > queued_at)):
                log.info("trigger %s was paused or rolled back after this deploy was queued; that wins", current.id)
                return current
            try:
                # only a person's `deploy` accepts (and re-records) what the service runs now; a target rollback,
                # though forced, still clones only the recorded family and roles
                return self._apply(current, head if exact else current_head, force=force,
                                   rerecord=force and not exact)
            except TargetChanged as exc:
                log.info("%s; reading it again", exc)
                trigger = current
        error = f"{trigger.target.describe()} kept changing under us ({MAX_TARGET_CHANGES} attempts)"
        self.record(trigger, self._failed(trigger, f"will retry: {error}"))
        raise TransientTargetError(error)

    def _apply(self, trigger: Trigger, head: Head | None, *, force: bool, rerecord: bool | None = None) -> Trigger:
        if head is None or head.deleted:
            return self.record(trigger, trigger.with_outcome(status="WaitingForImage"))
        if not force and trigger.rollout_state == "FAILED" and trigger.last_triggered_digest == head.digest:
            return trigger  # no loop: a digest whose rollout failed is not re-fired until the head moves or `deploy`
        driver = self.drivers.get(trigger.target.type)
        if driver is None:
            return self.record(trigger, self._failed(trigger, f"no driver for target type {trigger.target.type}"))
        try:
            self.policy.check(trigger.target)  # again at fire time: the allow-list may have narrowed since
        except Forbidden as exc:
            return self.record(trigger, self._failed(trigger, exc.message))
        try:
            image = self.image_for(driver, trigger, head)
            result = self._drive(driver, trigger, image, rerecord=force if rerecord is None else rerecord)
        except NotFound as exc:
            return self.record(trigger, self._failed(trigger, exc.message))
        except PinsChanged as exc:  # a fire would pass roles nobody allowed: out of band, and nothing written
            return self.record(trigger, self._failed(trigger, str(exc)).with_outcome(drift=str(exc)))
        except TargetError as exc:
            return self.record(trigger, self._failed(trigger, str(exc)))
        except TargetChanged:
            raise  # nothing written: the caller reads everything again
        except TransientTargetError as exc:
            self.record(trigger, self._failed(trigger, f"will retry: {exc}"))
            raise
        return self.record(trigger, self._applied(trigger, head, image, result))

    @staticmethod
    def _drive(driver: TargetDriver, trigger: Trigger, image: str, *, rerecord: bool) -> DriverResult:
        """Apply through the driver; the recorded pins are checked unless a person deploys (which re-records).
        A driver that records pins (ECS) never fires a trigger that has none recorded: trusting whatever the
        service runs at its first fire would let an out-of-band switch of family or roles in before anyone saw it."""
        if rerecord:
            return driver.apply(trigger.target, image)
        if trigger.pins is None:
            read = getattr(driver, "current_pins", None)
            if read is not None:
                read(trigger.target)  # a service that is gone (or unreadable) says so first
                raise TargetError(
                    f"no task-definition family and roles are recorded for {trigger.target.describe()} (its service "
                    "could not be read when the trigger was added, or the trigger predates this check): nothing was "
                    "registered; run `deploy` once to record what its fires may clone")
            return driver.apply(trigger.target, image)
        return driver.apply(trigger.target, image, pins=trigger.pins)  # type: ignore[call-arg]

    def _applied(self, trigger: Trigger, head: Head, image: str, result: DriverResult) -> Trigger:
        """The trigger after its target took (or already had) ``image``."""
        pins = result.pins or trigger.pins
        if result.changed:
            status = "Deployed" if result.rollout_state == "COMPLETED" else "Deploying"
            return trigger.with_outcome(
                status=status, last_triggered_digest=head.digest, last_triggered_at=self.clock(),
                last_error=None, rollout_state=result.rollout_state, drift=None, deployed_image=image,
                deployment=result.deployment, failures=0, retry_at=None, pins=pins)
        settled = trigger.with_outcome(last_triggered_digest=head.digest, last_error=None, drift=None,
                                       deployed_image=image, failures=0, retry_at=None, pins=pins)
        if trigger.deployed_image == image and trigger.last_triggered_digest == head.digest:
            # what we recorded: only the rollout of our own deployment can move on
            rollout = result.rollout_state if result.deployment in (None, trigger.deployment) else None
            return advance_rollout(settled.with_outcome(
                status="Deployed" if trigger.status != "Deploying" else trigger.status,
                last_triggered_at=trigger.last_triggered_at or self.clock()), rollout, result.reason)
        if result.deployment is not None and result.deployment != trigger.deployment:
            # The target runs our image, but our record says we put something else there: the record of the fire
            # that did it was lost (e.g. the trigger write failed after UpdateService), or the head moved to what
            # it already runs. Adopt the deployment that runs it, so its rollout events (FAILED too) reach us.
            adopted = settled.with_outcome(status="Deploying", deployment=result.deployment, rollout_state=None,
                                           last_triggered_at=self.clock())
            return advance_rollout(adopted, result.rollout_state or "IN_PROGRESS", result.reason)
        # another digest, already there: the old rollout state says nothing about it
        return advance_rollout(settled.with_outcome(
            status="Deployed" if trigger.status != "Deploying" else trigger.status, rollout_state=None,
            last_triggered_at=trigger.last_triggered_at or self.clock()), result.rollout_state, result.reason)

    def queue_fires(self, triggers: list[Trigger], *, reason: str, force: bool = False) -> list[str]:
        """Hand fires to the fire queue instead of firing here (an admin call must never run out of time midway).
        Returns the ids queued: the unpaused triggers (all with ``force``) whose tag has a live head."""
        if self.fire_queue is None:
            raise RuntimeError("no fire queue configured")
        queued: list[str] = []
        now = self.clock()
        by_tag: dict[StreamTag, list[Trigger]] = {}
        for trigger in triggers:
            if force or not trigger.paused:
                by_tag.setdefault(trigger.stream_tag, []).append(trigger)
        for stream_tag, due in by_tag.items():
            head = self.store.get_head(stream_tag)
            if head is None or head.deleted:
                continue  # nothing to deploy; the trigger says WaitingForImage once the tag has a head again
            self.fire_queue.enqueue(due, head, reason=reason, force=force, at=now)
            queued += [t.id for t in due]
        return queued

    def _failed(self, trigger: Trigger, error: str) -> Trigger:
        """Failed, with the next retry (by the reconciler) backed off exponentially: 1, 2, 4 … minutes, ≤ 6 h."""
        failures = trigger.failures + 1
        delay = min(timedelta(minutes=1) * 2 ** min(failures - 1, 16), MAX_RETRY_DELAY)
        return trigger.with_outcome(status="Failed", last_error=error, failures=failures,
                                    retry_at=self.clock() + delay)

    # ------------------------------------------------------------------------------- rollout tracking

    def rollout_event(self, key: str, deployment: str, state: str, reason: str = "") -> list[Trigger]:
        """A target reports how one deployment went (ECS Deployment State Change). Only triggers whose last
        change started that deployment are updated, and only forward (:func:`advance_rollout`); a circuit-breaker
        rollback is another deployment. ``key`` ``ecs:*/<service>`` (an old-format service ARN names no cluster)
        finds the trigger among the ECS triggers of that service name by the deployment id alone."""
        if key.startswith("ecs:*/"):
            service = key.split("/", 1)[1]
            candidates = [t for t in self.store.all_triggers()
                          if isinstance(t.target, EcsTarget) and short_name(t.target.service) == service]
        else:
            candidates = self.store.triggers_for_target(key)
        updated = []
        for listed in candidates:
            if listed.deployment != deployment:
                continue
            trigger = self.store.refresh_trigger(listed)  # the index lags: a newer fire may have replaced it since
            if trigger is None or trigger.deployment != deployment:
                continue
            after = advance_rollout(trigger, state, reason)
            # conditional on the fire we read: a fire that lands between our read and this write wins
            if after != trigger and self.store.save_trigger(after, expect=trigger):
                updated.append(after)
        return updated

    def image_for(self, driver: TargetDriver, trigger: Trigger, head: Head) -> str:
        """The pinned ref for this target: the head itself, or for a target that takes no image index (Lambda)
        the child manifest of its architecture."""
        architecture = driver.platform(trigger.target)
        if architecture is None:
            return head.pinned
        child = self.registry.platform_digest(head.stream_tag.stream, head.digest, architecture)
        return pinned_ref(head.registry, head.stream_tag.stream, child)

    def record(self, before: Trigger, after: Trigger) -> Trigger:
        """Persist a trigger's new state (only when it changed; never its ``paused`` flag)."""
        if after != before and not self.store.save_trigger(after):
            log.info("trigger %s was removed while firing", before.id)
        return after

    # --------------------------------------------------------------------------------------- triggers

    def add_trigger(self, stream_tag: StreamTag, target: Target, *, paused: bool = False,
                    fire: Callable[[Trigger, Head | None], Trigger] | None = None) -> Trigger:
        """Register; fire at once when the tag already has a head (like OpenShift). Idempotent per target.
        ``fire`` replaces :meth:`fire` for that first fire (e.g. the admin's: queue it, or fire within a budget).

        The target is canonicalised first (names, ARNs checked against this account and region), and only that
        form is used afterwards: the id, the allow-list, the one-writer check and what is stored. So the name and
        the ARN of one service (or a Lambda function with its alias given either way) are one trigger.
        """
        target = self.policy.canonical(target)
        self.policy.check(target)
        trigger = Trigger(trigger_id(stream_tag, target), stream_tag, target, paused=paused)
        driver = self.drivers.get(target.type)
        validate = getattr(driver, "validate", None)
        if validate is not None:
            validate(target)  # e.g. a zip-packaged Lambda function is refused before anything is written
        for other in self.store.triggers_for_target(target_key(target)):
            if other.id == trigger.id or not same_slot(other.target, target):
                continue
            if other.stream_tag == stream_tag and target_identity(other.target) == target_identity(target):
                return other  # the same trigger, stored before targets were canonical (an ARN spelling)
            # one writer per container, or two tags would fight over it
            raise Conflict(f"{target.describe()} already follows {other.stream_tag} (trigger {other.id}, target "
                           f"{other.target.describe()}); remove that trigger first")
        trigger = trigger.with_outcome(pins=self._current_pins(driver, target))
        if not self.store.add_trigger(trigger):
            existing = self.store.get_trigger(trigger.id)
            if existing is not None:
                return existing
        head = self.store.get_head(stream_tag)
        if paused:
            return trigger
        return fire(trigger, head) if fire is not None else self.fire(trigger, head)

    @staticmethod
    def _current_pins(driver: TargetDriver | None, target: Target) -> Any:
        """What fires of a new trigger may clone (ECS: the family and roles the service runs now), recorded at
        ``trigger.add``; None when the driver has none, or the target cannot be read yet (then its first fire
        records them)."""
        read = getattr(driver, "current_pins", None)
        if read is None:
            return None
        try:
            return read(target)
        except TargetError as exc:  # e.g. not created yet; a transient fault fails the add (nothing written)
            log.info("cannot read %s now (%s); its first fire asks for a `deploy` to record what it may clone",
                     target.describe(), exc)
            return None

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
        all_heads, triggers = self.store.stream_state(stream)
        heads = [h for h in all_heads if not h.deleted]
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
        entries = self.store.history(stream_tag, min(limit or self.history_limit, self.history_limit))
        if not entries:
            raise NotFound(f"{stream_tag} has no history")
        return entries
