"""``check`` for gates and notifications against the embedded AWS (moto): the notification topic's policy as SNS
answers it, a scan gate on a repository with and without scan-on-push (ECR's registry and repository scanning
configurations), and every call the whole diagnosis makes allowed by the admin function's role as template.yaml
declares it. The embedded registry has no signing configuration (the signature gate warns); the answers with one
are recorded in tests/unit/test_check_gates.py."""

from __future__ import annotations

import json
from typing import Any

import botocore.client
import pytest

from tests.e2e.test_iam_coverage import allowed, iam_requests, role_statements
from tests.integration.conftest import TEST_PARAMETERS
from tests.integration.test_check import by, check, healthy  # noqa: F401  (a fixture)

TOPIC_NAME = "team-alerts"
TOPIC_ARN = f"arn:aws:sns:us-east-1:123456789012:{TOPIC_NAME}"
SCAN = {"type": "scan", "blockAt": "HIGH", "timeoutMinutes": 60}
pytestmark = pytest.mark.usefixtures("healthy")  # the stack's functions, settings, a repository and a service


@pytest.fixture
def stack(embedded):
    """The stack deployed with a notification topic (``NotificationTopicArn``), which then exists in SNS."""
    embedded.reset()
    embedded.deploy(parameters={**TEST_PARAMETERS, "NotificationTopicArn": TOPIC_ARN})
    embedded.client("sns").create_topic(Name=TOPIC_NAME)
    return embedded


def gated(stack) -> str:
    """The healthy stack's trigger, given a scan and a signature gate."""
    [trigger] = stack.invoke("AdminFunction", {"action": "trigger.list"})["result"]["triggers"]
    answer = stack.invoke("AdminFunction", {"action": "trigger.gates", "id": trigger["id"],
                                            "gates": [SCAN, {"type": "signature", "timeoutMinutes": 30}]})
    assert answer["ok"], answer
    return trigger["id"]


def test_a_new_topic_does_not_let_eventbridge_publish_until_the_statement_given_is_added(stack):
    sns = stack.client("sns")
    [topic] = by(check(stack), "notify-topic")
    assert topic["status"] == "warn" and TOPIC_ARN in topic["message"]
    statement = json.loads(topic["fix"].split("add this statement to the topic's policy: ", 1)[1])
    policy = json.loads(sns.get_topic_attributes(TopicArn=TOPIC_ARN)["Attributes"]["Policy"])
    policy["Statement"].append(statement)
    sns.set_topic_attributes(TopicArn=TOPIC_ARN, AttributeName="Policy", AttributeValue=json.dumps(policy))
    [topic] = by(check(stack), "notify-topic")
    assert topic["status"] == "ok", topic
    sns.delete_topic(TopicArn=TOPIC_ARN)
    [topic] = by(check(stack), "notify-topic")
    assert topic["status"] == "error" and "does not exist" in topic["message"]


def test_a_scan_gate_needs_scan_on_push(stack):
    tid = gated(stack)
    [scan] = by(check(stack, trigger=tid), "scan-gate")
    assert scan["status"] == "warn" and "can only time out" in scan["message"]
    assert "put-image-scanning-configuration --repository-name team/web" in scan["fix"]
    # a registry-level scan-on-push rule (moto does not reflect the repository-level flag in
    # BatchGetRepositoryScanningConfiguration; AWS does: tests/unit/test_check_gates.py)
    stack.client("ecr").put_registry_scanning_configuration(scanType="BASIC", rules=[{
        "scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD"}]}])
    findings = check(stack, trigger=tid)
    [scan] = by(findings, "scan-gate")
    assert scan["status"] == "ok" and scan["message"] == "team/web is scanned on push (basic scanning)", scan
    [signature] = by(findings, "signature-gate")  # the embedded registry has no signing configuration
    assert signature["status"] == "warn" and "signing configuration" in signature["message"]


def test_every_call_of_a_full_check_is_allowed_by_the_admin_role(stack, monkeypatch):
    gated(stack)
    # the schedule's DLQ as the template names it (the fixture's stand-in queue is no resource of the stack)
    stack.functions["AdminFunction"].environment["SCHEDULE_DLQ_URL"] = stack.resolver.refs[
        "ReconcilerFunctionReconcileQueue"]
    recorded: list[tuple[str, str, dict[str, Any]]] = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def record(client: Any, operation: str, params: dict[str, Any]) -> Any:
        recorded.append((client.meta.service_model.service_name, operation, params))
        return make_api_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    findings = check(stack)
    monkeypatch.undo()
    operations = {op for _, op, _ in recorded}
    assert {"ListEventSourceMappings", "GetTopicAttributes", "GetRegistryScanningConfiguration",
            "BatchGetRepositoryScanningConfiguration", "GetSigningConfiguration", "DescribeRule",
            "GetQueueAttributes", "GetFunctionConfiguration"} <= operations
    statements = role_statements(stack, "AdminFunction")
    denied = sorted({f"{action} on {resource}" for service, op, params in recorded
                     for action, resource, context in iam_requests(stack, service, op, params)
                     if not allowed(statements, action, resource, context)})
    assert denied == []
    assert len(by(findings, "rule")) == 5 and len(by(findings, "dlq")) == 7
