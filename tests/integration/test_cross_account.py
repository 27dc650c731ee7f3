"""Targets in another account on the embedded AWS: moto keeps one backend per account id, and credentials from
``sts:AssumeRole`` on a role in account 222222222222 act in that account's backend — so the stack (account
123456789012) reaches a service there only through the target's ``roleArn``."""

from __future__ import annotations

import boto3
import pytest

from imagestreams import aws as aws_clients
from imagestreams.model import StreamTag
from tests.integration.conftest import REG, TEST_PARAMETERS

OTHER = "222222222222"
ROLE = f"arn:aws:iam::{OTHER}:role/imagestreams-target"
PARAMETERS = {**TEST_PARAMETERS, "AllowedTargetAccounts": OTHER, "TargetRolePattern": "imagestreams-*"}


def target(role: str = ROLE, **extra) -> dict:
    return {"type": "ecs", "cluster": "prod", "service": "web", "container": "web", "roleArn": role, **extra}


def other_account_ecs(stack, role: str = ROLE):
    """A client acting in the workload account (as its own operator would, through a role there)."""
    creds = stack.client("sts").assume_role(RoleArn=role, RoleSessionName="setup")["Credentials"]
    return boto3.client("ecs", region_name=stack.region, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def make_service(ecs, cluster="prod", service="web"):
    ecs.create_cluster(clusterName=cluster)
    task_def = ecs.register_task_definition(
        family=service, cpu="256", memory="512", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        containerDefinitions=[{"name": "web", "image": f"{REG}/team/web:latest", "essential": True},
                                              {"name": "sidecar", "image": "fluent-bit:2", "essential": False}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=task_def, desiredCount=1)


def images(ecs, cluster="prod", service="web") -> dict[str, str]:
    arn = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["taskDefinition"]
    td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return {c["name"]: c["image"] for c in td["containerDefinitions"]}


def table_items(stack) -> list:
    return stack.client("dynamodb").scan(TableName=stack.outputs["StreamsTableName"])["Items"]


@pytest.fixture
def two_accounts(embedded):
    embedded.reset()
    embedded.deploy(parameters=PARAMETERS)
    embedded.client("ecr").create_repository(repositoryName="team/web")
    ecs = other_account_ecs(embedded)
    make_service(ecs)
    make_service(embedded.client("ecs"))  # the same names in the stack's own account: another resource
    return embedded, ecs


def admin(stack, **command):
    return stack.invoke("AdminFunction", command)


def test_a_trigger_through_role_arn_fires_by_digest_in_the_other_account(two_accounts):
    stack, ecs = two_accounts
    home_before = images(stack.client("ecs"))
    added = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target=target())
    assert added["ok"], added
    digest = stack.push_image("team/web", "latest", seed="x1")["detail"]["image-digest"]
    stack.pump()
    assert images(ecs)["web"] == f"{REG}/team/web@{digest}"
    assert images(ecs)["sidecar"] == "fluent-bit:2"
    assert images(stack.client("ecs")) == home_before  # prod/web of the stack's own account is untouched
    listed = admin(stack, action="trigger.list")["result"]["triggers"]
    assert [t["target"].get("roleArn") for t in listed] == [ROLE]
    assert listed[0]["lastTriggeredDigest"] == digest


def test_the_same_names_in_two_accounts_are_two_triggers(two_accounts):
    stack, _ = two_accounts
    home = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, paused=True,
                 target={"type": "ecs", "cluster": "prod", "service": "web", "container": "web"})
    other = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, paused=True, target=target())
    assert home["ok"] and other["ok"], (home, other)
    assert home["result"]["id"] != other["result"]["id"]


@pytest.mark.parametrize("role", [
    f"arn:aws:iam::{OTHER}:role/admin",  # role name outside TargetRolePattern
    "arn:aws:iam::333333333333:role/imagestreams-target",  # account outside AllowedTargetAccounts
])
def test_a_role_or_account_not_allowed_is_forbidden_and_writes_nothing(two_accounts, role):
    stack, ecs = two_accounts
    stack.push_image("team/web", "latest", seed="f1")
    stack.pump()
    items, before = table_items(stack), images(ecs)
    answer = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target=target(role))
    assert not answer["ok"] and answer["error"]["type"] == "Forbidden", answer
    assert table_items(stack) == items
    assert images(ecs) == before


def test_assume_role_is_cached_per_role_across_100_fires(two_accounts):
    stack, ecs = two_accounts
    assert admin(stack, action="trigger.add", **{"from": "team/web:latest"}, paused=True, target=target())["ok"]
    stack.use_function_env("DeployerFunction")
    from imagestreams import bootstrap

    bootstrap.reset()  # a cold deployer container, then warm for 100 fires
    streams = bootstrap.services()
    stream_tag = StreamTag("team/web", "latest")
    trigger = streams.list_triggers(stream_tag)[0]
    streams.store.set_paused(trigger, False)
    before = aws_clients.assume_role_calls
    fired = []
    for n in range(100):
        stack.push_image("team/web", "latest", seed=f"c{n}", emit=False)
        streams.sync(stream_tag)
        head = streams.store.get_head(stream_tag)
        after = streams.fire(streams.get_trigger(trigger.id), head)
        fired.append(after.last_triggered_digest == head.digest)
    calls = aws_clients.assume_role_calls - before
    print(f"\nAssumeRole calls per 100 fires to one role: {calls}")
    assert all(fired)
    assert images(ecs)["web"] == f"{REG}/team/web@{head.digest}"
    assert calls == 1  # the first fire assumed the role (cold), the other 99 reused its credentials


def deployment_event(account: str, deployment: str, state: str = "COMPLETED") -> dict:
    return {"version": "0", "id": "e1", "detail-type": "ECS Deployment State Change", "source": "aws.ecs",
            "account": account, "region": "us-east-1", "time": "2026-11-26T12:00:00Z",
            "resources": [f"arn:aws:ecs:us-east-1:{account}:service/prod/web"],
            "detail": {"eventType": "INFO", "eventName": f"SERVICE_DEPLOYMENT_{state}", "deploymentId": deployment,
                       "reason": ""}}


def test_a_forwarded_deployment_event_from_the_workload_account_tracks_the_rollout(two_accounts):
    stack, _ = two_accounts
    # a paused trigger on the stack's own prod/web, stamped with the same deployment id: the event about the other
    # account's prod/web must not touch it
    home = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, paused=True,
                 target={"type": "ecs", "cluster": "prod", "service": "web", "container": "web"})["result"]["id"]
    ours = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target=target())["result"]["id"]
    stack.push_image("team/web", "latest", seed="r1")
    stack.pump()
    stack.use_function_env("RolloutFunction")
    from imagestreams.bootstrap import services

    store = services().store
    fired = store.get_trigger(ours)
    assert fired.deployment
    store.save_trigger(store.get_trigger(home).with_outcome(deployment=fired.deployment))
    answer = stack.invoke("RolloutFunction", deployment_event(OTHER, fired.deployment))
    assert answer.get("triggers") == [ours], answer
    assert store.get_trigger(ours).rollout_state == "COMPLETED"
    assert store.get_trigger(home).rollout_state is None
    # an account outside AllowedTargetAccounts is still foreign
    foreign = stack.invoke("RolloutFunction", deployment_event("333333333333", fired.deployment, "FAILED"))
    assert "ignored" in foreign
    assert store.get_trigger(ours).rollout_state == "COMPLETED"
