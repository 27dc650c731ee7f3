"""Rollout truth and fires that never widen privilege, on the embedded AWS wired by template.yaml."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from imagestreams.adapters.ecs import EcsDriver
from imagestreams.model import EcsTarget, StreamTag
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams
from tests.integration.conftest import REG, make_service, service_images

ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}
WEB = StreamTag("team/web", "latest")
ACCOUNT = "123456789012"


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


def the_trigger(stack):
    return admin(stack, action="trigger.list")["triggers"][0]


def primary_deployment(stack, service="web"):
    deployments = stack.client("ecs").describe_services(cluster="prod", services=[service])["services"][0]
    return next(d["id"] for d in deployments["deployments"] if d["status"] == "PRIMARY")


def deployment_event(deployment, state="FAILED", resource=f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/prod/web",
                     **envelope):
    return {"version": "0", "id": "e1", "detail-type": "ECS Deployment State Change", "source": "aws.ecs",
            "account": ACCOUNT, "region": "us-east-1", "time": "2026-11-26T12:00:00Z", "resources": [resource],
            "detail": {"eventType": "ERROR" if state == "FAILED" else "INFO",
                       "eventName": f"SERVICE_DEPLOYMENT_{state}", "deploymentId": deployment,
                       "reason": "ECS deployment circuit breaker: tasks failed to start."}, **envelope}


def task_definition_count(stack):
    return len(stack.client("ecs").list_task_definitions()["taskDefinitionArns"])


def ops_dlq(stack):
    return stack.client("sqs").receive_message(QueueUrl=stack.outputs["OpsDLQUrl"]).get("Messages", [])


@pytest.fixture
def deployed(stack):
    """team/web:latest → prod/web (container web), fired once (v1)."""
    stack.client("ecr").create_repository(repositoryName="team/web")
    make_service(stack)
    admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)
    stack.push_image("team/web", "latest", seed="1", also=("1",))
    stack.pump()
    assert the_trigger(stack)["status"] == "Deploying"
    return stack


# ------------------------------------------------------------------------------------ rollout events


def test_old_format_service_arn_event_is_handled_without_a_failed_invocation(deployed):
    stack = deployed
    ours = primary_deployment(stack)
    old_arn = f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/web"  # no cluster in it
    stack.emit(deployment_event("ecs-svc/9999999999", resource=old_arn))  # not ours: ignored
    stack.pump()
    assert the_trigger(stack)["status"] == "Deploying"
    stack.emit(deployment_event(ours, resource=old_arn))
    stack.pump()
    trigger = the_trigger(stack)
    assert (trigger["status"], trigger["rolloutState"]) == ("Failed", "FAILED")
    assert ops_dlq(stack) == []
    assert all(i.error is None for i in stack.invocations if i.function == "RolloutFunction")


def test_forged_event_from_another_account_or_region_is_ignored(deployed):
    stack = deployed
    ours = primary_deployment(stack)
    for forged in (deployment_event(ours, account="999999999999"), deployment_event(ours, region="eu-west-1"),
                   deployment_event(ours, resource="arn:aws:ecs:us-east-1:999999999999:service/prod/web"),
                   {"source": "aws.ecs", "detail-type": "ECS Deployment State Change", "detail": "FAILED"}):
        answer = stack.invoke("RolloutFunction", forged)  # anyone allowed to invoke the function directly
        assert "ignored" in answer
    trigger = the_trigger(stack)
    assert (trigger["status"], trigger["rolloutState"]) == ("Deploying", "IN_PROGRESS")


# ---------------------------------------------------------------- lost trigger write after UpdateService


def test_retry_after_the_trigger_write_failed_adopts_the_deployment_and_honours_its_failure(deployed, monkeypatch):
    stack = deployed
    stack.use_function_env("DeployerFunction")
    from imagestreams.bootstrap import services

    streams = services()
    real_save = streams.store.save_trigger
    crashes = []

    def crash_once(trigger, **kwargs):
        if not crashes:
            crashes.append(trigger.id)
            raise RuntimeError("Task timed out after 30.00 seconds")
        return real_save(trigger, **kwargs)

    # moto keeps a service's deployment id across UpdateService (AWS starts a new deployment each time): a forced
    # new deployment first gives the fire below a deployment id other than the one the trigger recorded
    stack.client("ecs").update_service(cluster="prod", service="web", forceNewDeployment=True)
    recorded = streams.store.get_trigger(the_trigger(stack)["id"]).deployment
    monkeypatch.setattr(streams.store, "save_trigger", crash_once)
    v2 = stack.push_image("team/web", "latest", seed="2", also=("2",), emit=False)["detail"]["image-digest"]
    streams.sync(WEB)
    trigger_id = the_trigger(stack)["id"]
    with pytest.raises(RuntimeError):
        streams.fire_by_id(WEB, trigger_id)  # UpdateService succeeded; the record of it did not
    assert service_images(stack)[1]["web"] == f"{REG}/team/web@{v2}"
    revisions = task_definition_count(stack)
    streams.fire_by_id(WEB, trigger_id)  # the queue's retry
    assert task_definition_count(stack) == revisions  # nothing registered twice
    real = primary_deployment(stack)
    assert streams.store.get_trigger(trigger_id).deployment == real != recorded
    stack.emit(deployment_event(real))  # the FAILED event of the real deployment is honoured
    stack.pump()
    trigger = the_trigger(stack)
    assert (trigger["status"], trigger["rolloutState"], trigger["lastTriggeredDigest"]) == ("Failed", "FAILED", v2)


# -------------------------------------------------------- lost FAILED event, deployment dropped by ECS


class History:
    """moto's ECS with the deployment-history calls moto lacks, answered as ECS does after a circuit-breaker
    rollback (ListServiceDeployments / DescribeServiceRevisions shapes)."""

    def __init__(self, client, image):
        self._client, self.image = client, image
        self.revision = "arn:aws:ecs:us-east-1:123456789012:service-revision/prod/web/2"

    def __getattr__(self, name):
        return getattr(self._client, name)

    def list_service_deployments(self, **kwargs):
        assert (kwargs["cluster"], kwargs["service"]) == ("prod", "web")
        return {"serviceDeployments": [{
            "serviceDeploymentArn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/web/x",
            "targetServiceRevisionArn": self.revision, "status": "ROLLBACK_SUCCESSFUL",
            "statusReason": "ECS deployment circuit breaker: tasks failed to start.",
            "createdAt": datetime.now(timezone.utc)}]}

    def describe_service_revisions(self, serviceRevisionArns):
        return {"serviceRevisions": [{"serviceRevisionArn": arn, "containerImages": [
            {"containerName": "web", "image": self.image}]} for arn in serviceRevisionArns], "failures": []}


def fired_twice(stack, client):
    """A trigger fired v1 then v2 through ``client``; then the circuit breaker rolls v2 back (its FAILED event is
    lost) — ECS drops v2's deployment from the service."""
    stack.client("ecr").create_repository(repositoryName="team/web")
    make_service(stack)
    stack.use_function_env("ReconcilerFunction")
    from imagestreams.bootstrap import services

    base = services()
    streams = ImageStreams(base.store, base.registry, {"ecs": EcsDriver(client, task_role_pattern="exec")})
    stack.push_image("team/web", "latest", seed="1", also=("1",), emit=False)
    streams.sync(WEB)
    trigger = streams.add_trigger(WEB, EcsTarget("prod", "web", "web"))
    good = service_images(stack)[0]
    stack.push_image("team/web", "latest", seed="2", also=("2",), emit=False)
    streams.sync(WEB)
    streams.fire_by_id(WEB, trigger.id)
    ours = streams.store.get_trigger(trigger.id).deployment
    stack.client("ecs").update_service(cluster="prod", service="web", taskDefinition=good,  # the rollback
                                       forceNewDeployment=True)
    assert primary_deployment(stack) != ours
    return streams, trigger.id, Reconciler(streams, base.registry, base.store)


def test_lost_failed_event_after_the_deployment_left_the_service_is_failed_not_drift(stack):
    client = History(stack.client("ecs"), None)
    streams, trigger_id, reconciler = fired_twice(stack, client)
    client.image = streams.store.get_trigger(trigger_id).deployed_image
    report = reconciler.run()
    trigger = streams.store.get_trigger(trigger_id)
    assert report["drift"] == [] and report["fired"] == [] and report["errors"] == []
    assert (trigger.status, trigger.rollout_state, trigger.drift) == ("Failed", "FAILED", None)
    assert "circuit breaker" in trigger.last_error
    assert reconciler.run()["drift"] == []  # and stays so


def test_without_the_deployment_history_api_the_reconciler_degrades_to_drift(stack):
    streams, trigger_id, reconciler = fired_twice(stack, stack.client("ecs"))  # moto: not implemented
    report = reconciler.run()
    assert report["errors"] == [] and [d["id"] for d in report["drift"]] == [trigger_id]


# ----------------------------------------------------------------------- fires never widen privilege


def test_service_switched_to_another_family_or_role_fails_registers_nothing_until_deploy(deployed):
    stack = deployed
    ecs = stack.client("ecs")
    containers = [{"name": "web", "image": "nginx:1", "memory": 128},
                  {"name": "sidecar", "image": "fluent-bit:2", "memory": 64}]
    other_family = ecs.register_task_definition(
        family="ops-tools", taskRoleArn="arn:aws:iam::123456789012:role/admin",
        executionRoleArn="arn:aws:iam::123456789012:role/exec", containerDefinitions=containers,
    )["taskDefinition"]["taskDefinitionArn"]
    other_role = ecs.register_task_definition(
        family="web", taskRoleArn="arn:aws:iam::123456789012:role/admin",
        executionRoleArn="arn:aws:iam::123456789012:role/exec", containerDefinitions=containers,
    )["taskDefinition"]["taskDefinitionArn"]
    for n, (switched, words) in enumerate([
        (other_family, "task-definition family changed from web to ops-tools"),
        (other_role, "task role changed from none to arn:aws:iam::123456789012:role/admin"),
    ]):
        ecs.update_service(cluster="prod", service="web", taskDefinition=switched)  # someone with UpdateService
        revisions = task_definition_count(stack)
        stack.push_image("team/web", "latest", seed=f"s{n}", also=(f"s{n}",))
        stack.pump()
        trigger = the_trigger(stack)
        assert task_definition_count(stack) == revisions and service_images(stack)[0] == switched
        assert trigger["status"] == "Failed" and words in trigger["lastError"] and words in trigger["drift"]
        assert trigger["pins"]["family"] == "web" and trigger["pins"]["taskRoleArn"] is None
    # a person accepts what runs now; `deploy` re-records, and later fires work again
    deployed_ = admin(stack, action="deploy", id=trigger["id"])["triggers"][0]
    assert deployed_["pins"]["taskRoleArn"] == "arn:aws:iam::123456789012:role/admin"
    v9 = stack.push_image("team/web", "latest", seed="9", also=("9",))["detail"]["image-digest"]
    stack.pump()
    assert service_images(stack)[1]["web"] == f"{REG}/team/web@{v9}"
    assert the_trigger(stack)["status"] == "Deploying"


@pytest.mark.parametrize("pattern, words", [("", "TaskRolePattern parameter is empty"),
                                            ("app-*", "TaskRolePattern parameter (app-*) does not allow")])
def test_roles_the_task_role_pattern_does_not_allow_are_never_passed(stack, pattern, words):
    stack.client("ecr").create_repository(repositoryName="team/web")
    make_service(stack)
    stack.push_image("team/web", "latest", seed="1", also=("1",))
    stack.pump()
    for fn in ("AdminFunction", "DeployerFunction", "ReconcilerFunction"):
        stack.functions[fn].environment["TASK_ROLE_PATTERN"] = pattern
    revisions = task_definition_count(stack)
    trigger = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)["trigger"]
    assert trigger["status"] == "Failed" and words in trigger["lastError"]
    assert "role/exec" in trigger["lastError"] and task_definition_count(stack) == revisions
    stack.functions["AdminFunction"].environment["TASK_ROLE_PATTERN"] = "ex*"  # one IAM pattern, like PassRole's
    assert admin(stack, action="deploy", id=trigger["id"])["triggers"][0]["status"] == "Deploying"
    assert task_definition_count(stack) == revisions + 1


def test_every_call_the_rollout_function_makes_is_allowed_by_its_role(deployed, monkeypatch):
    """The local ECS never finishes a deployment, so the demo's IAM check sees no rollout event: here both event
    forms (the service ARN, and an old-format ARN without the cluster) run the rollout function's whole path —
    index read, consistent re-read, conditional write — and every call must be allowed by its role in
    template.yaml."""
    import botocore.client

    from tests.e2e.test_iam_coverage import allowed, iam_requests, role_statements

    stack = deployed
    calls = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def record(client, operation, params):
        calls.append((client.meta.service_model.service_name, operation, params))
        return make_api_call(client, operation, params)

    ours = primary_deployment(stack)
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    stack.invoke("RolloutFunction", deployment_event(ours, "IN_PROGRESS",
                                                     resource=f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/web"))
    stack.invoke("RolloutFunction", deployment_event(ours, "FAILED"))
    monkeypatch.undo()
    statements = role_statements(stack, "RolloutFunction")
    requests = [r for service, operation, params in calls for r in iam_requests(stack, service, operation, params)]
    assert {action for action, _, _ in requests} >= {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem"}
    denied = sorted({f"{action} on {resource}" for action, resource, context in requests
                     if not allowed(statements, action, resource, context)})
    assert denied == []
    assert (the_trigger(stack)["status"], the_trigger(stack)["rolloutState"]) == ("Failed", "FAILED")
