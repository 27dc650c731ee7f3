"""The model test bites: each defect class, put back by a small monkeypatch that restores the old behaviour of one
named function, makes the model (tests/simulation.py) report violations of that class in a fair share of 40
scenarios — and the same 40 scenarios report none of it without the mutation (so the class is fixed here, and the
mutation, not the scenarios, is what the model catches).

The old behaviours below are the functions as they were before the fixes, reduced to what differs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

import pytest

from imagestreams import ingest
from imagestreams.adapters.memory import MemoryStore
from imagestreams.model import EcsTarget, Head, Move, StreamTag, Trigger, short_name
from imagestreams.ports import DriverResult, TargetDriver, TargetState
from imagestreams.reconcile import Reconciler
from imagestreams.services import MAX_ALIAS_DEPTH, ImageStreams, advance_rollout
from tests import simulation
from tests.simulation import VIOLATION_CLASSES, run_scenario, violation_class

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
    assert classes <= set(VIOLATION_CLASSES)
    unmutated = scenarios_reporting(classes, faults, **rates)
    assert not unmutated, f"the model reports {sorted(classes)} without the mutation (seeds {unmutated[:5]})"
    mutate(monkeypatch)
    caught = scenarios_reporting(classes, faults, **rates)
    assert len(caught) >= at_least, f"only {len(caught)} of {len(SEEDS)} scenarios report {sorted(classes)}"


# ------------------------------------------------------------------------ the old behaviours, as they were


def fire_without_lease_or_recheck(self: ImageStreams, trigger: Trigger, head: Head | None, *, force: bool = False,
                                  wait: float | None = None, queued_at: datetime | None = None,
                                  was_paused: bool = False) -> Trigger:
    """ImageStreams.fire before the lease: no lease on the target resource, and ``paused`` and the head as the
    caller read them (not again once the fire holds the target)."""
    if trigger.paused and not force:
        return trigger
    return self._apply(trigger, head, force=force)


def old_rollout_event(self: ImageStreams, key: str, deployment: str, state: str, reason: str = "") -> list[Trigger]:
    """ImageStreams.rollout_event without advance_rollout: the last event wins, so a late IN_PROGRESS re-opens
    FAILED."""
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


def rollout_event_on_the_listed_record(self: ImageStreams, key: str, deployment: str, state: str,
                                       reason: str = "") -> list[Trigger]:
    """ImageStreams.rollout_event acting on the record the (eventually consistent) trigger index returned, without
    reading the trigger again: a late event writes an older record back over a newer fire's."""
    if key.startswith("ecs:*/"):  # an old-format service ARN: the ECS triggers of that service name
        candidates = [t for t in self.store.all_triggers()
                      if isinstance(t.target, EcsTarget) and short_name(t.target.service) == key.split("/", 1)[1]]
    else:
        candidates = self.store.triggers_for_target(key)
    updated = []
    for trigger in candidates:
        if trigger.deployment != deployment:
            continue
        after = advance_rollout(trigger, state, reason)
        if after != trigger:
            updated.append(self.record(trigger, after))
    return updated


def record_what_was_listed(self: Reconciler, seen: Trigger, after: Trigger) -> None:
    """Reconciler._record writing what a check learnt without reading the trigger again: a fire that ran while the
    run was checking (or that the listing did not show yet) is overwritten with the older record."""
    self.streams.record(seen, after)


def old_follow_aliases(self: ImageStreams, source: Head, actor: str, depth: int) -> list[Move]:
    """ImageStreams._follow_aliases retagging with the digest this ingest committed, without reading the source
    again, so a concurrent ingest's newer digest is overwritten."""
    if depth >= MAX_ALIAS_DEPTH:
        return []
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


def applied_keeping_the_old_deployment(self: ImageStreams, trigger: Trigger, head: Head, image: str,
                                       result: DriverResult) -> Trigger:
    """ImageStreams._applied before adoption: a target found already running the image keeps the deployment id
    the trigger recorded, so after a lost trigger write the real deployment's events are ignored."""
    if result.changed:
        status = "Deployed" if result.rollout_state == "COMPLETED" else "Deploying"
        return trigger.with_outcome(
            status=status, last_triggered_digest=head.digest, last_triggered_at=self.clock(), last_error=None,
            rollout_state=result.rollout_state, drift=None, deployed_image=image, deployment=result.deployment,
            failures=0, retry_at=None, pins=result.pins or trigger.pins)
    return trigger.with_outcome(
        status="Deployed" if trigger.status != "Deploying" else trigger.status,
        last_triggered_digest=head.digest, last_triggered_at=trigger.last_triggered_at or self.clock(),
        last_error=None, drift=None, deployed_image=image, failures=0, retry_at=None,
        rollout_state=result.rollout_state or trigger.rollout_state, pins=result.pins or trigger.pins)


def inspect_without_history(driver: TargetDriver, trigger: Trigger) -> TargetState:
    """Reconciler._inspect before the deployment history: only the deployments the target still lists."""
    return driver.inspect(trigger.target, trigger.deployment)


# ------------------------------------------------------------------------------------------ the checks


def test_lease_that_never_excludes_loses_pins_of_shared_targets(monkeypatch):
    """Defect class: concurrent fires on one ECS service / Kubernetes workload undo each other, and a fire undoes a
    target rollback. Mutation: every StreamStore.acquire_lease succeeds, so no write is serialized."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(MemoryStore, "acquire_lease", lambda self, name, owner, seconds: True)

    assert_bites(monkeypatch, mutate, {"pins", "paused", "target"}, {"shared_targets"}, at_least=6)


def test_fire_without_lease_or_paused_recheck_undoes_rollbacks(monkeypatch):
    """Same class, through the fire itself: ImageStreams.fire without the lease and without re-reading the
    trigger (paused) and the head once it holds the target."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "fire", fire_without_lease_or_recheck)

    assert_bites(monkeypatch, mutate, {"pins", "paused", "target"}, {"shared_targets"}, at_least=6)


def test_in_progress_after_failed_reopens_a_failed_digest(monkeypatch):
    """Defect class: a late SERVICE_DEPLOYMENT_IN_PROGRESS after FAILED lets the reconciler redeploy the failed
    digest. Mutation: ImageStreams.rollout_event without advance_rollout (last event wins)."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "rollout_event", old_rollout_event)

    assert_bites(monkeypatch, mutate, {"redeploy"}, {"rollout_reorder"}, at_least=4, bad=0.5)


def test_rollout_event_on_a_lagging_index_record_writes_an_older_record_back(monkeypatch):
    """Defect class: the trigger index lags behind the table; a late rollout event of an older deployment, acting
    on the record the index returned, puts that older record back over the one a newer fire wrote. Mutation:
    ImageStreams.rollout_event without re-reading the trigger."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "rollout_event", rollout_event_on_the_listed_record)

    assert_bites(monkeypatch, mutate, {"record"}, {"index_lag", "rollout_reorder"}, at_least=3, bad=0.5,
                 index_lag=1.0)


def test_reconciler_writing_the_listed_record_overwrites_a_newer_fire(monkeypatch):
    """Defect class: a long reconciler run (over an eventually consistent listing) writes what it learnt on the
    record it listed, over the record of a fire that ran meanwhile. Mutation: Reconciler._record without
    re-reading the trigger."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(Reconciler, "_record", record_what_was_listed)

    assert_bites(monkeypatch, mutate, {"record"}, {"index_lag"}, at_least=6, index_lag=1.0)


def test_alias_follow_with_the_committed_digest_leaves_the_alias_behind(monkeypatch):
    """Defect class: two pushes to an alias's source ingested concurrently leave the alias on the older digest.
    Mutation: ImageStreams._follow_aliases retagging the digest this ingest committed."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "_follow_aliases", old_follow_aliases)

    assert_bites(monkeypatch, mutate, {"alias"}, {"alias_race"}, at_least=3, alias_races=1.0)


def test_ingest_that_lets_access_denied_out_fails_invocations(monkeypatch):
    """Defect class: a push to a repository we may not read fails the ingest invocation (retries, DLQ, alarm).
    Mutation: handle_ecr_event without its NotOurs catch (the handling proper, letting it out)."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(simulation, "handle_ecr_event", ingest._handle)

    assert_bites(monkeypatch, mutate, {"foreign"}, {"foreign_repo"}, at_least=10)


def test_retry_after_a_crash_that_keeps_the_old_deployment_loses_the_rollout(monkeypatch):
    """Defect class: the function dies after UpdateService and before the trigger write; the retry finds the image
    in place and keeps the old deployment id, so the real deployment's events are ignored. Mutation:
    ImageStreams._applied without adopting the deployment that runs the image."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "_applied", applied_keeping_the_old_deployment)

    assert_bites(monkeypatch, mutate, {"deployment"}, {"crash_after_apply"}, at_least=6, crashes=0.5)


def test_lost_failed_event_after_the_deployment_left_the_service(monkeypatch):
    """Defect class: the FAILED event is lost and the circuit breaker's rollback takes the deployment off the
    service, so polling the service never tells; the trigger stays Deploying (and calls the rollback drift).
    Mutation: Reconciler._inspect without the deployment history (``image=``)."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(Reconciler, "_inspect", staticmethod(inspect_without_history))

    assert_bites(monkeypatch, mutate, {"rollout"}, {"rollout_reorder"}, at_least=5, bad=0.5, drop=0.5)


def test_prune_that_does_not_read_what_targets_run_deletes_a_running_digest(monkeypatch):
    """Defect class: prune deletes a digest a target runs although no table record names it any more (a circuit
    breaker's rollback put it back, a crash left it unrecorded). Mutation: prune trusts the table alone
    (``running_now`` reads nothing live)."""
    from imagestreams import prune

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(prune, "running_now", lambda streams, triggers: set())

    # (without policies_gates, whose steps leave fewer prunes between rollouts that fail)
    assert_bites(monkeypatch, mutate, {"prune"}, simulation.FAULT_KINDS - {"policies_gates"}, at_least=2, bad=0.5)


def test_prune_that_keeps_only_heads_deletes_kept_revisions(monkeypatch):
    """Defect class: prune deletes a tag's newest revisions (a rollback target). Mutation: the histories protect
    nothing (only heads, young images and targets are kept)."""
    from imagestreams import prune

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(prune, "history_protected", lambda histories, keep: set())

    assert_bites(monkeypatch, mutate, {"prune"}, simulation.FAULT_KINDS, at_least=6)


# ------------------------------------------------------------------------- policy tags and gates (policies_gates)


def apply_ignoring_gates(original: Callable[..., Trigger]) -> Callable[..., Trigger]:
    """ImageStreams._apply as if every fire were a target rollback: the gates are never judged."""
    def apply(self: ImageStreams, trigger: Trigger, head: Head | None, **kwargs: object) -> Trigger:
        return original(self, trigger, head, **{**kwargs, "gated": False})

    return apply


def test_a_fire_that_does_not_judge_the_gates_lets_gated_digests_reach_targets(monkeypatch):
    """Defect class: a digest reaches a gated trigger's target before its gates passed (or although they
    blocked it). Mutation: ImageStreams._apply skips the gates."""
    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(ImageStreams, "_apply", apply_ignoring_gates(ImageStreams._apply))

    assert_bites(monkeypatch, mutate, {"gated", "blocked"}, {"policies_gates"}, at_least=10)


def test_a_verdict_that_always_passes_moves_gated_policy_tags(monkeypatch):
    """Same class, for policy tags too (a promotion without its soak and approval). Mutation: every gate
    verdict passes at once."""
    from imagestreams.gates import GateState, Gating, Verdict

    def always_passed(self, gates, stream, digest, state, *, owner=None):
        return Verdict("passed", None, GateState(digest, self.clock()), None)

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(Gating, "gate_verdict", always_passed)

    assert_bites(monkeypatch, mutate, {"gated", "blocked"}, {"policies_gates"}, at_least=20)


def test_a_selection_that_takes_the_first_match_leaves_policy_tags_off_their_best_candidate(monkeypatch):
    """Defect class: a policy tag is not on its best candidate after quiescence. Mutation: the evaluation
    selects the first candidate that qualifies instead of the highest."""
    from imagestreams import policies, policytags

    def first_match(spec, candidates):
        for candidate in candidates:
            if spec.kind == "follow" and candidate.tag == spec.matcher:
                return candidate.tag, candidate.digest
            if spec.kind != "follow" and policytags.select(spec, [candidate]) is not None:
                return candidate.tag, candidate.digest
        return None

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(policies, "select", first_match)

    assert_bites(monkeypatch, mutate, {"policy"}, {"policies_gates"}, at_least=20)


def test_an_evaluation_that_ignores_holds_moves_a_rolled_back_policy_tag(monkeypatch):
    """Defect class: a policy tag a person rolled back moves again before `policy.resume`. Mutation: the
    evaluation treats every policy as not held."""
    from imagestreams.policies import PolicyTags

    original = PolicyTags.evaluate_policies

    def ignoring_holds(self, stream, heads=None, policies=None):
        if heads is None or policies is None:
            heads, _, policies = self.store.stream_view(stream)
        return original(self, stream, heads, [p._replace(held=False) for p in policies])

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(PolicyTags, "evaluate_policies", ignoring_holds)

    assert_bites(monkeypatch, mutate, {"held"}, {"policies_gates"}, at_least=6)


def test_a_decision_that_does_not_check_the_digest_approves_the_wrong_one(monkeypatch):
    """Defect class: approving (or rejecting) a digest that is not the one waiting is taken instead of refused.
    Mutation: Gating.decide judges the waiting state as if it were the given digest's."""
    from imagestreams.gates import Gating

    original = Gating.decide

    def any_digest(self, state, gates, digest, actor, *, approve, reason=None):
        state = state._replace(digest=digest) if state is not None else state
        return original(self, state, gates, digest, actor, approve=approve, reason=reason)

    def mutate(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(Gating, "decide", any_digest)

    assert_bites(monkeypatch, mutate, {"approval"}, {"policies_gates"}, at_least=10)
