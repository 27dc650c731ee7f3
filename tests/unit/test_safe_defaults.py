"""Safe defaults in the code a stack runs: Lambda targets stay off until the stack names the functions, and the
refusal says which parameter to set."""

from __future__ import annotations

import pytest

from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.config import Settings
from imagestreams.errors import Forbidden
from imagestreams.model import EcsTarget, LambdaTarget
from imagestreams.policy import TargetPolicy
from imagestreams.services import ImageStreams


@pytest.fixture
def stack_env(monkeypatch):
    """The environment template.yaml gives the functions with every parameter at its default."""
    for name, value in {"TABLE_NAME": "streams", "ALLOWED_ECS_CLUSTERS": "*", "ALLOWED_EKS_NAMESPACES": "*",
                        "ALLOWED_LAMBDA_FUNCTIONS": "", "TASK_ROLE_PATTERN": "", "REPOSITORY_PATTERN": "*",
                        "ACCOUNT_ID": "123456789012"}.items():
        monkeypatch.setenv(name, value)


def _policy(settings: Settings) -> TargetPolicy:
    return TargetPolicy.from_strings(settings.allowed_ecs_clusters, settings.allowed_eks_namespaces,
                                     settings.allowed_lambda_functions, settings.account_id)


def test_a_default_stack_refuses_lambda_targets_and_names_the_parameter(stack_env):
    policy = _policy(Settings.from_env())
    with pytest.raises(Forbidden) as info:
        policy.check(LambdaTarget("svc-resize"))
    assert "LambdaFunctionPattern" in info.value.message
    policy.check(EcsTarget("prod", "web", "web"))  # ECS stays on: fires pass no role unless TaskRolePattern says so


def test_lambda_targets_follow_the_pattern_once_given(stack_env, monkeypatch):
    monkeypatch.setenv("ALLOWED_LAMBDA_FUNCTIONS", "svc-*")
    policy = _policy(Settings.from_env())
    policy.check(LambdaTarget("svc-resize"))
    with pytest.raises(Forbidden) as info:
        policy.check(LambdaTarget("payments"))
    assert "AllowedLambdaFunctions" in info.value.message


def test_an_unset_variable_is_as_safe_as_an_empty_one(stack_env, monkeypatch):
    monkeypatch.delenv("ALLOWED_LAMBDA_FUNCTIONS")
    with pytest.raises(Forbidden):
        _policy(Settings.from_env()).check(LambdaTarget("svc-resize"))


def test_trigger_add_for_a_lambda_target_is_forbidden_and_writes_nothing(stack_env):
    store = MemoryStore()
    streams = ImageStreams(store, MemoryRegistry(), {"ecs": MemoryEcs()}, policy=_policy(Settings.from_env()))
    answer = dispatch(streams, {"action": "trigger.add", "from": "team/web:latest",
                                "target": {"type": "lambda", "function": "svc-resize"}})
    assert answer["error"]["type"] == "Forbidden" and "LambdaFunctionPattern" in answer["error"]["message"]
    assert store.writes == 0


def test_settings_carry_the_patterns_the_template_passes(stack_env, monkeypatch):
    monkeypatch.setenv("TASK_ROLE_PATTERN", "app-*")
    monkeypatch.setenv("REPOSITORY_PATTERN", "team/*")
    settings = Settings.from_env()
    assert settings.task_role_pattern == "app-*" and settings.repository_pattern == "team/*"
