"""Least privilege that still works: every AWS call each function makes in the demo story is allowed by that
function's role as template.yaml declares it (actions, resources, conditions), with the demo's parameters.

The embedded AWS evaluates no IAM, so this test does: it records each call a function's invocation makes, turns it
into the IAM request AWS would authorize (DynamoDB transactions into their Put/Delete items, Query on an index
into the index ARN, ...) and looks for a statement of that function's role that allows it.
"""

from __future__ import annotations

import contextvars
import fnmatch
import io
from typing import Any

import botocore.client
import pytest

from imagestreams_local import demo, embedded
from imagestreams_local.embedded import ACCOUNT, EmbeddedAws

CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)


class Request:
    def __init__(self, function: str, action: str, resource: str, context: dict[str, list[str]]) -> None:
        self.function, self.action, self.resource, self.context = function, action, resource, context

    def __repr__(self) -> str:
        return f"{self.function}: {self.action} on {self.resource} {self.context or ''}"


def _leading_key(item: dict[str, Any] | None) -> list[str]:
    value = (item or {}).get("pk", {})
    return [value["S"]] if isinstance(value, dict) and "S" in value else []


def iam_requests(aws: EmbeddedAws, service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict]]:
    """(action, resource, condition context) that AWS authorizes for one API call; [] for calls we do not judge."""
    arn = f"{aws.region}:{ACCOUNT}"
    if service == "dynamodb":
        table_arn = aws.resolver.attrs[("StreamsTable", "Arn")]
        if operation == "TransactWriteItems":
            out = []
            for item in params["TransactItems"]:
                (kind, body), = item.items()
                action = {"Put": "PutItem", "Delete": "DeleteItem", "Update": "UpdateItem",
                          "ConditionCheck": "ConditionCheckItem"}[kind]
                out.append((f"dynamodb:{action}", table_arn,
                            {"dynamodb:LeadingKeys": _leading_key(body.get("Item") or body.get("Key"))}))
            return out
        resource = table_arn + (f"/index/{params['IndexName']}" if params.get("IndexName") else "")
        keys = _leading_key(params.get("Item") or params.get("Key"))
        return [(f"dynamodb:{operation}", resource, {"dynamodb:LeadingKeys": keys} if keys else {})]
    if service == "ecr":
        if params.get("repositoryNames"):  # BatchGetRepositoryScanningConfiguration: one grant per repository
            return [(f"ecr:{operation}", f"arn:aws:ecr:{arn}:repository/{n}", {}) for n in params["repositoryNames"]]
        name = params.get("repositoryName")
        return [(f"ecr:{operation}", f"arn:aws:ecr:{arn}:repository/{name}" if name else "*", {})]
    if service == "ecs":
        cluster = (params.get("cluster") or "default").rsplit("/", 1)[-1]
        cluster_arn = f"arn:aws:ecs:{arn}:cluster/{cluster}"
        arns = params.get("serviceDeploymentArns") or params.get("serviceRevisionArns") or (
            [params["resourceArn"]] if params.get("resourceArn") else [])
        if arns:
            return [(f"ecs:{operation}", a, {}) for a in arns]
        services = params.get("services") or ([params["service"]] if params.get("service") else [])
        if services:
            return [(f"ecs:{operation}", f"arn:aws:ecs:{arn}:service/{cluster}/{s.rsplit('/', 1)[-1]}",
                     {"ecs:cluster": [cluster_arn]}) for s in services]
        return [(f"ecs:{operation}", "*", {})]
    if service == "lambda" and operation == "ListEventSourceMappings":
        return [(f"lambda:{operation}", "*", {})]  # no resource-level permissions
    if service == "lambda":
        name = params["FunctionName"].rsplit(":function:", 1)[-1]
        qualifier = params.get("Qualifier") or (params.get("Name") if operation.endswith("Alias") else None)
        return [(f"lambda:{operation}", f"arn:aws:lambda:{arn}:function:{name}" + (f":{qualifier}" if qualifier
                                                                                        else ""), {})]
    if service == "eks":
        return [(f"eks:{operation}", f"arn:aws:eks:{arn}:cluster/{params['name']}", {})]
    if service == "events" and operation == "PutEvents":
        buses = sorted({(e.get("EventBusName") or "default").rsplit("/", 1)[-1] for e in params["Entries"]})
        return [(f"events:{operation}", f"arn:aws:events:{arn}:event-bus/{bus}", {}) for bus in buses]
    if service == "sqs":
        queue_arn = next((a for a, url in aws._queue_urls_by_arn.items() if url == params["QueueUrl"]),
                         f"arn:aws:sqs:{arn}:{params['QueueUrl'].rstrip('/').rsplit('/', 1)[-1]}")
        return [(f"sqs:{operation}", queue_arn, {})]
    # the reads of `check`
    if service == "events" and operation == "DescribeRule":
        return [(f"events:{operation}", f"arn:aws:events:{arn}:rule/{params['Name']}", {})]
    if service == "scheduler":
        return [(f"scheduler:{operation}", f"arn:aws:scheduler:{arn}:schedule/default/{params['Name']}", {})]
    if service == "sns":
        return [(f"sns:{operation}", params["TopicArn"], {})]
    if service == "iam" and operation == "SimulatePrincipalPolicy":
        return [(f"iam:{operation}", params["PolicySourceArn"], {})]
    if service == "cloudwatch":
        return [(f"cloudwatch:{operation}", "*", {})]
    return []  # other services (sts presigning, ...) make no call that needs a grant here


def role_statements(aws: EmbeddedAws, function: str) -> list[dict[str, Any]]:
    """The function's inline statements plus the SAM policy templates it uses, resolved as deployed."""
    out = []
    for policy in aws.resolver(aws.resolver.template["Resources"][function]["Properties"].get("Policies") or []):
        if "Statement" in policy:
            out += policy["Statement"]
        elif "SQSSendMessagePolicy" in policy:
            name = policy["SQSSendMessagePolicy"]["QueueName"]
            queue_arn = next(a for a in aws._queue_urls_by_arn if a.endswith(f":{name}"))
            out.append({"Effect": "Allow", "Action": ["sqs:SendMessage*"], "Resource": queue_arn})
    return out


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _conditions_hold(condition: dict[str, Any] | None, context: dict[str, list[str]]) -> bool:
    for operator, tests in (condition or {}).items():
        for key, patterns in tests.items():
            values, patterns = context.get(key), _listify(patterns)
            if operator == "ForAllValues:StringLike":
                if values is None or not all(any(fnmatch.fnmatchcase(v, p) for p in patterns) for v in values):
                    return False
            elif operator == "ArnLike":
                if not values or not any(fnmatch.fnmatchcase(values[0], p) for p in patterns):
                    return False
            else:
                return False  # a condition this request cannot satisfy (iam:PassedToService, ecs:CreateAction)
    return True


def allowed(statements: list[dict[str, Any]], action: str, resource: str, context: dict[str, list[str]]) -> bool:
    return any(s["Effect"] == "Allow"
               and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _listify(s["Action"]))
               and any(fnmatch.fnmatchcase(resource, r) for r in _listify(s["Resource"]))
               and _conditions_hold(s.get("Condition"), context)
               for s in statements)


@pytest.mark.e2e
def test_every_call_a_function_makes_in_the_demo_is_allowed_by_its_role(monkeypatch):
    stacks: list[EmbeddedAws] = []
    recorded: list[tuple[str, str, str, dict[str, Any]]] = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def record(client: Any, operation: str, params: dict[str, Any]) -> Any:
        function = CURRENT.get()
        if function is not None:
            recorded.append((function, client.meta.service_model.service_name, operation, params))
        return make_api_call(client, operation, params)

    def as_function(method: Any) -> Any:
        def wrapped(self: EmbeddedAws, logical_id: str, *args: Any, **kwargs: Any) -> Any:
            token = CURRENT.set(logical_id)
            try:
                return method(self, logical_id, *args, **kwargs)
            finally:
                CURRENT.reset(token)
        return wrapped

    deploy = EmbeddedAws.deploy

    def keep(self: EmbeddedAws, *args: Any, **kwargs: Any) -> Any:
        stacks.append(self)
        return deploy(self, *args, **kwargs)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    monkeypatch.setattr(embedded.EmbeddedAws, "invoke", as_function(EmbeddedAws.invoke))
    monkeypatch.setattr(embedded.EmbeddedAws, "run_schedule", as_function(EmbeddedAws.run_schedule))
    monkeypatch.setattr(embedded.EmbeddedAws, "deploy", keep)
    out = io.StringIO()
    assert demo.run(out) == 0, out.getvalue()
    aws = stacks[0]
    requests = [Request(function, *r) for function, service, operation, params in recorded
                for r in iam_requests(aws, service, operation, params)]
    functions = {r.function for r in requests}
    # the story exercises them all (rollout events: see integration)
    assert {"IngestFunction", "FanoutFunction", "DeployerFunction", "AdminFunction",
            "ReconcilerFunction", "NotifyFunction"} <= functions
    denied = sorted({repr(r) for r in requests
                     if not allowed(role_statements(aws, r.function), r.action, r.resource, r.context)})
    assert denied == []
