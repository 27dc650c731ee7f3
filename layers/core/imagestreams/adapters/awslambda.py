"""Target driver for container-image Lambda functions (``UpdateFunctionCode(ImageUri=<pinned ref>)``).

Lambda resolves a tag once and never follows it ("if you update the image tag to a new image, Lambda does not
automatically update the function", UpdateFunctionCode API reference), and it takes no image index: the services
layer asks :meth:`LambdaDriver.platform` and pins the child manifest of that architecture.
With ``alias``: wait for the update, publish a version, point the alias at it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import Invalid, TargetError, TransientTargetError
from ..model import LambdaTarget
from ..ports import DriverResult, TargetState
from .ecs import classify

ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}
_ECR_IMAGE = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?P<cn>\.cn)?/"
                        r"(?P<repository>[^@:]+)")


def pull_denied(image: str, function: str, lambda_says: str) -> TargetError:
    """Lambda pulls a function's image with its own service principal, so the *repository policy* must let
    ``lambda.amazonaws.com`` pull. Lambda adds that statement itself only when the caller may read and write
    repository policies, which this stack's roles deliberately may not. Say exactly what to add."""
    match = _ECR_IMAGE.match(image)
    if match is None:
        return TargetError(f"Lambda may not pull {image} for {function}: let lambda.amazonaws.com pull it "
                           f"(ecr:BatchGetImage, ecr:GetDownloadUrlForLayer). Lambda said: {lambda_says}")
    partition = "aws-cn" if match["cn"] else "aws"
    statement = {
        "Sid": "LambdaECRImageRetrievalPolicy", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "Condition": {"StringLike": {
            "aws:sourceArn": f"arn:{partition}:lambda:{match['region']}:{match['account']}:function:*"}},
    }
    return TargetError(
        f"Lambda may not pull from ECR repository {match['repository']} for function {function}: add this statement "
        f"to that repository's policy (ECR console > {match['repository']} > Permissions), then the next retry "
        f"deploys: {json.dumps(statement, separators=(',', ':'))}. Lambda said: {lambda_says}")


class LambdaDriver:
    def __init__(self, client: Any, *, wait_seconds: float = 40.0, poll_seconds: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.sleep = sleep
        self._cached: tuple[str, float, dict[str, Any]] | None = None

    def _call(self, doing: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                raise TargetError(f"{doing}: {exc.response['Error'].get('Message')}") from exc
            raise classify(exc, doing) from exc
        except BotoCoreError as exc:
            raise classify(exc, doing) from exc

    def _function(self, target: LambdaTarget, qualifier: str | None = None, *, reuse: bool = False) -> dict[str, Any]:
        """GetFunction. With ``reuse``, the answer :meth:`platform` just fetched for the same fire is used once
        instead of asking again."""
        cached, self._cached = self._cached, None
        if reuse and qualifier is None and cached is not None and cached[0] == target.function and \
                time.monotonic() - cached[1] < 5:
            return cached[2]
        kwargs = {"FunctionName": target.function}
        if qualifier:
            kwargs["Qualifier"] = qualifier
        out = self._call("GetFunction", self.client.get_function, **kwargs)
        if out["Configuration"].get("PackageType", "Zip") != "Image":
            raise TargetError(f"Lambda function {target.function} is zip-packaged: only container-image functions "
                              "can follow an image stream")
        return out

    def validate(self, target: LambdaTarget) -> None:
        """For ``trigger.add``: refuse a zip function up front with ``Invalid``."""
        try:
            self._function(target)
        except TargetError as exc:
            raise Invalid(str(exc)) from exc

    def platform(self, target: LambdaTarget) -> str:
        out = self._function(target)
        self._cached = (target.function, time.monotonic(), out)  # apply() of the same fire reuses it
        arch = (out["Configuration"].get("Architectures") or ["x86_64"])[0]
        return ARCHITECTURES.get(arch, arch)

    def inspect(self, target: LambdaTarget, deployment: str | None) -> TargetState:
        out = self._function(target, target.alias)
        status = out["Configuration"].get("LastUpdateStatus") or "Successful"
        state = {"Successful": "COMPLETED", "Failed": "FAILED"}.get(status, "IN_PROGRESS")
        return TargetState(out["Code"].get("ImageUri", ""), state)

    def apply(self, target: LambdaTarget, image: str) -> DriverResult:
        latest = self._function(target, reuse=True)
        previous = latest["Code"].get("ImageUri")
        changed = False
        state = "COMPLETED"
        if previous != image:
            self._update_code(target, image)
            changed = True
            state = self._wait(target, image)
        if target.alias:
            if state != "COMPLETED":
                raise TransientTargetError(f"{target.describe()}: update still in progress; alias not moved yet")
            # $LATEST just changed: the alias needs a new version. Otherwise look at the alias's own version
            # (a previous attempt may have updated $LATEST and failed before moving the alias).
            if changed or self._function(target, target.alias)["Code"].get("ImageUri") != image:
                version = self._call("PublishVersion", self.client.publish_version, FunctionName=target.function,
                                     Description=f"imagestreams: {image}"[:256])["Version"]
                self._call("UpdateAlias", self.client.update_alias, FunctionName=target.function,
                           Name=target.alias, FunctionVersion=version)
                changed = True
        return DriverResult(changed, previous, state if changed else "COMPLETED")

    def _update_code(self, target: LambdaTarget, image: str) -> None:
        try:
            self.client.update_function_code(FunctionName=target.function, ImageUri=image)
        except ClientError as exc:
            error = exc.response["Error"]
            message = error.get("Message") or ""
            # Our own role lacking lambda:* permissions says "... is not authorized to perform: lambda:..."; an
            # AccessDenied without that is Lambda's service principal being refused the image by the repository.
            if error.get("Code") == "AccessDeniedException" and "not authorized to perform: lambda:" not in message:
                raise pull_denied(image, target.function, f"AccessDeniedException: {message}") from exc
            raise classify(exc, "UpdateFunctionCode") from exc
        except BotoCoreError as exc:
            raise classify(exc, "UpdateFunctionCode") from exc

    def _wait(self, target: LambdaTarget, image: str) -> str:
        """Poll LastUpdateStatus: COMPLETED, FAILED (raises with Lambda's reason) or IN_PROGRESS at the deadline."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            config = self._call("GetFunctionConfiguration", self.client.get_function_configuration,
                                FunctionName=target.function)
            status = config.get("LastUpdateStatus") or "Successful"
            if status == "Successful":
                return "COMPLETED"
            if status == "Failed":
                reason = config.get("LastUpdateStatusReason")
                if config.get("LastUpdateStatusReasonCode") == "ImageAccessDenied":
                    raise pull_denied(image, target.function, f"ImageAccessDenied: {reason}")
                raise TargetError(f"{target.describe()}: update failed: {reason}")
            if time.monotonic() >= deadline:
                return "IN_PROGRESS"
            self.sleep(self.poll_seconds)
