"""What the randomized model (tests/simulation.py, fault kind ``policies_gates``) found in policy tags and gates,
each pinned by a regression test on the real modules (no stand-ins for the gates)."""

from __future__ import annotations

from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.model import StreamTag
from imagestreams.services import ImageStreams
from tests.conftest import digest

S = "team/web"


def make():
    store, registry = MemoryStore(), MemoryRegistry()
    return ImageStreams(store, registry, {"ecs": MemoryEcs()}, ListQueue()), store, registry


def push(streams: ImageStreams, registry: MemoryRegistry, tag: str, n: int) -> None:
    registry.set(S, tag, digest(n))
    streams.sync(StreamTag(S, tag))
    streams.head_moved(streams.store.get_head(StreamTag(S, tag)))


def promotion(streams: ImageStreams) -> dict:
    answer = dispatch(streams, {"action": "policy.set", "target": f"{S}:prod", "policy": {"follow": "staging"},
                                "gates": [{"type": "approval"}], "actor": "alice"})
    assert answer["ok"], answer
    return answer["result"]["policies"][0]


def test_approving_the_digest_a_policy_tag_waits_for_moves_it_and_records_the_approver():
    """Found: ``approve --target`` on a policy tag failed with an internal error (AttributeError: the policy
    path called a gates function that only existed as a method), so no promotion could ever be approved."""
    streams, store, registry = make()
    push(streams, registry, "staging", 1)
    waiting = promotion(streams)
    assert (waiting["status"], waiting["gate"]["type"], waiting["digest"]) == ("Gated", "approval", digest(1))
    assert (S, "prod") not in registry.tag_map

    answer = dispatch(streams, {"action": "approve", "target": f"{S}:prod", "digest": digest(1), "actor": "bob"})

    assert answer["ok"], answer
    [policy] = answer["result"]["policies"]
    assert (policy["status"], policy["digest"]) == ("Selected", digest(1))
    assert registry.tag_map[(S, "prod")] == digest(1)
    assert streams.history(StreamTag(S, "prod"))[0].actor == "bob"


def test_approving_or_rejecting_another_digest_is_a_conflict_and_writes_nothing():
    streams, store, registry = make()
    push(streams, registry, "staging", 1)
    promotion(streams)
    before = store.get_policy(StreamTag(S, "prod"))
    for action in ("approve", "reject"):
        answer = dispatch(streams, {"action": action, "target": f"{S}:prod", "digest": digest(2), "actor": "bob"})
        assert answer["error"]["type"] == "Conflict", answer
    assert store.get_policy(StreamTag(S, "prod")) == before
    assert (S, "prod") not in registry.tag_map


def test_a_rejected_digest_blocks_the_promotion_and_a_newer_one_waits_again():
    streams, store, registry = make()
    push(streams, registry, "staging", 1)
    promotion(streams)
    answer = dispatch(streams, {"action": "reject", "target": f"{S}:prod", "digest": digest(1), "actor": "bob",
                                "reason": "CVE-2026-0001"})
    assert answer["ok"], answer
    [policy] = answer["result"]["policies"]
    assert (policy["status"], policy["gate"]["state"]) == ("Blocked", "blocked")
    assert "CVE-2026-0001" in policy["gate"]["reason"]
    assert (S, "prod") not in registry.tag_map

    push(streams, registry, "staging", 2)  # a newer head starts over
    policy = store.get_policy(StreamTag(S, "prod"))
    assert (policy.status, policy.digest, policy.gate["type"]) == ("Gated", digest(2), "approval")


def test_a_rollout_completion_the_reconciler_polls_starts_the_soak_on_the_service_clock():
    """Found: when the reconciler (not an event) learnt that a rollout COMPLETED, it stamped ``rolloutAt`` with
    the machine's wall clock instead of the service's clock, so a verified gate counted its soak from a time the
    rest of the service does not share (with a clock behind the wall clock, the promotion never came)."""
    from datetime import datetime, timedelta, timezone

    from imagestreams.model import EcsTarget
    from imagestreams.reconcile import Reconciler

    class Clock:
        now = datetime(2026, 1, 1, tzinfo=timezone.utc)  # not today: the service's own clock

        def __call__(self):
            return self.now

    clock = Clock()
    store, registry, ecs = MemoryStore(), MemoryRegistry(), MemoryEcs()
    ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    streams = ImageStreams(store, registry, {"ecs": ecs}, None, clock=clock)
    registry.set(S, "latest", digest(1))
    streams.sync(StreamTag(S, "latest"))
    trigger = streams.add_trigger(StreamTag(S, "latest"), EcsTarget("prod", "web", "web"))
    streams.fire_by_id(StreamTag(S, "latest"), trigger.id)
    assert store.get_trigger(trigger.id).status == "Deploying"  # no rollout event reaches us
    answer = dispatch(streams, {"action": "policy.set", "target": f"{S}:prod", "policy": {"follow": "latest"},
                                "gates": [{"type": "verified", "triggers": [trigger.id], "minutes": 5}]})
    assert answer["result"]["policies"][0]["status"] == "Gated"

    clock.now += timedelta(minutes=1)
    ecs.rollouts[("prod", "web")] = "COMPLETED"  # the deployment settled; its event was lost
    Reconciler(streams, registry, store).run()  # polls the service
    polled = store.get_trigger(trigger.id)
    assert (polled.rollout_state, polled.rollout_at) == ("COMPLETED", clock.now)

    clock.now += timedelta(minutes=6)
    streams.evaluate_policies(S)
    assert registry.tag_map[(S, "prod")] == digest(1)
    assert store.get_policy(StreamTag(S, "prod")).status == "Selected"


def test_a_target_rollback_of_a_held_trigger_clears_its_gate_and_resume_judges_again():
    """Found: a target rollback of a trigger held by its gates left the trigger paused and running the rolled-back
    image, yet still showing "approval needed" for the newer digest (``approve`` then said it was not waiting).
    The gate detail is cleared by the rollback; ``resume`` judges the head again (and the detail is back)."""
    from imagestreams.model import EcsTarget

    streams, store, registry = make()
    streams.fire_queue = None
    streams.drivers["ecs"].images[("prod", "web")] = {"web": "nginx:latest"}
    latest = StreamTag(S, "latest")

    def push_and_fire(n: int, trigger_id: str | None = None) -> None:
        registry.set(S, "latest", digest(n))
        streams.sync(latest)
        if trigger_id:
            streams.fire_by_id(latest, trigger_id)

    push_and_fire(1)
    trigger = streams.add_trigger(latest, EcsTarget("prod", "web", "web"))
    streams.fire_by_id(latest, trigger.id)
    push_and_fire(2, trigger.id)
    assert dispatch(streams, {"action": "trigger.gates", "id": trigger.id, "gates": [{"type": "approval"}]})["ok"]
    push_and_fire(3, trigger.id)
    held = store.get_trigger(trigger.id)
    assert (held.status, held.gate["state"], held.gate["digest"]) == ("Gated", "waiting", digest(3))

    answer = dispatch(streams, {"action": "rollback", "trigger": trigger.id, "actor": "carol"})
    assert answer["ok"], answer
    rolled = store.get_trigger(trigger.id)
    assert rolled.paused and rolled.last_triggered_digest == digest(1)
    assert rolled.gate is None and rolled.status not in ("Gated", "Blocked")

    answer = dispatch(streams, {"action": "trigger.resume", "id": trigger.id, "actor": "carol"})
    assert answer["ok"], answer
    resumed = store.get_trigger(trigger.id)
    assert (resumed.status, resumed.gate["type"], resumed.gate["digest"]) == ("Gated", "approval", digest(3))
    assert streams.drivers["ecs"].images[("prod", "web")]["web"].endswith(digest(1))


def test_a_late_failed_report_of_the_previous_rollout_keeps_a_held_trigger_approvable():
    """Found: a trigger held on its gates for the new head (``Gated``, approval needed) turned ``Failed`` when the
    FAILED report of its previous deployment arrived; ``approve`` of the waiting digest was then refused
    ("not waiting on its gates") and scan evidence no longer woke it. The rollout failure is recorded, the
    status stays what the head waits for."""
    from imagestreams.model import EcsTarget, target_key

    streams, store, registry = make()
    streams.fire_queue = None
    ecs = streams.drivers["ecs"]
    ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    latest = StreamTag(S, "latest")
    registry.set(S, "latest", digest(1))
    streams.sync(latest)
    trigger = streams.add_trigger(latest, EcsTarget("prod", "web", "web"))
    streams.fire_by_id(latest, trigger.id)
    assert dispatch(streams, {"action": "trigger.gates", "id": trigger.id, "gates": [{"type": "approval"}]})["ok"]
    deployment = store.get_trigger(trigger.id).deployment
    registry.set(S, "latest", digest(2))
    streams.sync(latest)
    streams.fire_by_id(latest, trigger.id)
    assert store.get_trigger(trigger.id).status == "Gated"

    streams.rollout_event(target_key(trigger.target), deployment, "FAILED", "circuit breaker")

    held = store.get_trigger(trigger.id)
    assert (held.status, held.rollout_state, held.gate["digest"]) == ("Gated", "FAILED", digest(2))
    assert "failed" in held.last_error
    answer = dispatch(streams, {"action": "approve", "id": trigger.id, "digest": digest(2), "actor": "dana"})
    assert answer["ok"], answer
    assert ecs.images[("prod", "web")]["web"].endswith(digest(2))
    assert store.get_trigger(trigger.id).last_triggered_digest == digest(2)


def _deployed_trigger(gates: list):
    """A trigger that deployed digest(1), then got ``gates``; returns (streams, store, registry, trigger, move)
    where ``move(n)`` points latest at digest(n) and fires."""
    from imagestreams.model import EcsTarget

    streams, store, registry = make()
    streams.fire_queue = None
    streams.drivers["ecs"].images[("prod", "web")] = {"web": "nginx:latest"}
    latest = StreamTag(S, "latest")

    def move(n: int | None) -> None:
        if n is None:
            registry.remove(S, "latest")
        else:
            registry.set(S, "latest", digest(n))
        streams.sync(latest)
        streams.head_moved(store.get_head(latest))
        streams.fire_by_id(latest, trigger.id)

    registry.set(S, "latest", digest(1))
    streams.sync(latest)
    trigger = streams.add_trigger(latest, EcsTarget("prod", "web", "web"))
    streams.fire_by_id(latest, trigger.id)
    assert dispatch(streams, {"action": "trigger.gates", "id": trigger.id, "gates": gates})["ok"]
    return streams, store, registry, trigger, move


def test_a_tag_back_on_the_digest_the_trigger_runs_shows_no_stale_gate():
    """Found: a trigger blocked on a newer digest, whose tag was deleted and pushed again with the digest it
    already runs, became Deployed while still showing the old digest's gate as blocked."""
    from imagestreams.ports import ScanResult

    streams, store, registry, trigger, move = _deployed_trigger([{"type": "scan", "blockAt": "CRITICAL"}])
    registry.scans[(S, digest(2))] = ScanResult("COMPLETE", {"CRITICAL": 2})
    move(2)
    assert (store.get_trigger(trigger.id).status, store.get_trigger(trigger.id).gate["state"]) == ("Blocked",
                                                                                                  "blocked")
    move(None)
    move(1)
    back = store.get_trigger(trigger.id)
    assert back.status not in ("Gated", "Blocked") and back.gate is None
    assert streams.drivers["ecs"].images[("prod", "web")]["web"].endswith(digest(1))


def test_a_head_back_on_the_digest_whose_rollout_failed_says_failed_not_gated():
    """Found (with the fix above that keeps Gated on a FAILED report): the head moving back to the digest whose
    rollout failed left the trigger ``Gated`` with no gate waiting; it is ``Failed`` again (not re-fired)."""
    from imagestreams.model import target_key
    from imagestreams.ports import ScanResult

    streams, store, registry, trigger, move = _deployed_trigger([{"type": "scan", "blockAt": "CRITICAL"}])
    registry.scans[(S, digest(1))] = ScanResult("COMPLETE", {})
    deployment = store.get_trigger(trigger.id).deployment
    move(2)  # no scan yet: waits
    streams.rollout_event(target_key(trigger.target), deployment, "FAILED", "circuit breaker")
    assert store.get_trigger(trigger.id).status == "Gated"
    registered = streams.drivers["ecs"].registered
    move(1)
    back = store.get_trigger(trigger.id)
    assert (back.status, back.rollout_state, back.gate) == ("Failed", "FAILED", None)
    assert streams.drivers["ecs"].registered == registered  # not deployed again
