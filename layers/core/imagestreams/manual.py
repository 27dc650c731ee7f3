"""Manual actions of the admin contract that move tags or one target: tag (byte-exact retag, aliases), untag,
tag rollback and target rollback. Mixed into :class:`imagestreams.services.ImageStreams`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .errors import (
    ConcurrentUpdate,
    Conflict,
    Invalid,
    NotFound,
    TargetError,
    TransientTargetError,
)
from .model import (
    Head,
    ImageRef,
    Move,
    StreamTag,
    Trigger,
    runs_digest,
)
from .prune import check_restorable
from .tags import MAX_ALIAS_DEPTH, MAX_ALIASES, _move

log = logging.getLogger(__name__)


class ManualActions:
    """Retag, untag and rollbacks; they use the tag flow (``sync``, ``_commit``, ``_tombstone``) and firing
    (``_target_lease``, ``_fire_locked``) of the class they are mixed into."""

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
        for target in targets:
            if self.store.get_policy(target) is not None:  # its policy decides where it points (and would undo a copy)
                raise Conflict(f"{target} is a policy tag: its policy decides where it points; roll it back (which "
                               "holds the policy) or remove its policy first (policy remove)"
                               + ("; a tag is either an alias or a policy tag" if alias else ""))
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
        if self.store.get_policy(target) is not None:  # its policy would put it right back
            raise Conflict(f"{target} is a policy tag: remove its policy first (policy remove), then untag it")
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
        hold = getattr(self, "hold_policy", None)
        held = hold(target) if hold is not None else False  # before the move: its fan-out must not undo it
        try:
            self.registry.retag(target.stream, to, target.tag)
        except Exception:
            if held:
                self.release_hold(target)  # type: ignore[attr-defined]  # nothing moved: the policy goes on
            raise
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
            done = self._fire_locked(trigger, head._replace(digest=to, deleted=False), force=True, exact=True)
            if trigger.gates and done.last_triggered_digest == to:
                # a person's act, not judged by the gates: recorded like `deploy --force` once it happened (a
                # rollback that failed releases nothing)
                from .gates import GateState

                state = GateState(to, self.clock(), forced_by=actor)
                self.store.set_gate_state(done, state)
                done = done.with_outcome(gate_state=state)
            return done

