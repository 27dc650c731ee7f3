"""The gate evidence on the playground as a user drives it: `imagestreams-local scan|sign|advance` in a second
terminal change what ECR answers to any boto3 client; and the events/ samples of the gate events have exactly the
shape the embedded AWS sends."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from imagestreams_local import scanning
from tests.e2e.test_playground import ROOT, Playground, _base_env

pytestmark = pytest.mark.e2e
EVENTS = ROOT / "events"
ASK = """
import json, sys, boto3
ecr = boto3.client("ecr")
repo, image = sys.argv[1], sys.argv[2]
image_id = {"imageDigest": image} if image.startswith("sha256:") else {"imageTag": image}
try:
    scan = ecr.describe_image_scan_findings(repositoryName=repo, imageId=image_id)
    scan = {"status": scan["imageScanStatus"]["status"],
            "counts": scan.get("imageScanFindings", {}).get("findingSeverityCounts")}
except ecr.exceptions.ScanNotFoundException:
    scan = None
signing = ecr.describe_image_signing_status(repositoryName=repo, imageId=image_id)["signingStatuses"]
digest = ecr.describe_images(repositoryName=repo, imageIds=[image_id])["imageDetails"][0]["imageDigest"]
referrers = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": digest})["referrers"]
print(json.dumps({"scan": scan, "signing": [s["status"] for s in signing],
                  "referrers": sorted(r["artifactType"] for r in referrers)}))
"""


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    playground = Playground(tmp_path_factory.mktemp("gates") / "state")
    yield playground
    playground.stop()


def local(play: Playground, *argv: str) -> subprocess.CompletedProcess[str]:
    return play.run(*argv, module="imagestreams_local")


def ask(play: Playground, repo: str, image: str) -> dict:
    done = subprocess.run([sys.executable, "-c", ASK, repo, image], capture_output=True, text=True, env=play.env,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_scan_and_sign_verbs_change_what_ecr_answers(play):
    pushed = local(play, "push", "team/web:latest", "--wait", "0")
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.split()[2]
    deadline = time.monotonic() + 20  # the sample repository scans on push; the scan completes a moment later
    while (ask(play, "team/web", digest)["scan"] or {}).get("status") != "COMPLETE":
        assert time.monotonic() < deadline, "the scan on push did not complete"
        time.sleep(0.5)
    assert ask(play, "team/web", digest)["scan"]["counts"] == {}

    done = local(play, "scan", "team/web:latest", "--critical", "1", "--high", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"scan of team/web@{digest}: COMPLETE, 1 CRITICAL, 2 HIGH"
    assert ask(play, "team/web", "latest")["scan"] == {"status": "COMPLETE", "counts": {"CRITICAL": 1, "HIGH": 2}}

    done = local(play, "scan", f"team/web@{digest}", "--failed")
    assert done.returncode == 0 and done.stdout.strip() == f"scan of team/web@{digest}: FAILED", done.stderr
    assert ask(play, "team/web", digest)["scan"]["status"] == "FAILED"

    assert ask(play, "team/web", digest)["signing"] == []
    done = local(play, "sign", "team/web:latest", "--failed")
    assert done.returncode == 0 and done.stdout.startswith(f"signing of team/web@{digest}: FAILED"), done.stderr
    assert ask(play, "team/web", digest)["signing"] == ["FAILED"]
    done = local(play, "sign", "team/web:latest")
    assert done.returncode == 0 and done.stdout.strip() == f"signing of team/web@{digest}: COMPLETE", done.stderr
    assert ask(play, "team/web", digest) | {"scan": None} == {
        "scan": None, "signing": ["COMPLETE"], "referrers": [scanning.NOTATION_SIGNATURE]}
    done = local(play, "sign", "team/web:latest", "--cosign")
    assert done.returncode == 0 and "cosign signature sha256:" in done.stdout, done.stderr
    assert ask(play, "team/web", digest)["referrers"] == sorted([scanning.NOTATION_SIGNATURE,
                                                                 scanning.COSIGN_SIGNATURE])

    done = local(play, "advance", "15")
    assert done.returncode == 0 and "(15 min ahead)" in done.stdout, done.stderr


@pytest.mark.parametrize("argv, code, message", [
    (("scan", "team/web"), 1, "REPOSITORY:TAG or REPOSITORY@sha256"),
    (("scan", "team/web@sha256:abc"), 1, "REPOSITORY:TAG or REPOSITORY@sha256"),
    (("scan", "team/web:no-such-tag", "--high", "1"), 1, "ImageNotFoundException"),
    (("sign", "team/none:latest"), 1, "RepositoryNotFoundException"),
    (("scan", "team/web:latest", "--high", "-1"), 2, "expected a count"),
    (("advance", "0"), 1, "positive number of minutes"),
])
def test_bad_input_to_the_verbs_is_refused_with_a_clear_message(play, argv, code, message):
    done = local(play, *argv)
    assert done.returncode == code and message in done.stderr, done.stdout + done.stderr


def test_the_verbs_without_a_running_playground_say_how_to_start_one(tmp_path):
    env = _base_env()
    done = subprocess.run([sys.executable, "-m", "imagestreams_local", "scan", "team/web:latest"],
                          capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and "imagestreams-local up" in done.stderr


@pytest.mark.parametrize("name, made", [
    ("ecr-image-scan.json", lambda d, repo: scanning.scan_event(
        "us-east-1", repo, d, scanning.Scan("COMPLETE", {"CRITICAL": 1}, False, time.time(), ["latest"]))),
    ("inspector2-scan.json", lambda d, repo: scanning.scan_event(
        "us-east-1", repo, d, scanning.Scan("COMPLETE", {"CRITICAL": 1}, True, time.time(), ["latest"]))),
    ("signer-job-status-change.json", lambda d, repo: scanning.signer_event(
        "us-east-1", scanning.Signing("COMPLETE", scanning.profile_arn("us-east-1"), time.time()))),
])
def test_each_gate_event_sample_has_the_shape_the_embedded_aws_sends(name, made):
    sample = json.loads((EVENTS / name).read_text())
    push = json.loads((EVENTS / "ecr_image_push.json").read_text())["detail"]
    sent = made(push["image-digest"], push["repository-name"])
    assert set(sample) == set(sent) and set(sample["detail"]) == set(sent["detail"])
    assert (sample["source"], sample["detail-type"]) == (sent["source"], sent["detail-type"])
    if "image-digest" in sample["detail"]:  # the same story as the other samples: team/web's first push
        assert sample["detail"]["image-digest"] == push["image-digest"]
        assert sample["resources"] == sent["resources"]
        assert sample["detail"]["repository-name"] == sent["detail"]["repository-name"]
