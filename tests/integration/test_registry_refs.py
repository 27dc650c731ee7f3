"""Registry boundaries with the real ECR adapter: AccessDenied (moto enforces no IAM, so botocore's Stubber and an
injected AccessDeniedException stand in for it), REPOSITORY_PATTERN, references to other registries, and two alias
follows racing on the embedded AWS."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from imagestreams.adapters.ecr import EcrRegistry
from imagestreams.errors import NotOurs
from tests.conftest import digest
from tests.integration.conftest import REG

DENIED = "AccessDeniedException"
DENIED_MESSAGE = ("User: arn:aws:sts::123456789012:assumed-role/imagestreams-IngestFunctionRole/x is not authorized "
                  "to perform: ecr:DescribeImages on resource: arn:aws:ecr:us-east-1:123456789012:repository/other/app "
                  "because no identity-based policy allows the ecr:DescribeImages action")


@pytest.fixture
def stubbed():
    client = boto3.client("ecr", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield EcrRegistry(client, host=REG, repository_pattern="*"), stubber


@pytest.mark.parametrize("call, operation", [
    (lambda r: r.resolve("other/app", "latest"), "describe_images"),
    (lambda r: r.check_can_tag("other/app", digest(1), ["prod"]), "describe_images"),
    (lambda r: r.retag("other/app", digest(1), "prod"), "batch_get_image"),
    (lambda r: r.platform_digest("other/app", digest(1), "arm64"), "batch_get_image"),
    (lambda r: r.untag("other/app", "prod"), "batch_delete_image"),
])
def test_access_denied_from_ecr_means_not_ours(stubbed, call, operation):
    registry, stubber = stubbed
    stubber.add_client_error(operation, service_error_code=DENIED, service_message=DENIED_MESSAGE, http_status_code=400)
    with pytest.raises(NotOurs) as info:
        call(registry)
    assert info.value.stream == "other/app" and "not authorized" in info.value.message
    assert len(info.value.message) < 400
    stubber.assert_no_pending_responses()


def test_a_repository_outside_the_pattern_is_not_ours_without_asking_ecr():
    client = boto3.client("ecr", region_name="us-east-1")
    registry = EcrRegistry(client, host=REG, repository_pattern="team-a/*")
    with Stubber(client):  # no responses queued: any call would fail the test
        with pytest.raises(NotOurs, match="team-a/\\*"):
            registry.resolve("other/app", "latest")
    assert registry.owns("team-a/web") and registry.owns("team-a/x/y") and not registry.owns("team-ab/web")
    assert EcrRegistry(client, repository_pattern="web-?").owns("web-1")


def test_other_ecr_errors_still_propagate(stubbed):
    registry, stubber = stubbed
    stubber.add_client_error("describe_images", service_error_code="ThrottlingException", http_status_code=400)
    with pytest.raises(ClientError):
        registry.resolve("team/web", "latest")


# ---------------------------------------------------------------------------------------- on the embedded AWS


@pytest.fixture
def repos(stack):
    for name in ("team/web", "other/app"):
        stack.client("ecr").create_repository(repositoryName=name)
    return stack


@pytest.fixture
def iam_denies_other_app(repos, monkeypatch):
    """What IAM does to the functions of a stack whose RepositoryPattern is team/*: every ECR call on other/app is
    denied (the test's own client, standing in for the repository's owner, is let through)."""
    original = BaseClient._make_api_call
    owner = repos.client("ecr")
    denied = []

    def call(self, operation, params):
        if self is not owner and self.meta.service_model.service_name == "ecr" and \
                params.get("repositoryName") == "other/app":
            denied.append(operation)
            raise ClientError({"Error": {"Code": DENIED, "Message": DENIED_MESSAGE}}, operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    return denied


def ingest_dlq(stack):
    return stack.client("sqs").receive_message(QueueUrl=stack.outputs["IngestDLQUrl"]).get("Messages", [])


def table_items(stack):
    return stack.client("dynamodb").scan(TableName=stack.outputs["StreamsTableName"])["Items"]


def test_push_to_a_denied_repository_is_ignored_not_parked_in_the_dlq(repos, iam_denies_other_app):
    repos.push_image("other/app", "latest", seed="1")  # pushed by the repository's owner
    repos.pump()
    ingests = [i for i in repos.invocations if i.function == "IngestFunction"]
    assert len(ingests) == 1 and ingests[0].error is None  # was: three failed attempts, then the DLQ
    assert ingests[0].result["status"] == "ignored" and ingests[0].result["reason"].startswith("not ours")
    assert iam_denies_other_app == ["DescribeImages"]
    assert ingest_dlq(repos) == [] and table_items(repos) == []
    repos.push_image("team/web", "latest", seed="2")
    repos.pump()
    assert [i.result["status"] for i in repos.invocations if i.function == "IngestFunction"][-1] == "moved"


def test_repository_pattern_keeps_ingest_away_from_other_repositories(repos, monkeypatch):
    from tests.integration.conftest import TEST_PARAMETERS

    repos.reset()  # a stack deployed with RepositoryPattern=team/* (the functions read it from their environment)
    repos.deploy(parameters={**TEST_PARAMETERS, "RepositoryPattern": "team/*"})
    for name in ("team/web", "other/app"):
        repos.client("ecr").create_repository(repositoryName=name)
    calls = []
    original = BaseClient._make_api_call

    def call(self, operation, params):
        calls.append((operation, params.get("repositoryName")))
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    event = repos.push_image("other/app", "latest", seed="1", emit=False)
    calls.clear()
    repos.invoke("IngestFunction", event)
    assert ("DescribeImages", "other/app") not in calls  # refused before asking ECR
    assert ingest_dlq(repos) == [] and table_items(repos) == []
    answer = repos.invoke("AdminFunction", {"action": "import", "target": "other/app:latest"})
    assert answer["error"]["type"] == "Forbidden" and "RepositoryPattern" in answer["error"]["message"]


def test_admin_on_a_denied_repository_answers_forbidden(repos, iam_denies_other_app):
    for command in ({"action": "import", "target": "other/app:latest"},
                    {"action": "tag", "source": "other/app:latest", "target": "other/app:prod"}):
        answer = repos.invoke("AdminFunction", command)  # was: a raw ClientError (FunctionError)
        assert answer["ok"] is False and answer["error"]["type"] == "Forbidden", answer
    assert table_items(repos) == []


def test_references_to_another_registry_are_invalid_and_the_own_registry_is_accepted(repos):
    repos.push_image("team/web", "latest", seed="1")
    repos.pump()
    for host in ("111111111111.dkr.ecr.us-east-1.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"):
        answer = repos.invoke("AdminFunction", {"action": "history", "target": f"{host}/team/web:latest"})
        assert answer["error"]["type"] == "Invalid" and host in answer["error"]["message"]
        answer = repos.invoke("AdminFunction", {"action": "import", "target": f"{host}/team/web:latest"})
        assert answer["error"]["type"] == "Invalid"
    answer = repos.invoke("AdminFunction", {"action": "history", "target": f"{REG}/team/web:latest"})
    assert answer["ok"] and answer["result"]["entries"][0]["cause"] == "push"


def test_two_pushes_ingested_concurrently_leave_the_alias_on_the_source(repos, monkeypatch):
    """Push A's follower is overtaken by push B's whole ingest just before it retags the alias."""
    repos.push_image("team/web", "latest", seed="0", also=("v0",))
    repos.pump()
    answer = repos.invoke("AdminFunction", {"action": "tag", "source": "team/web:latest",
                                            "target": "team/web:stable", "alias": True})
    assert answer["ok"], answer
    event_a = repos.push_image("team/web", "latest", seed="A", emit=False, also=("vA",))
    original = EcrRegistry.retag
    overtaken = []

    def retag(self, stream, digest_, tag):
        if not overtaken:
            overtaken.append(digest_)
            event_b = repos.push_image("team/web", "latest", seed="B", emit=False, also=("vB",))
            repos.invoke("IngestFunction", event_b)
        return original(self, stream, digest_, tag)

    monkeypatch.setattr(EcrRegistry, "retag", retag)
    repos.invoke("IngestFunction", event_a)
    ecr = repos.client("ecr")

    def in_ecr(tag):
        return ecr.describe_images(repositoryName="team/web", imageIds=[{"imageTag": tag}])["imageDetails"][0][
            "imageDigest"]

    described = {t["tag"]: t for t in repos.invoke("AdminFunction", {"action": "describe",
                                                                     "stream": "team/web"})["result"]["tags"]}
    assert overtaken == [event_a["detail"]["image-digest"]]  # the race happened as intended
    assert in_ecr("stable") == in_ecr("latest") == described["latest"]["digest"] == described["stable"]["digest"]
    assert json.dumps(described["stable"]["alias_of"]) == '"latest"'


def test_discovery_reports_annotations_naming_another_registry_and_adopts_our_own(repos):
    from imagestreams_local.kube import FakeKubeApi

    repos.push_image("team/web", "latest", seed="1")
    repos.pump()
    containers = [{"name": "web", "image": "nginx"}]

    def annotation(name):
        return {"image.openshift.io/triggers": json.dumps([{
            "from": {"kind": "ImageStreamTag", "name": name},
            "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image'}])}

    with FakeKubeApi() as kube:
        repos.add_eks_cluster("prod", kube)
        kube.add("Deployment", "apps", "foreign", containers,
                 annotations=annotation("111111111111.dkr.ecr.eu-west-1.amazonaws.com/team/web:latest"))
        kube.add("Deployment", "apps", "own", containers, annotations=annotation(f"{REG}/team/web:latest"))
        answer = repos.invoke("AdminFunction", {"action": "trigger.add", "from": "*",
                                                "target": {"type": "eks", "cluster": "prod", "discover": True}})
        assert answer["ok"], answer
        assert [t["target"]["name"] for t in answer["result"]["triggers"]] == ["own"]
        assert len(answer["result"]["errors"]) == 1 and "apps/Deployment/foreign" in answer["result"]["errors"][0]
        assert "111111111111" in answer["result"]["errors"][0]
        foreign = kube.get("Deployment", "apps", "foreign")["spec"]["template"]["spec"]["containers"][0]["image"]
        assert foreign == "nginx"  # was: pinned to this account's team/web
