"""Use cases that keep stream tags in line with ECR: observe a tag (ingest), tombstones, and the alias flow that
moves tracking tags with their source. Mixed into :class:`imagestreams.services.ImageStreams`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from .errors import (
    ConcurrentUpdate,
)
from .model import (
    Head,
    Move,
    StreamTag,
)
from .ports import Registry, StreamStore

log = logging.getLogger(__name__)

DEFAULT_HISTORY_LIMIT = 50
MAX_ALIAS_DEPTH = 10  # alias links from a tag that tracks nothing to its deepest alias
MAX_ALIASES = 100  # tags tracking one tag (each is listed on the source's head item)


def _move(old: Head | None, new: Head) -> Move:
    return Move(new.stream_tag, old.digest if old and not old.deleted else None,
                None if new.deleted else new.digest, new.generation, new.cause)


class TagFlow:
    """Ingest and the alias flow, over the ports :class:`~imagestreams.services.ImageStreams` holds."""

    store: StreamStore
    registry: Registry
    clock: Callable[[], datetime]
    history_limit: int
    max_attempts: int

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
                    pushed_at=seen.pushed_at,
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

