"""EKS discovery in another account on the embedded AWS: the cluster exists only in account 222222222222 (moto keeps
one backend per account), so the stack finds it — and lists its workloads — only through the discovery's
``roleArn``; every adopted trigger carries the role and its fire patches the workload there."""

from __future__ import annotations

import boto3
import pytest

from imagestreams_local.kube import FakeKubeApi
from tests.integration.conftest import REG
from tests.integration.test_cross_account import OTHER, PARAMETERS, ROLE
from tests.integration.test_eks_lambda import ANNOTATED, WEB


@pytest.fixture
def far_cluster(embedded):
    embedded.reset()
    embedded.deploy(parameters=PARAMETERS)
    embedded.client("ecr").create_repository(repositoryName="team/web")
    embedded.push_image("team/web", "latest", seed="1")
    embedded.pump()
    creds = embedded.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="setup")["Credentials"]
    eks = boto3.client("eks", region_name=embedded.region, aws_access_key_id=creds["AccessKeyId"],
                       aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    with FakeKubeApi() as kube:
        from moto.eks.models import eks_backends

        eks.create_cluster(name="far", roleArn=f"arn:aws:iam::{OTHER}:role/eks-cluster",
                           resourcesVpcConfig={"subnetIds": ["subnet-00000000000000001"]})
        cluster = eks_backends[OTHER][embedded.region].clusters["far"]
        cluster.endpoint, cluster.certificate_authority = kube.endpoint, {"data": kube.ca_data}
        kube.add("Deployment", "apps", "web", WEB, annotations={"image.openshift.io/triggers": ANNOTATED})
        yield embedded, kube


def discover(stack, **role):
    return stack.invoke("AdminFunction", {"action": "trigger.add", "from": "*", "actor": "test",
                                          "target": {"type": "eks", "cluster": "far", "discover": True, **role}})


def test_discovery_through_a_role_adopts_and_fires_the_other_accounts_workloads(far_cluster):
    stack, kube = far_cluster
    here = discover(stack)  # the stack's own account has no cluster "far"
    assert not here["ok"] and here["error"]["type"] == "NotFound" and "far not found" in here["error"]["message"]
    answer = discover(stack, roleArn=ROLE)
    assert answer["ok"], answer
    (trigger,) = answer["result"]["triggers"]
    assert trigger["target"]["roleArn"] == ROLE and trigger["target"]["name"] == "web"
    web = kube.get("Deployment", "apps", "web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert web.startswith(f"{REG}/team/web@sha256:")


def test_discovery_through_a_role_not_allowed_is_forbidden_before_listing(far_cluster):
    stack, kube = far_cluster
    answer = discover(stack, roleArn=f"arn:aws:iam::{OTHER}:role/someone-else")
    assert not answer["ok"] and answer["error"]["type"] == "Forbidden", answer
    web = kube.get("Deployment", "apps", "web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert web == WEB[0]["image"]
