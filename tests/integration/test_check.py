"""``check`` against the embedded AWS: a healthy stack gives no error; a message parked in a dead-letter queue is an
error with the count; a trigger whose ECS service was deleted is an error. The embedded runner creates the stack's
tables, queues and rules but not its Lambda functions or its schedule, so the test creates those as `sam deploy`
would, and gives the admin function the variables naming them (as template.yaml does for a deployed stack).
Moto cannot simulate IAM policies: that check answers ``warn`` ("could not check") here and is covered by recorded
answers in tests/unit/test_check.py. Lifecycle policy previews are answered by the embedded AWS's test double."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import make_service

ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}
FUNCTIONS = {"INGEST_FUNCTION_NAME": "IngestFunction", "FANOUT_FUNCTION_NAME": "FanoutFunction",
             "DEPLOYER_FUNCTION_NAME": "DeployerFunction", "RECONCILER_FUNCTION_NAME": "ReconcilerFunction",
             "ROLLOUT_FUNCTION_NAME": "RolloutFunction", "GATES_FUNCTION_NAME": "GatesFunction",
             "NOTIFY_FUNCTION_NAME": "NotifyFunction"}
QUEUES = {"INGEST_DLQ_URL": "IngestDLQUrl", "FANOUT_DLQ_URL": "FanoutDLQUrl", "FIRE_DLQ_URL": "FireDLQUrl",
          "OPS_DLQ_URL": "OpsDLQUrl"}


@pytest.fixture
def healthy(stack):
    """The stack's functions and schedule (which the embedded runner does not create), the admin's settings naming
    them, a repository, a service on its head, and a finished reconciler run."""
    env: dict[str, str] = {"AWS_MAX_ATTEMPTS": "1"}  # what moto does not implement answers at once
    for var, logical in FUNCTIONS.items():
        name = f"imagestreams-{logical}"
        stack.create_image_function(name, "123456789012.dkr.ecr.us-east-1.amazonaws.com/tools/fn:1")
        env[var] = name
    add_mappings(stack)
    for var, output in QUEUES.items():
        env[var] = stack.outputs[output]
    env["INGEST_RULE_NAME"] = "imagestreams-IngestFunction-EcrImage"
    env["ROLLOUT_RULE_NAME"] = "imagestreams-RolloutFunction-Deployments"
    scheduler = stack.client("scheduler")
    scheduler.create_schedule(Name="imagestreams-Reconcile", ScheduleExpression="rate(15 minutes)",
                              FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": "arn:aws:lambda:us-east-1:123456789012:function:imagestreams-"
                                             "ReconcilerFunction", "RoleArn": "arn:aws:iam::123456789012:role/s"})
    env["RECONCILE_SCHEDULE_NAME"] = "imagestreams-Reconcile"
    env["SCHEDULE_DLQ_URL"] = stack.client("sqs").create_queue(QueueName="imagestreams-ScheduleDLQ")["QueueUrl"]
    for var, output in (("DEPLOYER_ROLE_ARN", "DeployerRoleArn"), ("RECONCILER_ROLE_ARN", "ReconcilerRoleArn"),
                        ("ADMIN_ROLE_ARN", "AdminRoleArn")):
        env[var] = stack.outputs.get(output) or f"arn:aws:iam::123456789012:role/imagestreams-{output}"
    stack.functions["AdminFunction"].environment.update(env)

    stack.client("ecr").create_repository(repositoryName="team/web")
    make_service(stack)
    stack.push_image("team/web", "latest", seed="1")
    stack.pump()
    answer = stack.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest", "target": ECS})
    assert answer["ok"], answer
    stack.pump()
    stack.run_schedule("ReconcilerFunction")
    return answer["result"]["id"]


def add_mappings(stack) -> str:
    """The gate clock's event source mapping (SQS -> the gates function), as SAM creates it, in moto. The table
    stream's mapping to the notify function is not created: moto would then invoke that (imageless) function on
    every table write, and the embedded runner delivers the stream itself."""
    return stack.client("lambda").create_event_source_mapping(
        EventSourceArn=stack.resolver.attrs[("GateClockQueue", "Arn")], FunctionName="imagestreams-GatesFunction",
        BatchSize=10)["UUID"]


def check(stack, **params):
    answer = stack.invoke("AdminFunction", {"action": "check", **params})
    assert answer["ok"], answer
    return answer["result"]["findings"]


def by(findings, check_name, subject=None):
    return [f for f in findings if f["check"] == check_name and (subject is None or f["subject"] == subject)]


def test_a_healthy_stack_has_no_error(stack, healthy):
    findings = check(stack)
    [stream_mapping] = by(findings, "mapping", "NotifyItemChanges")  # not created here (see add_mappings)
    assert stream_mapping["status"] == "error" and "no event source mapping from the table stream" in (
        stream_mapping["message"])
    assert [f for f in findings if f["status"] == "error" and f is not stream_mapping] == []
    for name in ("config", "function", "rule", "schedule", "dlq", "reconciler", "target"):
        assert by(findings, name) and all(f["status"] == "ok" for f in by(findings, name)), by(findings, name)
    assert len(by(findings, "function")) == 7 and len(by(findings, "dlq")) == 7 and len(by(findings, "rule")) == 5
    assert by(findings, "mapping", "GateClock")[0]["status"] == "ok"
    assert not by(findings, "notify-topic")  # no NotificationTopicArn: nothing to check
    assert by(findings, "reconciler")[0]["message"].endswith("no errors")
    # what moto cannot answer is reported as not checked, never as a pass or a failure
    assert {f["status"] for f in by(findings, "permissions")} == {"warn"}
    assert [(f["status"], f["message"]) for f in by(findings, "lifecycle")] == [("ok", "no lifecycle policy")]


def test_a_parked_message_is_an_error_with_its_count(stack, healthy):
    sqs = stack.client("sqs")
    url = stack.outputs["FireDLQUrl"]
    for n in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}), MessageGroupId="g",
                         MessageDeduplicationId=str(n))
    findings = check(stack)
    [fire] = by(findings, "dlq", "FireDLQ")
    assert fire["status"] == "error"
    assert fire["message"].startswith("2 messages")
    assert url in fire["fix"]
    assert all(f["status"] == "ok" for f in by(findings, "dlq") if f["subject"] != "FireDLQ")


def test_a_trigger_on_a_deleted_service_is_an_error(stack, healthy):
    ecs = stack.client("ecs")
    ecs.update_service(cluster="prod", service="web", desiredCount=0)
    ecs.delete_service(cluster="prod", service="web", force=True)
    findings = check(stack, trigger=healthy)
    [target] = by(findings, "target")
    assert target["status"] == "error" and "web" in target["message"]
    assert f"trigger remove {healthy}" in target["fix"]
    assert not by(findings, "dlq")  # one trigger: only its own checks
