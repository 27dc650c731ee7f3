"""EKS (against the fake Kubernetes API server over TLS) and Lambda container functions as targets."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from imagestreams import aws
from imagestreams.adapters.awslambda import LambdaDriver
from imagestreams.adapters.eks import EksClusters, EksDriver, KubeApi, eks_token
from imagestreams.adapters.memory import MemoryRegistry, MemoryStore
from imagestreams.errors import TargetChanged, TargetError, TransientTargetError
from imagestreams.model import EksTarget, LambdaTarget, StreamTag
from imagestreams.services import ImageStreams
from imagestreams_local.kube import FakeKubeApi, token_problem
from tests.conftest import digest
from tests.integration.conftest import REG

PINNED = f"{REG}/team/web@{digest(1)}"
WEB = [{"name": "web", "image": f"{REG}/team/web:latest"}, {"name": "envoy", "image": "envoyproxy/envoy:v1.31"}]


@pytest.fixture
def kube():
    with FakeKubeApi(forbidden=("secret",)) as server:
        yield server


@pytest.fixture
def cluster(stack, kube):
    stack.use_function_env("DeployerFunction")
    stack.add_eks_cluster("prod", kube)
    api = KubeApi(EksClusters(aws.client("eks"), aws.session()))
    return EksDriver(api), api


def test_token_is_what_aws_eks_get_token_produces():
    import boto3

    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                                    region_name="us-east-1")
    token = eks_token(session, "prod", "us-east-1")
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    url = base64.urlsafe_b64decode(token[11:] + "=" * (-len(token[11:]) % 4)).decode()
    parsed = urllib.parse.urlparse(url)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    assert parsed.netloc == "sts.us-east-1.amazonaws.com" and parsed.path == "/"
    assert query["Action"] == "GetCallerIdentity" and query["Version"] == "2011-06-15"
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id" and query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Credential"].startswith("AKIDEXAMPLE/") and len(query["X-Amz-Signature"]) == 64
    assert token_problem(f"Bearer {token}") is None
    assert token_problem("Bearer k8s-aws-v1.bm90LWEtdXJs") is not None


def test_patch_only_the_named_container_and_then_no_op(cluster, kube):
    driver, api = cluster
    kube.add("Deployment", "apps", "web", WEB)
    target = EksTarget("prod", "apps", "Deployment", "web", "web")
    result = driver.apply(target, PINNED)
    assert result.changed and result.rollout_state == "COMPLETED"
    obj = kube.get("Deployment", "apps", "web")
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "web", "image": PINNED}, WEB[1]]  # the sidecar is untouched
    assert obj["metadata"]["generation"] == 2
    assert [(m, ct) for m, _, ct in kube.requests] == [("GET", None),
                                                      ("PATCH", "application/strategic-merge-patch+json")]
    kube.requests.clear()
    again = driver.apply(target, PINNED)
    assert not again.changed and [m for m, _, _ in kube.requests] == ["GET"]
    assert kube.get("Deployment", "apps", "web")["metadata"]["generation"] == 2


def test_init_container_statefulset_and_cronjob(cluster, kube):
    driver, _ = cluster
    kube.add("StatefulSet", "apps", "db", [{"name": "db", "image": "postgres:16"}],
             init_containers=[{"name": "migrate", "image": f"{REG}/team/web:latest"}])
    kube.add("CronJob", "apps", "nightly", [{"name": "job", "image": f"{REG}/team/web:latest"}])
    assert driver.apply(EksTarget("prod", "apps", "StatefulSet", "db", "migrate"), PINNED).changed
    sts = kube.get("StatefulSet", "apps", "db")["spec"]["template"]["spec"]
    assert sts["initContainers"][0]["image"] == PINNED and sts["containers"][0]["image"] == "postgres:16"
    assert driver.apply(EksTarget("prod", "apps", "CronJob", "nightly", "job"), PINNED).changed
    job = kube.get("CronJob", "apps", "nightly")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["image"] == PINNED


def test_conflict_restarts_the_whole_fire_from_a_fresh_read(cluster, kube):
    driver, _ = cluster
    kube.add("Deployment", "apps", "web", WEB)
    target = EksTarget("prod", "apps", "Deployment", "web", "web")
    kube.interfere(1)  # another writer bumps resourceVersion between our GET and PATCH, once
    with pytest.raises(TargetChanged):  # the driver itself never re-applies over someone else's change...
        driver.apply(target, PINNED)
    assert [m for m, _, _ in kube.requests] == ["GET", "PATCH"]
    store, registry = MemoryStore(), MemoryRegistry(REG)
    streams = ImageStreams(store, registry, {"eks": driver})
    registry.set("team/web", "latest", digest(1))
    streams.sync(StreamTag("team/web", "latest"))
    kube.requests.clear()
    kube.interfere(1)
    trigger = streams.add_trigger(StreamTag("team/web", "latest"), target)  # ...the fire starts over, re-checking
    assert trigger.last_triggered_digest == digest(1) and kube.get("Deployment", "apps", "web")[
        "spec"]["template"]["spec"]["containers"][0]["image"] == PINNED
    assert [m for m, _, _ in kube.requests] == ["GET", "PATCH", "GET", "PATCH"]
    kube.interfere(5)
    registry.set("team/web", "latest", digest(2))
    streams.sync(StreamTag("team/web", "latest"))
    with pytest.raises(TransientTargetError, match="kept changing"):
        streams.fire_by_id(StreamTag("team/web", "latest"), trigger.id)


def test_forbidden_missing_and_unknown_container_are_clear_permanent_errors(cluster, kube):
    driver, _ = cluster
    kube.add("Deployment", "secret", "web", WEB)
    kube.add("Deployment", "apps", "web", WEB)
    with pytest.raises(TargetError, match="forbidden.*access entry"):
        driver.apply(EksTarget("prod", "secret", "Deployment", "web", "web"), PINNED)
    with pytest.raises(TargetError, match="not found in EKS cluster prod"):
        driver.apply(EksTarget("prod", "apps", "Deployment", "nope", "web"), PINNED)
    with pytest.raises(TargetError, match="container api not found.*web, envoy"):
        driver.apply(EksTarget("prod", "apps", "Deployment", "web", "api"), PINNED)
    with pytest.raises(TargetError, match="EKS cluster other not found"):
        driver.apply(EksTarget("other", "apps", "Deployment", "web", "web"), PINNED)


def test_token_is_cached_between_fires(cluster, kube):
    driver, api = cluster
    kube.add("Deployment", "apps", "web", WEB)
    target = EksTarget("prod", "apps", "Deployment", "web", "web")
    driver.apply(target, PINNED)
    first = api.clusters.token("prod")
    driver.apply(target, f"{REG}/team/web@{digest(2)}")
    assert api.clusters.token("prod") == first


def test_rollout_in_progress_is_reported(stack, cluster):
    driver, _ = cluster
    with FakeKubeApi(rollout="stuck") as slow:
        stack.add_eks_cluster("slow", slow)
        slow.add("Deployment", "apps", "web", WEB)
        result = driver.apply(EksTarget("slow", "apps", "Deployment", "web", "web"), PINNED)
    assert result.changed and result.rollout_state == "IN_PROGRESS"


ANNOTATED = json.dumps([{"from": {"kind": "ImageStreamTag", "name": "team/web:latest"},
                         "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image', "paused": False}])


def test_openshift_annotations_are_discovered_and_bad_ones_reported(stack, cluster, kube):
    stack.client("ecr").create_repository(repositoryName="team/web")
    stack.push_image("team/web", "latest", seed="1")
    stack.pump()
    kube.add("Deployment", "apps", "web", WEB, annotations={"image.openshift.io/triggers": ANNOTATED})
    kube.add("Deployment", "apps", "bad-json", WEB, annotations={"image.openshift.io/triggers": "[{"})
    kube.add("Deployment", "apps", "bad-paused", WEB, annotations={"image.openshift.io/triggers": json.dumps(
        [{"from": {"kind": "ImageStreamTag", "name": "team/web:latest"},
          "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image', "paused": "false"}])})
    kube.add("Deployment", "apps", "bad-container", WEB, annotations={"image.openshift.io/triggers": json.dumps(
        [{"from": {"kind": "ImageStreamTag", "name": "team/web:latest"},
          "fieldPath": 'spec.template.spec.containers[?(@.name=="nope")].image'}])})
    kube.add("Deployment", "apps", "plain", WEB)
    answer = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "*",
                                            "target": {"type": "eks", "cluster": "prod", "discover": True}})
    assert answer["ok"], answer
    result = answer["result"]
    assert [t["target"]["name"] for t in result["triggers"]] == ["web"]
    assert result["trigger"]["status"] in ("Deploying", "Deployed")  # fired at once: the tag has a head
    errors = "\n".join(result["errors"])
    assert "apps/Deployment/bad-json" in errors and "not valid JSON" in errors
    assert "paused must be a JSON boolean" in errors and "no container named nope" in errors
    web = kube.get("Deployment", "apps", "web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert web.startswith(f"{REG}/team/web@sha256:")


# ------------------------------------------------------------------------------------------------ Lambda

def test_lambda_update_no_op_and_alias(stack):
    fn = "resize"
    stack.create_image_function(fn, f"{REG}/team/fn:latest")
    lam = stack.client("lambda")
    version = lam.publish_version(FunctionName=fn)["Version"]
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=version)
    driver = LambdaDriver(lam, sleep=lambda s: None)
    result = driver.apply(LambdaTarget(fn, "live"), PINNED)
    assert result.changed and result.rollout_state == "COMPLETED"
    assert lam.get_function(FunctionName=fn)["Code"]["ImageUri"] == PINNED
    assert lam.get_function(FunctionName=fn, Qualifier="live")["Code"]["ImageUri"] == PINNED
    assert lam.get_alias(FunctionName=fn, Name="live")["FunctionVersion"] != version
    again = driver.apply(LambdaTarget(fn, "live"), PINNED)
    assert not again.changed


def test_lambda_zip_function_is_refused_at_trigger_add(stack):
    iam = stack.client("iam")
    role = iam.create_role(RoleName="zip", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    stack.client("lambda").create_function(FunctionName="zippy", Role=role, Runtime="python3.12", Handler="a.b",
                                           Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    answer = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest",
                                            "target": {"type": "lambda", "function": "zippy"}})
    assert answer["error"]["type"] == "Invalid" and "zip-packaged" in answer["error"]["message"]
    assert stack.invoke("AdminFunction", {"action": "trigger.list"})["result"]["triggers"] == []


def test_lambda_gets_the_child_of_a_multiarch_index_for_its_architecture(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    stack.create_image_function("api", f"{REG}/team/web:latest", architecture="arm64")
    index = stack.push_multiarch("team/web", "latest", seed="m")
    stack.pump()
    answer = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest",
                                            "target": {"type": "lambda", "function": "api"}})
    assert answer["ok"], answer
    image = stack.client("lambda").get_function(FunctionName="api")["Code"]["ImageUri"]
    manifest = json.loads(stack.client("ecr").batch_get_image(
        repositoryName="team/web", imageIds=[{"imageDigest": index["detail"]["image-digest"]}])["images"][0][
        "imageManifest"])
    arm64 = next(m["digest"] for m in manifest["manifests"] if m["platform"]["architecture"] == "arm64")
    assert image == f"{REG}/team/web@{arm64}"
    assert answer["result"]["trigger"]["lastTriggeredDigest"] == index["detail"]["image-digest"]


def test_lambda_architecture_missing_from_index_fails_the_trigger(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    stack.create_image_function("api", f"{REG}/team/web:latest", architecture="x86_64")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("a"), "size": 1,
         "platform": {"architecture": "arm64", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("b"), "size": 1,
         "platform": {"architecture": "unknown", "os": "unknown"}}]})
    stack._put("team/web", "latest", manifest, "application/vnd.oci.image.index.v1+json", True)
    stack.pump()
    answer = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest",
                                            "target": {"type": "lambda", "function": "api"}})
    trigger = answer["result"]["trigger"]
    assert trigger["status"] == "Failed" and "no linux/amd64 image" in trigger["lastError"]
