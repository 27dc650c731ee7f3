"""Adapters against the real local engines: DynamoDB Local (or moto), moto ECR and ECS."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from imagestreams import aws
from imagestreams.adapters.dynamodb import DynamoStore
from imagestreams.adapters.ecr import EcrRegistry
from imagestreams.adapters.ecs import EcsDriver
from imagestreams.errors import ConcurrentUpdate, TargetError
from imagestreams.model import EcsTarget, Head, StreamTag, Trigger, trigger_id
from tests.conftest import digest
from tests.integration.conftest import REG, make_service, service_images

WEB = StreamTag("team/web", "web")


def head(n: int, generation: int, tag: StreamTag = WEB, deleted: bool = False) -> Head:
    return Head(tag, digest(n), generation, datetime.now(timezone.utc), "push", "ecr", REG, deleted=deleted)


@pytest.fixture
def store(stack):
    stack.use_function_env("AdminFunction")
    return DynamoStore(aws.client("dynamodb"), stack.outputs["StreamsTableName"])


def test_commit_is_conditional_on_the_head_read(store):
    store.commit(None, head(1, 1), None)
    with pytest.raises(ConcurrentUpdate):
        store.commit(None, head(2, 1), None)  # someone else created it first
    first = store.get_head(WEB)
    store.commit(first, head(2, 2), None)
    with pytest.raises(ConcurrentUpdate):
        store.commit(first, head(3, 2), None)  # stale read
    assert store.get_head(WEB).digest == digest(2)
    assert [e.digest for e in store.history(WEB, 10)] == [digest(2), digest(1)]


def test_history_cap_drops_oldest_in_the_same_transaction(store):
    previous = None
    for generation in range(1, 6):
        new = head(generation, generation)
        drop = generation - 3
        store.commit(previous, new, drop if drop >= 1 else None)
        previous = new
    assert [e.generation for e in store.history(WEB, 50)] == [5, 4, 3]


def test_tag_prefixes_do_not_bleed_into_each_other(store):
    other = StreamTag("team/web", "web-2")
    store.commit(None, head(1, 1), None)
    store.commit(None, head(2, 1, other), None)
    target = EcsTarget("prod", "web", "web")
    store.add_trigger(Trigger(trigger_id(other, target), other, target))
    got_head, triggers = store.head_and_triggers(WEB)
    assert got_head.digest == digest(1) and triggers == []
    assert [e.digest for e in store.history(WEB, 10)] == [digest(1)]
    got_head, triggers = store.head_and_triggers(other)
    assert got_head.digest == digest(2) and len(triggers) == 1
    assert sorted(h.stream_tag.tag for h in store.heads("team/web")) == ["web", "web-2"]


def test_trigger_state_updates_never_touch_paused(store):
    target = EcsTarget("prod", "web", "web")
    trigger = Trigger(trigger_id(WEB, target), WEB, target)
    assert store.add_trigger(trigger) is True
    assert store.add_trigger(trigger) is False
    store.set_paused(trigger, True)
    store.save_trigger(trigger.with_outcome(status="Failed", last_error="boom"))  # stale copy says paused=False
    saved = store.get_trigger(trigger.id)
    assert saved.paused is True and saved.status == "Failed" and saved.last_error == "boom"
    store.save_trigger(saved.with_outcome(status="Deployed", last_error=None, last_triggered_digest=digest(1)))
    saved = store.get_trigger(trigger.id)
    assert saved.last_error is None and saved.last_triggered_digest == digest(1)
    store.remove_trigger(saved)
    assert store.get_trigger(trigger.id) is None and store.save_trigger(saved) is False


def test_tombstone_gets_ttl(store, stack):
    store.commit(None, head(1, 1), None)
    store.commit(store.get_head(WEB), head(1, 2, deleted=True), None)
    item = aws.client("dynamodb").get_item(TableName=stack.outputs["StreamsTableName"],
                                          Key={"pk": {"S": "S#team/web"}, "sk": {"S": "T#web#H"}})["Item"]
    assert item["deleted"] == {"BOOL": True} and int(item["expiresAt"]["N"]) > datetime.now().timestamp()


def test_ecr_resolve(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    pushed = stack.push_image("team/web", "latest", seed="a", emit=False)
    registry = EcrRegistry(stack.client("ecr"))
    seen = registry.resolve("team/web", "latest")
    assert seen.digest == pushed["detail"]["image-digest"] and seen.registry == REG
    assert registry.resolve("team/web", "nope") is None
    assert registry.resolve("team/none", "latest") is None


def test_ecr_resolve_multiarch_gives_the_index_digest(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    index = stack.push_multiarch("team/web", "latest", seed="m", emit=False)
    seen = EcrRegistry(stack.client("ecr")).resolve("team/web", "latest")
    assert seen.digest == index["detail"]["image-digest"]
    assert seen.media_type == "application/vnd.oci.image.index.v1+json"


class Counting:
    def __init__(self, client):
        self.client, self.calls = client, []
        client.meta.events.register("before-call.*.*", lambda model, **_: self.calls.append(model.name))


def test_ecs_fire_clones_current_revision_and_changes_only_the_image(stack):
    make_service(stack, tags=[{"key": "team", "value": "payments"}])
    ecs = stack.client("ecs")
    counter = Counting(ecs)
    pinned = f"{REG}/team/web@{digest(1)}"
    result = EcsDriver(ecs, task_role_pattern="exec").apply(EcsTarget("prod", "web", "web"), pinned)
    assert result.changed and counter.calls == ["DescribeServices", "DescribeTaskDefinition",
                                                "RegisterTaskDefinition", "UpdateService"]
    arn, images, td = service_images(stack)
    assert arn.endswith(":2") and images == {"web": pinned, "sidecar": "fluent-bit:2"}
    definition = td["taskDefinition"]
    web = next(c for c in definition["containerDefinitions"] if c["name"] == "web")
    assert web["environment"] == [{"name": "MODE", "value": "prod"}]
    assert (definition["cpu"], definition["memory"], definition["networkMode"]) == ("256", "512", "awsvpc")
    assert definition["executionRoleArn"].endswith("role/exec")
    assert {"key": "team", "value": "payments"} in td["tags"]
    # already pinned: two reads, nothing registered
    counter.calls.clear()
    again = EcsDriver(ecs, task_role_pattern="exec").apply(EcsTarget("prod", "web", "web"), pinned)
    assert not again.changed and counter.calls == ["DescribeServices", "DescribeTaskDefinition"]
    assert service_images(stack)[0].endswith(":2")


@pytest.mark.parametrize(
    "target, controller, message",
    [
        (EcsTarget("prod", "missing", "web"), "ECS", "MISSING"),
        (EcsTarget("prod", "web", "nope"), "ECS", "container nope not found"),
        (EcsTarget("prod", "web", "web"), "CODE_DEPLOY", "CODE_DEPLOY deployment controller"),
    ],
)
def test_ecs_permanent_errors(stack, target, controller, message):
    make_service(stack, controller=controller)
    with pytest.raises(TargetError, match=message):
        EcsDriver(stack.client("ecs")).apply(target, f"{REG}/team/web@{digest(1)}")
    assert service_images(stack)[0].endswith(":1")


def test_ecs_missing_cluster_is_permanent(stack):
    with pytest.raises(TargetError):
        EcsDriver(stack.client("ecs")).apply(EcsTarget("nocluster", "web", "web"), f"{REG}/team/web@{digest(1)}")


def test_purge_history_after_tombstone_expiry_keeps_a_recreated_tags_entries(store):
    previous = None
    for generation in (1, 2):
        new = head(generation, generation)
        store.commit(previous, new, None)
        previous = new
    tombstone = head(2, 3, deleted=True)
    store.commit(previous, tombstone, None)
    # TTL removes the tombstone; the tag is pushed again (generation restarts) before the purge runs
    store.client.delete_item(TableName=store.table, Key={"pk": {"S": "S#team/web"}, "sk": {"S": "T#web#H"}})
    import time as _time

    _time.sleep(0.01)
    recreated = Head(WEB, digest(9), 1, datetime.now(timezone.utc), "push", "ecr", REG)
    with pytest.raises(ConcurrentUpdate):  # the old generation-1 entry is still there: no silent overwrite
        store.commit(None, recreated, None)
    assert store.purge_history(WEB, tombstone.generation, tombstone.at) == 3
    store.commit(None, recreated, None)
    assert [e.digest for e in store.history(WEB, 10)] == [digest(9)]
    assert store.purge_history(WEB, tombstone.generation, tombstone.at) == 0  # the new entry is newer: kept
