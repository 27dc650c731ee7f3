"""What a push costs, from the template and the store: a trigger's state change (every fire, every rollout event)
writes no index, the index readers still return whole items (new attributes included), and the cost model prices
the rollout invocations the template's rule delivers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.cost import push_steps, rollout_states
from imagestreams.adapters.dynamodb import TARGET_INDEX, TRIGGER_INDEX, _trigger_state, trigger_item
from imagestreams.model import EcsTarget, StreamTag, Trigger, target_key, trigger_id
from imagestreams_local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
TABLE = TEMPLATE["Resources"]["StreamsTable"]["Properties"]
WEB = StreamTag("team/web", "latest")
TARGET = EcsTarget("prod", "web", "app")
KB = 1024


def index_write_units(item: dict, changed: set[str], indexes: list | None = None) -> int:
    """Write units the table's global secondary indexes cost for an update of ``item`` that changes the
    attributes ``changed`` (DynamoDB's rules: an index is written when the item is in it and its index keys, or an
    attribute it projects, change; one unit per KB of the index entry)."""
    units = 0
    for index in TABLE["GlobalSecondaryIndexes"] if indexes is None else indexes:
        keys = {k["AttributeName"] for k in index["KeySchema"]}
        if not keys <= set(item):
            continue  # the item is not in this index
        projection = index["Projection"]
        kind = projection["ProjectionType"]
        projected = set(item) if kind == "ALL" else keys | {"pk", "sk"} | set(projection.get("NonKeyAttributes", []))
        if changed & (keys | projected):
            size = sum(len(k) + len(json.dumps(item[k], default=str)) for k in projected if k in item)
            units += max(1, -(-size // KB))
    return units


def fired(trigger: Trigger) -> Trigger:
    return trigger.with_outcome(
        status="Deploying", last_triggered_digest="sha256:" + "a" * 64,
        last_triggered_at=datetime(2026, 11, 29, tzinfo=UTC), rollout_state="IN_PROGRESS",
        deployed_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web@sha256:" + "a" * 64,
        deployment="ecs-svc/1234567890123456789", last_error="x" * 900)


def test_a_fire_and_a_rollout_event_write_no_index():
    trigger = fired(Trigger(trigger_id(WEB, TARGET), WEB, TARGET))
    item = trigger_item(trigger)
    assert index_write_units(item, set(_trigger_state(trigger))) == 0  # every state field may change at a fire
    assert index_write_units(item, {"rolloutState", "status", "lastError"}) == 0  # a rollout event
    # what it would cost with every attribute projected (as before): one or more units per index per change
    with_all = [{**i, "Projection": {"ProjectionType": "ALL"}} for i in TABLE["GlobalSecondaryIndexes"]]
    assert index_write_units(item, {"rolloutState"}, with_all) >= 2


def test_adding_or_removing_a_trigger_writes_each_index_once_at_most():
    item = trigger_item(Trigger(trigger_id(WEB, TARGET), WEB, TARGET))
    assert index_write_units(item, set(item)) <= len(TABLE["GlobalSecondaryIndexes"])


@pytest.fixture
def store(moto_streams_table):
    return moto_streams_table  # the stack's table on moto (tests/conftest.py): a DynamoStore and its client


def test_index_readers_return_whole_current_items(store):
    dynamo, _ = store
    triggers = [Trigger(trigger_id(StreamTag("team/web", f"t{n}"), TARGET), StreamTag("team/web", f"t{n}"), TARGET)
                for n in range(3)]
    for trigger in triggers:
        assert dynamo.add_trigger(trigger)
    assert dynamo.save_trigger(fired(triggers[1]))
    listed = {t.id: t for t in dynamo.all_triggers()}
    assert set(listed) == {t.id for t in triggers}
    assert listed[triggers[1].id] == fired(triggers[1])  # the state written after the add, not just keys
    by_target = {t.id: t for t in dynamo.triggers_for_target(target_key(TARGET))}
    assert by_target[triggers[1].id].deployment == fired(triggers[1]).deployment
    assert dynamo.get_trigger(triggers[1].id) == fired(triggers[1])


def test_index_readers_page_beyond_one_batch_get(store):
    dynamo, _ = store
    for n in range(130):  # BatchGetItem takes 100 keys
        stream_tag = StreamTag("team/web", f"t{n:03d}")
        assert dynamo.add_trigger(Trigger(trigger_id(stream_tag, TARGET), stream_tag, TARGET))
    assert len(dynamo.all_triggers()) == 130
    assert len(dynamo.triggers_for_target(target_key(TARGET))) == 130


def test_other_kinds_on_an_index_come_back_with_every_attribute(store):
    """Items of other kinds listed on the ByKind index (e.g. policies with gates) are read whole from the table."""
    dynamo, client = store
    from imagestreams.adapters.dynamodb import _dump

    policy = {"pk": "S#team/web", "sk": "T#prod#P", "kind": "POLICY", "gsi1pk": "POLICY", "gsi1sk": "team/web:prod",
              "gates": [{"type": "approval"}], "gateState": {"digest": "sha256:" + "b" * 64}}
    client.put_item(TableName="streams", Item=_dump(policy))
    (item,) = dynamo.index_items(TRIGGER_INDEX, "gsi1pk", "POLICY")
    assert item == policy
    assert dynamo.index_items(TARGET_INDEX, "gsi2pk", "ecs:nothing/here") == []


# ------------------------------------------------------------------------------------- the cost model


def measured() -> dict:
    return {"ingest_ms_median": 30.0, "ingest_units_fresh": {"rru": 1, "wru": 4},
            "fanout_calls_1": {"dynamodb:Query": 1, "sqs:SendMessageBatch": 1}, "fanout_ms_1": 20.0,
            "fanout_units_1": {"rru": 1, "wru": 0}, "ecs_fire_ms": 200.0, "ecs_fire_units": {"rru": 2, "wru": 3},
            "rollout_in_progress_ms": 20.0, "rollout_in_progress_units": {"rru": 2, "wru": 0},
            "rollout_completed_ms": 20.0, "rollout_completed_units": {"rru": 2, "wru": 1}}


def test_the_rollout_rule_delivers_outcomes_only_and_the_model_prices_what_it_delivers(tmp_path):
    assert rollout_states() == {"COMPLETED", "FAILED"}
    assert [s.name for s in push_steps(measured())] == ["ingest", "fanout", "deployer", "rollout COMPLETED"]
    text = (ROOT / "template.yaml").read_text().replace(
        "eventName: [SERVICE_DEPLOYMENT_COMPLETED", "eventName: [SERVICE_DEPLOYMENT_IN_PROGRESS, "
        "SERVICE_DEPLOYMENT_COMPLETED")
    other = tmp_path / "template.yaml"
    other.write_text(text)
    assert rollout_states(other) == {"IN_PROGRESS", "COMPLETED", "FAILED"}


def test_the_rollout_handler_still_understands_every_state_it_may_be_sent():
    from imagestreams.events import ECS_DEPLOYMENT_EVENTS

    pattern = TEMPLATE["Resources"]["RolloutFunction"]["Properties"]["Events"]["Deployments"]["Properties"]["Pattern"]
    assert set(pattern["detail"]["eventName"]) <= set(ECS_DEPLOYMENT_EVENTS)
