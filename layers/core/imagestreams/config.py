"""Settings from the environment variables template.yaml declares."""

from __future__ import annotations

import os
from typing import NamedTuple

from .errors import Invalid


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise Invalid(f"environment variable {name} must be a positive integer, got {raw!r}")
    return int(raw)


class NotConfigured(RuntimeError):
    """The stack's settings are missing from the environment (the CLI says how to point it at a stack)."""


class Settings(NamedTuple):
    table: str
    fire_queue_url: str | None
    history_limit: int
    tombstone_ttl_days: int
    allowed_ecs_clusters: str = "*"
    allowed_eks_namespaces: str = "*"
    allowed_lambda_functions: str = ""  # empty: Lambda targets are off (LambdaFunctionPattern not set)
    account_id: str | None = None
    region: str | None = None  # the stack's region (Lambda sets AWS_REGION)
    task_role_pattern: str = ""  # IAM role-name pattern ECS fires may pass (TaskRolePattern); empty: none
    repository_pattern: str = "*"  # ECR repositories that are ours (RepositoryPattern, an IAM resource pattern)
    allowed_target_accounts: str = ""  # AllowedTargetAccounts: comma-separated ids; empty: this account only
    target_role_pattern: str = ""  # TargetRolePattern: role names a target's roleArn may name; empty: none
    gate_clock_queue_url: str | None = None  # GateClockQueue: wakes waiting gates on time

    @classmethod
    def from_env(cls) -> Settings:
        table = os.environ.get("TABLE_NAME", "").strip()
        if not table:
            raise NotConfigured("TABLE_NAME is not set: deploy the function with template.yaml, or (locally) run "
                                "`imagestreams-local up` and paste the export lines it prints")
        return cls(
            table=table,
            fire_queue_url=os.environ.get("FIRE_QUEUE_URL") or None,
            history_limit=_positive_int("HISTORY_LIMIT", 50),
            tombstone_ttl_days=_positive_int("TOMBSTONE_TTL_DAYS", 90),
            allowed_ecs_clusters=os.environ.get("ALLOWED_ECS_CLUSTERS") or "*",
            allowed_eks_namespaces=os.environ.get("ALLOWED_EKS_NAMESPACES") or "*",
            allowed_lambda_functions=os.environ.get("ALLOWED_LAMBDA_FUNCTIONS", "").strip(),
            account_id=os.environ.get("ACCOUNT_ID") or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
            task_role_pattern=os.environ.get("TASK_ROLE_PATTERN", "").strip(),
            repository_pattern=os.environ.get("REPOSITORY_PATTERN", "").strip() or "*",
            allowed_target_accounts=os.environ.get("ALLOWED_TARGET_ACCOUNTS", "").strip(),
            target_role_pattern=os.environ.get("TARGET_ROLE_PATTERN", "").strip(),
            gate_clock_queue_url=os.environ.get("GATE_CLOCK_QUEUE_URL") or None,
        )
