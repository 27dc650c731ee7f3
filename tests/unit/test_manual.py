"""tag / untag / rollback / aliases on in-memory ports."""

from __future__ import annotations

import pytest

from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.model import EcsTarget, ImageRef, StreamTag
from imagestreams.services import ImageStreams
from tests.conftest import digest

LATEST, PROD, QA = (StreamTag("team/web", t) for t in ("latest", "prod", "qa"))
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture
def env():
    store, registry, ecs = MemoryStore(), MemoryRegistry(), MemoryEcs()
    streams = ImageStreams(store, registry, {"ecs": ecs}, ListQueue())
    return streams, store, registry, ecs


def push(streams, registry, tag, n):
    registry.set(tag.stream, tag.tag, digest(n))
    return streams.sync(tag)


def test_tag_copies_digest_and_records_cause_and_actor(env):
    streams, store, registry, _ = env
    push(streams, registry, LATEST, 1)
    moves = streams.tag(ImageRef("team/web", "latest"), [PROD, QA], actor="alice")
    assert [(m.stream_tag.tag, m.to_digest, m.cause) for m in moves] == [("prod", digest(1), "tag"),
                                                                          ("qa", digest(1), "tag")]
    assert registry.tag_map[("team/web", "prod")] == digest(1)
    assert streams.history(PROD)[0].actor == "alice"
    # tagging again is a no-op: same digest, no new history entry
    assert streams.tag(ImageRef("team/web", "latest"), [PROD], actor="alice") == []


def test_tag_by_digest(env):
    streams, store, registry, _ = env
    push(streams, registry, LATEST, 1)
    push(streams, registry, LATEST, 2)
    moves = streams.tag(ImageRef("team/web", digest=digest(1)), [PROD], actor="a")
    assert moves[0].to_digest == digest(1)


def test_tag_refuses_cross_repository_and_missing_source(env):
    streams, store, registry, _ = env
    with pytest.raises(Exception, match="same one"):
        streams.tag(ImageRef("team/web", "latest"), [StreamTag("team/api", "prod")])
    with pytest.raises(Exception, match="does not exist"):
        streams.tag(ImageRef("team/web", "latest"), [PROD])
    assert store.writes == 0


def test_immutable_target_is_a_conflict_before_any_write(env):
    streams, store, registry, _ = env
    push(streams, registry, LATEST, 1)
    registry.set("team/web", "prod", digest(9))
    registry.immutable["team/web"] = {"prod"}
    writes = store.writes
    answer = dispatch(streams, {"action": "tag", "source": "team/web:latest", "target": ["team/web:qa",
                                                                                         "team/web:prod"]})
    assert answer["error"]["type"] == "Conflict" and "immutable" in answer["error"]["message"]
    assert store.writes == writes and ("team/web", "qa") not in registry.tag_map


def test_alias_follows_every_move_of_its_source(env):
    streams, store, registry, _ = env
    push(streams, registry, LATEST, 1)
    streams.tag(ImageRef("team/web", "latest"), [PROD], alias=True)
    assert store.get_head(PROD).alias_of == "latest" and store.get_head(LATEST).aliases == ("prod",)
    moves = push(streams, registry, LATEST, 2)
    assert [(m.stream_tag.tag, m.cause) for m in moves] == [("latest", "push"), ("prod", "alias")]
    assert registry.tag_map[("team/web", "prod")] == digest(2)
    # a permanent copy over the alias ends the tracking
    streams.tag(ImageRef("team/web", digest=digest(1)), [PROD])
    assert store.get_head(PROD).alias_of is None and store.get_head(LATEST).aliases == ()
    push(streams, registry, LATEST, 3)
    assert store.get_head(PROD).digest == digest(1)


def test_alias_chains_follow_and_cycles_are_refused(env):
    streams, store, registry, _ = env
    push(streams, registry, LATEST, 1)
    streams.tag(ImageRef("team/web", "latest"), [QA], alias=True)
    streams.tag(ImageRef("team/web", "qa"), [PROD], alias=True)
    push(streams, registry, LATEST, 2)
    assert store.get_head(PROD).digest == digest(2)
    answer = dispatch(streams, {"action": "tag", "source": "team/web:prod", "target": "team/web:latest",
                                "alias": True})
    assert answer["error"]["type"] == "Invalid" and "cycle" in answer["error"]["message"]


def test_untag_tombstones_and_keep_in_registry_is_not_undone_by_import(env):
    streams, store, registry, _ = env
    push(streams, registry, LATEST, 1)
    push(streams, registry, PROD, 1)
    moves = streams.untag(PROD, keep_in_registry=True, actor="bob")
    assert moves[0].as_dict()["to"] is None and moves[0].cause == "delete"
    assert registry.tag_map[("team/web", "prod")] == digest(1)
    assert streams.sync(PROD, cause="import") == []  # ECR still has it, but it left the stream
    push(streams, registry, PROD, 2)  # a real push brings it back
    assert not store.get_head(PROD).deleted and store.get_head(PROD).generation == 3
    streams.untag(LATEST, actor="bob")
    assert ("team/web", "latest") not in registry.tag_map and store.get_head(LATEST).deleted


def test_rollback_tag_steps_and_to(env):
    streams, store, registry, _ = env
    for n in (1, 2, 3):
        push(streams, registry, LATEST, n)
    moves = streams.rollback_tag(LATEST, actor="carol")
    assert moves[0].as_dict() == {"tag": "team/web:latest", "from": digest(3), "to": digest(2),
                                  "generation": 4, "cause": "rollback"}
    assert registry.tag_map[("team/web", "latest")] == digest(2)
    moves = streams.rollback_tag(LATEST, to=digest(1), actor="carol")
    assert moves[0].to_digest == digest(1)
    assert [e.digest for e in streams.history(LATEST)] == [digest(1), digest(2), digest(3), digest(2), digest(1)]


@pytest.mark.parametrize(
    "command, error_type",
    [
        ({"action": "rollback", "target": "team/web:latest", "to": digest(3)}, "Invalid"),  # the head itself
        ({"action": "rollback", "target": "team/web:latest", "to": digest(7)}, "NotFound"),
        ({"action": "rollback", "target": "team/web:latest", "steps": 9}, "NotFound"),
        ({"action": "rollback", "target": "team/web:latest", "steps": 0}, "Invalid"),
        ({"action": "rollback", "target": "team/web:latest", "steps": 1, "to": digest(1)}, "Invalid"),
        ({"action": "rollback", "target": "team/web:nope"}, "NotFound"),
        ({"action": "rollback"}, "Invalid"),
        ({"action": "rollback", "target": "team/web:latest", "trigger": "tr-000000000000"}, "Invalid"),
        ({"action": "rollback", "trigger": "tr-000000000000"}, "NotFound"),
        ({"action": "rollback", "trigger": "tr-000000000000", "steps": 1}, "Invalid"),
        ({"action": "rollback", "target": "team/web:latest", "to": "sha256:abc"}, "Invalid"),
        ({"action": "tag", "source": "team/web:latest", "target": []}, "Invalid"),
        ({"action": "tag", "source": "team/web:latest", "target": "team/web:latest"}, "Invalid"),
        ({"action": "tag", "source": "team/web:latest", "target": ["team/web:a", "team/web:a"]}, "Invalid"),
        ({"action": "tag", "source": f"team/web@{digest(1)}", "target": "team/web:a", "alias": True}, "Invalid"),
        ({"action": "tag", "source": "team/web:latest", "target": "team/web:a", "alias": "yes"}, "Invalid"),
        ({"action": "tag", "source": "team/web:latest", "target": 5}, "Invalid"),
        ({"action": "tag", "source": "team/web:latest", "target": "team/api:a"}, "Invalid"),
        ({"action": "tag", "source": f"team/web@{digest(8)}", "target": "team/web:a"}, "NotFound"),
        ({"action": "untag", "target": "team/web:nope"}, "NotFound"),
        ({"action": "untag", "target": "team/web:latest", "keep_in_registry": 1}, "Invalid"),
    ],
)
def test_manual_bad_input(env, command, error_type):
    streams, store, registry, _ = env
    for n in (1, 2, 3):
        push(streams, registry, LATEST, n)
    writes, retags = store.writes, registry.retags
    answer = dispatch(streams, command)
    assert answer["ok"] is False and answer["error"]["type"] == error_type, answer
    assert (store.writes, registry.retags) == (writes, retags)


def test_target_rollback_pauses_and_survives_the_next_push(env):
    streams, store, registry, ecs = env
    ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    push(streams, registry, LATEST, 1)
    push(streams, registry, LATEST, 2)
    trigger = streams.add_trigger(LATEST, EcsTarget("prod", "web", "web"))
    assert ecs.images[("prod", "web")]["web"].endswith(digest(2))
    answer = dispatch(streams, {"action": "rollback", "trigger": trigger.id, "actor": "dave"})
    rolled = answer["result"]["triggers"][0]
    assert rolled["paused"] is True and rolled["lastTriggeredDigest"] == digest(1)
    assert ecs.images[("prod", "web")]["web"] == f"{REG}/team/web@{digest(1)}"
    push(streams, registry, LATEST, 3)
    assert streams.head_moved(store.get_head(LATEST)) == []  # paused: nothing queued
    assert ecs.images[("prod", "web")]["web"].endswith(digest(1))
    resumed = dispatch(streams, {"action": "trigger.resume", "id": trigger.id})["result"]["triggers"][0]
    assert resumed["paused"] is False and ecs.images[("prod", "web")]["web"].endswith(digest(3))
