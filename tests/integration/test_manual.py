"""Manual invoke actions end to end on the embedded AWS (moto ECR/ECS + DynamoDB Local)."""

from __future__ import annotations

import json

import pytest

from imagestreams.cli import main
from tests.integration.conftest import REG, make_service, service_images

ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


def refused(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"] is False, answer
    return answer["error"]


def ecr_digest(stack, tag, repo="team/web"):
    ecr = stack.client("ecr")
    return ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"][0]["imageDigest"]


@pytest.fixture
def repo(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    return stack


def push(stack, n, tag="latest"):
    event = stack.push_image("team/web", tag, seed=str(n), also=(f"v{n}",))
    stack.pump()
    return event["detail"]["image-digest"]


def test_promote_latest_to_prod_byte_exact_and_prod_trigger_fires(repo):
    make_service(repo, service="web-prod")
    admin(repo, action="trigger.add", **{"from": "team/web:prod"}, target={**ECS, "service": "web-prod"})
    d1 = push(repo, 1)
    result = admin(repo, action="tag", source="team/web:latest", target="team/web:prod", actor="alice")
    assert result["moves"] == [{"tag": "team/web:prod", "from": None, "to": d1, "generation": 1, "cause": "tag"}]
    assert ecr_digest(repo, "prod") == d1
    ecr = repo.client("ecr")
    manifests = ecr.batch_get_image(repositoryName="team/web", imageIds=[{"imageTag": "prod"}, {"imageTag": "v1"}])
    assert len({i["imageManifest"] for i in manifests["images"]}) == 1  # the very same bytes
    repo.pump()  # the table stream fans the move out
    assert service_images(repo, service="web-prod")[1]["web"] == f"{REG}/team/web@{d1}"
    entries = admin(repo, action="history", target="team/web:prod")["entries"]
    assert (entries[0]["cause"], entries[0]["actor"]) == ("tag", "alice")
    # ECR then emits a PUSH for prod: harmless
    repo.emit({"source": "aws.ecr", "detail-type": "ECR Image Action", "detail": {
        "result": "SUCCESS", "repository-name": "team/web", "image-digest": d1, "action-type": "PUSH",
        "image-tag": "prod"}})
    repo.pump()
    assert len(admin(repo, action="history", target="team/web:prod")["entries"]) == 1


def test_retag_of_a_multiarch_index_keeps_the_index_digest(repo):
    index = repo.push_multiarch("team/web", "latest", seed="m")
    repo.pump()
    digest = index["detail"]["image-digest"]
    admin(repo, action="tag", source="team/web:latest", target=["team/web:prod", "team/web:stable"])
    assert ecr_digest(repo, "prod") == digest and ecr_digest(repo, "stable") == digest
    image = repo.client("ecr").batch_get_image(repositoryName="team/web", imageIds=[{"imageTag": "prod"}])["images"][0]
    assert json.loads(image["imageManifest"])["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_retag_into_an_immutable_tag_is_a_conflict(repo):
    ecr = repo.client("ecr")
    push(repo, 1)
    push(repo, 2, tag="release")
    ecr.put_image_tag_mutability(repositoryName="team/web", imageTagMutability="IMMUTABLE")
    error = refused(repo, action="tag", source="team/web:latest", target="team/web:release")
    assert error["type"] == "Conflict" and "immutable" in error["message"]
    assert admin(repo, action="history", target="team/web:release")["entries"][0]["cause"] == "push"


def test_alias_follows_a_push_in_ecr_and_in_the_table(repo):
    make_service(repo, service="web-prod")
    d1 = push(repo, 1)
    admin(repo, action="tag", source="team/web:latest", target="team/web:prod", alias=True)
    admin(repo, action="trigger.add", **{"from": "team/web:prod"}, target={**ECS, "service": "web-prod"})
    d2 = push(repo, 2)
    assert d2 != d1 and ecr_digest(repo, "prod") == d2
    described = {t["tag"]: t for t in admin(repo, action="describe", stream="team/web")["tags"]}
    assert described["prod"]["alias_of"] == "latest" and described["prod"]["digest"] == d2
    assert admin(repo, action="history", target="team/web:prod")["entries"][0]["cause"] == "alias"
    assert service_images(repo, service="web-prod")[1]["web"].endswith(d2)


def test_tag_rollback_is_a_new_head_and_fires_triggers(repo):
    make_service(repo)
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)
    d1, d2 = push(repo, 1), push(repo, 2)
    moves = admin(repo, action="rollback", target="team/web:latest", actor="carol")["moves"]
    assert moves == [{"tag": "team/web:latest", "from": d2, "to": d1, "generation": 3, "cause": "rollback"}]
    assert ecr_digest(repo, "latest") == d1  # the registry stays the truth
    repo.pump()
    assert service_images(repo)[1]["web"].endswith(d1)


def test_target_rollback_pauses_and_survives_a_later_push_then_deploy_applies_the_head(repo):
    make_service(repo)
    tid = admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)["id"]
    d1, d2 = push(repo, 1), push(repo, 2)
    rolled = admin(repo, action="rollback", trigger=tid, actor="dave")["triggers"][0]
    assert rolled["paused"] is True and rolled["lastTriggeredDigest"] == d1
    assert service_images(repo)[1]["web"].endswith(d1)
    listed = admin(repo, action="trigger.list")["triggers"][0]
    assert listed["paused"] is True
    d3 = push(repo, 3)
    assert service_images(repo)[1]["web"].endswith(d1)  # the paused target stays put
    deployed = admin(repo, action="deploy", id=tid)["triggers"][0]
    assert deployed["paused"] is True and deployed["lastTriggeredDigest"] == d3
    assert service_images(repo)[1]["web"].endswith(d3) and d2 != d3


def test_untag_removes_from_ecr_and_stream(repo):
    push(repo, 1)
    moves = admin(repo, action="untag", target="team/web:v1", actor="erin")["moves"]
    assert moves[0]["to"] is None and moves[0]["cause"] == "delete"
    images = repo.client("ecr").describe_images(repositoryName="team/web")["imageDetails"]
    assert all("v1" not in (i.get("imageTags") or []) for i in images)
    assert [t["tag"] for t in admin(repo, action="describe", stream="team/web")["tags"]] == ["latest"]


def test_cli_promote_and_history_timeline(repo, capsys):
    push(repo, 1)
    repo.use_function_env("AdminFunction")
    assert main(["--actor", "arn:aws:iam::123456789012:user/alice", "tag", "team/web:latest", "team/web:prod"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["TAG", "FROM", "TO", "GEN", "CAUSE"] and "team/web:prod" in out
    assert main(["history", "team/web:prod"]) == 0
    assert "tag    arn:aws:iam::123456789012:user/alice" in capsys.readouterr().out
    assert main(["rollback", "team/web:prod"]) == 1
    assert "NotFound" in capsys.readouterr().err
