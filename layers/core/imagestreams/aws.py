"""The one place boto3 clients are built.

Endpoints come from botocore's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables,
so the same code talks to AWS, moto and DynamoDB Local. Retries use botocore's ``standard`` mode (throttling and
5xx retried with jittered backoff); override with ``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

_USER_AGENT = "imagestreams/0.1"


def client_config() -> Config:
    return Config(
        retries={
            "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
            "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "5")),
        },
        connect_timeout=5,
        read_timeout=20,
        user_agent_extra=_USER_AGENT,
    )


@lru_cache(maxsize=None)
def session() -> boto3.session.Session:
    return boto3.session.Session()


@lru_cache(maxsize=None)
def client(service: str) -> Any:
    """A cached client per service: built once per warm container, after any test mock is active."""
    return session().client(service, config=client_config())


class LazyClient:
    """Stands in for ``client(service)`` and builds it on first use: a function that never needs, say, SQS does
    not pay for creating its client at cold start (~20-50 ms each)."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self._service), name)


# ------------------------------------------------------------------------ another account's role

ROLE_SESSION_NAME = "imagestreams"
ROLE_SESSION_SECONDS = 3600
assume_role_calls = 0  # sts:AssumeRole calls made by this process (figures and tests)


def _assume(role_arn: str, external_id: str | None) -> dict[str, str]:
    global assume_role_calls
    kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": ROLE_SESSION_NAME,
                              "DurationSeconds": ROLE_SESSION_SECONDS}
    if external_id:
        kwargs["ExternalId"] = external_id
    assume_role_calls += 1
    credentials = client("sts").assume_role(**kwargs)["Credentials"]
    return {"access_key": credentials["AccessKeyId"], "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"], "expiry_time": credentials["Expiration"].isoformat()}


@lru_cache(maxsize=64)
def role_session(role_arn: str, external_id: str | None = None) -> boto3.session.Session:
    """A session whose credentials come from ``sts:AssumeRole`` on ``role_arn``, one per role: assumed on first
    use, kept, and assumed again by botocore shortly before they expire (its refresh windows: 15 minutes ahead,
    at the latest 10). STS is only loaded when a target names a role."""
    import botocore.session
    from botocore.credentials import DeferredRefreshableCredentials

    base = session()
    core = botocore.session.Session()
    core._credentials = DeferredRefreshableCredentials(  # noqa: SLF001 (botocore's documented refresh hook)
        refresh_using=lambda: _assume(role_arn, external_id), method="sts-assume-role")
    return boto3.session.Session(botocore_session=core, region_name=base.region_name)


@lru_cache(maxsize=256)
def role_client(service: str, role_arn: str | None, external_id: str | None = None) -> Any:
    """``client(service)``, or with ``role_arn`` a client acting as that role (cached per role and service)."""
    if not role_arn:
        return client(service)
    return role_session(role_arn, external_id).client(service, config=client_config())


def session_for(role_arn: str | None, external_id: str | None = None) -> boto3.session.Session:
    return role_session(role_arn, external_id) if role_arn else session()


def reset() -> None:
    """Forget cached clients (tests and the local runner switch endpoints between runs)."""
    global assume_role_calls
    client.cache_clear()
    session.cache_clear()
    role_client.cache_clear()
    role_session.cache_clear()
    assume_role_calls = 0
