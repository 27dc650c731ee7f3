"""Gates on triggers: each gate kind passes, waits and blocks for the head digest; timeouts on an injected clock;
a newer head starts over; approvals of another digest are refused with nothing written; `deploy --force` goes past
the gates and is recorded; a gated digest never reaches the target driver — on in-memory ports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from imagestreams.adapters.memory import ListClock, ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.errors import Conflict, Invalid
from imagestreams.gate_events import parse_clock_message, parse_gate_event
from imagestreams.gates import GateState, parse_gates, scan_counts_reason
from imagestreams.model import EcsTarget, StreamTag, target_key
from imagestreams.ports import ScanResult, SigningStatus
from imagestreams.services import ImageStreams
from tests.conftest import digest
from tests.corpus import bad_clock_messages, bad_gate_events

WEB = StreamTag("team/web", "latest")
STAGING = StreamTag("team/web", "staging")
SERVICE = ("prod", "web")
TARGET = EcsTarget("prod", "web", "web")
STAGE_TARGET = EcsTarget("stage", "web", "web")
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


class CountingEcs(MemoryEcs):
    """Records every image a fire hands to the driver."""

    def __init__(self):
        super().__init__()
        self.applied: list[str] = []

    def apply(self, target, image, *, pins=None):
        self.applied.append(image)
        return super().apply(target, image, pins=pins)


class World:
    def __init__(self):
        self.clock = Clock()
        self.store, self.registry, self.ecs = MemoryStore(), MemoryRegistry(), CountingEcs()
        self.gate_clock = ListClock()
        self.ecs.images[SERVICE] = {"web": "nginx:latest"}
        self.ecs.images[("stage", "web")] = {"web": "nginx:latest"}
        self.streams = ImageStreams(self.store, self.registry, {"ecs": self.ecs}, None, clock=self.clock,
                                    gate_clock=self.gate_clock)

    def push(self, n: int, tag: StreamTag = WEB) -> str:
        self.registry.set(tag.stream, tag.tag, digest(n))
        self.streams.sync(tag)
        return digest(n)

    def add(self, gates, tag: StreamTag = WEB, target=TARGET):
        answer = self.admin({"action": "trigger.add", "from": str(tag), "target": target.as_dict(), "gates": gates})
        assert answer["ok"], answer
        return answer["result"]["id"]

    def admin(self, command):
        return dispatch(self.streams, command)

    def fire(self, trigger_id: str, tag: StreamTag = WEB):
        return self.streams.fire_by_id(tag, trigger_id)

    def trigger(self, trigger_id: str):
        return self.store.get_trigger(trigger_id)

    def image(self, service=SERVICE) -> str:
        return self.ecs.images[service]["web"]


def pinned(n: int) -> str:
    return f"{REG}/team/web@{digest(n)}"


@pytest.fixture
def world():
    return World()


# ------------------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("raw, message", [
    ([{"type": "nope"}], "unknown gate type"),
    ([{"type": "scan"}], "blockAt"),
    ([{"type": "scan", "blockAt": "SEVERE"}], "blockAt"),
    ([{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": -5}], "timeoutMinutes"),
    ([{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": "60"}], "timeoutMinutes"),
    ([{"type": "signature", "timeoutMinutes": True}], "timeoutMinutes"),
    ([{"type": "approval", "who": "me"}], "unknown field who"),
    ([{"type": "verified", "triggers": ["tr-zz"], "minutes": 5}], "invalid trigger id"),
    ([{"type": "verified", "triggers": [], "minutes": 5}], "non-empty"),
    ([{"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": -1}], "minutes"),
    ([{"type": "verified", "triggers": ["tr-0123456789ab"]}], "missing field minutes"),
    ([{"type": "approval"}, {"type": "approval"}], "given twice"),
    ({"type": "approval"}, "list"),
    (["approval"], "object"),
])
def test_bad_gates_are_invalid(raw, message):
    with pytest.raises(Invalid, match=message):
        parse_gates(raw)


def test_gates_parse_with_defaults_and_round_trip():
    gates = parse_gates([{"type": "scan", "blockAt": "HIGH"}, {"type": "signature"}, {"type": "approval"},
                         {"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 0}])
    assert [g.as_dict() for g in gates] == [
        {"type": "scan", "blockAt": "HIGH", "timeoutMinutes": 60}, {"type": "signature", "timeoutMinutes": 30},
        {"type": "approval"}, {"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 0}]
    assert parse_gates([g.as_dict() for g in gates]) == gates


def test_gate_state_round_trips():
    state = GateState(digest(1), datetime(2026, 1, 1, tzinfo=timezone.utc), "alice", None, None, None,
                      datetime(2026, 1, 1, 1, tzinfo=timezone.utc))
    assert GateState.from_dict(state.as_dict()) == state


def test_scan_reason_counts_only_at_or_above_block_at():
    counts = {"CRITICAL": 3, "HIGH": 61, "MEDIUM": 62, "TOTAL": 158}
    assert scan_counts_reason(counts, "CRITICAL") == "3 CRITICAL findings"
    assert scan_counts_reason(counts, "HIGH") == "3 CRITICAL, 61 HIGH findings"
    assert scan_counts_reason({"LOW": 4}, "MEDIUM") is None
    assert scan_counts_reason({"HIGH": 1}, "HIGH") == "1 HIGH finding"


def test_trigger_add_with_bad_gates_writes_nothing(world):
    world.push(1)
    answer = world.admin({"action": "trigger.add", "from": str(WEB), "target": TARGET.as_dict(),
                          "gates": [{"type": "scan", "blockAt": "SEVERE"}]})
    assert answer["error"]["type"] == "Invalid"
    assert world.store.all_triggers() == [] and world.ecs.applied == []


def test_verified_gate_naming_an_unknown_trigger_is_invalid(world):
    world.push(1)
    answer = world.admin({"action": "trigger.add", "from": str(WEB), "target": TARGET.as_dict(),
                          "gates": [{"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 30}]})
    assert answer["error"]["type"] == "Invalid" and "does not exist" in answer["error"]["message"]
    assert world.store.all_triggers() == []


# ------------------------------------------------------------------------------------------ scan

def test_scan_gate_waits_then_passes_on_a_clean_scan(world):
    d = world.push(1)
    tid = world.add([{"type": "scan", "blockAt": "HIGH"}])
    trigger = world.trigger(tid)
    assert trigger.status == "Gated" and world.ecs.applied == [] and world.image() == "nginx:latest"
    assert trigger.as_dict()["gate"] == {"type": "scan", "state": "waiting", "digest": d,
                                         "reason": "waiting for the scan result"}
    # the timeout is scheduled on the gate clock, once
    assert [m for m, _ in world.gate_clock.messages] == [
        {"kind": "trigger", "id": tid, "digest": d, "due": "2026-11-26T13:00:00.000Z"}]
    world.fire(tid)
    assert len(world.gate_clock.messages) == 1
    world.registry.scans[("team/web", d)] = ScanResult("COMPLETE", {"MEDIUM": 4, "LOW": 9})
    world.fire(tid)
    trigger = world.trigger(tid)
    assert trigger.status == "Deploying" and trigger.gate is None and world.image() == pinned(1)


def test_scan_gate_blocks_on_findings_with_counts(world):
    d = world.push(1)
    world.registry.scans[("team/web", d)] = ScanResult("COMPLETE", {"CRITICAL": 3, "HIGH": 2})
    tid = world.add([{"type": "scan", "blockAt": "CRITICAL"}])
    trigger = world.trigger(tid)
    assert trigger.status == "Blocked" and world.ecs.applied == []
    assert trigger.gate == {"type": "scan", "state": "blocked", "reason": "3 CRITICAL findings", "digest": d}


def test_enhanced_scan_active_counts_as_complete(world):
    d = world.push(1)
    world.registry.scans[("team/web", d)] = ScanResult("ACTIVE", {"HIGH": 1})
    tid = world.add([{"type": "scan", "blockAt": "HIGH"}])
    assert world.trigger(tid).gate["reason"] == "1 HIGH finding"


def test_scan_gate_blocks_when_not_scanned_by_the_timeout(world):
    world.push(1)
    tid = world.add([{"type": "scan", "blockAt": "CRITICAL", "timeoutMinutes": 10}])
    world.clock.advance(9)
    world.fire(tid)
    assert world.trigger(tid).status == "Gated"
    world.clock.advance(1)
    world.fire(tid)
    trigger = world.trigger(tid)
    assert trigger.status == "Blocked" and "not scanned within 10 minutes" in trigger.gate["reason"]
    assert world.ecs.applied == []


# ------------------------------------------------------------------------------------------ signature

def test_signature_gate_passes_on_managed_signing(world):
    d = world.push(1)
    tid = world.add([{"type": "signature"}])
    assert world.trigger(tid).status == "Gated"
    world.registry.signing[("team/web", d)] = SigningStatus("COMPLETE")
    world.fire(tid)
    assert world.image() == pinned(1)


def test_signature_gate_passes_on_a_notation_referrer(world):
    d = world.push(1)
    world.registry.referrers[("team/web", d)] = ["application/spdx+json", "application/vnd.cncf.notary.signature"]
    tid = world.add([{"type": "signature"}])
    assert world.trigger(tid).status == "Deploying" and world.image() == pinned(1)


def test_an_sbom_referrer_is_no_signature(world):
    d = world.push(1)
    world.registry.referrers[("team/web", d)] = ["application/spdx+json"]
    tid = world.add([{"type": "signature"}])
    assert world.trigger(tid).status == "Gated"


def test_signature_gate_blocks_on_failed_signing_and_on_timeout(world):
    d = world.push(1)
    world.registry.signing[("team/web", d)] = SigningStatus("FAILED", "profile revoked")
    tid = world.add([{"type": "signature"}])
    assert world.trigger(tid).gate["reason"] == "signing FAILED: profile revoked"
    d2 = world.push(2)
    world.fire(tid)
    assert world.trigger(tid).gate == {"type": "signature", "state": "waiting", "reason": "waiting for a signature",
                                       "digest": d2}
    world.clock.advance(30)
    world.fire(tid)
    assert world.trigger(tid).status == "Blocked" and world.ecs.applied == []


# ------------------------------------------------------------------------------------------ approval

def test_approval_gate_waits_for_a_person_then_fires(world):
    d = world.push(1)
    tid = world.add([{"type": "approval"}])
    assert world.trigger(tid).gate["reason"].startswith("approval needed")
    answer = world.admin({"action": "approve", "id": tid, "digest": d, "actor": "alice"})
    assert answer["ok"], answer
    t = answer["result"]["triggers"][0]
    assert t["status"] == "Deploying" and t["gate"] is None and world.image() == pinned(1)
    assert world.trigger(tid).gate_state.approved_by == "alice"


def test_reject_blocks_with_the_reason(world):
    d = world.push(1)
    tid = world.add([{"type": "approval"}])
    answer = world.admin({"action": "reject", "id": tid, "digest": d, "actor": "bob", "reason": "smoke test fails"})
    t = answer["result"]["triggers"][0]
    assert t["status"] == "Blocked"
    assert t["gate"] == {"type": "approval", "state": "blocked", "reason": "rejected by bob: smoke test fails",
                         "digest": d}
    assert world.ecs.applied == []


def test_approving_another_digest_is_a_conflict_and_writes_nothing(world):
    world.push(1)
    tid = world.add([{"type": "approval"}])
    before, writes = world.trigger(tid), world.store.writes
    answer = world.admin({"action": "approve", "id": tid, "digest": digest(99), "actor": "alice"})
    assert answer["error"]["type"] == "Conflict" and "not the digest waiting" in answer["error"]["message"]
    assert world.store.writes == writes and world.trigger(tid) == before and world.ecs.applied == []


def test_approve_without_an_approval_gate_is_a_conflict(world):
    d = world.push(1)
    tid = world.add([{"type": "signature"}])
    answer = world.admin({"action": "approve", "id": tid, "digest": d})
    assert answer["error"]["type"] == "Conflict"


@pytest.mark.parametrize("command, message", [
    ({"action": "approve", "digest": "sha256:" + "a" * 64}, "exactly one of id"),
    ({"action": "approve", "id": "tr-0123456789ab", "target": "team/web:prod", "digest": "sha256:" + "a" * 64},
     "exactly one of id"),
    ({"action": "approve", "id": "tr-0123456789ab", "digest": "latest"}, "digest"),
    ({"action": "approve", "id": "tr-0123456789ab", "digest": "sha256:" + "a" * 64, "reason": "x"}, "reason"),
    ({"action": "reject", "id": "tr-0123456789ab", "digest": "sha256:" + "a" * 64, "reason": 5}, "reason"),
    ({"action": "trigger.gates", "id": "tr-0123456789ab"}, "missing field gates"),
    ({"action": "deploy", "id": "tr-0123456789ab", "force": "yes"}, "force"),
])
def test_bad_gate_commands_are_invalid(world, command, message):
    answer = world.admin(command)
    assert answer["error"]["type"] == "Invalid" and message in answer["error"]["message"]


# ------------------------------------------------------------------------------------------ verified

def test_verified_gate_passes_after_the_soak_on_the_named_trigger(world):
    world.push(1, STAGING)
    stage = world.add([], STAGING, STAGE_TARGET)
    d = world.push(1)
    tid = world.add([{"type": "verified", "triggers": [stage], "minutes": 30}])
    assert world.trigger(tid).status == "Gated"
    assert "rollout on " + stage in world.trigger(tid).gate["reason"]
    # staging's rollout completes: the prod trigger is judged again and its wake-up is at completion + 30
    world.clock.advance(5)
    done = world.streams.rollout_event(target_key(STAGE_TARGET), world.trigger(stage).deployment, "COMPLETED")
    assert done and world.trigger(stage).rollout_at == world.clock.now
    wake = ({"kind": "trigger", "id": tid, "digest": d, "due": "2026-11-26T12:35:00.000Z"},
            world.clock.now + timedelta(minutes=30))
    assert world.gate_clock.messages[-1] == wake
    world.clock.advance(29)
    world.fire(tid)
    assert world.trigger(tid).status == "Gated" and world.ecs.applied == [pinned(1)]  # staging's only
    assert "verified at 2026-11-26T12:35:00" in world.trigger(tid).gate["reason"]
    world.clock.advance(1)
    world.streams.gate_wake("trigger", tid, d)
    assert world.trigger(tid).status == "Deploying" and world.image() == pinned(1)


def test_verified_gate_blocks_when_the_rollout_failed(world):
    world.push(1, STAGING)
    stage = world.add([], STAGING, STAGE_TARGET)
    world.push(1)
    tid = world.add([{"type": "verified", "triggers": [stage], "minutes": 0}])
    world.streams.rollout_event(target_key(STAGE_TARGET), world.trigger(stage).deployment, "FAILED", "boom")
    trigger = world.trigger(tid)
    assert trigger.status == "Blocked" and trigger.gate["reason"] == f"rollout on {stage} FAILED"
    assert world.image() == "nginx:latest"


# ------------------------------------------------------------------------------------------ heads, force

def test_a_newer_head_starts_the_gates_over(world):
    d1 = world.push(1)
    tid = world.add([{"type": "approval"}])
    d2 = world.push(2)
    world.fire(tid)
    trigger = world.trigger(tid)
    assert trigger.gate_state.digest == d2 and trigger.gate["digest"] == d2
    # the old digest's approval is refused now; the new one's is taken
    assert world.admin({"action": "approve", "id": tid, "digest": d1})["error"]["type"] == "Conflict"
    assert world.admin({"action": "approve", "id": tid, "digest": d2, "actor": "a"})["ok"]
    assert world.image() == pinned(2) and world.ecs.applied == [pinned(2)]


def test_an_approval_does_not_carry_over_to_the_next_head(world):
    d1 = world.push(1)
    tid = world.add([{"type": "approval"}])
    world.admin({"action": "approve", "id": tid, "digest": d1, "actor": "a"})
    world.push(2)
    world.fire(tid)
    assert world.trigger(tid).status == "Gated" and world.image() == pinned(1)


def test_deploy_respects_gates_unless_forced_and_records_who(world):
    d = world.push(1)
    tid = world.add([{"type": "scan", "blockAt": "CRITICAL"}])
    world.registry.scans[("team/web", d)] = ScanResult("COMPLETE", {"CRITICAL": 1})
    answer = world.admin({"action": "deploy", "id": tid, "actor": "carol"})
    assert answer["result"]["triggers"][0]["status"] == "Blocked" and world.ecs.applied == []
    answer = world.admin({"action": "deploy", "id": tid, "force": True, "actor": "carol"})
    t = answer["result"]["triggers"][0]
    assert world.image() == pinned(1) and t["status"] == "Deploying"
    assert t["gate"]["type"] == "forced" and "carol" in t["gate"]["reason"]
    assert world.trigger(tid).gate_state.forced_by == "carol"


def test_no_gated_digest_ever_reaches_the_driver(world):
    """Whatever happens (pushes, fires, deploys without force, reconciler-like re-fires), the driver only ever sees
    digests whose gates passed."""
    tid = None
    passed = set()
    for n in range(1, 8):
        d = world.push(n)
        if n % 3 == 0:
            world.registry.scans[("team/web", d)] = ScanResult("COMPLETE", {})
            passed.add(pinned(n))
        elif n % 3 == 1:
            world.registry.scans[("team/web", d)] = ScanResult("COMPLETE", {"CRITICAL": 2})
        if tid is None:
            tid = world.add([{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": 5}])
        world.fire(tid)
        world.admin({"action": "deploy", "id": tid})
        world.clock.advance(6)
        world.fire(tid)
    assert world.ecs.applied and set(world.ecs.applied) <= passed


def test_trigger_gates_replaces_and_judges_again(world):
    world.push(1)
    tid = world.add([{"type": "approval"}])
    answer = world.admin({"action": "trigger.gates", "id": tid, "gates": []})
    assert answer["ok"] and answer["result"]["triggers"][0]["gates"] == []
    assert world.image() == pinned(1)
    answer = world.admin({"action": "trigger.gates", "id": tid, "gates": [{"type": "nope"}]})
    assert answer["error"]["type"] == "Invalid"


# ------------------------------------------------------------------------------------------ evidence

def test_scan_evidence_for_a_waiting_digest_fires_and_for_others_writes_nothing(world):
    d = world.push(1)
    tid = world.add([{"type": "scan", "blockAt": "HIGH"}])
    writes = world.store.writes
    out = world.streams.gate_evidence("team/web", digest(42))
    assert out["triggers"] == [] and world.store.writes == writes
    world.registry.scans[("team/web", d)] = ScanResult("COMPLETE", {})
    out = world.streams.gate_evidence("team/web", d)
    assert out["triggers"] == [tid] and world.image() == pinned(1)


def test_gate_evidence_queues_fires_when_there_is_a_fire_queue():
    world = World()
    queue = ListQueue()
    world.streams.fire_queue = queue
    d = world.push(1)
    tid = world.streams.add_trigger(WEB, TARGET, gates=parse_gates([{"type": "approval"}])).id
    assert world.trigger(tid).status == "Gated"
    world.streams.gate_evidence("team/web", d)
    assert [i[1] for i in queue.items] == [tid]


def test_decide_refuses_a_second_decision():
    world = World()
    state = GateState(digest(1), world.clock(), approved_by="a")
    gates = parse_gates([{"type": "approval"}])
    with pytest.raises(Conflict, match="already approved"):
        world.streams.decide(state, gates, digest(1), "b", approve=True)
    assert world.streams.decide(state, gates, digest(1), "b", approve=False).rejected_by == "b"


# ------------------------------------------------------------------------------------------ events, clock

GATE_EVENTS = list(bad_gate_events())
CLOCK_MESSAGES = list(bad_clock_messages())


@pytest.mark.parametrize("name, event", GATE_EVENTS, ids=[n for n, _ in GATE_EVENTS])
def test_bad_gate_events_are_refused_clearly(name, event):
    with pytest.raises(Invalid) as info:
        parse_gate_event(event, account="123456789012", region="us-east-1")
    assert 0 < len(info.value.message) < 400


@pytest.mark.parametrize("name, body", CLOCK_MESSAGES, ids=[n for n, _ in CLOCK_MESSAGES])
def test_bad_clock_messages_are_refused_clearly(name, body):
    with pytest.raises(Invalid) as info:
        parse_clock_message(body)
    assert 0 < len(info.value.message) < 400


def test_scan_events_name_the_repository_by_name_or_by_arn():
    base = {"account": "123456789012", "region": "us-east-1"}
    d = digest(1)
    ecr = parse_gate_event({**base, "source": "aws.ecr", "detail-type": "ECR Image Scan",
                            "detail": {"repository-name": "team/web", "image-digest": d, "scan-status": "COMPLETE"}})
    inspector = parse_gate_event({**base, "source": "aws.inspector2", "detail-type": "Inspector2 Scan", "detail": {
        "repository-name": "arn:aws:ecr:us-east-1:123456789012:repository/amazon/amazon-ecs-sample",
        "image-digest": d, "scan-status": "INITIAL_SCAN_COMPLETE",
        "finding-severity-counts": {"CRITICAL": 7, "TOTAL": 7}}})
    assert (ecr.stream, ecr.digest) == ("team/web", d)
    assert (inspector.stream, inspector.digest, inspector.status) == ("amazon/amazon-ecs-sample", d,
                                                                      "INITIAL_SCAN_COMPLETE")


def test_signing_events_find_the_image_wherever_it_is_named_or_name_none():
    base = {"source": "aws.signer", "detail-type": "Signer Job Status Change", "account": "123456789012",
            "region": "us-east-1"}
    d = digest(2)
    by_uri = parse_gate_event({**base, "detail": {"status": "Succeeded", "jobId": "j", "source": {
        "image": f"{REG}/team/web@{d}"}}})
    by_fields = parse_gate_event({**base, "detail": {"status": "Succeeded", "repositoryName": "team/web",
                                                     "imageDigest": d}})
    by_arn = parse_gate_event({**base, "resources": [
        f"arn:aws:ecr:us-east-1:123456789012:repository/team/web/{d}"], "detail": {"status": "Succeeded"}})
    nothing = parse_gate_event({**base, "detail": {"status": "Succeeded", "jobId": "j", "profileName": "p"}})
    assert {(e.stream, e.digest) for e in (by_uri, by_fields, by_arn)} == {("team/web", d)}
    assert (nothing.kind, nothing.stream, nothing.digest) == ("signing", None, None)
    with pytest.raises(Invalid):  # an image of another account: not ours
        parse_gate_event({**base, "detail": {"image": f"999999999999.dkr.ecr.us-east-1.amazonaws.com/team/web@{d}"}},
                         account="123456789012", region="us-east-1")


def test_a_signing_event_naming_no_image_rechecks_waiting_signature_gates(world):
    d = world.push(1)
    tid = world.add([{"type": "signature"}])
    world.registry.signing[("team/web", d)] = SigningStatus("COMPLETE")
    out = world.streams.recheck_signatures()
    assert out and out[0]["triggers"] == [tid] and world.image() == pinned(1)


def test_clock_messages_parse_and_a_policy_target_names_its_stream(world):
    message = parse_clock_message({"kind": "policy", "target": "team/web:prod", "digest": digest(1),
                                   "due": "2026-11-26T12:00:00.000Z"})
    assert message.kind == "policy" and message.due == world.clock.now
    assert world.streams.gate_wake("policy", "team/web:prod", digest(1))["stream"] == "team/web"


def test_the_reconciler_judges_waiting_gates_again_so_timeouts_happen_without_events(world):
    from imagestreams.reconcile import Reconciler

    world.push(1)
    tid = world.add([{"type": "scan", "blockAt": "CRITICAL", "timeoutMinutes": 10}])
    reconciler = Reconciler(world.streams, world.registry, world.store)
    reconciler.run()
    assert world.trigger(tid).status == "Gated"
    world.clock.advance(11)
    reconciler.run()
    trigger = world.trigger(tid)
    assert trigger.status == "Blocked" and "not scanned" in trigger.gate["reason"] and world.ecs.applied == []


def test_the_gate_clock_handler_requeues_what_is_not_due_and_wakes_what_is(world, monkeypatch, lambda_context):
    import json

    import gates as handler

    monkeypatch.setattr(handler, "services", lambda: world.streams)
    d = world.push(1)
    tid = world.add([{"type": "approval"}])
    world.store.set_gate_state(world.trigger(tid), world.trigger(tid).gate_state._replace(approved_by="a"))
    later = {"kind": "trigger", "id": tid, "digest": d, "due": "2026-11-26T13:00:00Z"}
    sent = len(world.gate_clock.messages)
    records = [{"messageId": "1", "body": json.dumps(later)}, {"messageId": "2", "body": "not json"}]
    assert handler.lambda_handler({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert world.gate_clock.messages[sent:] == [(later, world.clock.now + timedelta(hours=1))]
    assert world.image() == "nginx:latest"
    world.clock.advance(60)
    handler.lambda_handler({"Records": records[:1]}, lambda_context)
    assert world.image() == pinned(1)


def test_gate_fields_survive_the_dynamodb_item_round_trip():
    from imagestreams.adapters.dynamodb import _dump, _load, trigger_from_item, trigger_item
    from imagestreams.model import Trigger, trigger_id

    now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    gates = parse_gates([{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": 15},
                         {"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 30}, {"type": "approval"}])
    trigger = Trigger(trigger_id(WEB, TARGET), WEB, TARGET, status="Gated", gates=gates,
                      gate={"type": "scan", "state": "waiting", "reason": "x" * 5000, "digest": digest(1)},
                      gate_state=GateState(digest(1), now, "alice", None, None, None, now + timedelta(minutes=15)),
                      rollout_at=now)
    back = trigger_from_item(_load(_dump(trigger_item(trigger))))
    assert back.gates == gates and back.gate_state == trigger.gate_state and back.rollout_at == now
    assert back.gate["digest"] == digest(1) and len(back.gate["reason"]) < 1100  # outside text capped
    assert back.as_dict()["gates"][1] == {"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 30}


@pytest.mark.parametrize("argv, command", [
    (["trigger", "add", "team/web:prod", "--ecs", "prod/web:web", "--gate", "scan:critical:30", "--gate", "approval",
      "--gate", "verified:tr-0123456789ab,tr-0123456789ac:30", "--gate", "signature"],
     {"action": "trigger.add", "from": "team/web:prod", "target": TARGET.as_dict(), "gates": [
         {"type": "scan", "blockAt": "CRITICAL", "timeoutMinutes": 30}, {"type": "approval"},
         {"type": "verified", "triggers": ["tr-0123456789ab", "tr-0123456789ac"], "minutes": 30},
         {"type": "signature"}]}),
    (["approve", "tr-0123456789ab", "sha256:" + "a" * 64],
     {"action": "approve", "id": "tr-0123456789ab", "digest": "sha256:" + "a" * 64}),
    (["reject", "team/web:prod", "sha256:" + "a" * 64, "--reason", "no"],
     {"action": "reject", "target": "team/web:prod", "digest": "sha256:" + "a" * 64, "reason": "no"}),
    (["deploy", "tr-0123456789ab", "--force"], {"action": "deploy", "id": "tr-0123456789ab", "force": True}),
    (["trigger", "gates", "tr-0123456789ab", "--gate", "signature:45"],
     {"action": "trigger.gates", "id": "tr-0123456789ab", "gates": [{"type": "signature", "timeoutMinutes": 45}]}),
    (["trigger", "gates", "tr-0123456789ab", "--clear"], {"action": "trigger.gates", "id": "tr-0123456789ab",
                                                         "gates": []}),
])
def test_cli_gate_verbs_build_the_admin_commands(argv, command):
    from imagestreams.cli import build_parser, command_from_args

    assert command_from_args(build_parser().parse_args(argv)) == command


@pytest.mark.parametrize("spec", ["scan", "scan:HIGH:soon", "approval:x", "verified:tr-0123456789ab",
                                  "verified::30", "signature:1:2", "nope"])
def test_cli_bad_gate_flags_are_usage_errors(spec, capsys):
    from imagestreams.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["trigger", "add", "team/web:prod", "--ecs", "prod/web:web", "--gate", spec])
    assert exited.value.code == 2 and "--gate" in capsys.readouterr().err


def test_cli_shows_why_a_trigger_is_held(world, capsys):
    from imagestreams.cli import main

    d = world.push(1)
    world.registry.scans[("team/web", d)] = ScanResult("COMPLETE", {"CRITICAL": 3})
    world.add([{"type": "scan", "blockAt": "CRITICAL"}])
    assert main(["trigger", "list"], transport=lambda cmd: dispatch(world.streams, cmd)) == 0
    assert "scan blocked: 3 CRITICAL findings" in capsys.readouterr().out
