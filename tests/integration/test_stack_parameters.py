"""The stack as deployed with its defaults and with narrowed parameters: what the ECR rule delivers, and what a
default stack lets triggers touch."""

from __future__ import annotations

import pytest


def _ingested(stack, repository: str) -> bool:
    stack.client("ecr").create_repository(repositoryName=repository)
    before = len(stack.invocations)
    stack.push_image(repository, "latest", seed=repository)
    stack.pump()
    return any(i.function == "IngestFunction" for i in stack.invocations[before:])


@pytest.fixture
def fresh(embedded):
    embedded.reset()
    return embedded


def test_the_ecr_rule_delivers_only_repositories_inside_the_pattern(fresh):
    """A push to a repository the stack may not read never reaches ingest (no AccessDenied, no DLQ, no alarm)."""
    fresh.deploy(parameters={"RepositoryPattern": "team/*"})
    assert _ingested(fresh, "team/web")
    assert not _ingested(fresh, "other/web")


def test_the_default_pattern_delivers_every_repository(fresh):
    fresh.deploy()
    assert _ingested(fresh, "team/web") and _ingested(fresh, "other/web")


def test_a_default_stack_refuses_lambda_targets_and_names_the_parameter(fresh):
    fresh.deploy()
    fresh.create_image_function("svc-resize", "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:latest")
    answer = fresh.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest",
                                            "target": {"type": "lambda", "function": "svc-resize"}})
    assert answer["ok"] is False and answer["error"]["type"] == "Forbidden"
    assert "LambdaFunctionPattern" in answer["error"]["message"]
    listed = fresh.invoke("AdminFunction", {"action": "trigger.list"})
    assert listed["result"]["triggers"] == []


def test_naming_the_functions_turns_lambda_targets_on(fresh):
    fresh.deploy(parameters={"LambdaFunctionPattern": "svc-*"})
    fresh.create_image_function("svc-resize", "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:latest")
    answer = fresh.invoke("AdminFunction", {"action": "trigger.add", "from": "team/web:latest",
                                            "target": {"type": "lambda", "function": "svc-resize"}})
    assert answer["ok"] is True, answer
