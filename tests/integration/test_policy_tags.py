"""Policy tags end to end on the embedded AWS: pushes go through ingest, the table stream and the fan-out, which
re-evaluates the stream's policy tags; the policy tag moves in ECR byte-exact and its trigger fires."""

from __future__ import annotations

import pytest

from tests.integration.conftest import REG, make_service, service_images

ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


def ecr_image(stack, tag, repo="team/web"):
    ecr = stack.client("ecr")
    detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"][0]
    manifest = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])["images"][0]["imageManifest"]
    return detail["imageDigest"], manifest


@pytest.fixture
def repo(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    return stack


def push(stack, tag):
    event = stack.push_image("team/web", tag, seed=tag)
    stack.pump()
    return event["detail"]["image-digest"]


def test_semver_policy_lands_on_the_best_version_byte_exact_and_its_trigger_fires(repo):
    make_service(repo, service="web-stable")
    admin(repo, action="trigger.add", **{"from": "team/web:stable"}, target={**ECS, "service": "web-stable"})
    digests = {tag: push(repo, tag) for tag in ("v1.2.0", "v1.3.0", "v2.0.0")}
    result = admin(repo, action="policy.set", target="team/web:stable", policy={"semver": "^1.2"}, actor="alice")
    [policy] = result["policies"]
    assert policy == {**policy, "target": "team/web:stable", "policy": {"semver": "^1.2"}, "gates": [],
                      "held": False, "status": "Selected", "selected": "v1.3.0", "digest": digests["v1.3.0"],
                      "gate": None}
    repo.pump()  # the policy tag's move fans out like any other
    stable, v13 = ecr_image(repo, "stable"), ecr_image(repo, "v1.3.0")
    assert stable == v13  # the same digest, the very same manifest bytes
    assert service_images(repo, service="web-stable")[1]["web"] == f"{REG}/team/web@{digests['v1.3.0']}"
    [entry] = admin(repo, action="history", target="team/web:stable")["entries"]
    assert (entry["cause"], entry["actor"], entry["digest"]) == ("policy", "policy:semver", digests["v1.3.0"])

    d14 = push(repo, "v1.4.0")  # a push of a better candidate: moved in the fan-out of that push
    assert ecr_image(repo, "stable")[0] == d14
    repo.pump()
    assert service_images(repo, service="web-stable")[1]["web"] == f"{REG}/team/web@{d14}"
    push(repo, "v2.1.0")  # outside the range: nothing moves
    assert ecr_image(repo, "stable")[0] == d14
    tags = {t["tag"]: t for t in admin(repo, action="describe", stream="team/web")["tags"]}
    assert tags["stable"]["policy"]["selected"] == "v1.4.0"
    assert tags["v1.4.0"]["policy"] is None


def test_policy_actions_round_trip(repo):
    for tag in ("main-9", "main-10", "staging"):
        push(repo, tag)
    [nightly] = admin(repo, action="policy.set", target="team/web:nightly", policy={
        "pattern": "^main-(?P<n>[0-9]+)$", "order": "numeric", "extract": "n"})["policies"]
    assert nightly["selected"] == "main-10"
    [prod] = admin(repo, action="policy.set", target="team/web:prod", policy={"follow": "staging"})["policies"]
    assert prod["digest"] == ecr_image(repo, "staging")[0] == ecr_image(repo, "prod")[0]
    listed = admin(repo, action="policy.list", stream="team/web")["policies"]
    assert [p["target"] for p in listed] == ["team/web:nightly", "team/web:prod"]
    assert admin(repo, action="policy.list")["policies"] == listed

    push(repo, "main-11")
    assert ecr_image(repo, "nightly")[0] == ecr_image(repo, "main-11")[0]
    repo.pump()
    admin(repo, action="rollback", target="team/web:nightly", actor="bob")  # back to main-10
    repo.pump()
    assert admin(repo, action="policy.list", stream="team/web")["policies"][0]["held"] is True
    push(repo, "main-12")
    assert ecr_image(repo, "nightly")[0] == ecr_image(repo, "main-10")[0]  # held: the rollback stands
    [resumed] = admin(repo, action="policy.resume", target="team/web:nightly", actor="bob")["policies"]
    assert (resumed["held"], resumed["selected"]) == (False, "main-12")
    assert ecr_image(repo, "nightly")[0] == ecr_image(repo, "main-12")[0]

    assert admin(repo, action="policy.remove", target="team/web:prod") == {"policies": []}
    push(repo, "staging-2")
    assert [p["target"] for p in admin(repo, action="policy.list")["policies"]] == ["team/web:nightly"]
    error = repo.invoke("AdminFunction", {"action": "tag", "source": "team/web:latest",
                                          "target": "team/web:nightly", "alias": True})
    assert error["ok"] is False and error["error"]["type"] in ("Conflict", "NotFound")


def test_reconciler_brings_a_policy_tag_to_its_selection(repo, services):
    from imagestreams.model import StreamTag

    push(repo, "v1.0.0")
    services.set_policy(StreamTag("team/web", "stable"), {"semver": "^1"})
    repo.push_image("team/web", "v1.1.0", seed="v1.1.0", emit=False)  # its event is lost
    repo.invoke("ReconcilerFunction", {})  # in the same run, before any fan-out
    assert ecr_image(repo, "stable") == ecr_image(repo, "v1.1.0")
    entries = admin(repo, action="history", target="team/web:stable")["entries"]
    assert [e["cause"] for e in entries] == ["policy", "policy"]


def test_policy_items_in_the_table(repo, services):
    from imagestreams.errors import ConcurrentUpdate
    from imagestreams.model import StreamTag
    from imagestreams.policytags import Policy

    store = services.store
    push(repo, "v1.0.0")
    head = store.get_head(StreamTag("team/web", "v1.0.0"))
    assert head.pushed_at is not None  # ECR's imagePushedAt, kept on the head for order "pushed"
    stable = StreamTag("team/web", "stable")
    gates = ({"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 30}, {"type": "approval"})
    written = store.put_policy(Policy(stable, {"semver": "^1", "prerelease": True}, gates), None)
    assert written.rev == 1 and store.get_policy(stable) == written
    with pytest.raises(ConcurrentUpdate):
        store.put_policy(written._replace(held=True), None)  # one exists already
    with pytest.raises(ConcurrentUpdate):
        store.put_policy(written._replace(held=True), written._replace(rev=7))
    updated = store.put_policy(written._replace(held=True, gate_state={"digest": head.digest, "since": "x"}),
                               written)
    assert store.get_policy(stable) == updated and updated.rev == 2
    heads, triggers, policies = store.stream_view("team/web")
    assert [h.stream_tag.tag for h in heads] == ["v1.0.0"] and triggers == [] and policies == [updated]
    assert store.all_policies() == [updated]
    store.delete_policy(stable)
    assert store.get_policy(stable) is None and store.stream_view("team/web")[2] == []
