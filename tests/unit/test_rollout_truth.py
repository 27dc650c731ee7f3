"""Rollout truth: rollout state only moves forward, a lost trigger write adopts the real deployment, a dropped
failed deployment is not drift, event checks, and fires that never widen privilege — on in-memory ports (and a
botocore Stubber for the ECS deployment-history calls moto does not implement)."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from imagestreams.adapters.ecs import EcsDriver
from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.errors import Invalid
from imagestreams.events import ForeignEvent, parse_ecs_deployment_event
from imagestreams.model import EcsTarget, StreamTag, TaskPins, target_key
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams
from tests.conftest import digest, load_event

WEB = StreamTag("team/web", "latest")
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
SERVICE = ("prod", "web")
TARGET = EcsTarget("prod", "web", "web")
KEY = target_key(TARGET)


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


class World:
    def __init__(self, pins: TaskPins | None = None):
        self.clock = Clock()
        self.store, self.registry, self.ecs, self.queue = MemoryStore(), MemoryRegistry(), MemoryEcs(), ListQueue()
        self.ecs.images[SERVICE] = {"web": "nginx:latest", "sidecar": "envoy:1"}
        if pins is not None:
            self.ecs.pins[SERVICE] = pins
        self.streams = ImageStreams(self.store, self.registry, {"ecs": self.ecs}, self.queue, clock=self.clock)
        self.reconciler = Reconciler(self.streams, self.registry, self.store)

    def push(self, n: int) -> None:
        self.registry.set(WEB.stream, WEB.tag, digest(n))
        self.streams.sync(WEB)

    def fire(self):
        return self.streams.fire_by_id(WEB, self.trigger_id)

    def add(self):
        self.trigger_id = self.streams.add_trigger(WEB, TARGET).id
        return self.trigger

    @property
    def trigger(self):
        return self.store.get_trigger(self.trigger_id)

    def image(self) -> str:
        return self.ecs.images[SERVICE]["web"]

    def drain(self) -> None:
        while self.queue.items:
            stream_tag, trigger_id, _ = self.queue.items.pop(0)
            self.streams.fire_by_id(stream_tag, trigger_id)


@pytest.fixture
def world():
    return World()


def pinned(n: int) -> str:
    return f"{REG}/team/web@{digest(n)}"


# ------------------------------------------------------------------------------ state only moves forward


def test_late_in_progress_after_failed_keeps_the_digest_closed(world):
    world.push(1)
    world.add()
    world.push(2)
    world.fire()
    failed = world.trigger.deployment
    world.streams.rollout_event(KEY, failed, "FAILED", "ECS deployment circuit breaker: tasks failed to start")
    world.ecs.images[SERVICE]["web"] = pinned(1)  # the circuit breaker restored v1
    late = world.streams.rollout_event(KEY, failed, "IN_PROGRESS", "ECS deployment in progress")
    trigger = world.trigger
    assert late == []
    assert (trigger.status, trigger.rollout_state) == ("Failed", "FAILED")
    assert "circuit breaker" in trigger.last_error
    revisions = world.ecs.registered
    for _ in range(3):  # no redeploy loop: the failed digest is never fired again automatically
        world.clock.now = world.clock.now.replace(hour=world.clock.now.hour + 1)
        report = world.reconciler.run()
        world.drain()
        assert report["retried"] == [] and report["fired"] == [] and report["drift"] == []
    assert world.ecs.registered == revisions and world.image() == pinned(1)


@pytest.mark.parametrize("events, status, state", [
    (["COMPLETED", "IN_PROGRESS"], "Deployed", "COMPLETED"),
    (["COMPLETED", "COMPLETED", "IN_PROGRESS", "COMPLETED"], "Deployed", "COMPLETED"),
    (["FAILED", "COMPLETED"], "Failed", "FAILED"),
    (["FAILED", "IN_PROGRESS", "IN_PROGRESS", "FAILED"], "Failed", "FAILED"),
    (["COMPLETED", "FAILED"], "Deployed", "COMPLETED"),
    (["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"], "Deployed", "COMPLETED"),
])
def test_duplicated_and_reordered_events_never_move_a_deployment_back(world, events, status, state):
    world.push(1)
    world.add()
    deployment = world.trigger.deployment
    for n, event in enumerate(events):
        world.streams.rollout_event(KEY, deployment, event, f"reason {n}")
    trigger = world.trigger
    assert (trigger.status, trigger.rollout_state) == (status, state)
    if state == "FAILED":  # the first FAILED's reason stays: a duplicate rewrites nothing
        assert trigger.last_error.endswith(f"reason {events.index('FAILED')}")


def test_a_completed_event_does_not_clear_a_later_failed_fire(world):
    world.push(1)
    world.add()
    deployment = world.trigger.deployment
    world.streams.record(world.trigger, world.trigger.with_outcome(status="Failed", last_error="will retry: 500"))
    world.streams.rollout_event(KEY, deployment, "COMPLETED")
    trigger = world.trigger
    assert (trigger.status, trigger.rollout_state, trigger.last_error) == ("Failed", "COMPLETED", "will retry: 500")


def test_failed_and_rolled_back_then_head_moves_the_lost_fire_is_made_not_drift(world):
    world.push(1)
    world.add()
    world.push(2)
    world.fire()
    world.streams.rollout_event(KEY, world.trigger.deployment, "FAILED", "tasks failed")
    world.ecs.circuit_breaker(*SERVICE)
    world.push(3)  # the fan-out of this move was lost
    report = world.reconciler.run()
    world.drain()
    assert report["drift"] == [] and report["fired"] == [world.trigger_id]
    assert world.image() == pinned(3)


# ------------------------------------------------------------------- lost trigger write after UpdateService


class Crashing(MemoryStore):
    """The trigger write after a successful target call fails once (Lambda timeout, DynamoDB fault)."""

    crash_next = False

    def save_trigger(self, trigger, **kwargs):
        if self.crash_next:
            self.crash_next = False
            raise RuntimeError("DynamoDB: InternalServerError")
        return super().save_trigger(trigger, **kwargs)


def test_retry_after_a_lost_trigger_write_adopts_the_deployment_and_honours_its_failure():
    world = World()
    world.store = Crashing()
    world.streams.store = world.store
    world.reconciler = Reconciler(world.streams, world.registry, world.store)
    world.push(1)
    world.add()
    before = world.trigger.deployment
    world.push(2)
    world.store.crash_next = True
    with pytest.raises(RuntimeError):
        world.fire()  # UpdateService happened; its record did not
    assert world.image() == pinned(2) and world.trigger.deployment == before
    world.fire()  # the queue retries: the image is already there
    trigger = world.trigger
    real = world.ecs.deployments[SERVICE]
    assert trigger.deployment == real != before
    assert (trigger.status, trigger.last_triggered_digest, trigger.deployed_image) == ("Deploying", digest(2),
                                                                                       pinned(2))
    failed = world.ecs.circuit_breaker(*SERVICE)
    assert failed == real
    world.streams.rollout_event(KEY, failed, "FAILED", "ECS deployment circuit breaker: tasks failed to start")
    trigger = world.trigger
    assert (trigger.status, trigger.rollout_state) == ("Failed", "FAILED")
    report = world.reconciler.run()  # the failed digest stays closed, and the rollback is not drift
    assert report["fired"] == [] and report["retried"] == [] and report["drift"] == []


def test_a_duplicate_fire_keeps_its_own_deployment(world):
    world.push(1)
    world.add()
    mine = world.trigger.deployment
    world.ecs.deployments[SERVICE] = "ecs-svc/someone-elses"  # another container's fire on the same service
    world.fire()
    assert world.trigger.deployment == mine


# ------------------------------------------------------------ lost FAILED event, deployment dropped by ECS


def test_lost_failed_event_after_the_deployment_left_the_service_is_failed_not_drift(world):
    world.push(1)
    world.add()
    world.push(2)
    world.fire()
    world.ecs.circuit_breaker(*SERVICE, reason="tasks failed to start")  # the FAILED event is lost
    report = world.reconciler.run()
    trigger = world.trigger
    assert report["drift"] == [] and report["fired"] == []
    assert (trigger.status, trigger.rollout_state, trigger.drift) == ("Failed", "FAILED", None)
    assert "circuit breaker: tasks failed to start" in trigger.last_error
    assert world.reconciler.run()["drift"] == []


def ecs_client():
    return boto3.client("ecs", region_name="us-east-1")


SVC_ARN = "arn:aws:ecs:us-east-1:123456789012:service/prod/web"
TD_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:"


def described_service(task_def: str, deployments: list[dict]) -> dict:
    return {"services": [{"serviceArn": SVC_ARN, "serviceName": "web", "status": "ACTIVE",
                          "taskDefinition": task_def, "deploymentController": {"type": "ECS"},
                          "deployments": deployments}], "failures": []}


def described_task_def(revision: int, image: str, **roles: str) -> dict:
    return {"taskDefinition": {"taskDefinitionArn": f"{TD_ARN}{revision}", "family": "web", "revision": revision,
                               "containerDefinitions": [{"name": "web", "image": image}], **roles}, "tags": []}


def revision_arn(n: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:service-revision/prod/web/{n}"


@pytest.mark.parametrize("status, state", [("ROLLBACK_SUCCESSFUL", "FAILED"), ("STOPPED", "FAILED"),
                                           ("SUCCESSFUL", "COMPLETED"), ("IN_PROGRESS", "IN_PROGRESS")])
def test_ecs_driver_reads_a_dropped_deployment_from_the_service_deployment_history(status, state):
    client = ecs_client()
    stub = Stubber(client)
    ours = pinned(2)
    stub.add_response("describe_services", described_service(f"{TD_ARN}1", [
        {"id": "ecs-svc/3", "status": "PRIMARY", "taskDefinition": f"{TD_ARN}1", "rolloutState": "COMPLETED"}]))
    stub.add_response("describe_task_definition", described_task_def(1, pinned(1)))
    stub.add_response("list_service_deployments", {"serviceDeployments": [
        {"serviceDeploymentArn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/web/a",
         "targetServiceRevisionArn": revision_arn(2), "status": status,
         "statusReason": "ECS deployment circuit breaker: tasks failed to start.",
         "createdAt": datetime(2026, 11, 26, 12, 1, tzinfo=timezone.utc)},
        {"serviceDeploymentArn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/web/b",
         "targetServiceRevisionArn": revision_arn(1), "status": "SUCCESSFUL",
         "createdAt": datetime(2026, 11, 26, 11, 0, tzinfo=timezone.utc)}]},
        {"cluster": "prod", "service": "web", "maxResults": 20})
    stub.add_response("describe_service_revisions", {"serviceRevisions": [
        {"serviceRevisionArn": revision_arn(1), "taskDefinition": f"{TD_ARN}1",
         "containerImages": [{"containerName": "web", "image": pinned(1), "imageDigest": digest(1)}]},
        {"serviceRevisionArn": revision_arn(2), "taskDefinition": f"{TD_ARN}2",
         "containerImages": [{"containerName": "web", "image": ours, "imageDigest": digest(2)}]}], "failures": []},
        {"serviceRevisionArns": [revision_arn(1), revision_arn(2)]})
    with stub:
        seen = EcsDriver(client).inspect(TARGET, "ecs-svc/2", image=ours)
    stub.assert_no_pending_responses()
    assert (seen.image, seen.rollout_state) == (pinned(1), state)
    if state == "FAILED":
        assert "circuit breaker" in seen.reason


@pytest.mark.parametrize("code, http", [("UnknownOperationException", 400), ("AccessDeniedException", 400),
                                        ("500", 500)])
def test_ecs_driver_without_the_history_api_knows_no_more_than_before(code, http):
    client = ecs_client()
    stub = Stubber(client)
    stub.add_response("describe_services", described_service(f"{TD_ARN}1", [
        {"id": "ecs-svc/3", "status": "PRIMARY", "taskDefinition": f"{TD_ARN}1", "rolloutState": "COMPLETED"}]))
    stub.add_response("describe_task_definition", described_task_def(1, pinned(1)))
    stub.add_client_error("list_service_deployments", code, "not here", http_status_code=http)
    with stub:
        seen = EcsDriver(client).inspect(TARGET, "ecs-svc/2", image=pinned(2))
    assert (seen.image, seen.rollout_state) == (pinned(1), None)


def test_ecs_driver_adopts_the_deployment_running_the_image_it_was_asked_for():
    client = ecs_client()
    stub = Stubber(client)
    stub.add_response("describe_services", described_service(f"{TD_ARN}2", [
        {"id": "ecs-svc/9", "status": "PRIMARY", "taskDefinition": f"{TD_ARN}2", "rolloutState": "IN_PROGRESS"},
        {"id": "ecs-svc/1", "status": "ACTIVE", "taskDefinition": f"{TD_ARN}1", "rolloutState": "COMPLETED"}]))
    stub.add_response("describe_task_definition", described_task_def(2, pinned(2)))
    with stub:
        result = EcsDriver(client).apply(TARGET, pinned(2))
    assert (result.changed, result.deployment, result.rollout_state) == (False, "ecs-svc/9", "IN_PROGRESS")
    assert result.pins == TaskPins("web")


# ------------------------------------------------------------------------------- rollout event checks


def test_old_format_service_arn_is_matched_by_deployment_id_without_error(world):
    world.push(1)
    world.add()
    event = load_event("ecs_deployment_failed.json")
    event["resources"] = ["arn:aws:ecs:us-east-1:123456789012:service/web"]
    event["detail"]["deploymentId"] = world.trigger.deployment
    change = parse_ecs_deployment_event(event, account="123456789012", region="us-east-1")
    assert not change.cluster_known
    updated = world.streams.rollout_event(change.target_key, change.deployment, change.state, change.reason)
    assert [t.id for t in updated] == [world.trigger_id] and world.trigger.rollout_state == "FAILED"
    event["detail"]["deploymentId"] = "ecs-svc/not-ours"
    other = parse_ecs_deployment_event(event, account="123456789012", region="us-east-1")
    assert world.streams.rollout_event(other.target_key, other.deployment, other.state, other.reason) == []


@pytest.mark.parametrize("field, value", [("account", "999999999999"), ("region", "eu-west-1")])
def test_event_from_another_account_or_region_is_foreign(field, value):
    event = load_event("ecs_deployment_failed.json")
    event[field] = value
    with pytest.raises(ForeignEvent, match=field):
        parse_ecs_deployment_event(event, account="123456789012", region="us-east-1")
    forged = load_event("ecs_deployment_failed.json")  # envelope right, ARN of another account
    forged["resources"] = ["arn:aws:ecs:us-east-1:999999999999:service/prod/web"]
    with pytest.raises(ForeignEvent):
        parse_ecs_deployment_event(forged, account="123456789012", region="us-east-1")
    assert parse_ecs_deployment_event(load_event("ecs_deployment_failed.json"), account="123456789012",
                                      region="us-east-1").target_key == "ecs:prod/web"


def test_malformed_rollout_events_are_invalid_not_crashes():
    for broken in ({"source": "aws.ecs", "detail-type": "ECS Deployment State Change", "detail": {
                       "eventName": "SERVICE_DEPLOYMENT_FAILED", "deploymentId": "ecs-svc/1"}, "resources": "x"},
                   {"source": "aws.ecs", "detail-type": "ECS Deployment State Change", "detail": []}):
        with pytest.raises(Invalid):
            parse_ecs_deployment_event(broken)


# ---------------------------------------------------------------------------- fires never widen privilege


def test_service_switched_to_another_family_or_role_fails_registers_nothing_and_is_drift():
    world = World(TaskPins("web", None, "arn:aws:iam::123456789012:role/exec"))
    world.push(1)
    trigger = world.add()
    assert trigger.pins == TaskPins("web", None, "arn:aws:iam::123456789012:role/exec")
    for switched, words in [
        (TaskPins("admin-tools", None, "arn:aws:iam::123456789012:role/exec"),
         "task-definition family changed from web to admin-tools"),
        (TaskPins("web", "arn:aws:iam::123456789012:role/admin", "arn:aws:iam::123456789012:role/exec"),
         "task role changed from none to arn:aws:iam::123456789012:role/admin"),
        (TaskPins("web", None, "arn:aws:iam::123456789012:role/god"),
         "execution role changed from arn:aws:iam::123456789012:role/exec to arn:aws:iam::123456789012:role/god"),
    ]:
        world.ecs.pins[SERVICE] = switched
        registered = world.ecs.registered
        world.push(registered + 2)
        world.fire()
        trigger = world.trigger
        assert world.ecs.registered == registered and world.image() != pinned(registered + 2)
        assert trigger.status == "Failed" and words in trigger.last_error and words in trigger.drift
    # a person accepts what runs now: `deploy` re-records, and later fires work again
    answer = dispatch(world.streams, {"action": "deploy", "id": world.trigger_id})
    assert answer["ok"] and world.trigger.pins == switched and world.trigger.drift is None
    world.push(99)
    world.fire()
    assert world.image() == pinned(99) and world.trigger.status == "Deploying"


def test_pins_survive_the_dynamodb_item_round_trip():
    from imagestreams.adapters.dynamodb import trigger_from_item, trigger_item
    from imagestreams.model import Trigger

    for pins in (TaskPins("web", "arn:aws:iam::1:role/a", "arn:aws:iam::1:role/b"), TaskPins("web"), None):
        trigger = Trigger("tr-0123456789ab", WEB, TARGET, pins=pins)
        assert trigger_from_item(trigger_item(trigger)).pins == pins


# --------------------------------------------------------------- lagging indexes never undo a newer fire


class LaggingIndex(MemoryStore):
    """The trigger indexes (by target, all triggers) answer from a snapshot, like an eventually consistent GSI."""

    snapshot: dict | None = None

    def freeze(self):
        self.snapshot = dict(self.triggers)

    def triggers_for_target(self, key):
        return [t for t in (self.snapshot or self.triggers).values() if target_key(t.target) == key]

    def all_triggers(self):
        return list((self.snapshot or self.triggers).values())


def lagging_world():
    world = World()
    world.store = LaggingIndex()
    world.streams.store = world.store
    world.reconciler = Reconciler(world.streams, world.registry, world.store)
    return world


def test_a_late_event_for_an_older_deployment_read_from_a_lagging_index_changes_nothing():
    world = lagging_world()
    world.push(1)
    world.add()
    old = world.trigger.deployment
    world.store.freeze()  # the index still shows the fire of v1
    world.push(2)
    world.fire()
    newer = world.trigger
    assert world.streams.rollout_event(KEY, old, "FAILED", "late") == []
    assert world.trigger == newer and world.trigger.deployment != old


def test_the_reconciler_never_overwrites_a_fire_made_while_it_checked():
    world = lagging_world()
    world.push(1)
    world.add()
    world.ecs.past[SERVICE][-1]["state"] = "COMPLETED"  # v1's rollout completed (its event was lost)
    world.push(2)
    world.store.freeze()  # the run lists the triggers, then the deployer fires v2
    world.fire()
    newer = world.trigger
    world.reconciler.run()
    assert world.trigger == newer and world.trigger.deployed_image == pinned(2)
