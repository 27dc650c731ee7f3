"""Bad-input corpus (tests/corpus.py): clear error, zero writes, zero AWS calls, nothing unexpected raised."""

from __future__ import annotations

import pytest

from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.errors import Invalid
from imagestreams.events import parse_ecr_event
from imagestreams.ingest import handle_ecr_event
from imagestreams.model import StreamTag
from imagestreams.policy import TargetPolicy
from imagestreams.services import ImageStreams
from tests.corpus import DIGEST, bad_commands, bad_events

EVENTS = list(bad_events())
COMMANDS = list(bad_commands())


def world():
    store, registry, ecs = MemoryStore(), MemoryRegistry(), MemoryEcs()
    ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    streams = ImageStreams(store, registry, {"ecs": ecs},
                           policy=TargetPolicy.from_strings("prod", None, None, "123456789012"))
    registry.set("team/web", "latest", DIGEST)
    streams.sync(StreamTag("team/web", "latest"))
    return streams, store, registry, ecs


def test_the_corpus_is_large():
    assert len(EVENTS) + len(COMMANDS) >= 200
    print(f"\nbad-input corpus: {len(EVENTS)} events + {len(COMMANDS)} admin commands = {len(EVENTS) + len(COMMANDS)}")


@pytest.mark.parametrize("name, event", EVENTS, ids=[n for n, _ in EVENTS])
def test_bad_event_is_refused_with_a_clear_error_and_writes_nothing(name, event):
    streams, store, registry, ecs = world()
    writes, resolves = store.writes, registry.resolves
    with pytest.raises(Invalid) as info:
        handle_ecr_event(streams, parse_ecr_event(event))
    assert 0 < len(info.value.message) < 400, info.value.message  # clear, and never echoes a huge input whole
    assert (store.writes, registry.resolves) == (writes, resolves)


@pytest.mark.parametrize("name, command", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_bad_command_gets_an_error_answer_and_changes_nothing(name, command):
    streams, store, registry, ecs = world()
    writes, retags, calls = store.writes, registry.retags, ecs.calls
    answer = dispatch(streams, command)
    assert answer["ok"] is False, answer
    assert answer["error"]["type"] in ("Invalid", "NotFound", "Forbidden", "Conflict")
    assert 0 < len(answer["error"]["message"]) < 600, answer["error"]["message"]
    assert (store.writes, registry.retags, ecs.calls) == (writes, retags, calls)
