"""Defects an independent review of the hardening found, each pinned by a test that failed before its fix:
a fire that trusted whatever a service ran when its family and roles were never recorded; a target rollback that
cloned another family (and re-recorded it); rollout and reconciler writes that overwrote a fire made between their
read and their write; an unbounded actor; roles matched differently from IAM."""

from __future__ import annotations

import pytest

from imagestreams.adapters.ecs import role_allowed
from imagestreams.admin import dispatch
from imagestreams.errors import TargetError, TransientTargetError
from imagestreams.model import TaskPins
from tests.conftest import digest
from tests.unit.test_rollout_truth import SERVICE, TARGET, WEB, World

APP = TaskPins("web", None, "arn:aws:iam::123456789012:role/exec")
ADMIN = TaskPins("admin-tools", "arn:aws:iam::123456789012:role/app-admin", "arn:aws:iam::123456789012:role/exec")


def test_a_trigger_whose_family_and_roles_were_never_recorded_does_not_fire_until_deploy():
    world = World(APP)
    world.push(1)
    read = world.ecs.current_pins
    # the service cannot be read at trigger.add (not created yet, say)
    world.ecs.current_pins = lambda target: (_ for _ in ()).throw(TargetError("ECS service web: MISSING"))
    world.add()
    world.ecs.current_pins = read
    assert world.trigger.pins is None
    world.ecs.pins[SERVICE] = ADMIN  # switched out of band before the first fire
    world.push(2)
    registered = world.ecs.registered
    trigger = world.fire()
    assert trigger.status == "Failed" and "run `deploy`" in trigger.last_error
    assert world.ecs.registered == registered  # nothing registered: no role passed on trust
    answer = dispatch(world.streams, {"action": "deploy", "id": world.trigger_id})  # a person accepts it
    assert answer["ok"], answer
    assert world.trigger.pins == ADMIN and world.ecs.images[SERVICE]["web"].endswith(digest(2))


def test_a_transient_fault_reading_the_service_fails_trigger_add_and_writes_nothing():
    world = World(APP)
    world.push(1)
    world.ecs.current_pins = lambda target: (_ for _ in ()).throw(TransientTargetError("ThrottlingException"))
    writes = world.store.writes
    with pytest.raises(TransientTargetError):
        world.streams.add_trigger(WEB, TARGET)
    assert world.store.writes == writes and world.streams.list_triggers() == []


def test_a_target_rollback_never_clones_another_family_or_re_records_it():
    world = World(APP)
    world.push(1)
    world.add()
    world.push(2)
    world.fire()
    world.ecs.pins[SERVICE] = ADMIN  # switched out of band
    registered = world.ecs.registered
    answer = dispatch(world.streams, {"action": "rollback", "trigger": world.trigger_id})
    assert answer["ok"], answer
    trigger = world.trigger
    assert trigger.status == "Failed" and "family changed from web to admin-tools" in trigger.last_error
    assert world.ecs.registered == registered and trigger.pins == APP


def test_a_rollout_event_never_overwrites_a_fire_made_between_its_read_and_its_write():
    world = World(APP)
    world.push(1)
    world.add()
    first = world.trigger.deployment
    refresh = world.store.refresh_trigger

    def a_fire_lands_meanwhile(trigger):
        seen = refresh(trigger)
        world.push(2)
        world.fire()  # a new deployment is recorded after the rollout function read the trigger
        return seen

    world.store.refresh_trigger = a_fire_lands_meanwhile
    world.streams.rollout_event(f"ecs:{SERVICE[0]}/{SERVICE[1]}", first, "FAILED", "circuit breaker")
    trigger = world.trigger
    assert trigger.deployment != first and trigger.last_triggered_digest == digest(2)
    assert trigger.rollout_state != "FAILED" and trigger.status == "Deploying"


def test_the_actor_is_held_to_the_outside_text_limit():
    world = World(APP)
    world.push(1)
    writes = world.store.writes
    answer = dispatch(world.streams, {"action": "import", "target": "team/web:latest", "actor": "a" * 1025})
    assert answer["error"]["type"] == "Invalid" and "1024" in answer["error"]["message"]
    assert world.store.writes == writes
    assert dispatch(world.streams, {"action": "import", "target": "team/web:latest", "actor": "a" * 1024})["ok"]


@pytest.mark.parametrize("role, pattern, allowed", [
    ("arn:aws:iam::123456789012:role/app-web", "app-*", True),
    ("arn:aws:iam::123456789012:role/team/app-web", "app-*", False),  # IAM's role/app-* does not match a path
    ("arn:aws:iam::123456789012:role/team/app-web", "team/app-*", True),
    ("arn:aws:iam::123456789012:role/svc-api", "app-*,svc-*", False),  # one pattern: a comma is a name character
])
def test_roles_are_matched_like_the_pass_role_resource(role, pattern, allowed):
    assert role_allowed(role, [pattern]) is allowed


def test_a_target_the_allow_list_no_longer_covers_is_failed_by_the_reconciler_not_read():
    """Narrowing an allow-list (e.g. an account removed from AllowedTargetAccounts) must not make every reconciler
    run read a target it may no longer touch and report an error: the trigger says why, and nobody reads it."""
    from imagestreams.policy import TargetPolicy

    world = World(APP)
    world.push(1)
    world.add()
    world.streams.policy = TargetPolicy(ecs_clusters=("staging-*",))
    calls = world.ecs.calls
    report = world.reconciler.run()
    trigger = world.trigger
    assert report["errors"] == [] and world.ecs.calls == calls
    assert trigger.status == "Failed" and "allow-list" in trigger.last_error and trigger.id in report["forbidden"]
