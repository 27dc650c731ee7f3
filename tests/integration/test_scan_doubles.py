"""The embedded AWS's gate evidence (scan findings, managed signing, OCI referrers), asked through plain boto3 calls
to the moto endpoint, and the events AWS sends for them delivered by the runner to a subscriber declared in a
template (EventBridge rules and an SQS queue with per-message delays), on a clock that tests can move."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from imagestreams_local import scanning

from .conftest import TEST_PARAMETERS

REPO = "team/web"
ARN = f"arn:aws:ecr:us-east-1:123456789012:repository/{REPO}"
PATTERNS = {
    "EcrScan": {"source": ["aws.ecr"], "detail-type": ["ECR Image Scan"]},
    "InspectorScan": {"source": ["aws.inspector2"], "detail-type": ["Inspector2 Scan"]},
    "Signing": {"source": ["aws.signer"], "detail-type": ["Signer Job Status Change"]},
}


@pytest.fixture
def probe(embedded, tmp_path):
    """A stack of one function subscribed to the three gate events and to a standard queue (like the gate clock)."""
    code = tmp_path / "probe_code"
    code.mkdir()
    (code / "gate_probe.py").write_text("def handler(event, context):\n    return {}\n")
    events = {name: {"Type": "EventBridgeRule", "Properties": {"Pattern": pattern}}
              for name, pattern in PATTERNS.items()}
    events["Clock"] = {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["ClockQueue", "Arn"]},
                                                     "BatchSize": 10}}
    template = tmp_path / "template.yaml"  # JSON is YAML
    template.write_text(json.dumps({"Resources": {
        "ClockQueue": {"Type": "AWS::SQS::Queue"},
        "ProbeFunction": {"Type": "AWS::Serverless::Function", "Properties": {
            "Handler": "gate_probe.handler", "CodeUri": str(code), "Events": events}}}}))
    embedded.reset()
    embedded.deploy(template_path=template)
    yield embedded
    embedded.reset()  # back to real time for the next test


def delivered(aws, source: str) -> list[dict]:
    return [inv.event for inv in aws.invocations if inv.function == "ProbeFunction" and inv.source == source]


def gate_events(aws, detail_type: str) -> list[dict]:
    return [e for e in delivered(aws, "eventbridge") if e["detail-type"] == detail_type]


def push(aws, tag: str, seed: str, *, scan_on_push: bool = True) -> str:
    ecr = aws.client("ecr")
    try:
        ecr.create_repository(repositoryName=REPO, imageScanningConfiguration={"scanOnPush": scan_on_push})
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    return aws.push_image(REPO, tag, seed=seed, emit=False)["detail"]["image-digest"]


def findings(aws, **image_id) -> dict:
    return aws.client("ecr").describe_image_scan_findings(repositoryName=REPO, imageId=image_id)


def test_a_push_to_a_scan_on_push_repository_is_scanned_and_announced_as_ecr_does(probe):
    digest = push(probe, "latest", "a")
    assert findings(probe, imageDigest=digest)["imageScanStatus"]["status"] == "IN_PROGRESS"
    probe.pump()
    assert gate_events(probe, "ECR Image Scan") == []  # a scan takes a moment

    probe.advance(seconds=5)
    probe.pump()
    [event] = gate_events(probe, "ECR Image Scan")
    assert event["source"] == "aws.ecr" and event["account"] == "123456789012"
    assert event["detail"] == {"scan-status": "COMPLETE", "repository-name": REPO, "finding-severity-counts": {},
                               "image-digest": digest, "image-tags": ["latest"]}
    answer = findings(probe, imageTag="latest")
    assert answer["imageScanStatus"]["status"] == "COMPLETE"
    assert answer["imageId"]["imageDigest"] == digest
    assert answer["imageScanFindings"]["findingSeverityCounts"] == {}
    assert answer["imageScanFindings"]["imageScanCompletedAt"] <= datetime.now(timezone.utc) + timedelta(seconds=10)


def test_an_image_never_scanned_has_no_scan_and_a_manual_scan_completes(probe):
    digest = push(probe, "latest", "b", scan_on_push=False)
    with pytest.raises(ClientError) as err:
        findings(probe, imageDigest=digest)
    assert err.value.response["Error"]["Code"] == "ScanNotFoundException"
    started = probe.client("ecr").start_image_scan(repositoryName=REPO, imageId={"imageDigest": digest})
    assert started["imageScanStatus"]["status"] == "IN_PROGRESS"
    probe.advance(seconds=5)
    probe.pump()
    assert findings(probe, imageDigest=digest)["imageScanStatus"]["status"] == "COMPLETE"
    assert [e["detail"]["image-digest"] for e in gate_events(probe, "ECR Image Scan")] == [digest]
    with pytest.raises(ClientError) as err:
        findings(probe, imageTag="no-such-tag")
    assert err.value.response["Error"]["Code"] == "ImageNotFoundException"


def test_findings_set_for_a_digest_are_counted_listed_and_announced(probe):
    digest = push(probe, "latest", "c")
    scanning.set_scan(REPO, digest, counts={"CRITICAL": 1, "high": 2})
    probe.pump()
    [event] = gate_events(probe, "ECR Image Scan")
    assert event["detail"]["finding-severity-counts"] == {"CRITICAL": 1, "HIGH": 2}
    answer = findings(probe, imageDigest=digest)["imageScanFindings"]
    assert answer["findingSeverityCounts"] == {"CRITICAL": 1, "HIGH": 2}
    assert sorted(f["severity"] for f in answer["findings"]) == ["CRITICAL", "HIGH", "HIGH"]
    # the automatic scan that was still running does not overwrite what was set
    probe.advance(seconds=5)
    probe.pump()
    assert findings(probe, imageDigest=digest)["imageScanFindings"]["findingSeverityCounts"] == {"CRITICAL": 1,
                                                                                                 "HIGH": 2}
    scanning.set_scan(REPO, "latest", status="FAILED")
    probe.pump()
    assert findings(probe, imageTag="latest")["imageScanStatus"]["status"] == "FAILED"
    assert gate_events(probe, "ECR Image Scan")[-1]["detail"]["scan-status"] == "FAILED"


def test_bad_scan_input_is_refused_and_changes_nothing(probe):
    digest = push(probe, "latest", "d", scan_on_push=False)
    for counts in ({"SEVERE": 1}, {"HIGH": -1}):
        with pytest.raises(ValueError):
            scanning.set_scan(REPO, digest, counts=counts)
    with pytest.raises(ClientError, match="ScanNotFoundException"):
        findings(probe, imageDigest=digest)
    with pytest.raises(Exception, match="ImageNotFound"):
        scanning.set_scan(REPO, "sha256:" + "0" * 64, counts={"HIGH": 1})
    probe.pump()
    assert gate_events(probe, "ECR Image Scan") == []


def test_enhanced_scanning_sends_the_inspector2_event_naming_the_repository_by_arn(probe):
    probe.client("ecr").put_registry_scanning_configuration(scanType="ENHANCED", rules=[
        {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD"}]}])
    digest = push(probe, "v1", "e", scan_on_push=False)
    assert findings(probe, imageDigest=digest)["imageScanStatus"]["status"] == "PENDING"
    probe.advance(seconds=5)
    probe.pump()
    [event] = gate_events(probe, "Inspector2 Scan")
    assert event["source"] == "aws.inspector2" and event["resources"] == [ARN]
    assert event["detail"] == {"scan-status": "INITIAL_SCAN_COMPLETE", "repository-name": ARN,
                               "finding-severity-counts": {"TOTAL": 0}, "image-digest": digest,
                               "image-tags": ["v1"]}
    assert gate_events(probe, "ECR Image Scan") == []

    scanning.set_scan(REPO, digest, counts={"CRITICAL": 2, "MEDIUM": 1})
    probe.pump()
    assert gate_events(probe, "Inspector2 Scan")[-1]["detail"]["finding-severity-counts"] == {
        "CRITICAL": 2, "MEDIUM": 1, "TOTAL": 3}
    answer = findings(probe, imageDigest=digest)
    assert answer["imageScanStatus"]["status"] == "COMPLETE"
    assert answer["imageScanFindings"]["findingSeverityCounts"] == {"CRITICAL": 2, "MEDIUM": 1}
    assert len(answer["imageScanFindings"]["enhancedFindings"]) == 3


def test_managed_signing_reports_in_progress_then_complete_with_a_notation_referrer(probe):
    ecr = probe.client("ecr")
    profile = scanning.profile_arn("us-east-1")
    ecr.put_signing_configuration(signingConfiguration={"rules": [
        {"signingProfileArn": profile, "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD_MATCH"}]}]})
    digest = push(probe, "latest", "f")
    status = ecr.describe_image_signing_status(repositoryName=REPO, imageId={"imageTag": "latest"})
    assert status["imageId"]["imageDigest"] == digest
    assert status["signingStatuses"] == [{"signingProfileArn": profile, "status": "IN_PROGRESS"}]
    assert ecr.list_image_referrers(repositoryName=REPO, subjectId={"imageDigest": digest})["referrers"] == []

    probe.advance(seconds=5)
    probe.pump()
    status = ecr.describe_image_signing_status(repositoryName=REPO, imageId={"imageDigest": digest})
    assert status["signingStatuses"][0]["status"] == "COMPLETE"
    [event] = gate_events(probe, "Signer Job Status Change")
    assert event["source"] == "aws.signer" and event["detail"]["status"] == "Succeeded"
    assert event["resources"] == [f"arn:aws:signer:us-east-1:123456789012:/signing-jobs/{event['detail']['job_id']}"]
    referrers = ecr.list_image_referrers(repositoryName=REPO, subjectId={"imageDigest": digest},
                                         filter={"artifactTypes": [scanning.NOTATION_SIGNATURE]})["referrers"]
    assert [r["artifactType"] for r in referrers] == [scanning.NOTATION_SIGNATURE]
    assert referrers[0]["digest"].startswith("sha256:") and referrers[0]["digest"] != digest


def test_signing_failed_and_cosign_referrers_can_be_set_per_digest(probe):
    ecr = probe.client("ecr")
    unsigned = push(probe, "latest", "g")
    assert ecr.describe_image_signing_status(repositoryName=REPO, imageId={"imageDigest": unsigned})[
        "signingStatuses"] == []  # no signing configuration: nothing is signed
    failed = push(probe, "next", "h")
    scanning.set_signing(REPO, "next", status="FAILED")
    probe.pump()
    [status] = ecr.describe_image_signing_status(repositoryName=REPO, imageId={"imageDigest": failed})[
        "signingStatuses"]
    assert status["status"] == "FAILED" and status["failureCode"] and status["failureReason"]
    assert [e["detail"]["status"] for e in gate_events(probe, "Signer Job Status Change")] == ["Failed"]
    assert ecr.list_image_referrers(repositoryName=REPO, subjectId={"imageDigest": failed})["referrers"] == []

    scanning.add_referrer(REPO, unsigned)
    got = ecr.list_image_referrers(repositoryName=REPO, subjectId={"imageDigest": unsigned})["referrers"]
    assert [r["artifactType"] for r in got] == [scanning.COSIGN_SIGNATURE]
    assert ecr.list_image_referrers(repositoryName=REPO, subjectId={"imageDigest": unsigned},
                                    filter={"artifactTypes": [scanning.NOTATION_SIGNATURE]})["referrers"] == []
    with pytest.raises(ClientError, match="RepositoryNotFoundException"):
        ecr.list_image_referrers(repositoryName="team/none", subjectId={"imageDigest": unsigned})


def test_a_delayed_message_is_delivered_only_once_its_delay_has_passed(probe):
    sqs = probe.client("sqs")
    url = probe.resolver.refs["ClockQueue"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "trigger", "due": "later"}), DelaySeconds=900)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "trigger", "due": "now"}))
    probe.pump()
    assert [json.loads(r["body"])["due"] for e in delivered(probe, "sqs") for r in e["Records"]] == ["now"]
    probe.advance(minutes=14)
    probe.pump()
    assert len(delivered(probe, "sqs")) == 1
    probe.advance(minutes=1, seconds=1)
    probe.pump()
    assert [json.loads(r["body"])["due"] for e in delivered(probe, "sqs") for r in e["Records"]] == ["now", "later"]


def test_the_functions_clock_is_the_runners(stack):
    from imagestreams import bootstrap

    stack.use_function_env("AdminFunction")
    before = bootstrap.services().clock()
    assert abs((before - datetime.now(timezone.utc)).total_seconds()) < 5
    moved = stack.advance(minutes=30)
    assert abs((bootstrap.services().clock() - moved).total_seconds()) < 5
    assert abs((moved - before).total_seconds() - 1800) < 5
    stack.reset()  # a fresh embedded AWS starts on real time again
    stack.deploy(parameters=TEST_PARAMETERS)
    stack.use_function_env("AdminFunction")
    assert abs((bootstrap.services().clock() - datetime.now(timezone.utc)).total_seconds()) < 5


def test_gate_events_reach_only_the_gates_function_and_harm_nothing(stack):
    """The template's gate rules route scan and signing events to the gates function alone; the push goes on as
    usual (and a runner with no rule for an event drops it: the events a rule does not match reach nothing)."""
    stack.client("ecr").create_repository(repositoryName=REPO, imageScanningConfiguration={"scanOnPush": True})
    event = stack.push_image(REPO, "latest", seed="i")
    scanning.set_signing(REPO, "latest")
    stack.advance(seconds=5)
    stack.pump()
    assert all(inv.error is None for inv in stack.invocations)
    routed = {(inv.event["detail-type"], inv.function) for inv in stack.invocations if inv.source == "eventbridge"}
    assert ("ECR Image Action", "IngestFunction") in routed
    assert {f for d, f in routed if d in ("ECR Image Scan", "Signer Job Status Change")} <= {"GatesFunction"}
    assert findings(stack, imageDigest=event["detail"]["image-digest"])["imageScanStatus"]["status"] == "COMPLETE"


def test_the_control_endpoint_answers_like_the_helpers(probe):
    digest = push(probe, "latest", "j", scan_on_push=False)

    def post(body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(probe.moto_url + scanning.CONTROL_PATH, data=json.dumps(body).encode(),
                                         method="POST")
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    code, answer = post({"op": "scan", "repository": REPO, "image": "latest", "counts": {"LOW": 3}})
    assert code == 200 and answer["imageScanFindings"]["findingSeverityCounts"] == {"LOW": 3}
    assert findings(probe, imageDigest=digest)["imageScanFindings"]["findingSeverityCounts"] == {"LOW": 3}
    code, answer = post({"op": "scan", "repository": REPO, "image": "gone"})
    assert code == 404 and "ImageNotFoundException" in answer["error"]
    code, answer = post({"op": "scan", "repository": REPO, "image": "latest", "counts": {"BAD": 1}})
    assert code == 400 and "BAD" in answer["error"]
    code, answer = post({"op": "advance", "seconds": 120})
    assert code == 200 and answer["offset"] == 120
