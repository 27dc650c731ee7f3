"""template.yaml: the deployment promises (no unauthenticated entry point, every async path has a DLQ and an
alarm, scoped IAM, safe defaults, deployable twice in one account, nothing CloudFormation itself refuses)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from imagestreams_local.template import Resolver, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
TEMPLATE = load_template(TEMPLATE_PATH)
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {k: v["Properties"] for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/streams"


class _Attributes(dict):
    def __missing__(self, key: tuple[str, str]) -> str:
        return f"<{key[0]}.{key[1]}>"  # a stand-in for attributes of resources nobody created here


def resolver(**parameters: str) -> Resolver:
    """Resolves the template with these parameter values (defaults for the rest), as CloudFormation would."""
    resolve = Resolver(TEMPLATE, "us-east-1", "123456789012", parameters)
    resolve.attrs = _Attributes({("StreamsTable", "Arn"): TABLE_ARN})
    resolve.refs.update({name: f"<{name}>" for name in RESOURCES})
    generated = [f"{fn}{event}{suffix}" for fn, props in FUNCTIONS.items() for event in props.get("Events") or {}
                 for suffix in ("", "Queue")]  # what SAM generates per event: rules, schedules, schedule DLQs
    resolve.refs.update({name: f"<{name}>" for name in generated})
    return resolve


def statements(function: str, **parameters: str) -> list[dict[str, Any]]:
    """The inline IAM statements of a function's role as CloudFormation would create them with these parameter
    values (conditions evaluated; SAM policy templates such as SQSSendMessagePolicy left out)."""
    resolve = resolver(**parameters)
    out = []
    for policy in FUNCTIONS[function].get("Policies") or []:
        policy = resolve(policy)
        if isinstance(policy, dict) and "Statement" in policy:
            out += policy["Statement"]
    return out


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def resources(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else resource


def test_no_function_is_reachable_without_iam():
    for name, props in FUNCTIONS.items():
        assert "FunctionUrlConfig" not in props, name
        for event in (props.get("Events") or {}).values():
            assert event["Type"] not in ("Api", "HttpApi"), name


def test_every_asynchronous_path_ends_in_a_dlq_with_an_alarm():
    queues_with_alarm = {a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
                         for a in RESOURCES.values() if a["Type"] == "AWS::CloudWatch::Alarm"
                         and a["Properties"]["Namespace"] == "AWS/SQS"}
    for name, props in FUNCTIONS.items():
        if name == "AdminFunction":
            continue  # synchronous: the caller gets the error
        events = props.get("Events") or {}
        for event_name, event in events.items():
            ep = event["Properties"]
            if event["Type"] == "SQS":
                queue = ep["Queue"]["Fn::GetAtt"][0]
                dlq = RESOURCES[queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
                assert dlq in queues_with_alarm, (name, dlq)
            elif event["Type"] == "DynamoDB":
                assert ep["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and ep["BisectBatchOnFunctionError"]
                assert 0 < ep["MaximumRetryAttempts"] <= 100
                assert ep["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0] in queues_with_alarm
            elif event["Type"] == "EventBridgeRule":
                assert ep["RetryPolicy"]["MaximumRetryAttempts"] <= 185 and "DeadLetterConfig" in ep
            elif event["Type"] == "ScheduleV2":
                assert "DeadLetterConfig" in ep
                assert f"{name}{event_name}Queue" in queues_with_alarm
        if any(e["Type"] in ("EventBridgeRule", "ScheduleV2") for e in events.values()):  # asynchronous invokes
            config = props["EventInvokeConfig"]
            assert config["MaximumRetryAttempts"] <= 2, name
            on_failure = config["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
            assert on_failure in queues_with_alarm, name


# ------------------------------------------------------------------------------- CloudFormation accepts it

def test_no_yaml_anchors_or_aliases():
    """CloudFormation's YAML parser refuses anchors and aliases (only `sam deploy` would unroll them)."""
    tokens = yaml.scan(TEMPLATE_PATH.read_text())
    found = [(t.start_mark.line + 1, type(t).__name__) for t in tokens
             if isinstance(t, (yaml.AnchorToken, yaml.AliasToken))]
    assert found == []


NAME_PROPERTIES = {"Name", "RoleName", "QueueName", "TableName", "FunctionName", "RuleName", "LogGroupName",
                   "ScheduleName", "TopicName", "AlarmName", "LayerName", "PolicyName"}


def test_no_fixed_resource_names_so_two_stacks_fit_in_one_account():
    for name, res in RESOURCES.items():
        props = res.get("Properties") or {}
        for prop in NAME_PROPERTIES & set(props):
            assert "AWS::StackName" in str(props[prop]), f"{name}.{prop} is a fixed name"
        for event_name, event in (props.get("Events") or {}).items():
            ep = event.get("Properties") or {}
            if event["Type"] in ("ScheduleV2", "Schedule", "EventBridgeRule"):
                # without a Name, SAM names a schedule after its logical id (a fixed name) unless OmitName is set
                fixed = ep.get("Name") or ep.get("RuleName")
                assert fixed is None or "AWS::StackName" in str(fixed), (name, event_name)
            if event["Type"] == "ScheduleV2":
                assert ep.get("OmitName") is True, f"{name}.{event_name} would get the fixed name {name}{event_name}"


def test_no_reserved_concurrency_by_default():
    """Accounts with the default low concurrency quota refuse any reservation; it is an opt-in."""
    resolve = resolver()
    for name, props in FUNCTIONS.items():
        assert "ReservedConcurrentExecutions" not in resolve(props), name
    assert resolver(ReserveReconcilerConcurrency="true")(
        FUNCTIONS["ReconcilerFunction"])["ReservedConcurrentExecutions"] == 1


# ---------------------------------------------------------------------------------------- safe defaults

def test_no_pass_role_by_default_and_scoped_when_given():
    for function in FUNCTIONS:
        assert not [s for s in statements(function) if "iam:PassRole" in actions(s)], function
    assert TEMPLATE["Parameters"]["TaskRolePattern"]["Default"] == ""
    granted = [s for s in statements("DeployerFunction", TaskRolePattern="app-*") if "iam:PassRole" in actions(s)]
    assert len(granted) == 1
    assert granted[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert resources(granted[0]) == ["arn:aws:iam::123456789012:role/app-*"]


def test_no_lambda_code_updates_by_default_and_never_on_every_function():
    def reads_own_functions(statement: dict[str, Any]) -> bool:  # `check` reads this stack's own functions
        if set(actions(statement)) == {"lambda:ListEventSourceMappings"}:  # and their mappings (a list, no write)
            return True
        return set(actions(statement)) == {"lambda:GetFunctionConfiguration"} and all(
            r.split(":function:")[1] == "imagestreams-*" for r in resources(statement))

    for function in FUNCTIONS:
        lambda_statements = [s for s in statements(function) if any(a.startswith("lambda:") for a in actions(s))
                             and not reads_own_functions(s)]
        assert lambda_statements == [], function
    resolve = resolver()
    globals_env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert resolve(globals_env["ALLOWED_LAMBDA_FUNCTIONS"]) == ""
    enabled = [s for s in statements("DeployerFunction", LambdaFunctionPattern="svc-*")
               if "lambda:UpdateFunctionCode" in actions(s)]
    assert enabled and all(r.split(":function:")[1] in ("svc-*", "svc-*:*") for s in enabled for r in resources(s))
    assert resolver(LambdaFunctionPattern="svc-*")(globals_env["ALLOWED_LAMBDA_FUNCTIONS"]) == "svc-*"
    assert resolver(LambdaFunctionPattern="svc-*", AllowedLambdaFunctions="svc-a")(
        globals_env["ALLOWED_LAMBDA_FUNCTIONS"]) == "svc-a"


def test_functions_learn_the_patterns_the_code_enforces():
    env = resolver(TaskRolePattern="app-*", RepositoryPattern="team/*")(
        TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    assert env["TASK_ROLE_PATTERN"] == "app-*" and env["REPOSITORY_PATTERN"] == "team/*"


# ---------------------------------------------------------------------------------------------- EKS roles

def test_every_role_that_talks_to_a_cluster_is_exported_mapped_and_documented():
    """A role that calls eks:DescribeCluster signs Kubernetes requests; a cluster that does not know it answers
    401 forever. Each such role gets an access entry, an output and a line in docs/eks-access.md."""
    talking = {f"{f}Role" for f in FUNCTIONS if any("eks:DescribeCluster" in actions(s) for s in statements(f))}
    mapped = {r["Properties"]["PrincipalArn"]["Fn::GetAtt"][0] for r in RESOURCES.values()
              if r["Type"] == "AWS::EKS::AccessEntry"}
    outputs = {name: out["Value"]["Fn::GetAtt"][0] for name, out in TEMPLATE["Outputs"].items()
               if isinstance(out["Value"], dict) and "Fn::GetAtt" in out["Value"]
               and out["Value"]["Fn::GetAtt"][0].endswith("FunctionRole")}
    assert talking == {"DeployerFunctionRole", "ReconcilerFunctionRole", "AdminFunctionRole"}
    assert mapped == talking
    assert set(outputs.values()) == talking
    docs = (ROOT / "docs" / "eks-access.md").read_text()
    for output in outputs:
        assert output in docs, output


# ------------------------------------------------------------------------------------------- table access

EXPECTED_TABLE_ACTIONS = {  # what each handler's code path calls (see tests/integration/test_iam_coverage.py)
    "IngestFunction": {"GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem"},
    "FanoutFunction": {"Query", "UpdateItem", "BatchWriteItem", "GetItem", "PutItem", "DeleteItem",  # + policy tags
                       "BatchGetItem"},  # a policy tag's candidates read again before it moves
    "DeployerFunction": {"GetItem", "Query", "UpdateItem", "PutItem", "DeleteItem"},
    "ReconcilerFunction": {"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem", "DeleteItem"},
    "RolloutFunction": {"GetItem", "BatchGetItem", "Query", "UpdateItem", "PutItem", "DeleteItem"},
    "AdminFunction": {"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem", "DeleteItem"},
    # policy tags a gate released are written (head + history, the oldest entry dropped)
    "GatesFunction": {"GetItem", "BatchGetItem", "Query", "PutItem", "UpdateItem", "DeleteItem"},
    "NotifyFunction": set(),  # reads only its stream records
}


def test_least_privilege_table_actions_per_function():
    for name, props in FUNCTIONS.items():
        assert not any(isinstance(p, dict) and "DynamoDBCrudPolicy" in p for p in props.get("Policies") or []), name
        granted = {a.split(":", 1)[1] for s in statements(name) for a in actions(s) if a.startswith("dynamodb:")}
        assert granted == EXPECTED_TABLE_ACTIONS[name], name
        for statement in statements(name):
            if any(a.startswith("dynamodb:") for a in actions(statement)):
                assert all(r == TABLE_ARN or r.startswith(TABLE_ARN + "/index/") for r in resources(statement))


HEAD_WRITERS = ("IngestFunction", "FanoutFunction", "AdminFunction", "RolloutFunction", "GatesFunction",
                "ReconcilerFunction")  # every function whose path can move a head (a push, a policy tag, a retag)


def test_every_function_that_moves_heads_is_granted_each_operation_of_the_head_transaction():
    """IAM authorises each action of a TransactWriteItems by its own action (an Update needs UpdateItem)."""
    from datetime import datetime, timezone

    from imagestreams.adapters.dynamodb import DynamoStore
    from imagestreams.model import Head, StreamTag

    class Recorder:
        def __init__(self) -> None:
            self.operations: set[str] = set()

        def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> None:  # noqa: N803 - boto3's name
            self.operations |= {f"{op}Item" for item in TransactItems for op in item}

        def query(self, **_: Any) -> dict[str, Any]:
            return {"Items": []}

    client = Recorder()
    store = DynamoStore(client, "streams")
    head = Head(StreamTag("team/web", "latest"), "sha256:" + "a" * 64, 2, datetime(2026, 1, 1, tzinfo=timezone.utc),
                "push", "ecr", "123456789012.dkr.ecr.us-east-1.amazonaws.com", rev=2)
    store.commit(head._replace(generation=1, rev=1), head, 1)  # the cap drops the oldest entry too
    assert client.operations == {"UpdateItem", "PutItem", "DeleteItem"}
    for name in HEAD_WRITERS:
        granted = {a.split(":", 1)[1] for s in statements(name) for a in actions(s)
                   if a.startswith("dynamodb:") and TABLE_ARN in resources(s) and "Condition" not in s}
        assert client.operations <= granted, (name, client.operations - granted)
        # a tag's first head asks ByStream whether its repository has a policy tag
        assert any("dynamodb:Query" in actions(s) and f"{TABLE_ARN}/index/ByStream" in resources(s)
                   for s in statements(name)), name


def test_the_deployer_writes_whole_items_only_for_its_leases():
    writes = [s for s in statements("DeployerFunction")
              if {"dynamodb:PutItem", "dynamodb:DeleteItem"} & set(actions(s))]
    assert writes and all(s["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LEASE#*"]}}
                          for s in writes)


def test_table_is_protected_from_deletion():
    table = RESOURCES["StreamsTable"]
    assert table["Properties"]["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"


# ------------------------------------------------------------------------------------------ ECS and ECR

def test_service_actions_reach_old_format_services_but_stay_in_the_cluster_pattern():
    for function in ("DeployerFunction", "AdminFunction", "ReconcilerFunction"):
        old_format = 0
        for statement in statements(function, EcsClusterPattern="prod-*"):
            if not {"ecs:UpdateService", "ecs:DescribeServices"} & set(actions(statement)):
                continue
            for resource in resources(statement):
                if resource.endswith(":service/prod-*/*"):
                    continue
                # old-format service ARNs (service/NAME) carry no cluster: the cluster condition key scopes them
                assert resource.endswith(":service/*"), resource
                assert statement["Condition"] == {"ArnLike": {
                    "ecs:cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod-*"}}
                old_format += 1
        assert old_format == 1, function


def test_cluster_facing_roles_may_read_service_deployments():
    for function in ("DeployerFunction", "AdminFunction", "ReconcilerFunction"):
        granted = {a for s in statements(function) for a in actions(s)}
        assert {"ecs:ListServiceDeployments", "ecs:DescribeServiceDeployments"} <= granted, function


def test_the_reconciler_cannot_change_targets():
    granted = {a for s in statements("ReconcilerFunction", TaskRolePattern="app-*", LambdaFunctionPattern="svc-*")
               for a in actions(s)}
    assert not granted & {"ecs:UpdateService", "ecs:RegisterTaskDefinition", "lambda:UpdateFunctionCode",
                          "iam:PassRole"}


def _rule_pattern(**parameters: str) -> dict[str, Any]:
    return resolver(**parameters)(FUNCTIONS["IngestFunction"]["Events"]["EcrImage"]["Properties"]["Pattern"])


def test_ecr_rule_only_matches_repositories_the_stack_may_read():
    assert "repository-name" not in _rule_pattern()["detail"]  # "*": every repository, no filter needed
    assert _rule_pattern(RepositoryPattern="team/*")["detail"]["repository-name"] == [{"wildcard": "team/*"}]


def test_repository_pattern_refuses_what_eventbridge_cannot_match():
    spec = TEMPLATE["Parameters"]["RepositoryPattern"]
    allowed = re.compile(spec["AllowedPattern"])
    for good in ("*", "team/*", "team/web", "*-prod", "a*b*c*", "base/nginx"):
        assert allowed.fullmatch(good), good
    for bad in ("team/**", "**", "a*b*c*d*", "Team/*", "team?"):
        assert not allowed.fullmatch(bad), bad


def test_the_deployer_takes_one_fire_per_invocation():
    """A Lambda target's update may take most of the deployer's timeout: a batch of fires would time out and hand
    back messages it never tried, each with a receive used up."""
    fires = FUNCTIONS["DeployerFunction"]["Events"]["Fires"]["Properties"]
    assert fires["BatchSize"] == 1


def test_metrics_and_the_reconcile_errors_alarm_are_per_stack():
    """Two stacks in one region must not page each other: the metrics' service dimension is the stack name."""
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    alarm = TEMPLATE["Resources"]["ReconcileErrorsAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]
