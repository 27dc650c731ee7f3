"""Shared test setup: fake credentials and Powertools settings before anything builds a client."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

for key, value in {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_SERVICE_NAME": "imagestreams-test",
    "POWERTOOLS_METRICS_NAMESPACE": "ImageStreamsTest",
    "POWERTOOLS_DEV": "0",
}.items():
    os.environ[key] = value
for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(key, None)


def digest(n: object) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


class FakeContext:
    function_name = "test"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def moto_streams_table(monkeypatch):
    """The stack's StreamsTable (keys and indexes as template.yaml declares them) on moto: a DynamoStore and its
    client. Any local endpoint another test left in the environment is cleared first."""
    import boto3
    from moto import mock_aws

    from imagestreams.adapters.dynamodb import DynamoStore
    from imagestreams_local.template import load_template

    table = load_template(Path(__file__).resolve().parents[1] / "template.yaml")["Resources"]["StreamsTable"]
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(key)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        props = table["Properties"]
        client.create_table(TableName="streams", AttributeDefinitions=props["AttributeDefinitions"],
                            KeySchema=props["KeySchema"], GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
                            BillingMode="PAY_PER_REQUEST")
        yield DynamoStore(client, "streams"), client
