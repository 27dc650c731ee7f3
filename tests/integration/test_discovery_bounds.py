"""Discovery stays bounded (paged lists, capped problems, huge annotations refused whole) against the fake
Kubernetes API server, and targets given by ARN end up stored by name through the deployed admin function."""

from __future__ import annotations

import json

import pytest

from imagestreams import aws
from imagestreams.adapters.eks import EksClusters, EksDriver, KubeApi
from imagestreams.cli import main
from imagestreams_local.kube import FakeKubeApi
from tests.integration.conftest import REG, make_service

WEB = [{"name": "web", "image": f"{REG}/team/web:latest"}]
GOOD = json.dumps([{"from": {"kind": "ImageStreamTag", "name": "team/web:latest"},
                    "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image'}])
# ~255 KiB (Kubernetes allows 256 KiB of annotations per object): 1,890 entries, each one a problem if parsed
HUGE = json.dumps([{"from": {"kind": "ImageStreamTag", "name": "team/web:latest"},
                    "fieldPath": 'spec.template.spec.containers[?(@.name=="nope")].image'}] * 1890)
DISCOVER = {"action": "trigger.add", "from": "*", "target": {"type": "eks", "cluster": "prod", "discover": True}}


@pytest.fixture
def kube():
    with FakeKubeApi() as server:
        yield server


@pytest.fixture
def prod(stack, kube):
    stack.client("ecr").create_repository(repositoryName="team/web")
    stack.push_image("team/web", "latest", seed="1")
    stack.pump()
    stack.use_function_env("DeployerFunction")
    stack.add_eks_cluster("prod", kube)
    return stack


def annotated(kube, kind, name, text=GOOD):
    kube.add(kind, "apps", name, WEB, annotations={"image.openshift.io/triggers": text})


def test_discovery_lists_in_pages_and_still_finds_every_workload(prod, kube):
    for n in range(5):
        annotated(kube, "Deployment", f"web-{n}")
    kube.add("Deployment", "apps", "plain", WEB)
    annotated(kube, "StatefulSet", "db")
    driver = EksDriver(KubeApi(EksClusters(aws.client("eks"), aws.session())), page_size=2)
    found, errors = driver.discover("prod")
    assert sorted(t.name for _, t, _ in found) == ["db", *(f"web-{n}" for n in range(5))] and not errors
    assert max(kube.list_pages) <= 2  # never more than one page of objects in memory
    lists = [path for method, path, _ in kube.requests if method == "GET" and "/deployments" in path]
    assert len(lists) == 3 and all("limit=2" in p for p in lists) and sum("continue=" in p for p in lists) == 2


def test_huge_annotations_are_one_problem_each_and_the_answer_stays_small(prod, kube):
    assert 250_000 < len(HUGE) < 256 * 1024
    for n in range(3):
        annotated(kube, "Deployment", f"huge-{n}", HUGE)
    annotated(kube, "Deployment", "web")
    answer = prod.invoke("AdminFunction", DISCOVER)
    assert answer["ok"], answer
    result = answer["result"]
    assert [t["target"]["name"] for t in result["triggers"]] == ["web"]
    assert len(result["errors"]) == 3 and all("not parsed" in e for e in result["errors"])
    assert len(json.dumps(answer).encode()) < 16 * 1024  # it was megabytes before annotations were capped


def test_problems_are_capped_at_100_lines_with_a_count_of_the_rest(prod, kube):
    for n in range(130):
        annotated(kube, "Deployment", f"bad-{n:03d}", "[{")
    answer = prod.invoke("AdminFunction", DISCOVER)
    errors = answer["result"]["errors"]
    assert len(errors) == 101 and errors[-1] == "and 30 more"
    assert all(len(e.encode()) <= 1024 for e in errors)


def test_the_cli_shows_every_adopted_workload_and_every_problem(prod, kube, capsys):
    for name in ("web", "api"):
        annotated(kube, "Deployment", name)
    annotated(kube, "Deployment", "broken", "not json")
    argv = ["--actor", "me", "trigger", "add", "*", "--target", json.dumps(DISCOVER["target"])]
    assert main(argv, transport=lambda cmd: prod.invoke("AdminFunction", cmd)) == 0
    out = capsys.readouterr().out
    assert "eks prod/apps/deployment/web:web" in out and "eks prod/apps/deployment/api:web" in out
    assert "apps/Deployment/broken" in out and "not valid JSON" in out


def test_only_problems_renders_instead_of_crashing(prod, kube, capsys):
    annotated(kube, "Deployment", "broken", "not json")
    argv = ["--actor", "me", "trigger", "add", "*", "--target", json.dumps(DISCOVER["target"])]
    assert main(argv, transport=lambda cmd: prod.invoke("AdminFunction", cmd)) == 0
    out = capsys.readouterr().out
    assert "no workload adopted" in out and "apps/Deployment/broken" in out


def test_a_target_given_by_arn_is_stored_by_name_in_the_deployed_stack(stack):
    make_service(stack)
    arn = "arn:aws:ecs:us-east-1:123456789012"
    by_arn = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest", "target": {
        "type": "ecs", "cluster": f"{arn}:cluster/prod", "service": f"{arn}:service/prod/web", "container": "web"}})
    assert by_arn["ok"], by_arn
    assert by_arn["result"]["trigger"]["target"] == {"type": "ecs", "cluster": "prod", "service": "web",
                                                     "container": "web"}
    by_name = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest", "target": {
        "type": "ecs", "cluster": "prod", "service": "web", "container": "web"}})
    assert by_name["result"]["id"] == by_arn["result"]["id"]
    other_region = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest", "target": {
        "type": "ecs", "cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/prod", "service": "web",
        "container": "web"}})
    assert other_region["error"]["type"] == "Forbidden"
    assert len(stack.invoke("AdminFunction", {"action": "trigger.list"})["result"]["triggers"]) == 1
