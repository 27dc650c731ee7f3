"""ECR events as EventBridge delivers them, validated before use."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .errors import Invalid
from .model import show, validate_digest, validate_repository, validate_tag

DETAIL_TYPES = {"ECR Image Action": ("PUSH", "DELETE"), "ECR Replication Action": ("REPLICATE",)}


class EcrEvent(NamedTuple):
    id: str
    action: str  # PUSH | DELETE | REPLICATE
    stream: str
    digest: str | None
    tag: str | None
    result: str


def parse_ecr_event(event: Any) -> EcrEvent:
    """Raise :class:`Invalid` with a precise message for anything that is not a well-formed ECR event."""
    if not isinstance(event, dict):
        raise Invalid(f"event must be a JSON object, got {type(event).__name__}")
    if event.get("source") != "aws.ecr":
        raise Invalid(f"unexpected event source {show(event.get('source'))}; expected 'aws.ecr'")
    detail_type = event.get("detail-type")
    if not isinstance(detail_type, str) or detail_type not in DETAIL_TYPES:
        raise Invalid(f"unexpected detail-type {show(detail_type)}; expected one of {sorted(DETAIL_TYPES)}")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise Invalid("event detail must be an object")
    action = detail.get("action-type")
    if not isinstance(action, str) or action not in DETAIL_TYPES[detail_type]:
        raise Invalid(f"unexpected action-type {show(action)} for {detail_type}")
    result = detail.get("result")
    if not isinstance(result, str):
        raise Invalid("detail.result must be a string")
    stream = validate_repository(detail.get("repository-name"))
    digest = detail.get("image-digest")
    if digest is not None:
        digest = validate_digest(digest)
    tag = detail.get("image-tag")
    if tag in ("", None):
        tag = None  # push by digest, or a per-platform part of a multi-arch push
    else:
        tag = validate_tag(tag)
    event_id = event.get("id")
    return EcrEvent(event_id if isinstance(event_id, str) else "", action, stream, digest, tag, result)


class DeploymentChange(NamedTuple):
    target_key: str  # ``ecs:<cluster>/<service>``; ``ecs:*/<service>`` for an old-format ARN (no cluster in it)
    deployment: str
    state: str  # IN_PROGRESS | COMPLETED | FAILED
    reason: str

    @property
    def cluster_known(self) -> bool:
        return not self.target_key.startswith(f"ecs:{ANY_CLUSTER}/")


class ForeignEvent(Invalid):
    """Well formed, but about another account or region than the stack's: not ours to act on."""


ANY_CLUSTER = "*"  # no cluster name contains it
ECS_DEPLOYMENT_EVENTS = {"SERVICE_DEPLOYMENT_IN_PROGRESS": "IN_PROGRESS",
                         "SERVICE_DEPLOYMENT_COMPLETED": "COMPLETED", "SERVICE_DEPLOYMENT_FAILED": "FAILED"}
# New format arn:aws:ecs:<region>:<account>:service/<cluster>/<service>; old format (services created before the
# long ARN format was enabled) arn:aws:ecs:<region>:<account>:service/<service>, without the cluster.
_SERVICE_ARN = re.compile(
    r"arn:aws[a-z-]*:ecs:([a-z0-9-]+):([0-9]{12}):service/(?:([A-Za-z0-9_-]{1,255})/)?([A-Za-z0-9_-]{1,255})")


def parse_ecs_deployment_event(event: Any, *, account: str | None = None, region: str | None = None,
                               target_accounts: tuple[str, ...] = ()) -> DeploymentChange:
    """``ECS Deployment State Change``: the service ARN is in ``resources``. With ``account`` and
    ``region`` (the stack's), an event about anything else raises :class:`ForeignEvent` — except an event that a
    workload account in ``target_accounts`` (AllowedTargetAccounts) forwarded about its own service: its key names
    that account (``ecs:<cluster>/<service>@<account>``), as the key of a target with a role there does."""
    if not isinstance(event, dict) or event.get("source") != "aws.ecs" or \
            event.get("detail-type") != "ECS Deployment State Change":
        raise Invalid("not an ECS Deployment State Change event")
    detail = event.get("detail")
    if not isinstance(detail, dict) or not isinstance(detail.get("eventName"), str) or \
            detail["eventName"] not in ECS_DEPLOYMENT_EVENTS:
        name = detail.get("eventName") if isinstance(detail, dict) else None
        raise Invalid(f"unexpected detail.eventName {show(name)}")
    deployment = detail.get("deploymentId")
    if not isinstance(deployment, str) or not deployment.startswith("ecs-svc/") or len(deployment) > 64:
        raise Invalid(f"unexpected detail.deploymentId {show(deployment)}")
    resources = event.get("resources")
    match = _SERVICE_ARN.fullmatch(resources[0]) if isinstance(resources, list) and resources and isinstance(
        resources[0], str) else None
    if match is None:
        raise Invalid("resources[0] must be an ECS service ARN (arn:aws:ecs:…:service/[<cluster>/]<service>)")
    arn_region, arn_account, cluster, service = match.groups()
    suffix = ""
    if account is not None and arn_account != account and arn_account in target_accounts and \
            event.get("account") == arn_account:
        account, suffix = arn_account, f"@{arn_account}"  # forwarded by a workload account about its own service
    for what, expected, seen in (("account", account, (event.get("account"), arn_account)),
                                 ("region", region, (event.get("region"), arn_region))):
        if expected is not None and any(value != expected for value in seen):
            raise ForeignEvent(f"event from {what} {show(seen[0])} about {show(resources[0])}; this stack's "
                               f"{what} is {expected}")
    reason = detail.get("reason") if isinstance(detail.get("reason"), str) else ""
    return DeploymentChange(f"ecs:{cluster or ANY_CLUSTER}/{service}{suffix}", deployment,
                            ECS_DEPLOYMENT_EVENTS[detail["eventName"]], reason[:1024])
