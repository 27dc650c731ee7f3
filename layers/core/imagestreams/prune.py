"""Prune (like ``oc adm prune images``): delete the images of a stream's repository nobody can need any more.

Never deleted: an image with any tag in ECR (so the head of every tag), any of a tag's newest ``keep_tag_revisions``
history digests (the head counts as the first), the digest of a history that has only one entry, an image younger
than the threshold, what any trigger's target runs now (read live through its driver) or last received, and every
child manifest of an index that is kept. A dry run by default; ``confirm`` deletes by digest, indexes before their
children, and marks the history entries of what it deleted ``pruned`` (they stay, for audit).

A target that cannot be read makes prune refuse (``Conflict`` naming it): what it runs is unknown, so nothing is a
safe guess. Large repositories: one listing of ⌈images / 1,000⌉ pages per stream, at most ``MAX_PER_CALL``
candidates answered (and deleted) per call, and a time budget; whatever is left is named by a ``next`` cursor the
caller passes back as ``cursor``. Every call recomputes what is protected, so a cursor never carries a stale decision.

Stdlib only, over ports: the store (heads, histories, triggers), the registry (listing, index children, delete by
digest, image status) and the target drivers (``inspect``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .errors import Conflict, Invalid
from .model import DIGEST_RE, HistoryEntry, Trigger, rfc3339

if TYPE_CHECKING:
    from .services import ImageStreams

log = logging.getLogger(__name__)

DEFAULT_KEEP_TAG_REVISIONS = 3
DEFAULT_KEEP_YOUNGER_THAN_MINUTES = 60
MAX_KEEP_TAG_REVISIONS = 10_000
MAX_KEEP_YOUNGER_THAN_MINUTES = 10 * 366 * 24 * 60
MAX_PER_CALL = 5000  # candidates answered (and deleted) per call (≈ 1 MB of answer); the rest: ``next``
DELETE_BATCH = 100  # image ids per BatchDeleteImage (ECR's maximum)
BUDGET_SECONDS = 40.0  # of a 60 s admin call: stop starting new work after this, answer with ``next``
INDEX_MEDIA_TYPES = frozenset({"application/vnd.docker.distribution.manifest.list.v2+json",
                               "application/vnd.oci.image.index.v1+json"})
RESTORE_HINT = ("restore it first: aws ecr update-image-storage-class --repository-name {stream} --image-id "
                "imageDigest={digest} --target-storage-class STANDARD, then retry once it is ACTIVE again (a restore "
                "takes up to about 20 minutes)")


class RegistryImage(NamedTuple):
    """One image of a repository, as DescribeImages lists it."""

    digest: str
    tags: tuple[str, ...] = ()
    pushed_at: datetime | None = None  # None: unknown, so never old enough to prune
    size: int = 0
    media_type: str | None = None
    status: str = "ACTIVE"  # ACTIVE | ARCHIVED | ACTIVATING

    @property
    def maybe_index(self) -> bool:
        return self.media_type is None or self.media_type in INDEX_MEDIA_TYPES


class PruneRegistry(Protocol):
    """What prune needs from the registry, beyond :class:`~imagestreams.ports.Registry`."""

    def list_images(self, stream: str, token: str | None = None) -> tuple[list[RegistryImage], str | None]:
        """One DescribeImages page (up to 1,000 images, tagged or not) and the next page's token (None: last)."""

    def index_children(self, stream: str, digests: list[str]) -> dict[str, list[str]]:
        """The child manifests of these images (index → children; a plain manifest has none)."""

    def delete_images(self, stream: str, digests: list[str]) -> tuple[list[str], dict[str, str]]:
        """BatchDeleteImage by digest (≤ 100): the digests deleted, and the others with ECR's failure code."""

    def image_status(self, stream: str, digest: str) -> str | None:
        """ACTIVE, ARCHIVED or ACTIVATING; None when the repository has no such image."""


# ------------------------------------------------------------------------------------------- parameters


class Options(NamedTuple):
    stream: str | None = None
    keep_tag_revisions: int = DEFAULT_KEEP_TAG_REVISIONS
    keep_younger_than: timedelta = timedelta(minutes=DEFAULT_KEEP_YOUNGER_THAN_MINUTES)
    confirm: bool = False
    actor: str = "unknown"
    cursor: str | None = None


def encode_cursor(stream: str, after: str) -> str:
    raw = json.dumps({"stream": stream, "after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: Any) -> tuple[str, str]:
    """(stream, last digest answered) from a ``next`` value; ``Invalid`` for anything else."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 2048:
        raise Invalid("cursor must be the next value of an earlier prune answer")
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise Invalid("cursor is not the next value of an earlier prune answer") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("stream"), str) or not isinstance(doc.get("after"), str):
        raise Invalid("cursor is not the next value of an earlier prune answer")
    if doc["after"] and not DIGEST_RE.fullmatch(doc["after"]):
        raise Invalid("cursor is not the next value of an earlier prune answer")
    return doc["stream"], doc["after"]


# ------------------------------------------------------------------------------------------- protection


def image_repository(image: str) -> tuple[str, str] | None:
    """(repository, digest) of a pinned image string ``<registry>/<repo>@sha256:…``; None for anything else."""
    name, at, digest = image.rpartition("@")
    if not at or not DIGEST_RE.fullmatch(digest):
        return None
    first, slash, rest = name.partition("/")
    repository = rest if slash and ("." in first or ":" in first or first == "localhost") else name
    return repository, digest


def history_protected(histories: dict[str, list[HistoryEntry]], keep: int) -> set[str]:
    """Digests kept by the histories: each tag's newest ``keep`` distinct digests (the head is the first) and the
    digest of a history that has a single entry."""
    protected: set[str] = set()
    for entries in histories.values():
        newest: list[str] = []
        for entry in entries:  # newest first
            if entry.digest not in newest:
                newest.append(entry.digest)
        protected.update(newest[:keep])
        if len(entries) == 1:
            protected.add(entries[0].digest)
    return protected


def trigger_protected(triggers: Iterable[Trigger]) -> set[tuple[str, str]]:
    """(repository, digest) pairs the table says targets last received."""
    pairs: set[tuple[str, str]] = set()
    for trigger in triggers:
        if trigger.last_triggered_digest:
            pairs.add((trigger.stream_tag.stream, trigger.last_triggered_digest))
        found = image_repository(trigger.deployed_image) if trigger.deployed_image else None
        if found:
            pairs.add(found)
    return pairs


def running_now(streams: ImageStreams, triggers: list[Trigger]) -> set[tuple[str, str]]:
    """(repository, digest) of what every trigger's target runs now, read live. A target that cannot be read is a
    ``Conflict`` naming it: prune never guesses what a target runs."""
    pairs: set[tuple[str, str]] = set()
    for trigger in triggers:
        driver = streams.drivers.get(trigger.target.type)
        if driver is None:
            raise Conflict(f"cannot read what {trigger.target.describe()} (trigger {trigger.id}) runs: no driver for "
                           f"target type {trigger.target.type}; nothing was pruned")
        try:
            image = driver.inspect(trigger.target, trigger.deployment).image
        except Exception as exc:  # noqa: BLE001 - whatever the reason, its image is unknown: refuse, say why
            raise Conflict(f"cannot read what {trigger.target.describe()} (trigger {trigger.id}) runs: {exc}; "
                           "nothing was pruned (remove the trigger or fix access, then prune again)") from exc
        found = image_repository(image) if isinstance(image, str) else None
        if found:
            pairs.add(found)
    return pairs


def _histories(streams: ImageStreams, stream: str, heads: list[Any]) -> dict[str, list[HistoryEntry]]:
    reader = getattr(streams.store, "histories", None)
    if reader is not None:
        return reader(stream)
    return {h.stream_tag.tag: streams.store.history(h.stream_tag, streams.history_limit) for h in heads}


def table_protected(streams: ImageStreams, stream: str, keep: int) -> tuple[set[str], dict[str, list[HistoryEntry]]]:
    """Digests of ``stream`` the table protects: heads (tombstones too: their triggers keep that digest), the kept
    history revisions and what its triggers last received. Also returns the histories (for the pruned marks)."""
    heads, triggers = streams.store.stream_state(stream)
    histories = _histories(streams, stream, heads)
    protected = {h.digest for h in heads} | history_protected(histories, keep)
    protected |= {d for repo, d in trigger_protected(triggers) if repo == stream}
    return protected, histories


# ------------------------------------------------------------------------------------------- the run


class _Clock:
    def __init__(self, budget: float, monotonic: Callable[[], float]) -> None:
        self.monotonic = monotonic
        self.deadline = monotonic() + budget

    def out(self) -> bool:
        return self.monotonic() >= self.deadline


def _candidate(stream: str, image: RegistryImage) -> dict[str, Any]:
    return {"stream": stream, "digest": image.digest, "tags": list(image.tags),
            "pushedAt": rfc3339(image.pushed_at) if image.pushed_at else None, "sizeBytes": image.size}


def _streams(streams: ImageStreams, options: Options, triggers: list[Trigger]) -> list[str]:
    if options.stream is not None:
        return [options.stream]
    known = set(streams.store.live_streams()) | {t.stream_tag.stream for t in triggers}
    owns = getattr(streams.registry, "owns", None)
    return sorted(s for s in known if owns is None or owns(s))


def _kept_children(registry: PruneRegistry, stream: str, kept: set[str], listed: dict[str, RegistryImage]) -> set[str]:
    """Every manifest a kept index refers to, transitively (nested indexes), read with BatchGetImage."""
    children: set[str] = set()
    todo = sorted(d for d in kept if d in listed and listed[d].maybe_index)
    seen = set(todo)
    while todo:
        found = registry.index_children(stream, todo)
        todo = []
        for kids in found.values():
            for kid in kids:
                children.add(kid)
                if kid not in seen and kid in listed and listed[kid].maybe_index:
                    seen.add(kid)
                    todo.append(kid)
    return children


def prune(streams: ImageStreams, options: Options, *, budget_seconds: float = BUDGET_SECONDS,
          monotonic: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Compute the candidates (and delete them with ``confirm``). See the module docstring for the rules."""
    registry: PruneRegistry = streams.registry  # type: ignore[assignment]
    for method in ("list_images", "index_children", "delete_images"):
        if not callable(getattr(registry, method, None)):
            raise Invalid("this registry cannot list images, so prune is not available here")
    clock = _Clock(budget_seconds, monotonic)
    start_stream, after = decode_cursor(options.cursor) if options.cursor is not None else ("", "")
    if options.cursor is not None and options.stream is not None and start_stream != options.stream:
        raise Invalid(f"cursor belongs to a prune of {start_stream}, not {options.stream}")
    triggers = streams.store.all_triggers()
    names = [s for s in _streams(streams, options, triggers) if s >= start_stream]
    running = running_now(streams, triggers) | trigger_protected(triggers)
    now = streams.clock()
    young_after = now - options.keep_younger_than
    answer: dict[str, Any] = {"candidates": [], "deleted": [], "reclaimableBytes": 0, "next": None}
    failures: list[dict[str, Any]] = []
    pages = 0
    for stream in names:
        resume_after = after if stream == start_stream else ""
        if clock.out():
            answer["next"] = encode_cursor(stream, resume_after)
            break
        protected, histories = table_protected(streams, stream, options.keep_tag_revisions)
        protected |= {d for repo, d in running if repo == stream}
        listed: dict[str, RegistryImage] = {}
        token: str | None = None
        while True:
            page, token = registry.list_images(stream, token)
            pages += 1
            for image in page:
                listed[image.digest] = image
            if token is None:
                break
            if clock.out():
                answer["next"] = encode_cursor(stream, resume_after)
                break
        if answer["next"] is not None:
            break
        kept = {d for d, image in listed.items()
                if d in protected or image.tags or image.status != "ACTIVE" or image.pushed_at is None
                or image.pushed_at > young_after}
        kept |= _kept_children(registry, stream, kept, listed)
        chosen = sorted(d for d in listed if d not in kept and d > resume_after)
        room = MAX_PER_CALL - len(answer["candidates"])
        more = len(chosen) > room
        chosen = chosen[:room]
        candidates = [_candidate(stream, listed[d]) for d in chosen]
        answer["candidates"] += candidates
        answer["reclaimableBytes"] += sum(c["sizeBytes"] for c in candidates)
        if options.confirm and chosen:
            done, failed, finished = _delete(streams, registry, stream, chosen, listed, options, clock)
            answer["deleted"] += [c for c in candidates if c["digest"] in done]
            failures += failed
            if not finished:  # out of time: the next call lists this stream again (what was deleted is gone)
                answer["next"] = encode_cursor(stream, resume_after)
                break
        if more:
            answer["next"] = encode_cursor(stream, chosen[-1] if chosen else resume_after)
            break
    answer["describeImagesPages"] = pages
    if failures:
        answer["failures"] = failures
    return answer


def _delete(streams: ImageStreams, registry: PruneRegistry, stream: str, chosen: list[str],
            listed: dict[str, RegistryImage], options: Options, clock: _Clock,
            ) -> tuple[set[str], list[dict[str, Any]], bool]:
    """Delete ``chosen`` by digest: indexes first (ECR refuses a child while an index refers to it), in batches of
    100. Just before every batch the table is read again, so a digest a head, a kept revision or a trigger took up
    since the candidates were computed is left alone. Returns (deleted, failures, whether every batch ran)."""
    order = sorted(chosen, key=lambda d: (not listed[d].maybe_index, d))
    deleted: set[str] = set()
    failures: list[dict[str, Any]] = []
    for start in range(0, len(order), DELETE_BATCH):
        if start and clock.out():
            return deleted, failures, False
        protected, histories = table_protected(streams, stream, options.keep_tag_revisions)
        batch = [d for d in order[start : start + DELETE_BATCH] if d not in protected]
        for digest in order[start : start + DELETE_BATCH]:
            if digest in protected:
                failures.append({"stream": stream, "digest": digest, "reason": "protected since it was listed"})
        if not batch:
            continue
        log.info("prune: deleting %d image(s) of %s for %s", len(batch), stream, options.actor)
        gone, refused = registry.delete_images(stream, batch)
        deleted.update(gone)
        failures += [{"stream": stream, "digest": d, "reason": code} for d, code in sorted(refused.items())]
        _mark(streams, stream, histories, set(gone))
    return deleted, failures, True


def _mark(streams: ImageStreams, stream: str, histories: dict[str, list[HistoryEntry]], gone: set[str]) -> None:
    """The history entries of deleted digests stay, marked ``pruned``."""
    marks = [(tag, e.generation) for tag, entries in histories.items() for e in entries
             if e.digest in gone and not e.pruned]
    if marks:
        streams.store.mark_pruned(stream, marks)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------- rollbacks


def check_restorable(registry: Any, stream: str, digest: str, entries: list[HistoryEntry], *,
                     must_exist: bool) -> None:
    """Refuse (``Conflict``) a rollback to a digest that was pruned or is archived: deploying it would break. With
    ``must_exist`` (a target rollback) a digest ECR no longer has is refused too, whatever removed it."""
    pruned = any(e.digest == digest and e.pruned for e in entries)
    reader = getattr(registry, "image_status", None)
    status = reader(stream, digest) if reader is not None else ("ACTIVE" if not pruned else None)
    if status is None:
        if pruned:
            raise Conflict(f"{stream}@{digest} was pruned (deleted from ECR by prune; its history entries are kept "
                           "for audit): it cannot be rolled back to; push that image again or choose another digest")
        if must_exist:
            raise Conflict(f"{stream}@{digest} is no longer in ECR (deleted, e.g. by a lifecycle rule): a target "
                           "rolled back to it could not start; choose another digest")
        return
    if status in ("ARCHIVED", "ACTIVATING"):
        state = "is archived" if status == "ARCHIVED" else "is being restored from the archive"
        raise Conflict(f"{stream}@{digest} {state} and cannot be pulled; "
                       + RESTORE_HINT.format(stream=stream, digest=digest))
