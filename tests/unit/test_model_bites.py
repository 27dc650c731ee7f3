"""The model test bites: each defect class, put back by a small monkeypatch that restores the old behaviour of one
named function, makes the model (tests/simulation.py) report violations of that class in a fair share of 40
scenarios.

Each check first runs the same scenarios without the mutation: if the model already reports that class, the fix
for it is not in this tree yet and the check is skipped (the randomized test itself fails then, which is the
signal that matters). The old functions below are copied from the code as it was before the fixes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from imagestreams.adapters.memory import MemoryStore
from imagestreams.errors import Conflict, Forbidden, NotFound, TargetError, TransientTargetError
from imagestreams.model import Head, Move, StreamTag, Trigger
from imagestreams.services import MAX_ALIAS_DEPTH, ImageStreams
from tests import simulation
from tests.simulation import run_scenario, violation_class

SEEDS = range(40)


def scenarios_reporting(classes: set[str], faults: Iterable[str], **rates: float) -> list[int]:
    logging.disable(logging.CRITICAL)  # the reconciler logs every injected fault it survives
    try:
        return [seed for seed in SEEDS
                if any(violation_class(v) in classes for v in run_scenario(seed, faults=faults, **rates))]
    finally:
        logging.disable(logging.NOTSET)


def assert_bites(monkeypatch: pytest.MonkeyPatch, mutate: Callable[[pytest.MonkeyPatch], None], classes: set[str],
                 faults: set[str], at_least: int, **rates: float) -> None:
    unmutated = scenarios_reporting(classes, faults, **rates)
    if unmutated:
        pytest.skip(f"the model reports {sorted(classes)} without the mutation too (seeds {unmutated[:5]}): "
                    "the fix for this class is not in this tree yet")
    mutate(monkeypatch)
    caught = scenarios_reporting(classes, faults, **rates)
    assert len(caught) >= at_least, f"only {len(caught)} of {len(SEEDS)} scenarios report {sorted(classes)}"


# ------------------------------------------------------------------------ the old functions, as they were


def old_fire(self: ImageStreams, trigger: Trigger, head: Head | None, *, force: bool = False) -> Trigger:
    """ImageStreams.fire before the fixes: no lease on the target resource, ``paused`` as read by the caller (not
    again after reading the target), and an already-pinned target keeps the trigger's old deployment id."""
    if trigger.paused and not force:
        return trigger
    if head is None or head.deleted:
        return self.record(trigger, trigger.with_outcome(status="WaitingForImage"))
    if not force and trigger.rollout_state == "FAILED" and trigger.last_triggered_digest == head.digest:
        return trigger
    driver = self.drivers.get(trigger.target.type)
    if driver is None:
        return self.record(trigger, self._failed(trigger, f"no driver for target type {trigger.target.type}"))
    try:
        self.policy.check(trigger.target)
    except Forbidden as exc:
        return self.record(trigger, self._failed(trigger, exc.message))
    try:
        image = self.image_for(driver, trigger, head)
        result = driver.apply(trigger.target, image)
    except NotFound as exc:
        return self.record(trigger, self._failed(trigger, exc.message))
    except TargetError as exc:
        return self.record(trigger, self._failed(trigger, str(exc)))
    except TransientTargetError as exc:
        self.record(trigger, self._failed(trigger, f"will retry: {exc}"))
        raise
    if result.changed:
        status = "Deployed" if result.rollout_state == "COMPLETED" else "Deploying"
        updated = trigger.with_outcome(
            status=status, last_triggered_digest=head.digest, last_triggered_at=self.clock(),
            last_error=None, rollout_state=result.rollout_state, drift=None, deployed_image=image,
            deployment=result.deployment, failures=0, retry_at=None)
    else:
        updated = trigger.with_outcome(
            status="Deployed" if trigger.status != "Deploying" else trigger.status,
            last_triggered_digest=head.digest,
            last_triggered_at=trigger.last_triggered_at or self.clock(),
            last_error=None, drift=None, deployed_image=image, failures=0, retry_at=None,
            rollout_state=result.rollout_state or trigger.rollout_state)
    return self.record(trigger, updated)


def old_rollout_event(self: ImageStreams, key: str, deployment: str, state: str, reason: str = "") -> list[Trigger]:
    """ImageStreams.rollout_event before the fixes: the last event wins, so a late IN_PROGRESS re-opens FAILED."""
    updated = []
    for trigger in self.store.triggers_for_target(key):
        if trigger.deployment != deployment:
            continue
        if state == "COMPLETED":
            after = trigger.with_outcome(status="Deployed", rollout_state="COMPLETED", last_error=None)
        elif state == "FAILED":
            after = trigger.with_outcome(status="Failed", rollout_state="FAILED",
                                         last_error=f"rollout of {trigger.last_triggered_digest} failed: "
                                                    f"{reason or 'no reason given'}")
        else:
            after = trigger.with_outcome(rollout_state="IN_PROGRESS")
        updated.append(self.record(trigger, after))
    return updated


def old_follow_aliases(self: ImageStreams, source: Head, actor: str, depth: int) -> list[Move]:
    """ImageStreams._follow_aliases before the fixes: retags with the digest this ingest committed, without
    reading the source again, so a concurrent ingest's newer digest is overwritten."""
    if depth >= MAX_ALIAS_DEPTH:
        raise Conflict(f"alias chain from {source.stream_tag} is deeper than {MAX_ALIAS_DEPTH}")
    moves: list[Move] = []
    for alias in source.aliases:
        stream_tag = StreamTag(source.stream_tag.stream, alias)
        head = self.store.get_head(stream_tag)
        if head is None or head.alias_of != source.stream_tag.tag:
            continue
        if not head.deleted and head.digest == source.digest:
            continue
        self.registry.retag(stream_tag.stream, source.digest, alias)
        moves += self.sync(stream_tag, cause="alias", actor=actor, _depth=depth + 1)
    return moves


# ------------------------------------------------------------------------------------------ the checks


def test_lease_that_never_excludes_loses_pins_of_shared_targets(monkeypatch):
    """Defect class: concurrent fires on one ECS service / Kubernetes workload undo each other, and a fire undoes a
    target rollback. Mutation: every StreamStore.acquire_lease succeeds, so no write is serialized."""
    if not hasattr(MemoryStore, "acquire_lease"):
        pytest.skip("no StreamStore.acquire_lease in this tree yet")

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(MemoryStore, "acquire_lease", lambda self, name, owner, seconds: True)

    assert_bites(monkeypatch, mutate, {"pins", "paused", "target"}, {"shared_targets"}, at_least=6)


def test_fire_without_lease_or_paused_recheck_undoes_rollbacks(monkeypatch):
    """Same class, through the fire itself: ImageStreams.fire as it was (no lease, ``paused`` read once)."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "fire", old_fire)

    assert_bites(monkeypatch, mutate, {"pins", "paused", "target"}, {"shared_targets"}, at_least=6)


def test_in_progress_after_failed_reopens_a_failed_digest(monkeypatch):
    """Defect class: a late SERVICE_DEPLOYMENT_IN_PROGRESS after FAILED lets the reconciler redeploy the failed
    digest. Mutation: ImageStreams.rollout_event as it was (last event wins)."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "rollout_event", old_rollout_event)

    assert_bites(monkeypatch, mutate, {"redeploy"}, {"rollout_reorder"}, at_least=4, bad=0.5)


def test_alias_follow_with_the_committed_digest_leaves_the_alias_behind(monkeypatch):
    """Defect class: two pushes to an alias's source ingested concurrently leave the alias on the older digest.
    Mutation: ImageStreams._follow_aliases as it was (retag with the digest this ingest committed)."""
    if not hasattr(ImageStreams, "_follow_aliases"):
        pytest.skip("ImageStreams._follow_aliases was renamed; point this mutation at its successor")

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "_follow_aliases", old_follow_aliases)

    assert_bites(monkeypatch, mutate, {"alias"}, {"alias_race"}, at_least=3, alias_races=1.0)


def test_ingest_that_lets_access_denied_out_fails_invocations(monkeypatch):
    """Defect class: a push to a repository we may not read fails the ingest invocation (retries, DLQ, alarm).
    Mutation: ingest asks ECR about the tag and lets NotOurs out, as it did before."""
    original = simulation.handle_ecr_event

    def ingest_raising_on_not_ours(streams: ImageStreams, event: Any) -> Any:
        if event.tag is not None and event.result == "SUCCESS":
            streams.registry.resolve(event.stream, event.tag)  # raised NotOurs straight out of the handler
        return original(streams, event)

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(simulation, "handle_ecr_event", ingest_raising_on_not_ours)

    assert_bites(monkeypatch, mutate, {"foreign"}, {"foreign_repo"}, at_least=10)


def test_retry_after_a_crash_that_keeps_the_old_deployment_loses_the_rollout(monkeypatch):
    """Defect class: the function dies after UpdateService and before the trigger write; the retry finds the image
    in place and keeps the old deployment id, so the real deployment's events are ignored. Mutation:
    ImageStreams.fire as it was (an already-pinned target keeps the recorded deployment)."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "fire", old_fire)

    assert_bites(monkeypatch, mutate, {"deployment"}, {"crash_after_apply"}, at_least=6, crashes=0.5)
