"""The reconciler: the safety net for best-effort events, run on a schedule.

1. **Tags**: for every ECR repository, list its tags page by page (one ECR page: up to 1,000 images) and
   re-resolve (``sync``, cause ``import``) every tag whose head differs from ECR — missed pushes move. Then count
   the stream's live heads (from a keys-only index: one Query per 1,000 tags) against what the listing showed (a
   count and a sum of tag hashes, so nothing per tag is held): only when they differ does it look for live heads
   whose tag left ECR, 100 tags per ECR call, and re-resolve those (they become tombstones). Then stream tags of
   repositories that no longer exist at all.
2. **Triggers**: for every unpaused trigger, read what its target runs and decide:
   *in sync* (record rollout progress); *behind* (never fired successfully, or still runs exactly what we last put
   while the head moved: a fire was lost or failed on an API error) → fire, through the FIFO queue so it never races
   the deployer; a ``Failed`` fire is retried once its backoff has passed — unless the rollout itself FAILED;
   anything else was changed out of band: *drift*, reported on the trigger and left alone.

Everything is paged, and memory is bounded by a page, never by a repository's size. The deadline is checked
before every page and every per-tag re-resolve; a run that stops saves a cursor (phase, last finished key, and
where it is inside the current repository: step, ECR page token, last tag done), and the next run resumes
exactly there, so a repository bigger than one run's budget is finished over several runs and cannot keep the
repositories and triggers after it from being reached. Safe to run next to ingest: writes are conditional and
fires go through the same per-trigger FIFO group.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .errors import Forbidden, NotOurs, TransientTargetError
from .model import Head, StreamTag, Trigger, rfc3339
from .ports import TargetDriver, TargetState
from .services import ROLLOUT_DONE, ImageStreams, advance_rollout

log = logging.getLogger(__name__)
PHASES = ("tags", "orphans", "triggers")
HEAD_PAGE = 100  # heads read per page, and tags asked of ECR per existence check
KEY_PAGE = 1000  # live heads counted per page (keys only: about 100 KB)
ALIAS_MARK = "#A"  # what a live head key ends with when the head is an alias
_MOD = 1 << 64

# One page of a repository's listing: tag -> digest, and the token of the next page (None after the last).
TagPage = tuple[dict[str, str], str | None]


class Catalog(Protocol):
    """Paged reads of the registry, for the reconciler."""

    def repositories(self) -> list[str]: ...

    def tags(self, stream: str, token: str | None = None) -> TagPage | None:
        """One page of a repository's tags (the first page without a token); None when we may not read it."""

    def present(self, stream: str, tags: list[str]) -> set[str]:
        """Which of these tags (at most :data:`HEAD_PAGE`) the repository has now."""


class CursorStore(Protocol):
    def load_cursor(self) -> dict[str, Any]: ...

    def save_cursor(self, cursor: dict[str, Any]) -> None: ...

    def live_streams(self) -> list[str]:
        """Repositories that have at least one live (not deleted) stream tag in the table."""

    def heads_after(self, stream: str, after: str, limit: int) -> list[Head]:
        """Up to ``limit`` heads (live or tombstones) of a stream with a tag after ``after``, in tag order; fewer
        only at the end of the stream."""

    def heads_of(self, stream: str, tags: list[str], *, consistent: bool = True) -> list[Head]:
        """The heads of these tags that exist (consistent reads unless ``consistent`` is False)."""

    def live_head_keys(self, stream: str, after: str, limit: int) -> list[str]:
        """Up to ``limit`` live heads of a stream after ``after`` (a key this returned), in order, as keys: the tag,
        with ``#A`` appended when the head is an alias. May lag a moment behind head writes."""


def _hash(tag: str) -> int:
    return int.from_bytes(hashlib.blake2b(tag.encode(), digest_size=8).digest(), "big")


@dataclass
class _Place:
    """Where a run is inside one repository: the step, the ECR page token, the last tag done, and the running
    difference between the tags the listing showed and the live heads (a count and a sum of tag hashes)."""

    step: str
    token: str | None = None
    tag: str = ""
    n: int = 0
    sum: int = 0

    @classmethod
    def load(cls, saved: dict[str, Any], first: str) -> _Place:
        return cls(saved.get("step", first), saved.get("token"), saved.get("tag", ""), int(saved.get("n", 0)),
                   int(str(saved.get("sum", "0")), 16))

    def add(self, n: int, total: int) -> None:
        self.n, self.sum = self.n + n, (self.sum + total) % _MOD

    def saved(self) -> dict[str, Any]:
        saved = {"step": self.step, "token": self.token, "tag": self.tag, "n": self.n, "sum": f"{self.sum:x}"}
        return {k: v for k, v in saved.items() if v and v != "0"}


class _Deadline:
    """The run's deadline, except at the first question: the caller asked just before, so one step always goes
    through and every run moves on from where the last one stopped."""

    def __init__(self, out_of_time: Callable[[], bool]) -> None:
        self.out_of_time = out_of_time
        self.asked = False

    def __call__(self) -> bool:
        if not self.asked:
            self.asked = True
            return False
        return self.out_of_time()


class Reconciler:
    def __init__(self, streams: ImageStreams, catalog: Catalog, cursors: CursorStore, *,
                 clock: Callable[[], datetime] | None = None, expiry: Any = None) -> None:
        self.streams = streams
        self.expiry = expiry  # an ExpiryWatch (imagestreams.expiry), or None
        self.listed: list[str] | None = None  # the repositories this run listed (None: it did not list them)
        self.catalog = catalog
        self.cursors = cursors
        self.clock = clock or streams.clock
        self._policy_streams: set[str] | None = None  # streams with policy tags (read once per run)

    def run(self, out_of_time: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        cursor = self.cursors.load_cursor() or {}
        phase, after = cursor.get("phase", PHASES[0]), cursor.get("after", "")
        inside = {k: v for k, v in cursor.items() if k not in ("phase", "after")}  # position within `repo`
        report: dict[str, Any] = {"moves": [], "fired": [], "drift": [], "retried": [], "errors": [],
                                  "repositories": 0, "triggers": 0, "resumed_from": dict(cursor) or None}
        ecr_repos: list[str] | None = None
        for current in PHASES[PHASES.index(phase):]:
            if current != phase:  # a phase is done: keep that, and start the next one's bulk read only in time
                if out_of_time():
                    return self._stop(report, {"phase": current})
                self.cursors.save_cursor({"phase": current})
            if current == "tags":
                ecr_repos = sorted(self.catalog.repositories())
                self.listed = ecr_repos  # the expiry-risk pass after the run reuses this listing
                keys = ecr_repos
            elif current == "orphans":
                known = set(ecr_repos if ecr_repos is not None else self.catalog.repositories())
                keys = sorted(s for s in self.cursors.live_streams() if s not in known)
            else:
                triggers = {t.id: t for t in self.streams.store.all_triggers()}
                keys = sorted(triggers)
                moved = {m["tag"] for m in report["moves"]}
            for key in keys:
                if key <= after:
                    continue
                position = {k: v for k, v in inside.items() if k != "repo"} if inside.get("repo") == key else {}
                inside = {}
                if out_of_time():
                    return self._stop(report, {"phase": current, "after": after,
                                               **({"repo": key, **position} if position else {})})
                try:
                    if current == "triggers":
                        self._check(triggers[key], report, moved)
                        report["triggers"] += 1
                    else:
                        stopped = self._tags(key, report, out_of_time, position, gone=current == "orphans")
                        if stopped is not None:
                            return self._stop(report, {"phase": current, "after": after, "repo": key, **stopped})
                        report["repositories"] += 1
                except Exception as exc:  # noqa: BLE001 - one bad item must not block every later run
                    log.exception("reconcile of %s failed", key)
                    report["errors"].append(f"{key}: {type(exc).__name__}: {exc}")  # metric + alarm
                after = key
            after = ""
        self.cursors.save_cursor({})
        report["complete"] = True
        return self._record_run(report)

    def _stop(self, report: dict[str, Any], cursor: dict[str, Any]) -> dict[str, Any]:
        cursor = {k: v for k, v in cursor.items() if v not in (None, "")}
        self.cursors.save_cursor(cursor)
        report["complete"] = False
        report["cursor"] = cursor
        return self._record_run(report)

    def expiry_risk(self, out_of_time: Callable[[], bool] = lambda: False) -> dict[str, Any] | None:
        """After a run: one bounded pass over the lifecycle policy previews (``imagestreams.expiry``). Its faults
        are reported in its answer (``errors``), never raised: the run itself is done."""
        if self.expiry is None:
            return None
        try:
            return self.expiry.run(out_of_time, self.listed)
        except Exception as exc:  # noqa: BLE001 - reported (metric + log), the next run tries again
            log.exception("expiry risk pass failed")
            return {"errors": [f"expiry risk: {type(exc).__name__}: {exc}"], "atRisk": None}

    def _record_run(self, report: dict[str, Any]) -> dict[str, Any]:
        """Keep when this run ended and how many errors it had (``check`` reports a reconciler that stopped
        running or keeps failing)."""
        record = getattr(self.cursors, "record_run", None)
        if record is not None:
            record(self.clock(), len(report["errors"]), report["complete"])
        return report

    # ------------------------------------------------------------------------------------------ tags

    def _tags(self, stream: str, report: dict[str, Any], out_of_time: Callable[[], bool],
              position: dict[str, Any], *, gone: bool) -> dict[str, Any] | None:
        """Reconcile one repository's stream tags from ``position`` on, page by page, in three steps:
        ``ecr`` — each page of the listing against the heads of its tags (missed pushes, re-pushed tombstones);
        ``count`` — the stream's live heads against the tags the listing showed; ``gone`` — only if those differ
        (or the whole repository is gone): each live head whose tag ECR no longer has. Returns where it stopped
        when the deadline came, None when the repository is done."""
        owns = getattr(self.catalog, "owns", None)
        if not gone and owns is not None and not owns(stream):
            return None  # outside RepositoryPattern: not ours (IAM would deny reading it anyway)
        place = _Place.load(position, "gone" if gone else "ecr")
        late = _Deadline(out_of_time)
        if place.step == "ecr" and not self._listing(stream, report, place, late):
            return place.saved()
        if place.step == "count" and not self._count(stream, report, place, late):
            return place.saved()
        if place.step == "gone" and not self._gone(stream, report, place, late, repository_gone=gone):
            return place.saved()
        if not gone:
            self._policies(stream, report)
        return None

    def _policies(self, stream: str, report: dict[str, Any]) -> None:
        """Once the stream's heads are in line with ECR: bring its policy tags to their selection (one query of
        the stream; nothing for a stream without policy tags, known from one index read per run)."""
        if self._policy_streams is None:
            listing = getattr(self.streams.store, "all_policies", None)
            self._policy_streams = {p.stream_tag.stream for p in listing()} if listing is not None else set()
        if stream not in self._policy_streams:
            return
        try:
            moves = self.streams.evaluate_policies(stream)
        except NotOurs:
            return  # IAM no longer lets us write it: not ours, like its listing
        except Exception as exc:  # noqa: BLE001 - one bad stream must not stop the others
            log.exception("policy evaluation of %s failed", stream)
            report["errors"].append(f"{stream} (policy tags): {type(exc).__name__}: {exc}")
            return
        report["moves"] += [m.as_dict() for m in moves]

    def _listing(self, stream: str, report: dict[str, Any], place: _Place, late: _Deadline) -> bool:
        while True:
            page = self.catalog.tags(stream, place.token) if place.token else self.catalog.tags(stream)
            if page is None:
                place.step = "done"  # not readable with our permissions (outside RepositoryPattern): not ours
                return True
            listed, following = page
            # eventually consistent (half the read units): only a hint, every re-resolve reads both sides again
            heads = {h.stream_tag.tag: h for h in self.cursors.heads_of(stream, sorted(listed), consistent=False)}
            suspects, count, total = [], 0, 0
            for tag, digest in listed.items():
                head = heads.get(tag)
                if head is not None and head.deleted and head.kept_in_registry and head.digest == digest:
                    continue  # untagged from the stream but kept in ECR: no live head expected
                count, total = count + 1, total + _hash(tag)
                if head is None or head.digest != digest or head.deleted:
                    suspects.append(tag)
            del heads
            for tag in sorted(suspects):
                if tag <= place.tag:
                    continue  # re-resolved by the run that stopped inside this page
                if late():
                    return False
                self._resync(stream, tag, report)
                place.tag = tag
            place.add(count, total)  # only once the page is done: a page stopped in is listed again
            place.token, place.tag = following, ""
            if not place.token:
                place.step = "count"
                return True
            if late():
                return False

    def _count(self, stream: str, report: dict[str, Any], place: _Place, late: _Deadline) -> bool:
        """Count the stream's live heads (keys only, never a head's history) against the listing; check each
        alias on the way (one consistent read of it and of its source)."""
        while True:
            if late():
                return False
            keys = self.cursors.live_head_keys(stream, place.tag, KEY_PAGE)
            tags = [k.removesuffix(ALIAS_MARK) for k in keys]
            for key, tag in zip(keys, tags, strict=True):
                if key != tag:
                    head = self.streams.store.get_head(StreamTag(stream, tag))
                    if head is not None and head.alias_of and not head.deleted:
                        self._check_alias(head, report)
            place.add(-len(tags), -sum(_hash(t) for t in tags))
            if len(keys) < KEY_PAGE:
                break
            place.tag = keys[-1]
        # equal: every live head's tag was in the listing, nothing is gone
        place.step = "done" if place.n == 0 and place.sum == 0 else "gone"
        place.tag, place.n, place.sum = "", 0, 0
        return True

    def _gone(self, stream: str, report: dict[str, Any], place: _Place, late: _Deadline, *,
              repository_gone: bool) -> bool:
        while True:
            if late():
                return False
            page = self.cursors.heads_after(stream, place.tag, HEAD_PAGE)
            live = {h.stream_tag.tag for h in page if not h.deleted}
            there = set() if repository_gone or not live else self.catalog.present(stream, sorted(live))
            for head in page:
                tag = head.stream_tag.tag
                if tag in live and tag not in there:
                    if late():
                        return False
                    self._resync(stream, tag, report)
                place.tag = tag
            if len(page) < HEAD_PAGE:
                return True

    def _resync(self, stream: str, tag: str, report: dict[str, Any]) -> None:
        """Re-resolve one stream tag: ``sync`` re-reads both sides, so the bulk reads above are only hints. A tag
        that fails is reported and the repository goes on."""
        try:
            report["moves"] += [m.as_dict() for m in self.streams.sync(StreamTag(stream, tag), cause="import",
                                                                        actor="reconciler")]
        except Exception as exc:  # noqa: BLE001 - one bad tag must not stop the rest of its repository
            log.exception("reconcile of %s:%s failed", stream, tag)
            report["errors"].append(f"{stream}:{tag}: {type(exc).__name__}: {exc}")

    def _check_alias(self, head: Head, report: dict[str, Any]) -> None:
        """A live alias must equal its live source (an alias flow that died half-way, or raced, leaves one behind;
        comparing the table with ECR does not see it). Repairs go through the alias flow of the source, which also
        restores a missing back-link first. Reported under ``aliases`` as ``alias -> source``. Checked while the
        heads are paged through (one consistent read of the source per alias), so memory stays one page."""
        stream = head.stream_tag.stream
        source = self.streams.store.get_head(StreamTag(stream, head.alias_of or ""))
        if source is None or source.deleted:
            return
        if head.digest == source.digest and head.stream_tag.tag in source.aliases:
            return
        report.setdefault("aliases", []).append(f"{stream}:{head.stream_tag.tag} -> {stream}:{source.stream_tag.tag}")
        try:
            moves = self.streams.repair_alias(head.stream_tag, actor="reconciler")
        except Exception as exc:  # noqa: BLE001 - one bad alias must not stop the rest of its repository
            log.exception("alias repair of %s failed", head.stream_tag)
            report["errors"].append(f"{head.stream_tag}: {type(exc).__name__}: {exc}")
            return
        report["moves"] += [m.as_dict() for m in moves]

    # -------------------------------------------------------------------------------------- triggers

    def _check(self, trigger: Trigger, report: dict[str, Any], moved: set[str]) -> None:
        if trigger.paused:
            return
        store = self.streams.store
        head = store.get_head(trigger.stream_tag)
        if head is None or head.deleted:
            if trigger.status != "WaitingForImage":
                self._record(trigger, trigger.with_outcome(status="WaitingForImage"))
            return
        if trigger.status == "Failed" and trigger.rollout_state != "FAILED":
            if trigger.retry_at is None or trigger.retry_at <= self.clock():
                report["retried"].append(trigger.id)
                self._fire(trigger, head)
            return
        if str(trigger.stream_tag) in moved:
            return  # this run just moved the head: the table stream fans that move out like any other
        if trigger.rollout_state == "FAILED" and trigger.last_triggered_digest == head.digest:
            return  # no loop: the head is the digest whose rollout failed; what runs now is the circuit breaker's
            # choice, not drift. Wait for a new head or an explicit `deploy`.
        try:
            self.streams.policy.check(trigger.target)  # an allow-list narrowed since: not ours to read any more
        except Forbidden as exc:
            if trigger.status != "Failed" or trigger.last_error != exc.message:
                self._record(trigger, self.streams._failed(trigger, exc.message))  # retried with backoff
            report["forbidden"] = report.get("forbidden", []) + [trigger.id]
            return
        driver = self.streams.drivers[trigger.target.type]
        state = self._inspect(driver, trigger)
        if trigger.status == "Deploying" and state.rollout_state == "FAILED":
            # the rollout event was lost (maybe with the deployment, which a circuit-breaker rollback drops from
            # the service): polling tells us. Record it; what runs now is the rollback's choice, not drift.
            self._record(trigger, self._rollout(trigger, "FAILED", state.reason))
            return
        expected = self.streams.image_for(driver, trigger, head)
        if state.image == expected:
            after = trigger.with_outcome(drift=None)
            if trigger.status == "Deploying" and state.rollout_state:
                after = self._rollout(after, state.rollout_state, state.reason)
            if after != trigger:
                self._record(trigger, after)
            return
        behind = (trigger.last_triggered_digest is None or state.image == trigger.deployed_image
                  # the rollout of the last digest failed and was rolled back, and the head has moved since
                  or (trigger.rollout_state == "FAILED" and trigger.last_triggered_digest != head.digest))
        if behind:
            report["fired"].append(trigger.id)
            self._fire(trigger, head)
            return
        drift = (f"runs {state.image}, not {expected} (what this trigger last deployed: "
                 f"{trigger.deployed_image or 'nothing'}); changed out of band at or before "
                 f"{rfc3339(self.clock())} — left alone until `deploy` or the next head move")
        report["drift"].append({"id": trigger.id, "target": trigger.target.describe(), "image": state.image})
        if trigger.drift is None or not trigger.drift.startswith(f"runs {state.image},"):
            self._record(trigger, trigger.with_outcome(drift=drift))

    def _record(self, seen: Trigger, after: Trigger) -> None:
        """Write what this check learnt, unless the trigger changed since it was listed (the listing is an
        eventually consistent index read at the start of the run): a fire's newer record is never overwritten."""
        fresh = self.streams.store.refresh_trigger(seen)
        if fresh is None or fresh._replace(paused=seen.paused) != seen or (
                after != seen and not self.streams.store.save_trigger(after, expect=seen)):
            log.info("trigger %s changed while it was checked; the next run looks again", seen.id)

    @staticmethod
    def _inspect(driver: TargetDriver, trigger: Trigger) -> TargetState:
        """Read the target. While our rollout is open, a driver that can also tells what became of our
        deployment after the target dropped it (from what we put there)."""
        if (getattr(driver, "finds_past_rollouts", False) and trigger.deployment and trigger.deployed_image
                and trigger.rollout_state not in ROLLOUT_DONE):
            return driver.inspect(trigger.target, trigger.deployment,  # type: ignore[call-arg]
                                  image=trigger.deployed_image)
        return driver.inspect(trigger.target, trigger.deployment)

    def _rollout(self, trigger: Trigger, state: str, reason: str | None = None) -> Trigger:
        """Polled rollout state, under the same rule as rollout events: it only moves forward (``rollout_at``, from
        which a verified gate counts its soak, on this service's clock)."""
        return advance_rollout(trigger, state, reason or "seen by the reconciler", self.clock())

    def _fire(self, trigger: Trigger, head: Head) -> None:
        queue = self.streams.fire_queue
        if queue is not None:
            queue.enqueue([trigger], head, reason=f"reconcile-{int(self.clock().timestamp())}")
        else:
            try:
                self.streams.fire(trigger, head)
            except TransientTargetError as exc:
                log.warning("fire of %s failed again: %s", trigger.id, exc)
