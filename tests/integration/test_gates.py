"""Gates on the embedded AWS: a CRITICAL scan result (DescribeImageScanFindings answered by the embedded AWS's scan
test double) blocks a trigger and its ECS service keeps its image; an ``ECR Image Scan`` event routed by the
template's rule to the gates function releases a waiting trigger; every call those paths make is allowed by the
function's role. moto implements neither DescribeImageSigningStatus nor ListImageReferrers (HTTP 500): the ECR
adapter's reading of them is checked with botocore's Stubber."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.client
import pytest
from botocore.stub import Stubber

from imagestreams.adapters.ecr import EcrRegistry
from imagestreams.errors import NotOurs
from imagestreams.ports import ScanResult, SigningStatus
from tests.e2e.test_iam_coverage import allowed, iam_requests, role_statements
from tests.integration.conftest import REG, make_service, service_images

ECS_TARGET = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


def scan_results(stack, digest: str, counts: dict[str, int], status: str = "COMPLETE") -> None:
    """The scan result of one image, through the embedded AWS's scan test double (what DescribeImageScanFindings
    then answers on the moto endpoint); no event: each test sends the one it needs."""
    from imagestreams_local import scanning

    scanning.set_scan("team/web", digest, counts=counts, status=status, region=stack.region, emit=False)


@pytest.fixture
def repo(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    make_service(stack)
    return stack


def test_a_critical_scan_result_blocks_the_trigger_and_the_service_keeps_its_image(repo):
    d = repo.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repo.pump()
    scan_results(repo, d, {"CRITICAL": 3, "HIGH": 5})
    before = service_images(repo)
    result = admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET,
                   gates=[{"type": "scan", "blockAt": "CRITICAL"}])
    repo.pump()
    trigger = admin(repo, action="trigger.list")["triggers"][0]
    assert trigger["id"] == result["id"] and trigger["status"] == "Blocked"
    assert trigger["gate"] == {"type": "scan", "state": "blocked", "reason": "3 CRITICAL findings", "digest": d}
    assert service_images(repo)[:2] == before[:2]  # no new task-definition revision, same image


def test_a_scan_event_releases_a_waiting_trigger_through_the_gates_function(repo):
    d = repo.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repo.pump()
    admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET,
          gates=[{"type": "scan", "blockAt": "HIGH"}])
    repo.pump()
    trigger = admin(repo, action="trigger.list")["triggers"][0]
    assert trigger["status"] == "Gated" and trigger["gate"]["reason"] == "waiting for the scan result"
    assert service_images(repo)[1]["web"] != f"{REG}/team/web@{d}"
    scan_results(repo, d, {"MEDIUM": 2})
    repo.emit({"version": "0", "id": "scan-1", "detail-type": "ECR Image Scan", "source": "aws.ecr",
               "account": "123456789012", "region": repo.region, "resources": [],
               "detail": {"scan-status": "COMPLETE", "repository-name": "team/web", "image-digest": d,
                          "image-tags": ["latest"], "finding-severity-counts": {"MEDIUM": 2}}})
    repo.pump()
    assert any(i.function == "GatesFunction" for i in repo.invocations)
    assert service_images(repo)[1]["web"] == f"{REG}/team/web@{d}"
    trigger = admin(repo, action="trigger.list")["triggers"][0]
    assert trigger["status"] in ("Deploying", "Deployed") and trigger["gate"] is None


def test_every_call_of_the_gate_paths_is_allowed_by_the_roles(repo, monkeypatch):
    recorded: list[tuple[str, str, str, dict[str, Any]]] = []
    current: list[str] = []
    make_api_call = botocore.client.BaseClient._make_api_call
    invoke = type(repo).invoke

    def record(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if current:
            recorded.append((current[-1], client.meta.service_model.service_name, operation, params))
        return make_api_call(client, operation, params)

    def as_function(self: Any, logical_id: str, *args: Any, **kwargs: Any) -> Any:
        current.append(logical_id)
        try:
            return invoke(self, logical_id, *args, **kwargs)
        finally:
            current.pop()

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    monkeypatch.setattr(type(repo), "invoke", as_function)
    d = repo.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repo.pump()
    tid = admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET,
                gates=[{"type": "scan", "blockAt": "HIGH"}, {"type": "approval"}])["id"]
    repo.pump()
    scan_results(repo, d, {})
    repo.invoke("GatesFunction", {"detail-type": "Inspector2 Scan", "source": "aws.inspector2",
                                  "account": "123456789012", "region": repo.region, "detail": {
                                      "scan-status": "INITIAL_SCAN_COMPLETE", "image-digest": d,
                                      "repository-name": "arn:aws:ecr:us-east-1:123456789012:repository/team/web"}})
    repo.pump()
    admin(repo, action="approve", id=tid, digest=d, actor="alice")
    repo.pump()
    assert service_images(repo)[1]["web"] == f"{REG}/team/web@{d}"
    requests = [(function, *r) for function, service, operation, params in recorded
                for r in iam_requests(repo, service, operation, params)]
    assert {"GatesFunction", "AdminFunction", "DeployerFunction"} <= {r[0] for r in requests}
    assert any(r[1] == "ecr:DescribeImageScanFindings" for r in requests)
    denied = sorted({repr(r) for r in requests if not allowed(role_statements(repo, r[0]), r[1], r[2], r[3])})
    assert denied == []


# ------------------------------------------------------------------------------- adapter, with a Stubber

def _registry(pattern: str = "team/*"):
    client = boto3.client("ecr", region_name="us-east-1")
    return EcrRegistry(client, repository_pattern=pattern), Stubber(client)


def test_scan_result_reads_status_and_counts_and_a_missing_scan_is_no_result():
    registry, stub = _registry()
    d = "sha256:" + "a" * 64
    stub.add_response("describe_image_scan_findings", {
        "imageScanStatus": {"status": "ACTIVE"},
        "imageScanFindings": {"findingSeverityCounts": {"CRITICAL": 2, "LOW": 1}}},
        {"repositoryName": "team/web", "imageId": {"imageDigest": d}, "maxResults": 1})
    stub.add_client_error("describe_image_scan_findings", "ScanNotFoundException")
    with stub:
        assert registry.scan_result("team/web", d) == ScanResult("ACTIVE", {"CRITICAL": 2, "LOW": 1})
        assert registry.scan_result("team/web", d) is None


def test_signing_status_sums_profiles_and_referrers_page():
    registry, stub = _registry()
    d = "sha256:" + "b" * 64
    stub.add_response("describe_image_signing_status", {"signingStatuses": [
        {"signingProfileArn": "arn:p1", "status": "FAILED", "failureReason": "expired"},
        {"signingProfileArn": "arn:p2", "status": "COMPLETE"}]})
    stub.add_response("describe_image_signing_status", {"signingStatuses": [
        {"signingProfileArn": "arn:p1", "status": "FAILED", "failureCode": "X", "failureReason": "expired"}]})
    stub.add_response("describe_image_signing_status", {"signingStatuses": []})
    stub.add_response("list_image_referrers", {"referrers": [
        {"digest": d, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "artifactType": "application/spdx+json", "size": 1}], "nextToken": "t"},
        {"repositoryName": "team/web", "subjectId": {"imageDigest": d}, "filter": {"artifactStatus": "ACTIVE"}})
    stub.add_response("list_image_referrers", {"referrers": [
        {"digest": d, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "artifactType": "application/vnd.cncf.notary.signature", "size": 1}]})
    with stub:
        assert registry.signing_status("team/web", d) == SigningStatus("FAILED", "arn:p1: expired")  # every profile
        assert registry.signing_status("team/web", d) == SigningStatus("FAILED", "arn:p1: expired")
        assert registry.signing_status("team/web", d) is None
        assert registry.signature_referrers("team/web", d) == ["application/spdx+json",
                                                               "application/vnd.cncf.notary.signature"]


def test_gate_reads_outside_the_pattern_or_denied_are_not_ours():
    registry, stub = _registry()
    d = "sha256:" + "c" * 64
    with pytest.raises(NotOurs):
        registry.scan_result("other/web", d)
    stub.add_client_error("describe_image_scan_findings", "AccessDeniedException")
    with stub, pytest.raises(NotOurs):
        registry.scan_result("team/web", d)
