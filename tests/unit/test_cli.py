"""CLI: arguments → admin command, rendering (golden), exit codes, transports."""

from __future__ import annotations

import json

import pytest

from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.cli import main
from imagestreams.model import StreamTag
from imagestreams.services import ImageStreams
from tests.conftest import digest


@pytest.fixture
def transport():
    store, registry, ecs = MemoryStore(), MemoryRegistry(), MemoryEcs()
    ecs.images[("demo", "web")] = {"web": "x:latest"}
    streams = ImageStreams(store, registry, {"ecs": ecs}, clock=lambda: __import__("datetime").datetime(
        2026, 11, 26, 12, 0, 0, tzinfo=__import__("datetime").timezone.utc))
    for n in (1, 2):
        registry.set("team/web", "latest", digest(n))
        streams.observe(StreamTag("team/web", "latest"))
    sent = []

    def send(command):
        sent.append(command)
        return dispatch(streams, command)

    send.sent = sent
    return send


def test_history_table_golden(transport, capsys):
    assert main(["--actor", "me", "history", "team/web:latest"], transport=transport) == 0
    assert capsys.readouterr().out == (
        "team/web:latest\n"
        "GEN  DIGEST               WHEN (UTC)           CAUSE  ACTOR\n"
        f"2    {digest(2)[:19]}  2026-11-26 12:00:00  push   ecr\n"
        f"1    {digest(1)[:19]}  2026-11-26 12:00:00  push   ecr\n"
    )
    assert transport.sent[-1] == {"action": "history", "target": "team/web:latest"}  # reads carry no actor


def test_trigger_add_sends_actor_and_renders(transport, capsys):
    assert main(["--actor", "arn:aws:iam::1:user/a", "trigger", "add", "team/web:latest", "--ecs", "demo/web:web"],
                transport=transport) == 0
    sent = transport.sent[-1]
    assert sent == {"action": "trigger.add", "from": "team/web:latest", "actor": "arn:aws:iam::1:user/a",
                    "target": {"type": "ecs", "cluster": "demo", "service": "web", "container": "web"}}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "FROM", "TARGET", "STATUS", "PAUSED", "DIGEST", "ROLLOUT", "ERROR"]
    assert "ecs demo/web:web" in lines[1] and "Deploying" in lines[1] and digest(2)[:19] in lines[1]


def test_json_output_is_the_raw_answer(transport, capsys):
    assert main(["--output", "json", "describe", "team/web"], transport=transport) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is True and answer["result"]["tags"][0]["generation"] == 2


def test_caller_error_exits_1_with_message(transport, capsys):
    assert main(["describe", "team/none"], transport=transport) == 1
    assert "NotFound: stream team/none" in capsys.readouterr().err


def test_usage_error_exits_2(transport):
    with pytest.raises(SystemExit) as info:
        main(["trigger", "frobnicate"], transport=transport)
    assert info.value.code == 2


def test_every_verb_has_help_with_an_example(capsys):
    for argv in (["describe"], ["history"], ["import"], ["tag"], ["untag"], ["rollback"], ["deploy"],
                 ["trigger", "add"], ["trigger", "list"], ["trigger", "pause"], ["trigger", "resume"],
                 ["trigger", "remove"]):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--help"])
        assert info.value.code == 0
        assert "example: imagestreams" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, command",
    [
        (["trigger", "list"], {"action": "trigger.list"}),
        (["trigger", "list", "--from", "team/web:latest"], {"action": "trigger.list", "from": "team/web:latest"}),
        (["trigger", "pause", "tr-0123456789ab"], {"action": "trigger.pause", "id": "tr-0123456789ab"}),
        (["trigger", "resume", "--from", "team/web:x"], {"action": "trigger.resume", "from": "team/web:x"}),
        (["trigger", "remove", "tr-0123456789ab"], {"action": "trigger.remove", "id": "tr-0123456789ab"}),
        (["deploy", "--from", "team/web:x"], {"action": "deploy", "from": "team/web:x"}),
        (["tag", "team/web:a", "team/web:b", "team/web:c", "--alias"],
         {"action": "tag", "source": "team/web:a", "target": ["team/web:b", "team/web:c"], "alias": True}),
        (["untag", "team/web:a", "--keep-in-registry"],
         {"action": "untag", "target": "team/web:a", "keep_in_registry": True}),
        (["rollback", "team/web:a", "--steps", "2"], {"action": "rollback", "target": "team/web:a", "steps": 2}),
        (["rollback", "--trigger", "tr-0123456789ab", "--to", "sha256:x"],
         {"action": "rollback", "trigger": "tr-0123456789ab", "to": "sha256:x"}),
        (["import", "--stream", "team/web"], {"action": "import", "stream": "team/web"}),
        # a complete target (an incomplete one is now refused before any configuration is read: exit 2)
        (["trigger", "add", "team/web:a", "--target",
          '{"type": "ecs", "cluster": "p", "service": "w", "container": "c"}'],
         {"action": "trigger.add", "from": "team/web:a",
          "target": {"type": "ecs", "cluster": "p", "service": "w", "container": "c"}}),
    ],
)
def test_arguments_become_the_admin_command(argv, command):
    sent = []

    def capture(cmd):
        sent.append(cmd)
        return {"ok": True, "result": {"triggers": [], "moves": []}}

    main(["--actor", "me", *argv], transport=capture)
    expected = {**command, **({"actor": "me"} if command["action"] not in ("trigger.list",) else {})}
    assert sent == [expected]


def test_trigger_add_eks_and_lambda_shortcuts():
    sent = []

    def capture(cmd):
        sent.append(cmd)
        return {"ok": True, "result": {"triggers": [], "moves": [], "trigger": {
            "id": "tr-0123456789ab", "from": cmd["from"], "target": cmd["target"], "paused": False,
            "status": "WaitingForImage", "lastTriggeredDigest": None, "lastTriggeredAt": None, "lastError": None,
            "rolloutState": None, "drift": None}}}

    main(["--actor", "me", "trigger", "add", "team/web:a", "--eks", "prod/apps/cronjob/nightly:job"], transport=capture)
    main(["--actor", "me", "trigger", "add", "team/web:a", "--lambda", "resize:live"], transport=capture)
    assert sent[0]["target"] == {"type": "eks", "cluster": "prod", "namespace": "apps", "kind": "CronJob",
                                 "name": "nightly", "container": "job"}
    assert sent[1]["target"] == {"type": "lambda", "function": "resize", "alias": "live"}
