"""Handlers wired as template.yaml wires them (EventBridge rule → ingest → table stream → fan-out → FIFO →
deployer), on the embedded AWS."""

from __future__ import annotations

import copy
import json
import threading

import pytest

from imagestreams.errors import Invalid
from imagestreams_local.embedded import ecr_event
from tests.conftest import load_event
from tests.integration.conftest import REG, make_service, service_images

ECS_TARGET = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


def history(stack, ref="team/web:latest"):
    answer = stack.invoke("AdminFunction", {"action": "history", "target": ref})
    return [e["digest"] for e in answer["result"]["entries"]] if answer["ok"] else []


def table_items(stack):
    return stack.client("dynamodb").scan(TableName=stack.outputs["StreamsTableName"])["Items"]


@pytest.fixture
def repo(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    return stack


def test_push_pins_the_service_and_second_push_moves_it(repo):
    make_service(repo)
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET)
    d1 = repo.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repo.pump()
    assert service_images(repo)[1]["web"] == f"{REG}/team/web@{d1}"
    d2 = repo.push_image("team/web", "latest", seed="2")["detail"]["image-digest"]
    repo.pump()
    arn, images, _ = service_images(repo)
    assert images["web"] == f"{REG}/team/web@{d2}" and arn.endswith(":3")
    trigger = admin(repo, action="trigger.list")["triggers"][0]
    assert trigger["lastTriggeredDigest"] == d2 and trigger["status"] in ("Deploying", "Deployed")


def test_out_of_order_and_duplicate_delivery_change_nothing(repo):
    make_service(repo)
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET)
    e1 = repo.push_image("team/web", "latest", seed="1", emit=False)
    e2 = repo.push_image("team/web", "latest", seed="2", emit=False)
    repo.emit(e2)  # v2's event first
    repo.emit(e1)  # then v1's, late
    repo.emit(e2)  # and v2's again
    repo.pump()
    d2 = e2["detail"]["image-digest"]
    assert history(repo) == [d2]
    arn, images, _ = service_images(repo)
    assert images["web"].endswith(d2) and arn.endswith(":2")


def test_event_for_a_tag_ecr_no_longer_has(repo):
    make_service(repo)
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET)
    e1 = repo.push_image("team/web", "latest", seed="1")
    repo.pump()
    repo.delete_tag("team/web", "latest", emit=False)
    repo.emit(e1)  # a late PUSH for a tag that is gone
    repo.pump()
    entries = repo.invoke("AdminFunction", {"action": "history", "target": "team/web:latest"})["result"]["entries"]
    assert [e["cause"] for e in entries] == ["delete", "push"]
    trigger = admin(repo, action="trigger.list")["triggers"][0]
    assert trigger["status"] == "WaitingForImage"
    assert service_images(repo)[1]["web"].endswith(e1["detail"]["image-digest"])  # keeps its digest
    described = repo.invoke("AdminFunction", {"action": "describe", "stream": "team/web"})["result"]
    assert [t["digest"] for t in described["tags"]] == [None]  # only the trigger's waiting tag is listed


def test_push_without_tag_moves_nothing(repo):
    repo.push_image("team/web", None, seed="1")
    repo.pump()
    assert table_items(repo) == []


def test_multiarch_push_pins_the_index_digest(repo):
    make_service(repo)
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET)
    index = repo.push_multiarch("team/web", "latest", seed="m")
    repo.pump()
    d = index["detail"]["image-digest"]
    assert history(repo) == [d]
    assert service_images(repo)[1]["web"] == f"{REG}/team/web@{d}"
    ingests = [i for i in repo.invocations if i.function == "IngestFunction"]
    assert [i.result["status"] for i in ingests] == ["ignored", "ignored", "moved"]


def test_missing_service_fails_its_trigger_while_others_deploy(repo):
    make_service(repo, service="web")
    make_service(repo, service="api")
    for service in ("web", "ghost", "api"):
        admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target={**ECS_TARGET, "service": service})
    d1 = repo.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repo.pump()
    by_service = {t["target"]["service"]: t for t in admin(repo, action="trigger.list")["triggers"]}
    assert by_service["ghost"]["status"] == "Failed" and "MISSING" in by_service["ghost"]["lastError"]
    for service in ("web", "api"):
        assert by_service[service]["lastTriggeredDigest"] == d1
        assert service_images(repo, service=service)[1]["web"].endswith(d1)
    fire_dlq = repo.client("sqs").receive_message(QueueUrl=repo.outputs["FireDLQUrl"]).get("Messages", [])
    assert fire_dlq == []  # a permanent error is recorded, not retried into the DLQ


def test_paused_trigger_stays_put(repo):
    make_service(repo)
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET, paused=True)
    repo.push_image("team/web", "latest", seed="1")
    repo.pump()
    assert service_images(repo)[1]["web"] == f"{REG}/team/web:latest"


def test_transient_ecs_failure_is_retried_then_parked_in_the_dlq(repo, monkeypatch):
    make_service(repo)
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET)
    from imagestreams.adapters import ecs as ecs_adapter
    from imagestreams.errors import TransientTargetError

    attempts = []

    def throttled(self, target, image, **_):
        attempts.append(image)
        raise TransientTargetError("UpdateService: ThrottlingException: Rate exceeded")

    monkeypatch.setattr(ecs_adapter.EcsDriver, "apply", throttled)
    repo.push_image("team/web", "latest", seed="1")
    repo.pump()
    assert len(attempts) == 5  # the queue's maxReceiveCount
    parked = repo.client("sqs").receive_message(QueueUrl=repo.outputs["FireDLQUrl"])["Messages"]
    assert json.loads(parked[0]["Body"])["from"] == "team/web:latest"
    trigger = admin(repo, action="trigger.list")["triggers"][0]
    assert trigger["status"] == "Failed" and "Throttling" in trigger["lastError"]


MALFORMED = [
    {},
    {"source": "aws.s3", "detail-type": "ECR Image Action", "detail": {}},
    {"source": "aws.ecr", "detail-type": "ECR Image Scan", "detail": {}},
    {"source": "aws.ecr", "detail-type": "ECR Image Action", "detail": "PUSH"},
    {"source": "aws.ecr", "detail-type": "ECR Image Action",
     "detail": {"action-type": "PUSH", "result": "SUCCESS", "repository-name": "../etc", "image-tag": "x"}},
    {"source": "aws.ecr", "detail-type": "ECR Image Action",
     "detail": {"action-type": "PUSH", "result": "SUCCESS", "repository-name": "team/web", "image-tag": "a b"}},
    {"source": "aws.ecr", "detail-type": "ECR Image Action",
     "detail": {"action-type": "PUSH", "result": "SUCCESS", "repository-name": "team/web", "image-digest": "sha256:1"}},
    {"source": "aws.ecr", "detail-type": "ECR Image Action",
     "detail": {"action-type": "PULL", "result": "SUCCESS", "repository-name": "team/web"}},
]


@pytest.mark.parametrize("event", MALFORMED)
def test_malformed_event_is_refused_clearly_and_writes_nothing(repo, event, lambda_context):
    repo.use_function_env("IngestFunction")
    handler = repo.functions["IngestFunction"].handler()
    with pytest.raises(Invalid) as info:
        handler(event, lambda_context)
    assert info.value.message
    assert table_items(repo) == []


def test_malformed_event_on_the_bus_ends_in_the_ingest_dlq(repo):
    event = ecr_event("PUSH", "team/web", "sha256:short", "latest", None)
    repo.emit(event)
    repo.pump()
    parked = repo.client("sqs").receive_message(QueueUrl=repo.outputs["IngestDLQUrl"])["Messages"]
    body = json.loads(parked[0]["Body"])
    assert body["requestPayload"]["detail"]["image-digest"] == "sha256:short"
    assert "invalid digest" in body["responsePayload"]["errorMessage"]
    ingests = [i for i in repo.invocations if i.function == "IngestFunction"]
    assert len(ingests) == 3  # the first try and EventInvokeConfig's two retries
    assert table_items(repo) == []


def test_sample_events_in_events_folder_are_accepted(repo, lambda_context):
    repo.use_function_env("IngestFunction")
    handler = repo.functions["IngestFunction"].handler()
    for name in ("ecr_image_push.json", "ecr_image_delete.json", "ecr_replication.json", "ecr_push_untagged.json"):
        out = handler(load_event(name), lambda_context)
        assert out["status"] in ("unchanged", "ignored"), name  # the repository does not exist here


def test_concurrent_pushes_race_one_history_entry_per_distinct_move(repo):
    repo.use_function_env("IngestFunction")
    from imagestreams.bootstrap import services
    from imagestreams.model import StreamTag

    streams = services()
    tag = StreamTag("team/web", "latest")
    results = []
    for seed in ("a", "b", "c"):
        repo.push_image("team/web", "latest", seed=seed, emit=False)
        barrier = threading.Barrier(6)

        def worker(barrier=barrier):
            barrier.wait()
            results.append(streams.observe(tag))

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    moves = [r for r in results if r is not None]
    assert len(moves) == 3  # exactly one winner per distinct digest
    entries = repo.invoke("AdminFunction", {"action": "history", "target": "team/web:latest"})["result"]["entries"]
    assert [e["generation"] for e in entries] == [3, 2, 1]
    assert len({e["digest"] for e in entries}) == 3


def test_replication_event_moves_the_tag(repo):
    pushed = repo.push_image("team/web", "3.17.2", seed="r", emit=False)
    replicated = copy.deepcopy(load_event("ecr_replication.json"))
    replicated["detail"].update({"repository-name": "team/web", "image-digest": pushed["detail"]["image-digest"],
                                 "image-tag": "3.17.2"})
    repo.emit(replicated)
    repo.pump()
    assert history(repo, "team/web:3.17.2") == [pushed["detail"]["image-digest"]]


def test_delete_by_digest_re_resolves_tags_on_it(repo):
    e1 = repo.push_image("team/web", "latest", seed="1")
    repo.pump()
    d1 = e1["detail"]["image-digest"]
    repo.client("ecr").batch_delete_image(repositoryName="team/web", imageIds=[{"imageDigest": d1}])
    repo.emit(ecr_event("DELETE", "team/web", d1, None, None))
    repo.pump()
    entries = repo.invoke("AdminFunction", {"action": "history", "target": "team/web:latest"})["result"]["entries"]
    assert [e["cause"] for e in entries] == ["delete", "push"]


def test_cli_in_process_records_the_caller_identity_as_actor(repo, capsys):
    from imagestreams.cli import main

    repo.push_image("team/web", "latest", seed="1", emit=False)
    repo.use_function_env("AdminFunction")
    assert main(["import", "team/web:latest"]) == 0
    assert "import" in capsys.readouterr().out
    assert main(["--output", "json", "history", "team/web:latest"]) == 0
    entry = json.loads(capsys.readouterr().out)["result"]["entries"][0]
    assert entry["cause"] == "import" and entry["actor"].startswith("arn:aws:") and "123456789012" in entry["actor"]


def test_fanout_purges_history_when_ttl_removes_a_tombstone(repo, lambda_context):
    repo.push_image("team/web", "latest", seed="1")
    repo.pump()
    repo.delete_tag("team/web", "latest")
    repo.pump()
    ddb = repo.client("dynamodb")
    key = {"pk": {"S": "S#team/web"}, "sk": {"S": "T#latest#H"}}
    tombstone = ddb.get_item(TableName=repo.outputs["StreamsTableName"], Key=key)["Item"]
    ddb.delete_item(TableName=repo.outputs["StreamsTableName"], Key=key)  # what TTL does
    record = {"eventID": "1", "eventName": "REMOVE", "eventSource": "aws:dynamodb",
              "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
              "dynamodb": {"Keys": key, "OldImage": tombstone, "SequenceNumber": "100"}}
    repo.use_function_env("FanoutFunction")
    out = repo.functions["FanoutFunction"].handler()({"Records": [record]}, lambda_context)
    assert out == {"batchItemFailures": []}
    assert [i for i in table_items(repo) if i["sk"]["S"].startswith("T#latest#")] == []
