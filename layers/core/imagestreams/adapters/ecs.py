"""Target driver for ECS services: new task-definition revision with one container's image replaced.

Recipe (aws-facts.md §3.1): DescribeServices → DescribeTaskDefinition(include TAGS) → RegisterTaskDefinition
(cloned from the service's *current* revision, read-only fields dropped by the live service model) →
UpdateService. Already pinned: two calls, nothing written.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import TargetError, TransientTargetError
from ..model import EcsTarget
from ..ports import DriverResult, TargetState

_THROTTLING = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "ServerException", "ServiceUnavailableException",
    "InternalFailure", "ServiceUnavailable",
}

_CONCURRENT = "too many concurrent attempts"


def classify(exc: Exception, doing: str) -> Exception:
    """Map an SDK error (after botocore's own retries) to a permanent or a transient target error."""
    if isinstance(exc, ClientError):
        code = exc.response["Error"].get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = exc.response["Error"].get("Message", "")
        if code in _THROTTLING or status >= 500 or _CONCURRENT in message.lower():
            # RegisterTaskDefinition answers ClientException "Too many concurrent attempts to create a new
            # revision of the specified family" while another revision of it is being registered: retry later
            return TransientTargetError(f"{doing}: {code or status}: {message}")
        return TargetError(f"{doing}: {code}: {message}")
    return TransientTargetError(f"{doing}: {exc}")


class EcsDriver:
    def __init__(self, client: Any) -> None:
        self.client = client
        model = client.meta.service_model.operation_model("RegisterTaskDefinition")
        self._register_fields = set(model.input_shape.members)

    def _call(self, doing: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc, doing) from exc

    def platform(self, target: EcsTarget) -> str | None:
        return None  # ECS takes the index and pulls the task's platform

    def _service(self, target: EcsTarget) -> dict[str, Any]:
        out = self._call("DescribeServices", self.client.describe_services,
                         cluster=target.cluster, services=[target.service])
        if out.get("failures") or not out.get("services"):
            reasons = ", ".join(f.get("reason", "?") for f in out.get("failures", [])) or "MISSING"
            raise TargetError(f"ECS service {target.service} in cluster {target.cluster}: {reasons}")
        service = out["services"][0]
        if service.get("status") != "ACTIVE":
            raise TargetError(f"ECS service {target.service} is {service.get('status')}, not ACTIVE")
        controller = (service.get("deploymentController") or {}).get("type", "ECS")
        if controller != "ECS":
            raise TargetError(
                f"ECS service {target.service} uses the {controller} deployment controller, which is not supported "
                "yet: only the rolling-update (ECS) controller can be redeployed by UpdateService"
            )
        return service

    def _task_definition(self, target: EcsTarget, service: dict[str, Any]) -> tuple[Any, dict[str, Any], Any]:
        current = self._call("DescribeTaskDefinition", self.client.describe_task_definition,
                             taskDefinition=service["taskDefinition"], include=["TAGS"])
        task_def = current["taskDefinition"]
        params = {k: v for k, v in task_def.items() if k in self._register_fields}
        container = next((c for c in params.get("containerDefinitions", []) if c.get("name") == target.container), None)
        if container is None:
            names = ", ".join(c.get("name", "?") for c in params.get("containerDefinitions", []))
            raise TargetError(
                f"container {target.container} not found in {task_def.get('taskDefinitionArn')} (containers: {names})")
        return current, params, container

    def apply(self, target: EcsTarget, image: str) -> DriverResult:
        current, params, container = self._task_definition(target, self._service(target))
        previous = container.get("image")
        if previous == image:
            return DriverResult(changed=False, previous_image=previous)
        container["image"] = image
        tags = [t for t in current.get("tags") or [] if not t["key"].startswith("imagestreams:")]
        tags.append({"key": "imagestreams:image", "value": image[-256:]})
        params["tags"] = tags
        registered = self._call("RegisterTaskDefinition", self.client.register_task_definition, **params)
        arn = registered["taskDefinition"]["taskDefinitionArn"]
        updated = self._call("UpdateService", self.client.update_service,
                             cluster=target.cluster, service=target.service, taskDefinition=arn)["service"]
        primary = next((d for d in updated.get("deployments", []) if d.get("status") == "PRIMARY"), {})
        return DriverResult(changed=True, previous_image=previous, rollout_state=primary.get("rolloutState"),
                            detail=arn, deployment=primary.get("id"))

    def inspect(self, target: EcsTarget, deployment: str | None) -> TargetState:
        service = self._service(target)
        _, _, container = self._task_definition(target, service)
        ours = next((d for d in service.get("deployments", []) if deployment and d.get("id") == deployment), None)
        return TargetState(container.get("image", ""), ours.get("rolloutState") if ours else None)
