"""One writer per target resource on the embedded AWS: two triggers on two containers of one ECS service, leases
on the real table (conditional writes, expiry, never fanned out), the reconciler's single-run lease, and an admin
bulk deploy answered through the fire queue."""

from __future__ import annotations

from typing import Any

import pytest

from imagestreams.adapters.dynamodb import DynamoStore
from imagestreams.errors import TransientTargetError
from imagestreams.model import EcsTarget, StreamTag
from tests.integration.conftest import REG, make_service, service_images

WEB, SIDE = StreamTag("team/web", "latest"), StreamTag("team/side", "latest")


@pytest.fixture
def repos(stack):
    for name in ("team/web", "team/side"):
        stack.client("ecr").create_repository(repositoryName=name)
    make_service(stack)  # containers web and sidecar
    return stack


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


class Interleaving:
    """The ECS client, except that ``between`` runs once just before the first RegisterTaskDefinition: another
    fire of the same service gets in between this fire's reads and its writes."""

    def __init__(self, client: Any, between: Any) -> None:
        self._client, self._between = client, between

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def register_task_definition(self, **kwargs: Any) -> Any:
        between, self._between = self._between, None
        if between is not None:
            between()
        return self._client.register_task_definition(**kwargs)


def test_concurrent_fires_on_two_containers_of_one_ecs_service_keep_both_pins(repos):
    from imagestreams.bootstrap import services

    repos.use_function_env("DeployerFunction")
    streams = services()
    web = streams.add_trigger(WEB, EcsTarget("prod", "web", "web"))
    side = streams.add_trigger(SIDE, EcsTarget("prod", "web", "sidecar"))
    d_web = repos.push_image("team/web", "latest", seed="w1", emit=False)["detail"]["image-digest"]
    d_side = repos.push_image("team/side", "latest", seed="s1", emit=False)["detail"]["image-digest"]
    streams.sync(WEB)
    streams.sync(SIDE)
    driver = streams.drivers["ecs"].for_role(None)  # the driver of the stack's own account
    busy: list[str] = []

    def the_other_fire():
        try:
            streams.fire_by_id(SIDE, side.id)
        except TransientTargetError as exc:  # the deployer's message goes back to the queue
            busy.append(str(exc))

    driver.client = Interleaving(driver.client, the_other_fire)
    streams.fire_by_id(WEB, web.id)
    if busy:
        streams.fire_by_id(SIDE, side.id)  # SQS delivers the failed message again
    _, images, _ = service_images(repos)
    assert images == {"web": f"{REG}/team/web@{d_web}", "sidecar": f"{REG}/team/side@{d_side}"}
    assert busy and "busy" in busy[0]  # the second fire waited for the service instead of writing over it


def test_fires_of_one_service_share_a_message_group_through_the_pipeline(repos):
    admin(repos, action="trigger.add", **{"from": "team/web:latest"},
          target={"type": "ecs", "cluster": "prod", "service": "web", "container": "web"})
    admin(repos, action="trigger.add", **{"from": "team/side:latest"},
          target={"type": "ecs", "cluster": "prod", "service": "web", "container": "sidecar"})
    d_web = repos.push_image("team/web", "latest", seed="w1")["detail"]["image-digest"]
    d_side = repos.push_image("team/side", "latest", seed="s1")["detail"]["image-digest"]
    repos.pump()
    _, images, _ = service_images(repos)
    assert images == {"web": f"{REG}/team/web@{d_web}", "sidecar": f"{REG}/team/side@{d_side}"}
    groups = {r["attributes"]["MessageGroupId"] for i in repos.invocations if i.function == "DeployerFunction"
              for r in i.event["Records"]}
    assert len(groups) == 1


def test_leases_on_the_table_are_exclusive_expire_and_are_never_fanned_out(stack):
    now = [1_000_000.0]
    store = DynamoStore(stack.client("dynamodb"), stack.outputs["StreamsTableName"], clock=lambda: now[0])
    assert store.acquire_lease("target:ecs:prod/web", "a", 90)
    assert not store.acquire_lease("target:ecs:prod/web", "b", 90)
    assert store.acquire_lease("target:ecs:prod/web", "a", 90)  # its holder may extend it
    store.release_lease("target:ecs:prod/web", "b")  # not b's to release
    assert not store.acquire_lease("target:ecs:prod/web", "b", 90)
    now[0] += 91  # a crashed holder: its time runs out
    assert store.acquire_lease("target:ecs:prod/web", "b", 90)
    item = stack.client("dynamodb").get_item(TableName=stack.outputs["StreamsTableName"],
                                             Key={"pk": {"S": "LEASE#target:ecs:prod/web"}, "sk": {"S": "LEASE"}})
    assert item["Item"]["expiresAt"]["N"] == str(int(now[0]) + 90)  # the TTL attribute cleans it up
    store.release_lease("target:ecs:prod/web", "b")
    assert store.acquire_lease("target:ecs:prod/web", "c", 90)
    stack.pump()
    assert [i for i in stack.invocations if i.function == "FanoutFunction"] == []


def test_a_reconciler_run_skips_while_another_holds_the_lease(stack):
    from imagestreams.bootstrap import services

    stack.use_function_env("ReconcilerFunction")
    store = services().store
    assert store.acquire_lease("reconciler", "another-run", 330)
    assert stack.run_schedule("ReconcilerFunction") == {"skipped": "another reconciler run is in progress"}
    store.release_lease("reconciler", "another-run")
    assert stack.run_schedule("ReconcilerFunction")["complete"] is True
    assert store.acquire_lease("reconciler", "next-run", 330)  # the finished run gave it back


def test_bulk_deploy_answers_with_the_queued_fires_and_the_deployer_applies_them(repos):
    make_service(repos, service="api")
    for service in ("web", "api"):
        admin(repos, action="trigger.add", **{"from": "team/web:latest"}, paused=True,
              target={"type": "ecs", "cluster": "prod", "service": service, "container": "web"})
    d1 = repos.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repos.pump()
    assert service_images(repos)[1]["web"] == f"{REG}/team/web:latest"  # paused: not fired
    result = admin(repos, action="deploy", **{"from": "team/web:latest"})
    assert len(result["queued"]) == 2 and all(t["lastTriggeredDigest"] is None for t in result["triggers"])
    assert service_images(repos)[1]["web"] == f"{REG}/team/web:latest"  # answered before any target call
    repos.pump()
    for service in ("web", "api"):
        assert service_images(repos, service=service)[1]["web"] == f"{REG}/team/web@{d1}"
