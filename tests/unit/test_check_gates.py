"""``check`` for gates and notifications: the gates and notify functions, their rules, their event source mappings and
dead-letter queues, the notification topic's policy, and whether a scan or signature gate can ever get its evidence
(scan-on-push / enhanced scanning, ECR managed signing). On the in-memory ports with a scripted Diagnosis, and the
boto3 adapter's reads against botocore's Stubber with answers shaped as the AWS API reference documents them
(recorded, not live: the embedded AWS has neither ECR signing nor registry scanning configurations)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imagestreams import check_gates
from imagestreams.adapters.diagnose import AwsDiagnosis
from imagestreams.admin import dispatch
from imagestreams.check import FUNCTIONS, QUEUES, RULES, TOPIC, Unreadable
from imagestreams.gates import parse_gates
from imagestreams.model import EcsTarget, StreamTag
from imagestreams.policytags import Policy
from tests.unit.test_check import ACCOUNT, ENV, FakeDiagnosis, S, World, one
from tests.unit.test_template import FUNCTIONS as TEMPLATE_FUNCTIONS
from tests.unit.test_template import resolver, resources, statements

TOPIC_ARN = f"arn:aws:sns:us-east-1:{ACCOUNT}:team-alerts"
EVENTS_MAY_PUBLISH = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "Events", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish",
    "Resource": TOPIC_ARN}]})
DEFAULT_TOPIC_POLICY = json.dumps({"Version": "2008-10-17", "Id": "__default_policy_ID", "Statement": [{
    "Sid": "__default_statement_ID", "Effect": "Allow", "Principal": {"AWS": "*"},
    "Action": ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:Subscribe", "SNS:Publish"],
    "Resource": TOPIC_ARN, "Condition": {"StringEquals": {"AWS:SourceOwner": ACCOUNT}}}]})
SCAN = [{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": 60}]
SIGNATURE = [{"type": "signature", "timeoutMinutes": 30}]
U1, U2 = "6f1c5c4a-0b3e-4f6e-9d3a-1a2b3c4d5e01", "6f1c5c4a-0b3e-4f6e-9d3a-1a2b3c4d5e02"  # mapping UUIDs
PROFILE = f"arn:aws:signer:us-east-1:{ACCOUNT}:/signing-profiles/imagestreams"


class GateDiagnosis(FakeDiagnosis):
    """Healthy answers for the gate and notification reads too; counts the registry reads."""

    def __init__(self) -> None:
        super().__init__()
        self.topics: dict[str, dict[str, str]] = {TOPIC_ARN: {"Policy": EVENTS_MAY_PUBLISH}}
        self.scan_type = "BASIC"
        self.scanning: dict[str, dict[str, Any] | None] = {S: {"scanOnPush": True, "frequency": "SCAN_ON_PUSH"}}
        self.signing: list[dict[str, Any]] | None = [
            {"signingProfileArn": PROFILE, "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD_MATCH"}]}]
        self.reads: list[str] = []

    def topic_attributes(self, topic_arn):
        self._maybe("topic")
        return self.topics.get(topic_arn)

    def registry_scan_type(self):
        self.reads.append("registry")
        self._maybe("registry")
        return self.scan_type

    def repository_scanning(self, repository):
        self.reads.append(f"repository {repository}")
        self._maybe("repository")
        return self.scanning.get(repository)

    def signing_configuration(self):
        self.reads.append("signing")
        self._maybe("signing")
        return self.signing


class GateWorld(World):
    def __init__(self) -> None:
        super().__init__()
        self.aws = GateDiagnosis()
        self.streams.diagnosis = lambda: self.aws

    def gated_trigger(self, gates: list[dict[str, Any]]):
        self.push("prod", 1)
        return self.ecs_trigger(gates=parse_gates(gates))

    def gated_policy(self, tag: str, gates: list[dict[str, Any]]) -> Policy:
        return self.store.put_policy(Policy(StreamTag(S, tag), {"follow": "prod"}, tuple(gates)), None)

    def findings(self, trigger_id: str | None = None, env: dict | None = None, topic: bool = True) -> list[dict]:
        env = dict(ENV if env is None else env)
        if topic:
            env[TOPIC] = TOPIC_ARN
        return super().findings(trigger_id, env)


def of(findings: list[dict], check: str) -> list[dict]:
    return [f for f in findings if f["check"] == check]


# ---------------------------------------------------------------------------------------- the whole picture

def test_a_healthy_stack_with_gates_and_a_topic_lists_every_new_check_ok():
    w = GateWorld()
    w.gated_trigger(SCAN + SIGNATURE + [{"type": "approval"}])
    w.gated_policy("stable", SCAN)
    findings = w.findings()
    assert {f["status"] for f in findings} == {"ok"}, [f for f in findings if f["status"] != "ok"]
    assert {f["subject"] for f in of(findings, "function")} >= {"Gates", "Notify"}
    assert {f["subject"] for f in of(findings, "rule")} >= {"EcrImageScan", "Inspector2Scan", "SignerJobStatusChange"}
    assert {f["subject"] for f in of(findings, "dlq")} >= {"GateClockDLQ", "NotifyDLQ"}
    assert {f["subject"] for f in of(findings, "mapping")} == {"NotifyItemChanges", "GateClock"}
    assert one(findings, "notify-topic")["message"].startswith(f"the policy of {TOPIC_ARN} lets EventBridge publish")
    assert {f["subject"] for f in of(findings, "scan-gate")} == {"tr-00000000000e", f"{S}:stable"}
    assert one(findings, "scan-gate", "tr-00000000000e")["message"] == f"{S} is scanned on push (basic scanning)"
    assert one(findings, "signature-gate", "tr-00000000000e")["message"] == (
        f"ECR signs {S}'s images on push with {PROFILE}")


def test_no_gates_and_no_topic_means_none_of_their_checks_and_no_registry_reads():
    w = GateWorld()
    w.push("prod", 1)
    w.trigger("tr-00000000000e", EcsTarget("prod", "web", "app"), gates=parse_gates([{"type": "approval"}]))
    findings = w.findings(topic=False)
    assert not of(findings, "notify-topic") and not of(findings, "scan-gate") and not of(findings, "signature-gate")
    assert w.aws.reads == []


def test_missing_gate_and_notify_settings_warn_and_name_the_variables():
    w = GateWorld()
    env = {k: v for k, v in ENV.items() if k not in ("GATES_FUNCTION_NAME", "NOTIFY_DLQ_URL", "SIGNING_RULE_NAME")}
    f = one(w.findings(env=env), "config")
    assert f["status"] == "warn"
    for var in ("GATES_FUNCTION_NAME", "NOTIFY_DLQ_URL", "SIGNING_RULE_NAME"):
        assert var in f["message"]


# ---------------------------------------------------------------------------------------- functions, rules, DLQs

def test_gates_and_notify_functions_missing_or_failed_are_errors():
    w = GateWorld()
    del w.aws.functions["stack-Gates"]
    w.aws.functions["stack-Notify"] = {"state": "Failed", "lastUpdateStatus": "Failed"}
    findings = w.findings()
    gates = one(findings, "function", "Gates")
    assert gates["status"] == "error" and gates["message"] == "function stack-Gates does not exist"
    notify = one(findings, "function", "Notify")
    assert notify["status"] == "error" and "stack-Notify" in notify["fix"]


@pytest.mark.parametrize("label, name", [("EcrImageScan", "stack-Scans"), ("Inspector2Scan", "stack-EnhancedScans"),
                                         ("SignerJobStatusChange", "stack-Signing")])
def test_a_disabled_or_missing_gate_rule_is_an_error_with_the_fix(label, name):
    w = GateWorld()
    w.aws.rules[name] = "DISABLED"
    f = one(w.findings(), "rule", label)
    assert f["status"] == "error" and f["fix"] == f"aws events enable-rule --name {name}"
    del w.aws.rules[name]
    f = one(w.findings(), "rule", label)
    assert f["status"] == "error" and "does not exist" in f["message"]


def test_parked_gate_wakeups_and_notifications_are_errors_with_count_and_age():
    w = GateWorld()
    w.aws.queues[ENV["GATE_CLOCK_DLQ_URL"]] = (3, 2 * 3600 + 5)
    w.aws.queues[ENV["NOTIFY_DLQ_URL"]] = (1, None)
    findings = w.findings()
    clock = one(findings, "dlq", "GateClockDLQ")
    assert clock["status"] == "error" and clock["message"] == "3 messages, oldest 2 h"
    assert ENV["GATE_CLOCK_DLQ_URL"] in clock["fix"] and "redrive" in clock["fix"]
    notify = one(findings, "dlq", "NotifyDLQ")
    assert notify["status"] == "error" and notify["message"] == "1 message, age of the oldest unknown"


# ---------------------------------------------------------------------------------------- event source mappings

def test_a_disabled_stream_mapping_is_an_error_with_the_enable_command():
    w = GateWorld()
    w.aws.mappings["stack-Notify"][0]["state"] = "Disabled"
    f = one(w.findings(), "mapping", "NotifyItemChanges")
    assert f["status"] == "error" and "Disabled" in f["message"]
    assert f["fix"] == "aws lambda update-event-source-mapping --uuid u-notify --enabled"
    assert one(w.findings(), "mapping", "GateClock")["status"] == "ok"


def test_a_missing_mapping_is_an_error_and_a_failing_one_a_warning():
    w = GateWorld()
    w.aws.mappings["stack-Gates"] = []
    f = one(w.findings(), "mapping", "GateClock")
    assert f["status"] == "error" and "no event source mapping from the gate clock queue" in f["message"]
    w.aws.mappings["stack-Notify"][0]["lastResult"] = "PROBLEM: Function call failed"
    f = one(w.findings(), "mapping", "NotifyItemChanges")
    assert f["status"] == "warn" and "Function call failed" in f["message"]
    w.aws.mappings["stack-Notify"][0].update(state="Updating", reason="USER_INITIATED")
    f = one(w.findings(), "mapping", "NotifyItemChanges")
    assert f["status"] == "warn" and "Updating (USER_INITIATED)" in f["message"]


def test_mappings_unreadable_is_a_warning_naming_the_permission():
    w = GateWorld()
    w.aws.unreadable.add("mapping")
    for f in of(w.findings(), "mapping"):
        assert f["status"] == "warn" and f["fix"] == "allow svc:mapping to the admin function's role"


# ---------------------------------------------------------------------------------------- the notification topic

def test_a_topic_policy_without_eventbridge_warns_with_the_statement_that_fixes_it():
    w = GateWorld()
    w.aws.topics[TOPIC_ARN] = {"Policy": DEFAULT_TOPIC_POLICY}  # what a new topic has: no service may publish
    f = one(w.findings(), "notify-topic")
    assert f["status"] == "warn" and "does not let EventBridge publish" in f["message"]
    statement = json.loads(f["fix"].split("add this statement to the topic's policy: ", 1)[1])
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sns:Publish"
    assert statement["Resource"] == TOPIC_ARN
    assert statement["Condition"] == {"ArnLike": {"aws:SourceArn": f"arn:aws:events:us-east-1:{ACCOUNT}:rule/*"}}
    # the statement given is enough
    policy = json.loads(DEFAULT_TOPIC_POLICY)
    policy["Statement"].append(statement)
    w.aws.topics[TOPIC_ARN] = {"Policy": json.dumps(policy)}
    assert one(w.findings(), "notify-topic")["status"] == "ok"


@pytest.mark.parametrize("statement, ok", [
    ({"Principal": "*", "Action": "sns:*", "Resource": "*"}, True),
    ({"Principal": {"Service": ["events.amazonaws.com"]}, "Action": ["SNS:Publish"], "Resource": TOPIC_ARN}, True),
    ({"Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish", "Resource": TOPIC_ARN,
      "Condition": {"StringEquals": {"aws:SourceAccount": "210987654321"}}}, False),  # another account's rules
    ({"Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Subscribe", "Resource": TOPIC_ARN}, False),
    ({"Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish",
      "Resource": f"arn:aws:sns:us-east-1:{ACCOUNT}:other"}, False),
    ({"Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish", "Resource": TOPIC_ARN,
      "Effect": "Deny"}, False),
])
def test_which_topic_policies_let_eventbridge_publish(statement, ok):
    policy = json.dumps({"Statement": [{"Effect": "Allow", **statement}]})
    assert check_gates.events_may_publish(policy, TOPIC_ARN, ACCOUNT) is ok
    assert not check_gates.events_may_publish(None, TOPIC_ARN, ACCOUNT)
    assert not check_gates.events_may_publish("not json", TOPIC_ARN, ACCOUNT)


def test_a_missing_topic_is_an_error_and_the_aws_managed_key_a_warning():
    w = GateWorld()
    w.aws.topics.clear()
    f = one(w.findings(), "notify-topic")
    assert f["status"] == "error" and "does not exist" in f["message"] and "NotificationTopicArn" in f["fix"]
    w.aws.topics[TOPIC_ARN] = {"Policy": EVENTS_MAY_PUBLISH, "KmsMasterKeyId": "alias/aws/sns"}
    f = one(w.findings(), "notify-topic")
    assert f["status"] == "warn" and "customer managed key" in f["fix"]
    w.aws.topics[TOPIC_ARN]["KmsMasterKeyId"] = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k-1"
    f = one(w.findings(), "notify-topic")
    assert f["status"] == "ok" and "key policy must let events.amazonaws.com use it" in f["message"]


# ---------------------------------------------------------------------------------------- scan gates

def test_a_scan_gate_on_an_unscanned_repository_warns_with_the_scan_on_push_fix():
    w = GateWorld()
    w.gated_trigger(SCAN)
    w.aws.scanning[S] = {"scanOnPush": False, "frequency": "MANUAL"}
    f = one(w.findings(), "scan-gate", "tr-00000000000e")
    assert f["status"] == "warn" and "can only time out" in f["message"]
    assert f["fix"].startswith(f"aws ecr put-image-scanning-configuration --repository-name {S} "
                               "--image-scanning-configuration scanOnPush=true")


def test_enhanced_scanning_passes_when_a_rule_covers_the_repository_and_warns_when_none_does():
    w = GateWorld()
    w.gated_policy("stable", SCAN)
    w.aws.scan_type = "ENHANCED"
    w.aws.scanning[S] = {"scanOnPush": False, "frequency": "CONTINUOUS_SCAN"}
    f = one(w.findings(), "scan-gate", f"{S}:stable")
    assert f["status"] == "ok" and f["message"] == f"{S} is scanned by enhanced scanning (continuous scan)"
    w.aws.scanning[S] = {"scanOnPush": True, "frequency": "MANUAL"}  # the repository flag means nothing then
    f = one(w.findings(), "scan-gate", f"{S}:stable")
    assert f["status"] == "warn" and "aws ecr put-registry-scanning-configuration --scan-type ENHANCED" in f["fix"]
    assert f'"filter":"{S}"' in f["fix"]


def test_scan_gate_reads_once_per_repository_and_reports_what_it_cannot_read():
    w = GateWorld()
    w.gated_trigger(SCAN)
    w.trigger("tr-00000000000f", EcsTarget("prod", "web", "sidecar"), gates=parse_gates(SCAN + SIGNATURE))
    w.gated_policy("stable", SCAN + SIGNATURE)
    findings = w.findings()
    assert len(of(findings, "scan-gate")) == 3 and len(of(findings, "signature-gate")) == 2
    assert sorted(w.aws.reads) == ["registry", f"repository {S}", "signing"]
    w.aws.unreadable.add("registry")  # the repository's own answer still decides
    assert {f["status"] for f in of(w.findings(), "scan-gate")} == {"ok"}
    w.aws.unreadable.add("repository")
    f = one(w.findings(), "scan-gate", "tr-00000000000e")
    assert f["status"] == "warn" and f["message"].startswith("could not check")
    assert f["fix"] == "allow svc:repository to the admin function's role"


def test_a_scan_gate_on_a_missing_repository_warns():
    w = GateWorld()
    w.gated_policy("stable", SCAN)
    w.aws.scanning.clear()
    f = one(w.findings(), "scan-gate")
    assert f["status"] == "warn" and "not found" in f["message"]


# ---------------------------------------------------------------------------------------- signature gates

def test_a_signature_gate_without_a_signing_configuration_warns():
    w = GateWorld()
    w.gated_trigger(SIGNATURE)
    w.aws.signing = None
    f = one(w.findings(), "signature-gate", "tr-00000000000e")
    assert f["status"] == "warn" and "no signing configuration" in f["message"]
    assert "Notation or cosign" in f["message"] and "aws ecr put-signing-configuration" in f["fix"]
    w.aws.signing = [{"signingProfileArn": PROFILE, "repositoryFilters": [
        {"filter": "other/*", "filterType": "WILDCARD_MATCH"}]}]
    f = one(w.findings(), "signature-gate", "tr-00000000000e")
    assert f["status"] == "warn" and f"covers {S}" in f["message"]
    w.aws.signing = [{"signingProfileArn": PROFILE}]  # no filter: every repository
    assert one(w.findings(), "signature-gate", "tr-00000000000e")["status"] == "ok"


# ---------------------------------------------------------------------------------------- one trigger, the action

def test_one_trigger_checks_its_own_gates_only(monkeypatch):
    for k, v in {**ENV, TOPIC: TOPIC_ARN}.items():
        monkeypatch.setenv(k, v)
    w = GateWorld()
    t = w.gated_trigger(SCAN)
    w.gated_policy("stable", SIGNATURE)
    answer = dispatch(w.streams, {"action": "check", "trigger": t.id})
    assert answer["ok"], answer
    assert {f["check"] for f in answer["result"]["findings"]} == {"permissions", "target", "scan-gate", "lifecycle"}
    writes = w.store.writes
    answer = dispatch(w.streams, {"action": "check"})
    assert {"mapping", "notify-topic", "scan-gate", "signature-gate"} <= {
        f["check"] for f in answer["result"]["findings"]}
    assert w.store.writes == writes  # read-only


# ---------------------------------------------------------------------------------------- the template

def test_the_admin_function_names_every_resource_check_reads_and_may_read_it():
    env = TEMPLATE_FUNCTIONS["AdminFunction"]["Environment"]["Variables"]
    for var in [*FUNCTIONS.values(), *RULES.values(), *QUEUES.values(), TOPIC]:
        assert var in env, var
    assert resolver()(env[TOPIC]) == ""  # no topic by default
    granted = statements("AdminFunction")
    queues = next(s for s in granted if s["Sid"] == "CheckQueues")
    assert {"<GateClockDLQ.Arn>", "<NotifyDLQ.Arn>"} <= set(resources(queues))
    actions = {a for s in granted for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"lambda:ListEventSourceMappings", "ecr:GetRegistryScanningConfiguration", "ecr:GetSigningConfiguration",
            "ecr:BatchGetRepositoryScanningConfiguration", "events:DescribeRule"} <= actions
    assert "sns:GetTopicAttributes" not in actions
    with_topic = [s for s in statements("AdminFunction", NotificationTopicArn=TOPIC_ARN)
                  if "sns:GetTopicAttributes" in s["Action"]]
    assert [resources(s) for s in with_topic] == [[TOPIC_ARN]]


# ---------------------------------------------------------------------------------------- the adapter, stubbed

def _stubbed(service: str):
    client = boto3.client(service, region_name="us-east-1")
    return client, Stubber(client)


def test_event_sources_read_every_page():
    lam, stub = _stubbed("lambda")
    stream = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/t/stream/2026-01-01T00:00:00.000"
    stub.add_response("list_event_source_mappings", {"EventSourceMappings": [
        {"UUID": U1, "EventSourceArn": stream, "State": "Enabled", "LastProcessingResult": "OK"}],
        "NextMarker": "m"}, {"FunctionName": "stack-Notify"})
    stub.add_response("list_event_source_mappings", {"EventSourceMappings": [
        {"UUID": U2, "EventSourceArn": "arn:aws:sqs:us-east-1:1:q", "State": "Disabled",
         "StateTransitionReason": "USER_INITIATED"}]}, {"FunctionName": "stack-Notify", "Marker": "m"})
    with stub:
        out = AwsDiagnosis(lambda s: lam).event_sources("stack-Notify")
    assert [(m["uuid"], m["state"], m["reason"]) for m in out] == [
        (U1, "Enabled", ""), (U2, "Disabled", "USER_INITIATED")]
    stub.assert_no_pending_responses()


def test_topic_attributes_and_a_missing_topic():
    sns, stub = _stubbed("sns")
    stub.add_response("get_topic_attributes", {"Attributes": {"Policy": EVENTS_MAY_PUBLISH, "TopicArn": TOPIC_ARN}},
                      {"TopicArn": TOPIC_ARN})
    stub.add_client_error("get_topic_attributes", "NotFound", "Topic does not exist", http_status_code=404)
    stub.add_client_error("get_topic_attributes", "AuthorizationError", "not authorized", http_status_code=403)
    diag = AwsDiagnosis(lambda s: sns)
    with stub:
        assert diag.topic_attributes(TOPIC_ARN)["Policy"] == EVENTS_MAY_PUBLISH
        assert diag.topic_attributes(TOPIC_ARN) is None
        with pytest.raises(Unreadable, match="AuthorizationError"):
            diag.topic_attributes(TOPIC_ARN)


def test_registry_and_repository_scanning():
    ecr, stub = _stubbed("ecr")
    stub.add_response("get_registry_scanning_configuration", {"registryId": ACCOUNT, "scanningConfiguration": {
        "scanType": "ENHANCED", "rules": [{"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [
            {"filter": "team/*", "filterType": "WILDCARD"}]}]}}, {})
    stub.add_response("batch_get_repository_scanning_configuration", {"scanningConfigurations": [{
        "repositoryArn": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{S}", "repositoryName": S, "scanOnPush": False,
        "scanFrequency": "CONTINUOUS_SCAN", "appliedScanFilters": [{"filter": "team/*", "filterType": "WILDCARD"}]}],
        "failures": []}, {"repositoryNames": [S]})
    stub.add_response("batch_get_repository_scanning_configuration", {"scanningConfigurations": [], "failures": [
        {"repositoryName": "gone", "failureCode": "REPOSITORY_NOT_FOUND", "failureReason": "not found"}]},
        {"repositoryNames": ["gone"]})
    stub.add_client_error("batch_get_repository_scanning_configuration", "RepositoryNotFoundException", "none")
    diag = AwsDiagnosis(lambda s: ecr)
    with stub:
        assert diag.registry_scan_type() == "ENHANCED"
        assert diag.repository_scanning(S) == {"scanOnPush": False, "frequency": "CONTINUOUS_SCAN"}
        assert diag.repository_scanning("gone") is None
        assert diag.repository_scanning("gone") is None
    stub.assert_no_pending_responses()


def test_signing_configuration_rules_none_and_denied():
    ecr, stub = _stubbed("ecr")
    rules = [{"signingProfileArn": PROFILE,
              "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD_MATCH"}]}]
    stub.add_response("get_signing_configuration", {"registryId": ACCOUNT, "signingConfiguration": {"rules": rules}},
                      {})
    stub.add_client_error("get_signing_configuration", "SigningConfigurationNotFoundException", "none")
    stub.add_client_error("get_signing_configuration", "AccessDeniedException", "no")
    diag = AwsDiagnosis(lambda s: ecr)
    with stub:
        assert diag.signing_configuration() == rules
        assert diag.signing_configuration() is None
        with pytest.raises(Unreadable) as denied:
            diag.signing_configuration()
    assert denied.value.denied == "ecr:GetSigningConfiguration"


def test_the_adapter_answers_drive_the_checks_end_to_end():
    """The boto3 adapter's answers, stubbed as AWS documents them, through the checker: an unscanned repository and
    no signing configuration give the two warnings."""
    ecr, stub = _stubbed("ecr")
    stub.add_response("get_registry_scanning_configuration", {"registryId": ACCOUNT, "scanningConfiguration": {
        "scanType": "BASIC", "rules": []}}, {})
    stub.add_response("batch_get_repository_scanning_configuration", {"scanningConfigurations": [{
        "repositoryName": S, "scanOnPush": False, "scanFrequency": "MANUAL"}], "failures": []},
        {"repositoryNames": [S]})
    stub.add_client_error("get_signing_configuration", "SigningConfigurationNotFoundException", "none")
    w = GateWorld()
    w.gated_trigger(SCAN + SIGNATURE)
    diag = AwsDiagnosis(lambda s: ecr)
    w.aws.registry_scan_type, w.aws.repository_scanning = diag.registry_scan_type, diag.repository_scanning
    w.aws.signing_configuration = diag.signing_configuration
    with stub:
        findings = w.findings()
    assert one(findings, "scan-gate")["status"] == "warn" and one(findings, "signature-gate")["status"] == "warn"
    stub.assert_no_pending_responses()
