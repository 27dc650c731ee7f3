"""The manual-invoke contract on in-memory ports."""

from __future__ import annotations

import pytest

from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.model import StreamTag
from imagestreams.services import ImageStreams
from tests.conftest import digest

ECS = {"type": "ecs", "cluster": "prod", "service": "api", "container": "web"}


@pytest.fixture
def env():
    store, registry, ecs = MemoryStore(), MemoryRegistry(), MemoryEcs()
    ecs.images[("prod", "api")] = {"web": "nginx:latest"}
    streams = ImageStreams(store, registry, {"ecs": ecs})
    registry.set("team/web", "latest", digest(1))
    streams.observe(StreamTag("team/web", "latest"))
    return streams, store, registry, ecs


def test_trigger_add_list_describe_history(env):
    streams, store, registry, ecs = env
    added = dispatch(streams, {"action": "trigger.add", "from": "team/web:latest", "target": ECS, "actor": "me"})
    assert added["ok"], added
    tid = added["result"]["id"]
    trigger = added["result"]["trigger"]
    assert trigger["id"] == tid and trigger["from"] == "team/web:latest" and trigger["target"] == ECS
    assert trigger["lastTriggeredDigest"] == digest(1) and trigger["status"] in ("Deploying", "Deployed")
    assert set(trigger) >= {"id", "from", "target", "paused", "status", "lastTriggeredDigest", "lastTriggeredAt",
                            "lastError", "rolloutState", "drift"}

    listed = dispatch(streams, {"action": "trigger.list"})
    assert [t["id"] for t in listed["result"]["triggers"]] == [tid]

    described = dispatch(streams, {"action": "describe", "stream": "team/web"})["result"]
    assert described["stream"] == "team/web"
    assert described["tags"][0]["tag"] == "latest" and described["tags"][0]["triggers"] == [tid]
    assert described["tags"][0]["digest"] == digest(1) and described["tags"][0]["generation"] == 1

    history = dispatch(streams, {"action": "history", "target": "team/web:latest", "limit": 10})["result"]
    assert history["target"] == "team/web:latest"
    assert history["entries"][0]["digest"] == digest(1) and history["entries"][0]["cause"] == "push"
    assert history["entries"][0]["at"].endswith("Z")


def test_pause_resume_and_deploy(env):
    streams, store, registry, ecs = env
    tid = dispatch(streams, {"action": "trigger.add", "from": "team/web:latest", "target": ECS, "paused": True})[
        "result"]["id"]
    assert ecs.images[("prod", "api")]["web"] == "nginx:latest"
    deployed = dispatch(streams, {"action": "deploy", "id": tid})["result"]["triggers"][0]
    assert deployed["paused"] is True and ecs.images[("prod", "api")]["web"].endswith(digest(1))
    registry.set("team/web", "latest", digest(2))
    streams.observe(StreamTag("team/web", "latest"))
    resumed = dispatch(streams, {"action": "trigger.resume", "from": "team/web:latest"})["result"]["triggers"][0]
    assert resumed["paused"] is False and resumed["lastTriggeredDigest"] == digest(2)
    removed = dispatch(streams, {"action": "trigger.remove", "id": tid})
    assert removed["ok"] and dispatch(streams, {"action": "trigger.list"})["result"]["triggers"] == []


def test_import_reports_moves(env):
    streams, store, registry, ecs = env
    registry.set("team/web", "latest", digest(3))
    answer = dispatch(streams, {"action": "import", "target": "team/web:latest", "actor": "arn:aws:iam::1:user/x"})
    assert answer["result"]["moves"] == [{"tag": "team/web:latest", "from": digest(1), "to": digest(3),
                                          "generation": 2, "cause": "import"}]
    assert streams.history(StreamTag("team/web", "latest"))[0].actor == "arn:aws:iam::1:user/x"


BAD = [
    (None, "Invalid"),
    ([], "Invalid"),
    ("describe", "Invalid"),
    ({}, "Invalid"),
    ({"action": "nope"}, "Invalid"),
    ({"action": 7}, "Invalid"),
    ({"action": "describe"}, "Invalid"),
    ({"action": "describe", "stream": "team/web", "extra": 1}, "Invalid"),
    ({"action": "describe", "stream": "Team/Web"}, "Invalid"),
    ({"action": "describe", "stream": "../etc"}, "Invalid"),
    ({"action": "describe", "stream": "team/none"}, "NotFound"),
    ({"action": "history", "target": "team/web"}, "Invalid"),
    ({"action": "history", "target": f"team/web@{digest(1)}"}, "Invalid"),
    ({"action": "history", "target": "team/web:latest", "limit": 0}, "Invalid"),
    ({"action": "history", "target": "team/web:latest", "limit": "5"}, "Invalid"),
    ({"action": "history", "target": "team/web:latest", "limit": True}, "Invalid"),
    ({"action": "history", "target": "team/web:nope"}, "NotFound"),
    ({"action": "trigger.add", "from": "team/web:latest"}, "Invalid"),
    ({"action": "trigger.add", "from": "team/web:latest", "target": {"type": "ecs"}}, "Invalid"),
    ({"action": "trigger.add", "from": "team/web:latest", "target": ECS, "paused": "no"}, "Invalid"),
    ({"action": "trigger.add", "from": "team/web", "target": ECS}, "Invalid"),
    ({"action": "trigger.add", "from": "team/web:latest", "target": ECS, "actor": ""}, "Invalid"),
    ({"action": "trigger.add", "from": "team/web:latest", "target": ECS, "actor": "a\x00b"}, "Invalid"),
    ({"action": "trigger.add", "from": "team/web:latest", "target": ECS, "actor": 5}, "Invalid"),
    ({"action": "trigger.remove"}, "Invalid"),
    ({"action": "trigger.remove", "id": "tr-000000000000"}, "NotFound"),
    ({"action": "trigger.remove", "id": "tr-../x"}, "Invalid"),
    ({"action": "trigger.pause", "id": "tr-000000000000", "from": "team/web:latest"}, "Invalid"),
    ({"action": "trigger.resume", "from": "team/web:none"}, "NotFound"),
    ({"action": "deploy"}, "Invalid"),
    ({"action": "import"}, "Invalid"),
    ({"action": "import", "stream": "team/none"}, "NotFound"),
    ({"action": "trigger.list", "from": 3}, "Invalid"),
]


@pytest.mark.parametrize("command, error_type", BAD)
def test_bad_input_gets_clear_error_and_writes_nothing(env, command, error_type):
    streams, store, registry, ecs = env
    writes, calls = store.writes, ecs.calls
    answer = dispatch(streams, command)
    assert answer["ok"] is False
    assert answer["error"]["type"] == error_type
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    assert (store.writes, ecs.calls) == (writes, calls)


def test_every_admin_event_sample_is_a_valid_command():
    """events/admin_*.json are usable with sam remote invoke: they pass validation (NotFound is fine here)."""
    import json
    from pathlib import Path

    streams = ImageStreams(MemoryStore(), MemoryRegistry(), {"ecs": MemoryEcs()})
    files = sorted((Path(__file__).resolve().parents[2] / "events").glob("admin_*.json"))
    assert len(files) >= 12
    for path in files:
        answer = dispatch(streams, json.loads(path.read_text()))
        assert answer["ok"] or answer["error"]["type"] == "NotFound", (path.name, answer)


@pytest.mark.parametrize("command, words", [
    ({"action": "describe", "stream": "team/web", "foo": 1}, "unknown field foo for describe; accepted: actor, stream"),
    ({"action": "describe", "stream": "team/web", "foo": 1, "bar": 2}, "unknown fields bar, foo for describe"),
    ({"action": "describe"}, "missing field stream for describe"),
    ({"action": "describe", "stream": "../etc"}, "invalid repository name '../etc'"),
    ({"action": "history", "target": "../etc:x"}, "invalid repository name '../etc'"),
    ({"action": "trigger.add", "from": "team/web:x",
      "target": {"type": "ecs", "cluster": "a", "service": "b", "container": "c", "x": 1}},
     "unknown field x in the ecs target; accepted: cluster, container"),
])
def test_error_texts_name_what_was_typed_in_the_right_number(command, words):
    from imagestreams.adapters.memory import MemoryRegistry, MemoryStore
    from imagestreams.services import ImageStreams

    answer = dispatch(ImageStreams(MemoryStore(), MemoryRegistry(), {}), command)
    assert answer["error"]["type"] == "Invalid" and words in answer["error"]["message"], answer
