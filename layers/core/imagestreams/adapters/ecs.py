"""Target driver for ECS services: new task-definition revision with one container's image replaced.

Recipe: DescribeServices → DescribeTaskDefinition(include TAGS) → RegisterTaskDefinition
(cloned from the service's *current* revision, read-only fields dropped by the live service model) →
UpdateService. Already pinned: two calls, nothing written, and the deployment running that revision is reported
(so a retry after a lost trigger write adopts it).

A fire never widens privilege: it clones only a revision of the recorded family with the recorded task and
execution roles (``pins``), and only passes roles whose name matches ``task_role_pattern`` (the stack's
TaskRolePattern parameter; empty: no role may be passed).
"""

from __future__ import annotations

import logging
from fnmatch import fnmatchcase
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import PinsChanged, TargetError, TransientTargetError
from ..model import EcsTarget, TaskPins
from ..ports import DriverResult, TargetState

log = logging.getLogger(__name__)

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


# ServiceDeployment.status (ListServiceDeployments) → the rollout state of that deployment.
_HISTORY_STATES = {
    "PENDING": "IN_PROGRESS", "IN_PROGRESS": "IN_PROGRESS", "SUCCESSFUL": "COMPLETED",
    "STOP_REQUESTED": "FAILED", "STOPPED": "FAILED", "ROLLBACK_REQUESTED": "FAILED",
    "ROLLBACK_IN_PROGRESS": "FAILED", "ROLLBACK_SUCCESSFUL": "FAILED", "ROLLBACK_FAILED": "FAILED",
}
_UNSUPPORTED = {"UnknownOperationException", "InvalidAction", "AccessDeniedException", "AccessDenied",
                "UnsupportedOperation", "UnsupportedFeatureException"}


def pins_of(task_def: dict[str, Any]) -> TaskPins:
    """The family and roles of a task definition (as DescribeTaskDefinition returns it)."""
    return TaskPins(task_def.get("family") or "", task_def.get("taskRoleArn") or None,
                    task_def.get("executionRoleArn") or None)


def role_allowed(role: str, patterns: list[str]) -> bool:
    """``role`` (an ARN or a name) matches one of the IAM role ``patterns`` (``*`` and ``?`` wildcards, ``*`` also
    across ``/``) the way the ``iam:PassRole`` resource ``role/<pattern>`` matches it: against its path and name."""
    path_and_name = role.split(":role/", 1)[1] if ":role/" in role else role
    return any(fnmatchcase(path_and_name, p) for p in patterns)


class EcsDriver:
    finds_past_rollouts = True  # inspect() takes image=: it can tell what became of a deployment ECS dropped

    def __init__(self, client: Any, *, task_role_pattern: str = "") -> None:
        self.client = client
        model = client.meta.service_model.operation_model("RegisterTaskDefinition")
        self._register_fields = set(model.input_shape.members)
        self.task_role_pattern = task_role_pattern
        # one pattern, exactly as IAM uses it in the PassRole resource (a comma is a valid role-name character)
        self._role_patterns = [task_role_pattern.strip()] if task_role_pattern.strip() else []

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

    def _check_pins(self, target: EcsTarget, task_def: dict[str, Any], pins: TaskPins | None) -> TaskPins:
        seen = pins_of(task_def)
        changes = pins.changes(seen) if pins is not None else []
        if changes:
            raise PinsChanged(
                f"ECS service {target.service} now runs {task_def.get('taskDefinitionArn')}: {'; '.join(changes)}. "
                "Nothing was registered; a person must run `deploy` to accept it", seen)
        return seen

    def _check_roles(self, task_def: dict[str, Any]) -> None:
        """Refuse to register a revision that passes a role TaskRolePattern does not allow."""
        for what, role in (("task role", task_def.get("taskRoleArn")),
                           ("execution role", task_def.get("executionRoleArn"))):
            if not role:
                continue
            if not self._role_patterns:
                raise TargetError(
                    f"{task_def.get('taskDefinitionArn')} passes {what} {role}, but no role may be passed: the "
                    "TaskRolePattern parameter is empty (set it to the role names fires may pass, e.g. 'app-*')")
            if not role_allowed(role, self._role_patterns):
                raise TargetError(
                    f"{task_def.get('taskDefinitionArn')} passes {what} {role}, which the TaskRolePattern parameter "
                    f"({self.task_role_pattern}) does not allow")

    def current_pins(self, target: EcsTarget) -> TaskPins:
        """The family and roles of the revision the service runs now (recorded when a trigger is added)."""
        current, _, _ = self._task_definition(target, self._service(target))
        return pins_of(current["taskDefinition"])

    def apply(self, target: EcsTarget, image: str, *, pins: TaskPins | None = None) -> DriverResult:
        service = self._service(target)
        current, params, container = self._task_definition(target, service)
        seen = self._check_pins(target, current["taskDefinition"], pins)
        previous = container.get("image")
        if previous == image:
            running = self._running(service)
            return DriverResult(changed=False, previous_image=previous, rollout_state=running.get("rolloutState"),
                                deployment=running.get("id"), pins=seen, reason=running.get("rolloutStateReason"))
        self._check_roles(current["taskDefinition"])
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
                            detail=arn, deployment=primary.get("id"), pins=seen)

    @staticmethod
    def _running(service: dict[str, Any]) -> dict[str, Any]:
        """The deployment that runs the service's current revision (the PRIMARY one when ECS does not say)."""
        deployments = service.get("deployments") or []
        return (next((d for d in deployments if d.get("taskDefinition") == service.get("taskDefinition")), None)
                or next((d for d in deployments if d.get("status") == "PRIMARY"), {}))

    def inspect(self, target: EcsTarget, deployment: str | None, *, image: str | None = None) -> TargetState:
        """What the container runs, and how ``deployment`` went. With ``image`` (what that deployment put there):
        when ECS has dropped the deployment from the service (a circuit-breaker rollback replaces it), its outcome
        is read from the service's deployment history instead."""
        service = self._service(target)
        _, _, container = self._task_definition(target, service)
        ours = next((d for d in service.get("deployments", []) if deployment and d.get("id") == deployment), None)
        if ours is not None:
            return TargetState(container.get("image", ""), ours.get("rolloutState"), ours.get("rolloutStateReason"))
        state, reason = (self._past_rollout(target, image) if deployment and image else None) or (None, None)
        return TargetState(container.get("image", ""), state, reason)

    def _history_call(self, doing: str, fn: Any, **kwargs: Any) -> Any:
        """A deployment-history call; None when this endpoint or our role cannot make it (older regions, a role
        without the permission, emulators): the caller then knows no more than before."""
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response["Error"].get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _UNSUPPORTED or status in (404, 501) or code.isdigit():  # no AWS error shape: not served
                log.warning("%s is not available (%s %s); cannot tell what became of a dropped deployment",
                            doing, code, status)
                return None
            raise classify(exc, doing) from exc
        except BotoCoreError as exc:
            raise classify(exc, doing) from exc

    def _past_rollout(self, target: EcsTarget, image: str) -> tuple[str, str | None] | None:
        """The outcome of the newest service deployment whose revision put ``image`` into the container."""
        listed = self._history_call("ListServiceDeployments", self.client.list_service_deployments,
                                    cluster=target.cluster, service=target.service, maxResults=20)
        briefs = [b for b in (listed or {}).get("serviceDeployments", []) if b.get("targetServiceRevisionArn")]
        if not briefs:
            return None
        described = self._history_call("DescribeServiceRevisions", self.client.describe_service_revisions,
                                       serviceRevisionArns=sorted({b["targetServiceRevisionArn"] for b in briefs}))
        digest = image.partition("@")[2]
        ours = {
            r.get("serviceRevisionArn") for r in (described or {}).get("serviceRevisions", [])
            if any(c.get("containerName") == target.container
                   and (c.get("image") == image or (digest and c.get("imageDigest") == digest))
                   for c in r.get("containerImages") or [])
        }
        briefs.sort(key=lambda b: str(b.get("createdAt") or ""), reverse=True)
        for brief in briefs:
            if brief["targetServiceRevisionArn"] in ours and brief.get("status") in _HISTORY_STATES:
                return _HISTORY_STATES[brief["status"]], brief.get("statusReason") or brief["status"]
        return None
