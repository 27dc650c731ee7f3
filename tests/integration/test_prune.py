"""Prune end to end on the embedded AWS (moto ECR/ECS + DynamoDB Local): pushes, a retag, a trigger whose target
was rolled back and then changed by hand; a dry run, then a confirmed prune; pruned history marks; a rollback to a
pruned digest refused."""

from __future__ import annotations

import pytest

from tests.integration.conftest import REG, make_service, service_images

ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


@pytest.fixture
def repo(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    return stack


def push(stack, n, tag="latest"):
    digest = stack.push_image("team/web", tag, seed=str(n))["detail"]["image-digest"]
    stack.pump()
    return digest


def keep_untagged(stack, n):
    """AWS keeps an image untagged when its tag moves away; moto drops it, so put it back (same bytes, same
    digest, no tag) as AWS would have it."""
    return stack.push_image("team/web", None, seed=str(n), emit=False)["detail"]["image-digest"]


def present(stack):
    return {i["imageDigest"] for i in stack.client("ecr").describe_images(repositoryName="team/web")["imageDetails"]}


def run_by_hand(stack, image):
    """Someone points the service at another image outside ImageStreams (a new task-definition revision)."""
    ecs = stack.client("ecs")
    arn, _, td = service_images(stack)
    definition = td["taskDefinition"]
    containers = [{**c, "image": image} if c["name"] == "web" else c for c in definition["containerDefinitions"]]
    new = ecs.register_task_definition(
        family=definition["family"], cpu=definition["cpu"], memory=definition["memory"],
        networkMode=definition["networkMode"], requiresCompatibilities=definition["requiresCompatibilities"],
        executionRoleArn=definition["executionRoleArn"], containerDefinitions=containers,
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="prod", service="web", taskDefinition=new)


def test_dry_run_then_confirm_keeps_what_the_target_runs_and_marks_history(repo):
    make_service(repo)
    tid = admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)["id"]
    d = {n: push(repo, n) for n in range(1, 6)}
    for n in range(1, 5):
        keep_untagged(repo, n)
    extra = repo.push_image("team/web", None, seed="scratch", emit=False)["detail"]["image-digest"]
    admin(repo, action="tag", source="team/web:latest", target="team/web:prod")
    rolled = admin(repo, action="rollback", trigger=tid, to=d[1])["triggers"][0]
    assert rolled["lastTriggeredDigest"] == d[1]  # last received: 1
    run_by_hand(repo, f"{REG}/team/web@{d[2]}")  # runs 2 now; the table still says 1
    assert service_images(repo)[1]["web"].endswith(d[2])
    before = present(repo)
    options = {"stream": "team/web", "keepTagRevisions": 1, "keepYoungerThanMinutes": 0}

    dry = admin(repo, action="prune", **options)
    candidates = {c["digest"] for c in dry["candidates"]}
    assert candidates == {d[3], d[4], extra}
    assert dry["deleted"] == [] and present(repo) == before
    assert dry["reclaimableBytes"] == sum(c["sizeBytes"] for c in dry["candidates"]) > 0

    done = admin(repo, action="prune", confirm=True, actor="ops", **options)
    assert {c["digest"] for c in done["deleted"]} == candidates, done.get("failures")
    assert present(repo) == before - candidates
    assert {d[1], d[2], d[5]} <= present(repo)
    entries = admin(repo, action="history", target="team/web:latest")["entries"]
    assert {e["digest"] for e in entries if e.get("pruned")} == {d[3], d[4]}
    assert len(entries) == 5  # kept for audit

    refused = repo.invoke("AdminFunction", {"action": "rollback", "target": "team/web:latest", "to": d[3]})
    assert refused["ok"] is False and refused["error"]["type"] == "Conflict"
    assert "pruned" in refused["error"]["message"]
    assert admin(repo, action="prune", **options)["candidates"] == []


def test_an_unreadable_target_stops_a_confirmed_prune(repo):
    make_service(repo)
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)
    for n in range(1, 4):
        push(repo, n)
    for n in range(1, 3):
        keep_untagged(repo, n)
    repo.client("ecs").delete_service(cluster="prod", service="web", force=True)
    before = present(repo)
    answer = repo.invoke("AdminFunction", {"action": "prune", "stream": "team/web", "keepTagRevisions": 1,
                                           "keepYoungerThanMinutes": 0, "confirm": True})
    assert answer["ok"] is False and answer["error"]["type"] == "Conflict"
    assert "web" in answer["error"]["message"]
    assert present(repo) == before


def test_children_of_a_kept_index_stay(repo):
    import json

    ecr = repo.client("ecr")

    def children(index):
        image = ecr.batch_get_image(repositoryName="team/web", imageIds=[{"imageDigest": index}])["images"][0]
        return {m["digest"] for m in json.loads(image["imageManifest"])["manifests"]}

    kept = repo.push_multiarch("team/web", "latest", seed="kept")["detail"]["image-digest"]
    gone = repo.push_multiarch("team/web", "tmp", seed="gone")["detail"]["image-digest"]
    repo.pump()
    orphans = children(gone)
    admin(repo, action="untag", target="team/web:tmp")  # the index goes; its children stay, untagged
    repo.pump()
    assert gone not in present(repo) and orphans <= present(repo)
    dry = admin(repo, action="prune", stream="team/web", keepTagRevisions=1, keepYoungerThanMinutes=0)
    assert {c["digest"] for c in dry["candidates"]} == orphans
    assert children(kept) <= present(repo) and not children(kept) & orphans
