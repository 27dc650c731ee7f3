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


def reset() -> None:
    """Forget cached clients (tests and the local runner switch endpoints between runs)."""
    client.cache_clear()
    session.cache_clear()
