"""Adversarial review of policy tags, gates and notifications: races, crashes, late or foreign events, hostile
input. Each test shows one problem found (or pins a behaviour that was suspected and holds)."""

from __future__ import annotations

import pytest

from imagestreams.model import target_key
from imagestreams.ports import ScanResult
from tests.conftest import digest
from tests.unit.test_gates import TARGET, WEB, World, pinned


@pytest.fixture
def world():
    return World()


def _deployed_then_gated(world):
    """d1 approved and rolling out (IN_PROGRESS), then d2 pushed and held by the approval gate."""
    d1 = world.push(1)
    tid = world.add([{"type": "approval"}])
    assert world.admin({"action": "approve", "id": tid, "digest": d1, "actor": "alice"})["ok"]
    d2 = world.push(2)
    world.fire(tid)
    held = world.trigger(tid)
    assert held.status == "Gated" and held.gate_state.digest == d2 and held.rollout_state == "IN_PROGRESS"
    return tid, d1, d2


def test_review_an_approval_racing_a_rollout_event_is_not_lost(world):
    tid, d1, d2 = _deployed_then_gated(world)
    deployment = world.trigger(tid).deployment
    real = world.store.refresh_trigger

    def read_then_someone_approves(trigger):
        seen = real(trigger)
        world.store.refresh_trigger = real
        world.streams.decide_trigger(world.trigger(tid), d2, "bob", approve=True)
        return seen

    world.store.refresh_trigger = read_then_someone_approves
    world.streams.rollout_event(target_key(TARGET), deployment, "COMPLETED")
    assert world.trigger(tid).gate_state.approved_by == "bob"  # the approval the admin answered ok for
    world.fire(tid)
    assert world.image() == pinned(2)


def test_review_a_rollout_event_does_not_erase_a_gate_judged_meanwhile(world):
    d1 = world.push(1)
    tid = world.add([{"type": "approval"}])
    world.admin({"action": "approve", "id": tid, "digest": d1, "actor": "alice"})
    deployment = world.trigger(tid).deployment
    d2 = world.registry.set("team/web", "latest", digest(2)) or digest(2)
    real = world.store.refresh_trigger

    def read_then_head_moves_and_fire_gates(trigger):
        seen = real(trigger)
        world.store.refresh_trigger = real
        world.streams.sync(WEB)
        world.fire(tid)
        assert world.trigger(tid).status == "Gated"
        return seen

    world.store.refresh_trigger = read_then_head_moves_and_fire_gates
    world.streams.rollout_event(target_key(TARGET), deployment, "COMPLETED")
    after = world.trigger(tid)
    assert after.status == "Gated" and after.gate is not None and after.gate["digest"] == d2


# ------------------------------------------------------------------------------------------ IAM vs code paths

PROD = "team/web:prod"


def _promotion(world, minutes: int):
    """prod follows staging once staging's trigger has run it (verified) for ``minutes``."""
    from tests.unit.test_gates import STAGE_TARGET, STAGING

    world.push(1, STAGING)
    stage = world.add([], STAGING, STAGE_TARGET)
    answer = world.admin({"action": "policy.set", "target": PROD, "policy": {"follow": "staging"},
                          "gates": [{"type": "verified", "triggers": [stage], "minutes": minutes}]})
    assert answer["ok"], answer
    return stage, STAGING, STAGE_TARGET


def _spy(obj, name, calls):
    real = getattr(obj, name)

    def spy(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    setattr(obj, name, spy)


def _template_allows(function: str, action: str, resource_suffix: str = "") -> bool:
    from tests.unit.test_template import TABLE_ARN, actions, resources, statements

    for statement in statements(function):
        if statement.get("Effect") == "Allow" and action in actions(statement):
            for resource in resources(statement):
                resource = str(resource)
                if resource_suffix and resource == TABLE_ARN + resource_suffix:
                    return True
                if not resource_suffix and (resource == TABLE_ARN or resource.startswith("arn:aws:ecr:")):
                    return True
    return False


def test_review_fanout_role_can_read_the_triggers_a_verified_gate_names(world):
    stage, staging, _ = _promotion(world, 30)
    world.push(2, staging)
    calls: list[str] = []
    _spy(world.store, "get_trigger", calls)
    world.streams.head_moved(world.store.get_head(staging))
    assert "get_trigger" in calls  # the fan-out's code path reads a trigger by id (the ByKind index)
    assert _template_allows("FanoutFunction", "dynamodb:Query", "/index/ByKind")


def test_review_rollout_role_can_move_a_policy_tag_its_rollout_released(world):
    stage, staging, stage_target = _promotion(world, 0)
    world.push(2, staging)
    world.streams.head_moved(world.store.get_head(staging))
    world.fire(stage, staging)
    calls: list[str] = []
    _spy(world.store, "put_policy", calls)
    _spy(world.registry, "retag", calls)
    world.streams.rollout_event(target_key(stage_target), world.trigger(stage).deployment, "COMPLETED")
    assert "put_policy" in calls and "retag" in calls  # the rollout function's code path moves prod
    assert world.store.get_head(staging.__class__("team/web", "prod")).digest == digest(2)
    assert _template_allows("RolloutFunction", "dynamodb:PutItem")
    assert _template_allows("RolloutFunction", "ecr:PutImage")


# ------------------------------------------------------------------------------------------ notifications

def _policy_events(before, after):
    from imagestreams import notifications
    from imagestreams.adapters.dynamodb import policy_item
    from tests.unit.test_notifications import record

    old = policy_item(before) if before is not None else None
    return [(n.detail_type, n.detail) for n in notifications.notifications(record(old, policy_item(after)))]


def test_review_policy_selected_is_published_when_the_tag_moves_not_while_it_waits(world):
    """prod follows staging behind an approval: 'Policy Selected' must mean prod moved, so it is not published
    while the digest waits (or is rejected), and it is published when the approval releases the move."""
    from imagestreams.model import StreamTag
    from tests.unit.test_gates import STAGING

    world.push(1, STAGING)
    prod = StreamTag("team/web", "prod")
    assert world.admin({"action": "policy.set", "target": PROD, "policy": {"follow": "staging"},
                        "gates": [{"type": "approval"}]})["ok"]
    assert world.admin({"action": "approve", "target": PROD, "digest": digest(1), "actor": "alice"})["ok"]
    settled = world.store.get_policy(prod)
    assert settled.status == "Selected" and world.store.get_head(prod).digest == digest(1)
    world.push(2, STAGING)
    world.streams.head_moved(world.store.get_head(STAGING))
    waiting = world.store.get_policy(prod)
    assert waiting.status == "Gated" and world.store.get_head(prod).digest == digest(1)
    assert [t for t, _ in _policy_events(settled, waiting)] == ["Gate Waiting"]  # prod did not move
    answer = world.admin({"action": "approve", "target": PROD, "digest": digest(2), "actor": "bob"})
    assert answer["ok"] and world.store.get_head(prod).digest == digest(2)
    moved = world.store.get_policy(prod)
    assert _policy_events(waiting, moved) == [
        ("Policy Selected", {"target": PROD, "selected": "staging", "digest": digest(2)})]
    assert world.store.get_head(prod).actor == "bob"  # the approver is the move's actor


def test_review_approve_and_reject_of_a_policy_tag_work_through_admin(world):
    """`approve team/web:prod sha256:…` called a module-level gates.decide that did not exist (AttributeError)."""
    from imagestreams.model import StreamTag
    from tests.unit.test_gates import STAGING

    world.push(1, STAGING)
    assert world.admin({"action": "policy.set", "target": PROD, "policy": {"follow": "staging"},
                        "gates": [{"type": "approval"}]})["ok"]
    wrong = world.admin({"action": "approve", "target": PROD, "digest": digest(9), "actor": "alice"})
    assert wrong["error"]["type"] == "Conflict"
    rejected = world.admin({"action": "reject", "target": PROD, "digest": digest(1), "actor": "eve",
                            "reason": "not today"})
    assert rejected["ok"], rejected
    p = rejected["result"]["policies"][0]
    assert p["status"] == "Blocked" and p["gate"]["reason"] == "rejected by eve: not today"
    assert world.store.get_head(StreamTag("team/web", "prod")) is None


# ------------------------------------------------------------------------------------------ a real account's quirks

class _SigningClient:
    """DescribeImageSigningStatus as ECR answers it when two signing rules (profiles) match the repository."""

    def __init__(self, statuses):
        self.statuses = statuses

    def describe_image_signing_status(self, **_):
        return {"signingStatuses": self.statuses}


def test_review_signature_gate_needs_every_signing_profile():
    from imagestreams.adapters.ecr import EcrRegistry

    arn = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/"
    registry = EcrRegistry(_SigningClient([
        {"signingProfileArn": arn + "team", "status": "COMPLETE"},
        {"signingProfileArn": arn + "security", "status": "FAILED", "failureCode": "KMS", "failureReason": "denied"},
    ]))
    assert registry.signing_status("team/web", digest(1)).status == "FAILED"
    registry.client.statuses = [{"signingProfileArn": arn + "team", "status": "COMPLETE"},
                                {"signingProfileArn": arn + "security", "status": "IN_PROGRESS"}]
    assert registry.signing_status("team/web", digest(1)).status == "IN_PROGRESS"


def test_review_policy_result_has_exactly_the_public_fields(world):
    """P is {target, policy, gates, held, status, selected, digest, gate}: nothing more (an extra `at` leaked)."""
    from tests.unit.test_gates import STAGING

    world.push(1, STAGING)
    answer = world.admin({"action": "policy.set", "target": PROD, "policy": {"follow": "staging"}})
    listed = world.admin({"action": "policy.list"})
    for p in answer["result"]["policies"] + listed["result"]["policies"]:
        assert set(p) == {"target", "policy", "gates", "held", "status", "selected", "digest", "gate"}


# ------------------------------------------------------------------------------------------ crashes between writes

def test_review_a_policy_move_whose_head_write_was_lost_is_repaired_by_the_next_evaluation(world):
    from imagestreams.model import StreamTag

    for n, tag in ((1, "v1.2.0"), (2, "v1.3.0")):
        world.push(n, StreamTag("team/web", tag))
    stable = StreamTag("team/web", "stable")
    assert world.admin({"action": "policy.set", "target": "team/web:stable", "policy": {"semver": "^1.2"}})["ok"]
    assert world.store.get_head(stable).digest == digest(2)
    world.registry.set("team/web", "v1.4.0", digest(3))
    real_sync = world.streams.sync
    crashed = []

    def sync_crashes_once_after_the_retag(target, **kwargs):
        if kwargs.get("cause") == "policy" and not crashed:
            crashed.append(target)
            raise RuntimeError("Lambda timed out between the retag and the head write")
        return real_sync(target, **kwargs)

    world.streams.sync = sync_crashes_once_after_the_retag
    real_sync(StreamTag("team/web", "v1.4.0"))
    with pytest.raises(RuntimeError):
        world.streams.head_moved(world.store.get_head(StreamTag("team/web", "v1.4.0")))
    assert world.store.get_head(stable).digest == digest(2)  # ECR moved, the table did not
    world.streams.head_moved(world.store.get_head(StreamTag("team/web", "v1.4.0")))  # the stream's retry
    head = world.store.get_head(stable)
    assert head.digest == digest(3) and head.cause == "policy"
    assert world.store.get_policy(stable).status == "Selected" and world.store.get_policy(stable).digest == digest(3)


# ------------------------------------------------------------------------------------------ concurrent evaluations

def test_review_an_evaluation_from_an_older_view_never_moves_a_policy_tag_back(world):
    from imagestreams.model import StreamTag

    stable = StreamTag("team/web", "stable")
    world.push(1, StreamTag("team/web", "v1.2.0"))
    assert world.admin({"action": "policy.set", "target": "team/web:stable", "policy": {"semver": "^1.2"}})["ok"]
    world.push(2, StreamTag("team/web", "v1.3.0"))
    older_heads, _, older_policies = world.store.stream_view("team/web")  # one invocation reads here …
    world.push(3, StreamTag("team/web", "v1.4.0"))
    world.streams.evaluate_policies("team/web")  # … another, reading later, moves stable to v1.4.0
    assert world.store.get_head(stable).digest == digest(3)
    world.streams.evaluate_policies("team/web", older_heads, older_policies)  # the first one goes on
    assert world.store.get_head(stable).digest == digest(3)


# ------------------------------------------------------------------------------------------ semantics

def test_review_a_tag_back_on_the_running_digest_is_not_gated_again(world):
    from imagestreams.model import StreamTag

    d1 = world.push(1)
    tid = world.add([{"type": "approval"}])
    assert world.admin({"action": "approve", "id": tid, "digest": d1, "actor": "alice"})["ok"]
    world.push(2)
    world.fire(tid)
    assert world.trigger(tid).status == "Gated"
    world.registry.set("team/web", "latest", d1)  # a person rolls the tag back (or pushes d1 again)
    world.streams.sync(StreamTag("team/web", "latest"))
    world.fire(tid)
    after = world.trigger(tid)
    assert world.image() == pinned(1)
    assert after.status in ("Deployed", "Deploying") and after.gate is None, (after.status, after.gate)


def test_review_policy_set_refuses_a_verified_gate_naming_no_trigger(world):
    from tests.unit.test_gates import STAGING

    world.push(1, STAGING)
    answer = world.admin({"action": "policy.set", "target": PROD, "policy": {"follow": "staging"},
                          "gates": [{"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 5}]})
    assert answer.get("error", {}).get("type") == "Invalid", answer
    assert world.admin({"action": "policy.list"})["result"]["policies"] == []


def test_review_rollback_cannot_slip_a_blocked_digest_past_the_gates_unrecorded(world):
    d1 = world.push(1)
    tid = world.add([{"type": "scan", "blockAt": "CRITICAL"}])
    world.registry.scans[("team/web", d1)] = ScanResult("COMPLETE", {})
    world.fire(tid)
    assert world.image() == pinned(1)
    d2 = world.push(2)
    world.registry.scans[("team/web", d2)] = ScanResult("COMPLETE", {"CRITICAL": 4})
    world.fire(tid)
    assert world.trigger(tid).status == "Blocked"
    world.push(3)  # a third head: d2 is now "older" history
    answer = world.admin({"action": "rollback", "trigger": tid, "to": d2, "actor": "mallory"})
    trigger = world.trigger(tid)
    released = world.image() == pinned(2)
    assert not released or (trigger.gate_state is not None and trigger.gate_state.forced_by == "mallory"), answer


def test_review_scan_gate_judges_a_multi_platform_image_by_its_platform_manifests(world):
    index = digest(10)
    amd, arm = digest(11), digest(12)
    world.registry.indexes[index] = {"amd64": amd, "arm64": arm}
    for child in (amd, arm):
        world.registry.scans[("team/web", child)] = ScanResult("COMPLETE", {})
    world.registry.set("team/web", "latest", index)
    world.streams.sync(WEB)
    tid = world.add([{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": 30}])
    world.clock.advance(31)
    world.fire(tid)
    assert world.trigger(tid).status in ("Deploying", "Deployed"), world.trigger(tid).gate


def test_review_a_finding_in_one_platform_manifest_blocks_the_index(world):
    index, amd, arm, attestation = digest(20), digest(21), digest(22), digest(23)
    world.registry.indexes[index] = {"amd64": amd, "arm64": arm, "unknown": attestation}
    world.registry.scans[("team/web", amd)] = ScanResult("COMPLETE", {"HIGH": 1})
    world.registry.scans[("team/web", arm)] = ScanResult("COMPLETE", {"HIGH": 2, "CRITICAL": 1})
    world.registry.scans[("team/web", attestation)] = ScanResult("UNSUPPORTED_IMAGE", {})
    world.registry.set("team/web", "latest", index)
    world.streams.sync(WEB)
    tid = world.add([{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": 30}])
    world.fire(tid)
    trigger = world.trigger(tid)
    assert trigger.status == "Blocked" and "3 HIGH" in trigger.gate["reason"], trigger.gate
    assert world.image() != pinned(20)


def test_review_readme_documents_every_notification_detail_type_and_its_fields():
    from pathlib import Path

    from imagestreams.notifications import SCHEMAS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    readme = readme[readme.index("**Notifications.**"):]  # the section that documents them
    for detail_type, fields in SCHEMAS.items():
        assert detail_type in readme, detail_type
        section = readme[readme.index(detail_type):][:600]
        assert all(f"`{field}`" in section or field in section for field in fields), detail_type
