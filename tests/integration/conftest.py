"""Integration fixtures: one embedded AWS per session (moto server + DynamoDB Local when Java and the jar are
present), a fresh stack from template.yaml per test."""

from __future__ import annotations

import os

import pytest

from imagestreams_local.embedded import EmbeddedAws


def _backend() -> bool | None:
    choice = os.environ.get("IMAGESTREAMS_TEST_DYNAMODB", "auto")
    return {"auto": None, "local": True, "moto": False}[choice]


@pytest.fixture(scope="session")
def embedded():
    aws = EmbeddedAws(use_dynamodb_local=_backend()).start()
    yield aws
    aws.stop()


# The tests aim triggers at Lambda functions and clone task definitions with roles: both are off by default
# (template.yaml), so the test stack opts in like an operator would with --parameter-overrides.
TEST_PARAMETERS = {"LambdaFunctionPattern": "*", "TaskRolePattern": "*"}


@pytest.fixture
def stack(embedded):
    embedded.reset()
    embedded.deploy(parameters=TEST_PARAMETERS)
    return embedded


@pytest.fixture
def services(stack):
    """The composition root as the functions build it (same env as the functions)."""
    from imagestreams.bootstrap import services as build

    stack.use_function_env("AdminFunction")
    return build()


REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def make_service(aws, cluster="prod", service="web", image=None, *, controller="ECS", tags=None):
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName=cluster)
    kwargs = {}
    if tags:
        kwargs["tags"] = tags
    task_def = ecs.register_task_definition(
        family=service, cpu="256", memory="512", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        executionRoleArn="arn:aws:iam::123456789012:role/exec",
        containerDefinitions=[
            {"name": "web", "image": image or f"{REG}/team/web:latest", "essential": True,
             "environment": [{"name": "MODE", "value": "prod"}], "portMappings": [{"containerPort": 8080}]},
            {"name": "sidecar", "image": "fluent-bit:2", "essential": False},
        ], **kwargs,
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=task_def, desiredCount=1,
                       deploymentController={"type": controller})
    return task_def


def service_images(aws, cluster="prod", service="web"):
    ecs = aws.client("ecs")
    arn = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["taskDefinition"]
    td = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return arn, {c["name"]: c["image"] for c in td["taskDefinition"]["containerDefinitions"]}, td
