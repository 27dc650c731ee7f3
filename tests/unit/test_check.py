"""``check`` on the in-memory ports with a scripted Diagnosis: each check's ok / warn / error with its fix, bad input
refused with nothing written; and the boto3 adapter's calls that the embedded AWS cannot answer (IAM policy
simulation, EKS access entries, lifecycle policy previews) against botocore's Stubber with answers shaped as the AWS
API reference documents them (recorded, not live)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import boto3
import pytest
from botocore.stub import Stubber

from imagestreams import check as check_mod
from imagestreams.adapters.diagnose import AwsDiagnosis
from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.check import Checker, Stack, Unreadable
from imagestreams.cli import main as cli_main
from imagestreams.errors import TargetError
from imagestreams.model import EcsTarget, EksTarget, LambdaTarget, StreamTag, TaskPins, Trigger, pinned_ref
from imagestreams.ports import TargetState
from imagestreams.services import ImageStreams
from tests.conftest import digest

S = "team/web"
ACCOUNT = "123456789012"
REG = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/stack-DeployerFunctionRole"
ROLES = {"Deployer": DEPLOYER, "Reconciler": f"arn:aws:iam::{ACCOUNT}:role/stack-ReconcilerFunctionRole",
         "Admin": f"arn:aws:iam::{ACCOUNT}:role/stack-AdminFunctionRole"}
ENV = {
    "INGEST_FUNCTION_NAME": "stack-Ingest", "FANOUT_FUNCTION_NAME": "stack-Fanout",
    "DEPLOYER_FUNCTION_NAME": "stack-Deployer", "RECONCILER_FUNCTION_NAME": "stack-Reconciler",
    "ROLLOUT_FUNCTION_NAME": "stack-Rollout", "INGEST_RULE_NAME": "stack-EcrImage",
    "ROLLOUT_RULE_NAME": "stack-Deployments", "RECONCILE_SCHEDULE_NAME": "stack-Reconcile",
    "INGEST_DLQ_URL": "https://sqs/1/IngestDLQ", "FANOUT_DLQ_URL": "https://sqs/1/FanoutDLQ",
    "FIRE_DLQ_URL": "https://sqs/1/FireDLQ.fifo", "OPS_DLQ_URL": "https://sqs/1/OpsDLQ",
    "SCHEDULE_DLQ_URL": "https://sqs/1/ScheduleDLQ", "DEPLOYER_ROLE_ARN": ROLES["Deployer"],
    "RECONCILER_ROLE_ARN": ROLES["Reconciler"], "ADMIN_ROLE_ARN": ROLES["Admin"], "ACCOUNT_ID": ACCOUNT,
    "AWS_REGION": "us-east-1",
    # gates and notifications (their own checks: tests/unit/test_check_gates.py)
    "GATES_FUNCTION_NAME": "stack-Gates", "NOTIFY_FUNCTION_NAME": "stack-Notify", "SCAN_RULE_NAME": "stack-Scans",
    "ENHANCED_SCAN_RULE_NAME": "stack-EnhancedScans", "SIGNING_RULE_NAME": "stack-Signing",
    "GATE_CLOCK_DLQ_URL": "https://sqs/1/GateClockDLQ", "NOTIFY_DLQ_URL": "https://sqs/1/NotifyDLQ",
}
TABLE_STREAM = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/stack-StreamsTable/stream/2026-01-01T00:00:00.000"
CLOCK_QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:stack-GateClockQueue"
PULL_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "LambdaPull", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]})


class FakeDiagnosis:
    """Healthy answers, changed per test."""

    def __init__(self) -> None:
        self.functions = {name: {"state": "Active", "lastUpdateStatus": "Successful"}
                          for k, name in ENV.items() if k.endswith("_FUNCTION_NAME")}
        self.rules = {name: "ENABLED" for k, name in ENV.items() if k.endswith("_RULE_NAME")}
        self.schedules = {ENV["RECONCILE_SCHEDULE_NAME"]: {"state": "ENABLED", "expression": "rate(15 minutes)"}}
        self.queues: dict[str, tuple[int, float | None]] = {
            url: (0, None) for k, url in ENV.items() if k.endswith("_DLQ_URL")}
        self.denied: set[str] = set()
        self.entries = {ROLES[label] for label in ROLES}
        self.policies: dict[str, str | None] = {S: PULL_POLICY}
        self.previews: dict[str, dict[str, str] | None] = {}
        self.unreadable: set[str] = set()
        self.simulated: list[tuple[str, list[str], str, dict | None]] = []
        self.mappings = {
            "stack-Notify": [{"uuid": "u-notify", "source": TABLE_STREAM, "state": "Enabled", "lastResult": "OK"}],
            "stack-Gates": [{"uuid": "u-clock", "source": CLOCK_QUEUE, "state": "Enabled"}]}

    def _maybe(self, what: str) -> None:
        if what in self.unreadable:
            raise Unreadable(f"{what}: access denied (AccessDenied)", denied=f"svc:{what}")

    def function(self, name):
        self._maybe("function")
        return self.functions.get(name)

    def rule(self, name):
        self._maybe("rule")
        return self.rules.get(name)

    def schedule(self, name):
        return self.schedules.get(name)

    def queue(self, url):
        return self.queues.get(url)

    def simulate(self, role_arn, actions, resource, context=None):
        self._maybe("simulate")
        self.simulated.append((role_arn, actions, resource, context))
        return {a: "implicitDeny" if a in self.denied else "allowed" for a in actions}

    def access_entry(self, cluster, principal_arn):
        return principal_arn in self.entries

    def repository_policy(self, repository):
        return self.policies.get(repository)

    def lifecycle_preview(self, repository):
        self._maybe("lifecycle")
        return self.previews.get(repository)

    def event_sources(self, function):
        self._maybe("mapping")
        return self.mappings.get(function, [])


class FakeDriver:
    def __init__(self, image: str | Exception) -> None:
        self.image = image

    def inspect(self, target, deployment):
        if isinstance(self.image, Exception):
            raise self.image
        return TargetState(self.image)


class World:
    def __init__(self) -> None:
        self.store, self.registry, self.ecs = MemoryStore(), MemoryRegistry(REG), MemoryEcs()
        self.eks, self.fn = FakeDriver(pinned_ref(REG, S, digest(1))), FakeDriver(pinned_ref(REG, S, digest(1)))
        self.streams = ImageStreams(self.store, self.registry, {"ecs": self.ecs, "eks": self.eks, "lambda": self.fn},
                                    None, clock=lambda: NOW)
        self.aws = FakeDiagnosis()
        self.streams.diagnosis = lambda: self.aws
        self.store.record_run(NOW - timedelta(minutes=5), 0, True)

    def push(self, tag: str, n: int) -> str:
        d = digest(n)
        if d not in self.registry.images.get(S, set()):
            self.registry.push(S, d, pushed_at=NOW - timedelta(days=1))
        self.registry.set(S, tag, d)
        self.streams.sync(StreamTag(S, tag))
        return d

    def trigger(self, tid: str, target, **kw) -> Trigger:
        trigger = Trigger(tid, StreamTag(S, "prod"), target, status="Deployed", **kw)
        self.store.add_trigger(trigger)
        return trigger

    def ecs_trigger(self, n: int = 1, **kw) -> Trigger:
        self.ecs.images[("prod", "web")] = {"app": pinned_ref(REG, S, digest(n))}
        return self.trigger("tr-00000000000e", EcsTarget("prod", "web", "app"), last_triggered_digest=digest(n),
                            **kw)

    def findings(self, trigger_id: str | None = None, env: dict | None = None) -> list[dict]:
        stack = Stack.from_env(ENV if env is None else env)
        return Checker(self.streams, self.aws, stack, now=NOW).run(trigger_id)


def one(findings: list[dict], check: str, subject: str | None = None) -> dict:
    found = [f for f in findings if f["check"] == check and (subject is None or f["subject"] == subject)]
    assert len(found) == 1, (check, subject, findings)
    return found[0]


def test_a_healthy_stack_lists_every_check_ok():
    w = World()
    w.push("prod", 1)
    w.ecs_trigger()
    findings = w.findings()
    assert {f["status"] for f in findings} == {"ok"}, [f for f in findings if f["status"] != "ok"]
    checks = {f["check"] for f in findings}
    assert checks == {"config", "function", "rule", "schedule", "dlq", "reconciler", "permissions", "target",
                      "lifecycle", "mapping"}  # no notification topic, no gates: nothing of theirs to check
    assert len([f for f in findings if f["check"] == "function"]) == 7
    assert len([f for f in findings if f["check"] == "dlq"]) == 7
    assert len([f for f in findings if f["check"] == "rule"]) == 5
    assert all(set(f) == {"check", "subject", "status", "message", "fix"} for f in findings)


def test_missing_settings_warn_and_name_the_variables():
    w = World()
    env = {k: v for k, v in ENV.items() if k not in ("FIRE_DLQ_URL", "RECONCILE_SCHEDULE_NAME")}
    f = one(w.findings(env=env), "config")
    assert f["status"] == "warn"
    assert "FIRE_DLQ_URL" in f["message"] and "RECONCILE_SCHEDULE_NAME" in f["message"]
    assert "environment variables" in f["fix"]


def test_function_missing_or_failed_is_an_error():
    w = World()
    del w.aws.functions["stack-Fanout"]
    w.aws.functions["stack-Deployer"] = {"state": "Failed", "lastUpdateStatus": "Failed"}
    findings = w.findings()
    assert one(findings, "function", "Fanout")["status"] == "error"
    assert "does not exist" in one(findings, "function", "Fanout")["message"]
    deployer = one(findings, "function", "Deployer")
    assert deployer["status"] == "error" and "Failed" in deployer["message"]
    assert "stack-Deployer" in deployer["fix"]


def test_disabled_rule_is_an_error_with_the_enable_command():
    w = World()
    w.aws.rules["stack-Deployments"] = "DISABLED"
    f = one(w.findings(), "rule", "EcsDeploymentEvents")
    assert f["status"] == "error"
    assert f["fix"] == "aws events enable-rule --name stack-Deployments"


def test_disabled_or_missing_schedule_is_an_error():
    w = World()
    w.aws.schedules["stack-Reconcile"]["state"] = "DISABLED"
    assert one(w.findings(), "schedule")["status"] == "error"
    w.aws.schedules.clear()
    f = one(w.findings(), "schedule")
    assert f["status"] == "error" and "does not exist" in f["message"]


def test_parked_messages_are_an_error_with_count_and_age():
    w = World()
    w.aws.queues["https://sqs/1/FireDLQ.fifo"] = (2, 3 * 3600 + 60)
    w.aws.queues["https://sqs/1/OpsDLQ"] = (1, None)
    findings = w.findings()
    fire = one(findings, "dlq", "FireDLQ")
    assert fire["status"] == "error" and fire["message"] == "2 messages, oldest 3 h"
    assert "redrive" in fire["fix"]
    ops = one(findings, "dlq", "OpsDLQ")
    assert ops["status"] == "error" and ops["message"] == "1 message, age of the oldest unknown"
    assert one(findings, "dlq", "IngestDLQ")["status"] == "ok"


def test_reconciler_late_erroring_or_never_run():
    w = World()
    w.store.record_run(NOW - timedelta(minutes=31), 0, True)  # two periods of 15 min and a bit
    f = one(w.findings(), "reconciler")
    assert f["status"] == "error" and "31 min" in f["message"]
    w.store.record_run(NOW - timedelta(minutes=10), 3, True)
    f = one(w.findings(), "reconciler")
    assert f["status"] == "warn" and "3 errors" in f["message"]
    w.aws.schedules["stack-Reconcile"]["expression"] = "rate(1 hour)"  # the schedule's own period counts
    w.store.record_run(NOW - timedelta(minutes=90), 0, True)
    assert one(w.findings(), "reconciler")["status"] == "ok"
    w.store.last_run_record = None
    assert one(w.findings(), "reconciler")["status"] == "warn"


def test_the_reconciler_records_its_runs():
    from imagestreams.reconcile import Reconciler

    w = World()
    w.store.last_run_record = None
    report = Reconciler(w.streams, w.registry, w.store).run()
    assert w.store.last_run() == {"at": NOW.isoformat(), "errors": len(report["errors"]), "complete": True}


def test_ecs_permissions_simulated_for_every_call_and_denials_are_errors():
    w = World()
    w.push("prod", 1)
    w.ecs_trigger(pins=TaskPins("web", f"arn:aws:iam::{ACCOUNT}:role/app-task", None))
    assert one(w.findings(), "permissions")["status"] == "ok"
    calls = {(tuple(a), r) for _, a, r, _ in w.aws.simulated}
    assert (("ecs:DescribeServices", "ecs:UpdateService"),
            f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/prod/web") in calls
    passes = [c for c in w.aws.simulated if c[1] == ["iam:PassRole"]]
    assert passes[0][2] == f"arn:aws:iam::{ACCOUNT}:role/app-task"
    assert passes[0][3] == {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    w.aws.denied = {"iam:PassRole"}
    f = one(w.findings(), "permissions")
    assert f["status"] == "error" and "iam:PassRole on arn:aws:iam::" in f["message"]
    assert "TaskRolePattern" in f["fix"]


def test_permissions_unreadable_is_a_warning():
    w = World()
    w.ecs_trigger()
    w.aws.unreadable.add("simulate")
    f = one(w.findings(), "permissions")
    assert f["status"] == "warn" and "access denied" in f["message"]
    assert f["fix"] == "allow svc:simulate to the admin function's role"


def test_an_unreadable_answer_is_a_short_warning_that_names_the_missing_permission():
    iam, stub = _stubbed("iam")
    stub.add_client_error("simulate_principal_policy", "AccessDenied", "x" * 5000)
    stub.add_client_error("simulate_principal_policy", "Throttling", "y" * 5000)
    w = World()
    w.ecs_trigger()
    w.aws.simulate = AwsDiagnosis(lambda s: iam).simulate
    with stub:
        denied = one(w.findings(), "permissions")
        throttled = one(w.findings(), "permissions")
    assert denied["status"] == "warn" and denied["fix"] == (
        "allow iam:SimulatePrincipalPolicy to the admin function's role")
    assert throttled["status"] == "warn" and "Throttling" in throttled["message"]
    assert len(throttled["message"]) < 400 and "run check again" in throttled["fix"]


def test_eks_access_entries_per_role():
    w = World()
    w.trigger("tr-00000000000b", EksTarget("apps", "web", "Deployment", "web", "app"))
    w.aws.entries.discard(ROLES["Reconciler"])
    findings = w.findings()
    assert one(findings, "eks-access", "tr-00000000000b Deployer")["status"] == "ok"
    f = one(findings, "eks-access", "tr-00000000000b Reconciler")
    assert f["status"] == "error"
    assert f"aws eks create-access-entry --cluster-name apps --principal-arn {ROLES['Reconciler']}" in f["fix"]
    sim = [c for c in w.aws.simulated if c[1] == ["eks:DescribeCluster"]]
    assert sim[0][2] == f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/apps"


def test_lambda_pull_policy():
    w = World()
    w.trigger("tr-00000000000c", LambdaTarget("api"))
    assert one(w.findings(), "lambda-pull")["status"] == "ok"
    w.aws.policies[S] = None
    f = one(w.findings(), "lambda-pull")
    assert f["status"] == "error" and "lambda.amazonaws.com" in f["fix"] and "ecr:BatchGetImage" in f["fix"]
    w.aws.policies[S] = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
                                                   "Action": "ecr:*"}]})
    assert one(w.findings(), "lambda-pull")["status"] == "error"


def test_lambda_pull_for_another_account_needs_its_condition():
    other = "210987654321"
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                             "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                             "Condition": {"StringLike": {"aws:sourceArn": f"arn:aws:lambda:*:{ACCOUNT}:function:*"}}}]}
    assert check_mod.lambda_may_pull(json.dumps(policy), None)
    assert not check_mod.lambda_may_pull(json.dumps(policy), other)
    w = World()
    w.trigger("tr-00000000000c", LambdaTarget(f"arn:aws:lambda:us-east-1:{other}:function:api"))
    w.aws.policies[S] = json.dumps(policy)
    f = one(w.findings(), "lambda-pull")
    assert f["status"] == "error" and f"arn:aws:lambda:*:{other}:function:*" in f["fix"]


def test_a_target_that_is_gone_is_an_error():
    w = World()
    w.push("prod", 1)
    w.trigger("tr-00000000000e", EcsTarget("prod", "gone", "app"))
    f = one(w.findings(), "target")
    assert f["status"] == "error" and "gone" in f["message"]
    assert "trigger remove tr-00000000000e" in f["fix"]
    w.fn.image = TargetError("Function not found: api")
    w.trigger("tr-00000000000c", LambdaTarget("api"))
    assert one(w.findings(), "target", "tr-00000000000c")["status"] == "error"


def test_lifecycle_that_would_expire_a_running_digest_is_an_error():
    w = World()
    d1 = w.push("prod", 1)
    d2 = w.push("prod", 2)
    w.ecs_trigger(1)  # the service still runs d1
    w.aws.previews[S] = {d1: "EXPIRE"}
    f = one(w.findings(), "lifecycle", S)
    assert f["status"] == "error" and d1 in f["message"] and "expire" in f["message"]
    assert "tagPrefixList" in f["fix"]
    w.aws.previews[S] = {d2: "TRANSITION"}  # the head, an archive rule: kept history (a target runs d1 only)
    f = one(w.findings(), "lifecycle", S)
    assert f["status"] == "warn" and "archive" in f["message"] and "prod@g2" in f["message"]


def test_lifecycle_beyond_the_kept_history_is_ok_and_no_policy_is_ok():
    w = World()
    old = [w.push("prod", n) for n in range(1, 6)]  # 5 generations: the newest 3 are kept
    w.aws.previews[S] = {old[0]: "EXPIRE", old[1]: "EXPIRE"}
    f = one(w.findings(), "lifecycle", S)
    assert f["status"] == "ok" and "2 image(s)" in f["message"]
    w.aws.previews[S] = {old[2]: "EXPIRE"}
    assert one(w.findings(), "lifecycle", S)["status"] == "warn"
    w.aws.previews[S] = None
    assert one(w.findings(), "lifecycle", S)["message"] == "no lifecycle policy"


def test_one_trigger_checks_only_that_trigger(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    w = World()
    w.push("prod", 1)
    t = w.ecs_trigger()
    answer = dispatch(w.streams, {"action": "check", "trigger": t.id})
    assert answer["ok"], answer
    checks = {f["check"] for f in answer["result"]["findings"]}
    assert checks == {"permissions", "target", "lifecycle"}


@pytest.mark.parametrize("command, kind", [
    ({"action": "check", "trigger": "nope"}, "Invalid"),
    ({"action": "check", "trigger": 5}, "Invalid"),
    ({"action": "check", "stream": "team/web"}, "Invalid"),
    ({"action": "check", "trigger": "tr-0123456789ab"}, "NotFound"),
])
def test_bad_input_is_refused_and_writes_nothing(monkeypatch, command, kind):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    w = World()
    w.push("prod", 1)
    w.ecs_trigger()
    writes = w.store.writes
    answer = dispatch(w.streams, command)
    assert answer == {"ok": False, "error": {"type": kind, "message": answer["error"]["message"]}}
    assert w.store.writes == writes
    assert w.aws.simulated == []


def test_a_full_check_writes_nothing(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    w = World()
    w.push("prod", 1)
    w.ecs_trigger()
    writes, triggers = w.store.writes, dict(w.store.triggers)
    assert dispatch(w.streams, {"action": "check"})["ok"]
    assert w.store.writes == writes and w.store.triggers == triggers


def test_cli_prints_a_table_and_exits_1_on_an_error(monkeypatch, capsys):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    w = World()
    w.push("prod", 1)
    w.ecs_trigger()

    def transport(cmd):
        return dispatch(w.streams, cmd)

    assert cli_main(["check"], transport=transport) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["STATUS", "CHECK", "SUBJECT", "MESSAGE", "FIX"]
    assert "0 error" in out
    w.aws.queues["https://sqs/1/FireDLQ.fifo"] = (4, None)
    assert cli_main(["check"], transport=transport) == 1
    assert "4 messages" in capsys.readouterr().out
    assert cli_main(["check", "--output", "json"], transport=transport) == 1
    answer = json.loads(capsys.readouterr().out)
    assert one(answer["result"]["findings"], "dlq", "FireDLQ")["status"] == "error"


# ------------------------------------------------------------------------------ the adapter, stubbed


def _stubbed(service: str):
    client = boto3.client(service, region_name="us-east-1")
    return client, Stubber(client)


def test_simulate_reads_every_page_and_passes_the_context():
    iam, stub = _stubbed("iam")
    base = {"PolicySourceArn": DEPLOYER, "ActionNames": ["iam:PassRole"], "ResourceArns": ["arn:aws:iam::1:role/x"],
            "ContextEntries": [{"ContextKeyName": "iam:PassedToService",
                                "ContextKeyValues": ["ecs-tasks.amazonaws.com"], "ContextKeyType": "string"}]}
    stub.add_response("simulate_principal_policy", {"EvaluationResults": [
        {"EvalActionName": "iam:PassRole", "EvalDecision": "implicitDeny"}], "IsTruncated": True, "Marker": "m1"},
        base)
    stub.add_response("simulate_principal_policy", {"EvaluationResults": [], "IsTruncated": False},
                      {**base, "Marker": "m1"})
    with stub:
        out = AwsDiagnosis(lambda s: iam).simulate(DEPLOYER, ["iam:PassRole"], "arn:aws:iam::1:role/x",
                                                   {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    assert out == {"iam:PassRole": "implicitDeny"}
    stub.assert_no_pending_responses()


def test_simulate_denied_is_unreadable():
    iam, stub = _stubbed("iam")
    stub.add_client_error("simulate_principal_policy", "AccessDenied", "not authorized")
    with stub, pytest.raises(Unreadable, match="access denied"):
        AwsDiagnosis(lambda s: iam).simulate(DEPLOYER, ["eks:DescribeCluster"], "arn:aws:eks:us-east-1:1:cluster/a")


def test_access_entry_present_and_missing():
    eks, stub = _stubbed("eks")
    stub.add_response("describe_access_entry", {"accessEntry": {"principalArn": DEPLOYER}},
                      {"clusterName": "apps", "principalArn": DEPLOYER})
    stub.add_client_error("describe_access_entry", "ResourceNotFoundException", "no entry")
    diag = AwsDiagnosis(lambda s: eks)
    with stub:
        assert diag.access_entry("apps", DEPLOYER) is True
        assert diag.access_entry("apps", DEPLOYER) is False


def test_lifecycle_preview_polls_until_complete_and_pages():
    ecr, stub = _stubbed("ecr")
    d1, d2 = digest(1), digest(2)
    stub.add_response("start_lifecycle_policy_preview", {"repositoryName": S, "status": "IN_PROGRESS"},
                      {"repositoryName": S})
    stub.add_response("get_lifecycle_policy_preview", {"status": "IN_PROGRESS"}, {"repositoryName": S})
    stub.add_response("get_lifecycle_policy_preview", {"status": "COMPLETE", "nextToken": "n1", "previewResults": [
        {"imageDigest": d1, "imageTags": ["old"], "action": {"type": "EXPIRE"}, "appliedRulePriority": 1}]},
        {"repositoryName": S})
    stub.add_response("get_lifecycle_policy_preview", {"status": "COMPLETE", "previewResults": [
        {"imageDigest": d2, "action": {"type": "TRANSITION"}, "appliedRulePriority": 2}]},
        {"repositoryName": S, "nextToken": "n1"})
    slept: list[float] = []
    with stub:
        out = AwsDiagnosis(lambda s: ecr, sleep=slept.append).lifecycle_preview(S)
    assert out == {d1: "EXPIRE", d2: "TRANSITION"}
    assert len(slept) == 1
    stub.assert_no_pending_responses()


def test_lifecycle_preview_without_policy_and_bounded_wait():
    ecr, stub = _stubbed("ecr")
    stub.add_client_error("start_lifecycle_policy_preview", "LifecyclePolicyNotFoundException", "none")
    with stub:
        assert AwsDiagnosis(lambda s: ecr).lifecycle_preview(S) is None
    ecr, stub = _stubbed("ecr")
    stub.add_client_error("start_lifecycle_policy_preview", "LifecyclePolicyPreviewInProgressException", "running")
    for _ in range(3):
        stub.add_response("get_lifecycle_policy_preview", {"status": "IN_PROGRESS"}, {"repositoryName": S})
    clock = iter([0.0, 5.0, 11.0])
    with stub, pytest.raises(Unreadable, match="still running"):
        AwsDiagnosis(lambda s: ecr, sleep=lambda _: None, clock=lambda: next(clock),
                     preview_wait=10).lifecycle_preview(S)


def test_previews_start_side_by_side_and_share_one_wait():
    ecr, stub = _stubbed("ecr")
    other = "team/api"
    stub.add_response("start_lifecycle_policy_preview", {"status": "IN_PROGRESS"}, {"repositoryName": S})
    stub.add_response("start_lifecycle_policy_preview", {"status": "IN_PROGRESS"}, {"repositoryName": other})
    stub.add_response("get_lifecycle_policy_preview", {"status": "IN_PROGRESS"}, {"repositoryName": S})
    stub.add_response("get_lifecycle_policy_preview", {"status": "COMPLETE", "previewResults": []},
                      {"repositoryName": S})
    stub.add_response("get_lifecycle_policy_preview", {"status": "IN_PROGRESS"}, {"repositoryName": other})
    now = [0.0]
    diag = AwsDiagnosis(lambda s: ecr, sleep=lambda t: now.__setitem__(0, now[0] + 11), clock=lambda: now[0],
                        preview_wait=10)
    with stub:
        diag.start_lifecycle_previews([S, other])
        assert diag.lifecycle_preview(S) == {}
        with pytest.raises(Unreadable, match="still running"):  # the 10 s were used up by the first repository
            diag.lifecycle_preview(other)
    stub.assert_no_pending_responses()


def test_triggers_on_one_resource_share_one_simulation():
    w = World()
    w.ecs_trigger()
    w.trigger("tr-00000000000f", EcsTarget("prod", "web", "sidecar"))
    w.ecs.images[("prod", "web")]["sidecar"] = "fluent-bit:2"
    findings = w.findings()
    assert [f["status"] for f in findings if f["check"] == "permissions"] == ["ok", "ok"]
    assert len(w.aws.simulated) == 2  # the service's calls and the task definitions' calls, once each


def test_a_cross_account_target_simulates_the_assume_role_only():
    class Remote(NamedTuple):  # a target carrying a role to assume (the cross-account form)
        cluster: str
        service: str
        container: str
        role_arn: str
        type: str = "ecs"

        def describe(self) -> str:
            return f"ecs:{self.cluster}/{self.service}/{self.container}"

    w = World()
    role = "arn:aws:iam::210987654321:role/imagestreams-target"
    trigger = Trigger("tr-00000000000a", StreamTag(S, "prod"), Remote("prod", "web", "app", role))
    checker = Checker(w.streams, w.aws, Stack.from_env(ENV), now=NOW)
    assert checker.permissions(trigger)["status"] == "ok"
    assert [(a, r) for _, a, r, _ in w.aws.simulated] == [(["sts:AssumeRole"], role)]
    w.aws.denied = {"sts:AssumeRole"}
    checker.simulated.clear()
    f = checker.permissions(trigger)
    assert f["status"] == "error" and f"sts:AssumeRole on {role}" in f["message"]


def test_queue_depth_and_the_oldest_age_from_cloudwatch():
    sqs, sqs_stub = _stubbed("sqs")
    cloudwatch, cw_stub = _stubbed("cloudwatch")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/stack-FireDLQ.fifo"
    sqs_stub.add_response("get_queue_attributes", {"Attributes": {
        "ApproximateNumberOfMessages": "2", "ApproximateNumberOfMessagesNotVisible": "1"}})
    cw_stub.add_response("get_metric_statistics", {"Datapoints": [
        {"Timestamp": NOW - timedelta(minutes=10), "Maximum": 100.0},
        {"Timestamp": NOW - timedelta(minutes=5), "Maximum": 10860.0}]})
    clients = {"sqs": sqs, "cloudwatch": cloudwatch}
    with sqs_stub, cw_stub:
        assert AwsDiagnosis(clients.__getitem__).queue(url) == (3, 10860.0)
    sqs, sqs_stub = _stubbed("sqs")
    sqs_stub.add_client_error("get_queue_attributes", "AWS.SimpleQueueService.NonExistentQueue", "gone")
    with sqs_stub:
        assert AwsDiagnosis(lambda s: sqs).queue(url) is None
