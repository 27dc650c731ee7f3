"""Expiry risk end to end on the embedded AWS: a repository's lifecycle policy would expire the digest a trigger's
ECS service runs; the scheduled reconciler starts the lifecycle policy preview in one run and reads it in the next
(the embedded AWS's preview double, through the real boto3 adapter), records a RISK item in the table, and the notify
function announces it as ``Expiry Risk`` on the stack's bus, once. ``imagestreams check`` finds the same through
the admin function, waiting for its previews within one run."""

from __future__ import annotations

import json

from imagestreams_local import lifecycle
from tests.integration.conftest import REG, make_service, service_images
from tests.integration.test_check import by, check, healthy  # noqa: F401 - healthy: the stack check reads

ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}
KEEP_ONE = json.dumps({"rules": [{"rulePriority": 1, "description": "keep only the newest image",
                                  "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                                "countNumber": 1},
                                  "action": {"type": "expire"}}]})


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


def risks(stack):
    return [(e["detail-type"], e["detail"]) for e in stack.notifications() if e["detail-type"] == "Expiry Risk"]


def test_a_lifecycle_rule_that_would_expire_the_running_digest_is_announced(stack):
    ecr = stack.client("ecr")
    ecr.create_repository(repositoryName="team/web")
    make_service(stack)
    trigger = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)["id"]
    running = stack.push_image("team/web", "latest", seed="1", also=("1",))["detail"]["image-digest"]
    stack.pump()
    assert service_images(stack)[1]["web"] == f"{REG}/team/web@{running}"
    stack.advance(1)
    newer = stack.push_image("team/web", "2", seed="2")["detail"]["image-digest"]  # a build nobody deployed yet
    stack.pump()
    ecr.put_lifecycle_policy(repositoryName="team/web", lifecyclePolicyText=KEEP_ONE)
    stack.notifications()  # from here on: only what the reconciler finds

    first = stack.run_schedule("ReconcilerFunction")
    stack.pump()
    assert first["expiry"]["started"] == 1 and first["expiry"]["checked"] == 0  # the preview runs meanwhile
    assert risks(stack) == []

    stack.advance(seconds=lifecycle.PREVIEW_DELAY)
    second = stack.run_schedule("ReconcilerFunction")
    stack.pump()
    assert second["expiry"]["checked"] == 1 and second["expiry"]["atRisk"] == 1
    [(kind, detail)] = risks(stack)
    assert (detail["stream"], detail["digest"], detail["triggers"], detail["tags"]) == (
        "team/web", running, [trigger], ["1", "latest"])  # both tags head on it
    assert detail["rule"] == "rule 1: keep only the newest image"
    assert "would expire" in detail["message"] and newer not in detail["message"]

    # the next check finds the same risk: nothing new is announced
    stack.advance(15)
    stack.run_schedule("ReconcilerFunction")  # starts the next preview
    stack.advance(seconds=lifecycle.PREVIEW_DELAY)
    again = stack.run_schedule("ReconcilerFunction")
    stack.pump()
    assert again["expiry"]["checked"] == 1 and again["expiry"]["atRisk"] == 1
    assert risks(stack) == []


def test_check_reports_a_lifecycle_rule_that_would_expire_what_a_target_runs(stack, healthy):  # noqa: F811
    ecr = stack.client("ecr")
    [finding] = by(check(stack), "lifecycle", "team/web")
    assert (finding["status"], finding["message"]) == ("ok", "no lifecycle policy")
    running = service_images(stack)[1]["web"].rsplit("@", 1)[1]
    stack.push_image("team/web", "2", seed="2")  # newer, not deployed
    stack.pump()
    ecr.put_lifecycle_policy(repositoryName="team/web", lifecyclePolicyText=KEEP_ONE)
    [finding] = by(check(stack), "lifecycle", "team/web")
    assert (finding["status"], finding["message"]) == (
        "error", f"its lifecycle policy would expire digests targets run: {running}")
