"""A Lambda target whose repository policy does not let Lambda pull: the fire fails with the exact
repository-policy statement to add, instead of an opaque AccessDenied retried forever."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imagestreams.adapters.awslambda import LambdaDriver
from imagestreams.errors import TargetError
from imagestreams.model import LambdaTarget

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web@sha256:" + "a" * 64


class FakeLambda:
    """The three calls a fire makes; ``update_error`` / ``final_status`` script how Lambda answers."""

    def __init__(self, *, update_error: dict[str, str] | None = None,
                 final_status: dict[str, str] | None = None) -> None:
        self.update_error = update_error
        self.final_status = final_status or {"LastUpdateStatus": "Successful"}
        self.updates: list[str] = []

    def get_function(self, **_: Any) -> dict[str, Any]:
        return {"Configuration": {"PackageType": "Image", "Architectures": ["arm64"]},
                "Code": {"ImageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web:latest"}}

    def update_function_code(self, FunctionName: str, ImageUri: str) -> None:  # noqa: N803 - boto3's names
        if self.update_error:
            raise ClientError({"Error": self.update_error, "ResponseMetadata": {"HTTPStatusCode": 403}},
                              "UpdateFunctionCode")
        self.updates.append(ImageUri)

    def get_function_configuration(self, **_: Any) -> dict[str, Any]:
        return self.final_status


def statement_in(message: str) -> dict[str, Any]:
    found = re.search(r"(\{\"Sid\".*?\}\}\})", message)
    assert found, message
    return json.loads(found[1])


def assert_names_the_statement(message: str) -> None:
    statement = statement_in(message)
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert sorted(statement["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert statement["Condition"]["StringLike"]["aws:sourceArn"] == "arn:aws:lambda:eu-west-1:123456789012:function:*"
    assert "team/web" in message and "repository's policy" in message
    assert len(message) < 1024  # fits the stored lastError without being cut


def test_repository_policy_refusal_says_which_statement_to_add():
    client = FakeLambda(update_error={"Code": "AccessDeniedException", "Message": (
        "Lambda does not have permission to access the ECR image. Check the ECR permissions.")})
    with pytest.raises(TargetError) as info:
        LambdaDriver(client, sleep=lambda _: None).apply(LambdaTarget("svc-resize"), IMAGE)
    assert_names_the_statement(str(info.value))
    assert "svc-resize" in str(info.value) and "Check the ECR permissions" in str(info.value)


def test_refusal_reported_later_by_the_update_status_gets_the_same_advice():
    client = FakeLambda(final_status={"LastUpdateStatus": "Failed", "LastUpdateStatusReasonCode": "ImageAccessDenied",
                                      "LastUpdateStatusReason": "Lambda can't access the image."})
    with pytest.raises(TargetError) as info:
        LambdaDriver(client, sleep=lambda _: None).apply(LambdaTarget("svc-resize"), IMAGE)
    assert_names_the_statement(str(info.value))


def test_our_own_missing_permission_is_not_blamed_on_the_repository():
    client = FakeLambda(update_error={"Code": "AccessDeniedException", "Message": (
        "User: arn:aws:sts::123456789012:assumed-role/deployer/x is not authorized to perform: "
        "lambda:UpdateFunctionCode on resource: arn:aws:lambda:eu-west-1:123456789012:function:svc-resize")})
    with pytest.raises(TargetError) as info:
        LambdaDriver(client, sleep=lambda _: None).apply(LambdaTarget("svc-resize"), IMAGE)
    assert "lambda.amazonaws.com" not in str(info.value) and "not authorized" in str(info.value)
