"""Setup problems a new user hits first: each is one line on stderr with the fix, exit 1 (2 for usage), and never
a Python traceback."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from imagestreams import aws, bootstrap
from imagestreams.cli import main

ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
       "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "TABLE_NAME", "FIRE_QUEUE_URL",
       "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_MAX_ATTEMPTS", "IMAGESTREAMS_DEBUG")
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _denied(command):
    raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "User: arn:aws:iam::123456789012:user/"
                                 "bob is not authorized to perform: lambda:InvokeFunction"}}, "Invoke")


CASES = [
    # (name, environment, argv, mocked AWS, injected transport, expected exit, words the message must contain)
    ("no stack", {**CREDS}, ["describe", "team/web"], False, None, 1, ["imagestreams-local up", "--function"]),
    ("no region", {"TABLE_NAME": "t", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
     ["describe", "team/web"], False, None, 1, ["region", "--region"]),
    ("no credentials", {"TABLE_NAME": "t", "AWS_DEFAULT_REGION": "us-east-1"}, ["describe", "team/web"], False,
     None, 1, ["credentials", "aws configure"]),
    ("table not found", {**CREDS, "TABLE_NAME": "no-such-table"}, ["describe", "team/web"], True, None, 1,
     ["'no-such-table'", "not found"]),
    ("function not found", {**CREDS}, ["--function", "no-such-fn", "describe", "team/web"], True, None, 1,
     ["'no-such-fn'", "--function"]),
    ("endpoint unreachable", {**CREDS, "TABLE_NAME": "t", "AWS_MAX_ATTEMPTS": "1",
                              "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"},
     ["describe", "team/web"], False, None, 1, ["cannot reach", "imagestreams-local up"]),
    ("access denied", {**CREDS}, ["--function", "admin", "describe", "team/web"], False, _denied, 1,
     ["access denied", "AccessDeniedException"]),
    ("bad --ecs", {**CREDS}, ["trigger", "add", "team/web:latest", "--ecs", "prod-web"], False, None, 2,
     ["'prod-web'", "CLUSTER/SERVICE:CONTAINER"]),
    ("typo before configuration", {}, ["describe", "../etc"], False, None, 2, ["'../etc'", "Invalid"]),
    ("bad tag before configuration", {}, ["tag", "team/web:latest", "team/web:bad!tag"], False, None, 2,
     ["'bad!tag'"]),
    ("two targets", {**CREDS}, ["trigger", "add", "team/web:latest", "--ecs", "p/w:w", "--lambda", "f"], False,
     None, 2, ["exactly one"]),
]


@pytest.mark.parametrize(("name", "env", "argv", "mocked", "transport", "code", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_setup_problem_is_one_line_with_the_fix(monkeypatch, capsys, tmp_path, name, env, argv, mocked, transport,
                                                 code, words):
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no profile of the machine leaks in
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bootstrap.reset()
    aws.reset()
    try:
        if mocked:
            with mock_aws():
                got = main(["--actor", "me", *argv], transport=transport)
        else:
            got = main(["--actor", "me", *argv], transport=transport)
    finally:
        bootstrap.reset()
        aws.reset()
    out, err = capsys.readouterr()
    assert got == code
    assert "Traceback" not in out + err
    message = [line for line in err.splitlines() if line.startswith("imagestreams: ")]
    assert len(message) == 1, err
    for word in words:
        assert word in message[0], message[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    from imagestreams import __version__

    assert capsys.readouterr().out.strip() == f"imagestreams {__version__}"


def test_common_options_are_accepted_after_the_verb(capsys):
    seen = []

    def transport(command):
        seen.append(command)
        return {"ok": True, "result": {"target": "team/web:latest", "entries": []}}

    assert main(["history", "team/web:latest", "--output", "json"], transport=transport) == 0
    assert '"ok": true' in capsys.readouterr().out


def test_a_fire_that_failed_makes_trigger_add_exit_1_and_say_why(capsys):
    trigger = {"id": "tr-0123456789ab", "from": "team/web:latest", "target": {"type": "lambda", "function": "f"},
               "paused": False, "status": "Failed", "lastTriggeredDigest": None, "lastTriggeredAt": None,
               "lastError": "function f is not a container image function", "rolloutState": None, "drift": None}

    def transport(command):
        return {"ok": True, "result": {"id": trigger["id"], "trigger": trigger}}

    assert main(["--actor", "me", "trigger", "add", "team/web:latest", "--lambda", "f"], transport=transport) == 1
    err = capsys.readouterr().err
    assert "tr-0123456789ab: fire failed: function f is not a container image function" in err
