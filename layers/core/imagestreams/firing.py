"""Fan-out and firing: a head move queues one fire per trigger; a fire writes one target under that target's
lease (one writer per target resource), re-reading the trigger, the head and the target right before writing; rollout
reports only move a deployment forward. Mixed into :class:`imagestreams.services.ImageStreams`."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta

from .errors import (
    Conflict,
    Forbidden,
    NotFound,
    PinsChanged,
    TargetChanged,
    TargetError,
    TransientTargetError,
)
from .model import (
    EcsTarget,
    Head,
    StreamTag,
    Target,
    Trigger,
    pinned_ref,
    short_name,
    target_account,
    target_key,
    utcnow,
)
from .policy import TargetPolicy
from .ports import DriverResult, FireQueue, Registry, StreamStore, TargetDriver

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = timedelta(hours=6)
FIRE_LEASE_SECONDS = 90  # longer than any function that fires may run (60 s): a live fire never outlasts its lease
MAX_TARGET_CHANGES = 3  # a target written by someone else between our read and write: fresh attempts per fire


ROLLOUT_DONE = ("COMPLETED", "FAILED")


def advance_rollout(trigger: Trigger, state: str | None, reason: str | None = None,
                    at: datetime | None = None) -> Trigger:
    """The trigger after learning that its deployment is in ``state``. A deployment only moves forward
    (IN_PROGRESS → COMPLETED or FAILED): a late, duplicated or reordered report never moves it back, never clears
    ``Failed`` and never re-opens a digest whose rollout failed. ``rollout_at`` becomes ``at`` (default: now)
    when the state changes: a verified gate counts its soak time from there."""
    current = trigger.rollout_state
    if state not in ("IN_PROGRESS", *ROLLOUT_DONE) or state == current or current in ROLLOUT_DONE:
        return trigger
    when = at or utcnow()
    if state == "IN_PROGRESS":
        return trigger.with_outcome(rollout_state="IN_PROGRESS", rollout_at=when)
    if state == "COMPLETED":  # a Failed of a later fire (API error) or a deleted tag keeps its status
        done = {"status": "Deployed", "last_error": None} if trigger.status == "Deploying" else {}
        return trigger.with_outcome(rollout_state="COMPLETED", rollout_at=when, **done)
    held = trigger.status in ("Gated", "Blocked")  # the head waits on its gates: that stays what it waits for
    return trigger.with_outcome(status=trigger.status if held else "Failed", rollout_state="FAILED", rollout_at=when,
                                last_error=f"rollout of {trigger.last_triggered_digest} failed: "
                                           f"{reason or 'no reason given'}")



class Firing:
    """Fan-out, fire and rollout tracking, over the ports :class:`~imagestreams.services.ImageStreams` holds."""

    store: StreamStore
    registry: Registry
    drivers: Mapping[str, TargetDriver]
    fire_queue: FireQueue | None
    policy: TargetPolicy
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    max_attempts: int

    # -------------------------------------------------------------------------------------- fan-out

    def head_moved(self, head: Head) -> list[Trigger]:
        """A head changed (from the table's change stream): queue a fire for every unpaused trigger on it, then
        re-evaluate the stream's policy tags (a move or a delete may change what they select).

        The tag's head and triggers come from one consistent range query; the stream's heads and policy tags from
        its ``policy_view`` (an index that lists no history, eventually consistent: the head just read is laid over
        it, and listed in it if it was not yet; a policy tag is only moved after its candidate is read again). A
        stream without policy tags costs that view nothing but the query.

        A tombstone fires nothing: its triggers keep their digest and report ``WaitingForImage``.
        """
        current, triggers = self.store.head_and_triggers(head.stream_tag)
        heads, policies = self.store.policy_view(head.stream_tag.stream, moved=current)
        if policies:  # the index may lag behind the move that brought us here
            heads = [h for h in heads if h.stream_tag != head.stream_tag]
            heads += [current] if current is not None else []
        due: list[Trigger] = []
        if head.deleted:
            for trigger in triggers:
                if trigger.status != "WaitingForImage":
                    self.store.save_trigger(trigger.with_outcome(
                        status="WaitingForImage",
                        last_error=f"{head.stream_tag} was deleted; keeping the current image"))
        else:
            due = [t for t in triggers if not t.paused]
            if due and self.fire_queue is not None:
                self.fire_queue.enqueue(due, head)
        if policies:
            self.evaluate_policies(head.stream_tag.stream, heads, policies)  # type: ignore[attr-defined]
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
                                   rerecord=force and not exact, gated=not exact)
            except TargetChanged as exc:
                log.info("%s; reading it again", exc)
                trigger = current
        error = f"{trigger.target.describe()} kept changing under us ({MAX_TARGET_CHANGES} attempts)"
        self.record(trigger, self._failed(trigger, f"will retry: {error}"))
        raise TransientTargetError(error)

    def _apply(self, trigger: Trigger, head: Head | None, *, force: bool, rerecord: bool | None = None,
               gated: bool = True) -> Trigger:
        if head is None or head.deleted:
            return self.record(trigger, trigger.with_outcome(status="WaitingForImage"))
        back_on_ours = (trigger.last_triggered_digest == head.digest
                        and (trigger.gate or {}).get("digest") not in (None, head.digest))
        if back_on_ours:  # the tag came back to what the target got from us: nothing to judge, the wait is over
            trigger = self.record(trigger, trigger.with_outcome(gate=None, gate_state=None))
        judged = not back_on_ours and gated and trigger.gates and not (
            trigger.last_triggered_digest == head.digest and trigger.status not in ("Gated", "Blocked"))
        if not judged and trigger.gate and trigger.gate.get("state") != "passed":
            # a target rollback (a person chose it), or the digest it already deployed: nothing waits now
            trigger = trigger.with_outcome(gate=None)
        if judged:
            verdict = self.gate_verdict(trigger.gates, head.stream_tag.stream, head.digest, trigger.gate_state,
                                        owner=trigger.id)
            if verdict.state != "passed":  # the target keeps its image; nothing reaches the driver
                return self.record(trigger, trigger.with_outcome(
                    status="Gated" if verdict.state == "waiting" else "Blocked", gate=verdict.gate,
                    gate_state=verdict.gate_state))
            forced = verdict.gate_state.forced_by
            gate = ({"type": "forced", "state": "passed", "digest": head.digest,
                     "reason": f"deployed past its gates by {forced}"} if forced else None)
            trigger = self.record(trigger, trigger.with_outcome(gate=gate, gate_state=verdict.gate_state))
        if not force and trigger.rollout_state == "FAILED" and trigger.last_triggered_digest == head.digest:
            if trigger.status in ("Gated", "Blocked"):  # the head is back on the digest whose rollout failed
                return self.record(trigger, trigger.with_outcome(status="Failed"))
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
                rollout_at=self.clock(), status=status, last_triggered_digest=head.digest,
                last_triggered_at=self.clock(), last_error=None, rollout_state=result.rollout_state, drift=None,
                deployed_image=image, deployment=result.deployment, failures=0, retry_at=None, pins=pins)
        settled = trigger.with_outcome(last_triggered_digest=head.digest, last_error=None, drift=None,
                                       deployed_image=image, failures=0, retry_at=None, pins=pins)
        if trigger.deployed_image == image and trigger.last_triggered_digest == head.digest:
            # what we recorded: only the rollout of our own deployment can move on
            rollout = result.rollout_state if result.deployment in (None, trigger.deployment) else None
            return advance_rollout(settled.with_outcome(
                status="Deployed" if trigger.status != "Deploying" else trigger.status,
                last_triggered_at=trigger.last_triggered_at or self.clock()), rollout, result.reason, self.clock())
        if result.deployment is not None and result.deployment != trigger.deployment:
            # The target runs our image, but our record says we put something else there: the record of the fire
            # that did it was lost (e.g. the trigger write failed after UpdateService), or the head moved to what
            # it already runs. Adopt the deployment that runs it, so its rollout events (FAILED too) reach us.
            adopted = settled.with_outcome(status="Deploying", deployment=result.deployment, rollout_state=None,
                                           last_triggered_at=self.clock())
            return advance_rollout(adopted, result.rollout_state or "IN_PROGRESS", result.reason, self.clock())
        # another digest, already there: the old rollout state says nothing about it
        return advance_rollout(settled.with_outcome(
            status="Deployed" if trigger.status != "Deploying" else trigger.status, rollout_state=None,
            last_triggered_at=trigger.last_triggered_at or self.clock()), result.rollout_state, result.reason,
            self.clock())

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
            service, _, account = key.split("/", 1)[1].partition("@")
            candidates = [t for t in self.store.all_triggers()
                          if isinstance(t.target, EcsTarget) and short_name(t.target.service) == service
                          and (target_account(t.target) or "") == account]
        else:
            candidates = self.store.triggers_for_target(key)
        updated = []
        for listed in candidates:
            if listed.deployment != deployment:
                continue
            for _ in range(self.max_attempts):
                trigger = self.store.refresh_trigger(listed)  # the index lags: a newer fire may have replaced it
                if trigger is None or trigger.deployment != deployment:
                    break
                after = advance_rollout(trigger, state, reason, self.clock())
                if after == trigger:
                    break
                # conditional on what we read: a fire, a gate judgment or an approval landing meanwhile wins, and
                # the report is applied again to the record as it is now
                if self.store.save_trigger(after, expect=trigger):
                    updated.append(after)
                    break
        if any(t.rollout_state in ROLLOUT_DONE for t in updated):
            self.rollout_done(updated)  # verified gates naming these triggers: pass on time, or block
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
        """Persist a trigger's new state (only when it changed; never its ``paused`` flag). A changed rollout
        state gets its ``rollout_at`` (when the caller did not set one)."""
        if after.rollout_state != before.rollout_state and after.rollout_at == before.rollout_at:
            after = after.with_outcome(rollout_at=self.clock())
        if after != before and not self.store.save_trigger(after):
            log.info("trigger %s was removed while firing", before.id)
        return after

