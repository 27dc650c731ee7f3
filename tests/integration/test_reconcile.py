"""Reconciler and rollout tracking on the embedded AWS, wired by template.yaml (ScheduleV2, EventBridge rule)."""

from __future__ import annotations

from tests.integration.conftest import REG, make_service, service_images

ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


def test_scheduled_reconcile_repairs_lost_events_and_reports_drift(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    make_service(stack)
    make_service(stack, service="api")
    admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)
    tid_api = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target={**ECS, "service": "api"})["id"]
    first = stack.push_image("team/web", "latest", seed="1", also=("1",))
    stack.pump()
    lost = stack.push_image("team/web", "latest", seed="2", also=("2",), emit=False)  # EventBridge lost both events

    report = stack.run_schedule("ReconcilerFunction")
    stack.pump()
    assert report["complete"] is True and report["moves"] == 2 and report["drift"] == 0
    d2 = lost["detail"]["image-digest"]
    for service in ("web", "api"):  # the missed move is imported, and both targets follow it
        assert service_images(stack, service=service)[1]["web"] == f"{REG}/team/web@{d2}"
    entries = admin(stack, action="history", target="team/web:latest")["entries"]
    assert [(e["cause"], e["actor"]) for e in entries] == [("import", "reconciler"), ("push", "ecr")]
    assert entries[1]["digest"] == first["detail"]["image-digest"]

    ecs = stack.client("ecs")  # now someone changes api by hand
    hand = ecs.register_task_definition(family="api", containerDefinitions=[
        {"name": "web", "image": "nginx:hotfix", "memory": 128},
        {"name": "sidecar", "image": "fluent-bit:2", "memory": 64}])["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="prod", service="api", taskDefinition=hand)
    report = stack.run_schedule("ReconcilerFunction")
    stack.pump()
    assert report["drift"] == 1 and report["fired"] == 0
    assert service_images(stack, service="api")[1]["web"] == "nginx:hotfix"  # drift is left alone
    api = next(t for t in admin(stack, action="trigger.list")["triggers"] if t["id"] == tid_api)
    assert "nginx:hotfix" in api["drift"]
    # a second run finds everything in order
    again = stack.run_schedule("ReconcilerFunction")
    assert again["moves"] == 0 and again["fired"] == 0 and again["drift"] == 1


def test_reconcile_stops_before_its_deadline_and_resumes(stack):
    ecr = stack.client("ecr")
    for n in range(3):
        ecr.create_repository(repositoryName=f"team/r{n}")
        stack.push_image(f"team/r{n}", "latest", seed=str(n), emit=False)
    partial = stack.run_schedule("ReconcilerFunction", remaining_ms=10_000)  # below the 20 s safety margin
    assert partial["complete"] is False and partial["moves"] == 0
    done = stack.run_schedule("ReconcilerFunction")
    assert done["complete"] is True and done["moves"] == 3


def test_ecs_deployment_failed_event_marks_the_trigger_and_stops_refires(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    make_service(stack)
    tid = admin(stack, action="trigger.add", **{"from": "team/web:latest"}, target=ECS)["id"]
    stack.push_image("team/web", "latest", seed="1", also=("1",))
    stack.pump()
    good = service_images(stack)[0]
    d2 = stack.push_image("team/web", "latest", seed="2", also=("2",))["detail"]["image-digest"]
    stack.pump()
    ecs = stack.client("ecs")
    deployment = ecs.describe_services(cluster="prod", services=["web"])["services"][0]["deployments"][0]["id"]
    stack.emit({"source": "aws.ecs", "detail-type": "ECS Deployment State Change",
                "resources": ["arn:aws:ecs:us-east-1:123456789012:service/prod/web"],
                "detail": {"eventType": "ERROR", "eventName": "SERVICE_DEPLOYMENT_FAILED",
                           "deploymentId": deployment, "reason": "ECS deployment circuit breaker: tasks failed"}})
    stack.pump()
    ecs.update_service(cluster="prod", service="web",  # the circuit breaker rolls back to the last good revision
                       taskDefinition=good)
    failed = admin(stack, action="trigger.list")["triggers"][0]
    assert failed["id"] == tid and failed["status"] == "Failed" and failed["rolloutState"] == "FAILED"
    assert "circuit breaker" in failed["lastError"] and failed["lastTriggeredDigest"] == d2
    for _ in range(2):  # no redeploy loop, and the restored revision is not drift
        report = stack.run_schedule("ReconcilerFunction")
        stack.pump()
        assert (report["fired"], report["retried"], report["drift"]) == (0, 0, 0)
        assert service_images(stack)[0] == good
    deployed = admin(stack, action="deploy", id=tid)["triggers"][0]  # the explicit retry of the failed digest
    assert deployed["rolloutState"] != "FAILED" and service_images(stack)[1]["web"].endswith(d2)


def test_trigger_outside_the_allow_list_is_forbidden(stack, monkeypatch):
    stack.functions["AdminFunction"].environment["ALLOWED_ECS_CLUSTERS"] = "prod-*"
    answer = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest", "target": ECS})
    assert answer["error"]["type"] == "Forbidden"
    assert stack.invoke("AdminFunction", {"action": "trigger.list"})["result"]["triggers"] == []
