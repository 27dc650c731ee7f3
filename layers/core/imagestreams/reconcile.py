"""The reconciler (DESIGN §3.11): the safety net for best-effort events, run on a schedule.

1. **Tags**: for every ECR repository, list its tags in bulk and re-resolve (``sync``, cause ``import``) every
   stream tag whose head differs from ECR — missed pushes move, tags gone from ECR become tombstones. Then stream
   tags of repositories that no longer exist at all.
2. **Triggers**: for every unpaused trigger, read what its target runs and decide:
   *in sync* (record rollout progress); *behind* (never fired successfully, or still runs exactly what we last put
   while the head moved: a fire was lost or failed on an API error) → fire, through the FIFO queue so it never races
   the deployer; a ``Failed`` fire is retried once its backoff has passed — unless the rollout itself FAILED (§3.8);
   anything else was changed out of band: *drift*, reported on the trigger and left alone.

Everything is paginated. Each run stops before its deadline and saves a cursor (phase + last key), so a large
account finishes over several runs instead of timing out. Safe to run next to ingest: writes are conditional and
fires go through the same per-trigger FIFO group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from .errors import TransientTargetError
from .model import Head, StreamTag, Trigger, rfc3339
from .ports import TargetDriver, TargetState
from .services import ROLLOUT_DONE, ImageStreams, advance_rollout

log = logging.getLogger(__name__)
PHASES = ("tags", "orphans", "triggers")


class Catalog(Protocol):
    """Bulk reads of the registry, for the reconciler."""

    def repositories(self) -> list[str]: ...

    def tags(self, stream: str) -> dict[str, str] | None:
        """Every tag of a repository and the digest it points to; None when we may not read it."""


class CursorStore(Protocol):
    def load_cursor(self) -> dict[str, Any]: ...

    def save_cursor(self, cursor: dict[str, Any]) -> None: ...

    def live_streams(self) -> list[str]:
        """Repositories that have at least one live (not deleted) stream tag in the table."""


class Reconciler:
    def __init__(self, streams: ImageStreams, catalog: Catalog, cursors: CursorStore, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.streams = streams
        self.catalog = catalog
        self.cursors = cursors
        self.clock = clock or streams.clock

    def run(self, out_of_time: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        cursor = self.cursors.load_cursor() or {}
        phase, after = cursor.get("phase", PHASES[0]), cursor.get("after", "")
        report: dict[str, Any] = {"moves": [], "fired": [], "drift": [], "retried": [], "errors": [],
                                  "repositories": 0, "triggers": 0, "resumed_from": dict(cursor) or None}
        ecr_repos: list[str] | None = None
        for current in PHASES[PHASES.index(phase):]:
            if current == "tags":
                ecr_repos = sorted(self.catalog.repositories())
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
                if out_of_time():
                    self.cursors.save_cursor({"phase": current, "after": after})
                    report["complete"] = False
                    report["cursor"] = {"phase": current, "after": after}
                    return report
                try:
                    if current == "triggers":
                        self._check(triggers[key], report, moved)
                        report["triggers"] += 1
                    else:
                        self._tags(key, report, gone=current == "orphans")
                        report["repositories"] += 1
                except Exception as exc:  # noqa: BLE001 - one bad item must not block every later run
                    log.exception("reconcile of %s failed", key)
                    report["errors"].append(f"{key}: {type(exc).__name__}: {exc}")  # metric + alarm
                after = key
            after = ""
        self.cursors.save_cursor({})
        report["complete"] = True
        return report

    # ------------------------------------------------------------------------------------------ tags

    def _tags(self, stream: str, report: dict[str, Any], *, gone: bool) -> None:
        truth = {} if gone else self.catalog.tags(stream)
        if truth is None:
            return  # not readable with our permissions (outside RepositoryPattern): not ours, and not gone
        heads = {h.stream_tag.tag: h for h in self.streams.store.heads(stream)}
        suspects = set()
        for tag, digest in truth.items():
            head = heads.get(tag)
            if head is None or head.digest != digest or (head.deleted and not head.kept_in_registry):
                suspects.add(tag)
        suspects |= {tag for tag, head in heads.items() if not head.deleted and tag not in truth}
        for tag in sorted(suspects):  # sync re-reads both sides: the bulk listing is only a hint
            report["moves"] += [m.as_dict() for m in self.streams.sync(StreamTag(stream, tag), cause="import",
                                                                        actor="reconciler")]

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
            return  # §3.8: the head is the digest whose rollout failed; what runs now is the circuit breaker's
            # choice, not drift. Wait for a new head or an explicit `deploy`.
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
        fresh = self.streams.store.get_trigger(seen.id)
        if fresh is None or fresh._replace(paused=seen.paused) != seen:
            log.info("trigger %s changed while it was checked; the next run looks again", seen.id)
            return
        self.streams.record(seen, after)

    @staticmethod
    def _inspect(driver: TargetDriver, trigger: Trigger) -> TargetState:
        """Read the target. While our rollout is open, a driver that can also tells what became of our
        deployment after the target dropped it (from what we put there)."""
        if (getattr(driver, "finds_past_rollouts", False) and trigger.deployment and trigger.deployed_image
                and trigger.rollout_state not in ROLLOUT_DONE):
            return driver.inspect(trigger.target, trigger.deployment,  # type: ignore[call-arg]
                                  image=trigger.deployed_image)
        return driver.inspect(trigger.target, trigger.deployment)

    @staticmethod
    def _rollout(trigger: Trigger, state: str, reason: str | None = None) -> Trigger:
        """Polled rollout state, under the same rule as rollout events: it only moves forward."""
        return advance_rollout(trigger, state, reason or "seen by the reconciler")

    def _fire(self, trigger: Trigger, head: Head) -> None:
        queue = self.streams.fire_queue
        if queue is not None:
            queue.enqueue([trigger], head, reason=f"reconcile-{int(self.clock().timestamp())}")
        else:
            try:
                self.streams.fire(trigger, head)
            except TransientTargetError as exc:
                log.warning("fire of %s failed again: %s", trigger.id, exc)
