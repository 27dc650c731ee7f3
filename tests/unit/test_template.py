"""template.yaml: the deployment promises (no unauthenticated entry point, every async path has a DLQ and an
alarm, scoped IAM)."""

from __future__ import annotations

from pathlib import Path

from imagestreams_local.template import load_template

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {k: v["Properties"] for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}


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


def test_pass_role_is_conditioned_and_scoped():
    deployer = FUNCTIONS["DeployerFunction"]["Policies"]
    statements = [s for p in deployer if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    pass_role = next(s for s in statements if s["Action"] == ["iam:PassRole"])
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert "TaskRolePattern" in pass_role["Resource"]["Fn::Sub"]
    update = next(s for s in statements if "ecs:UpdateService" in s["Action"])
    assert "EcsClusterPattern" in update["Resource"]["Fn::Sub"]


def test_the_reconciler_cannot_change_targets():
    statements = [s for p in FUNCTIONS["ReconcilerFunction"]["Policies"] if isinstance(p, dict) and "Statement" in p
                  for s in p["Statement"]]
    actions = {a for s in statements for a in s["Action"]}
    assert not actions & {"ecs:UpdateService", "ecs:RegisterTaskDefinition", "lambda:UpdateFunctionCode",
                          "iam:PassRole"}
