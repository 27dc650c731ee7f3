"""Domain behaviour of stream tags and triggers, on in-memory ports (no network)."""

from __future__ import annotations

import threading

import pytest

from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.errors import ConcurrentUpdate, NotFound
from imagestreams.events import EcrEvent
from imagestreams.ingest import handle_ecr_event
from imagestreams.model import EcsTarget, StreamTag
from imagestreams.services import ImageStreams
from tests.conftest import digest

WEB = StreamTag("team/web", "latest")
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def make(history_limit: int = 50):
    store, registry, ecs, queue = MemoryStore(), MemoryRegistry(), MemoryEcs(), ListQueue()
    return ImageStreams(store, registry, {"ecs": ecs}, queue, history_limit=history_limit), store, registry, ecs, queue


def push(streams, registry, tag: StreamTag, n: int, action="PUSH"):
    registry.set(tag.stream, tag.tag, digest(n))
    return handle_ecr_event(streams, EcrEvent("e", action, tag.stream, digest(n), tag.tag, "SUCCESS"))


def test_first_push_creates_head_generation_one():
    streams, store, registry, *_ = make()
    outcome = push(streams, registry, WEB, 1)
    assert outcome.status == "moved"
    head = store.get_head(WEB)
    assert (head.digest, head.generation, head.cause) == (digest(1), 1, "push")
    assert head.pinned == f"{REG}/team/web@{digest(1)}"


def test_duplicate_event_writes_nothing():
    streams, store, registry, *_ = make()
    push(streams, registry, WEB, 1)
    writes = store.writes
    event = EcrEvent("e", "PUSH", WEB.stream, digest(1), WEB.tag, "SUCCESS")
    assert handle_ecr_event(streams, event).status == "unchanged"
    assert store.writes == writes
    assert [e.digest for e in streams.history(WEB)] == [digest(1)]


def test_out_of_order_event_never_moves_tag_backwards():
    streams, store, registry, *_ = make()
    registry.set(WEB.stream, WEB.tag, digest(2))  # ECR already at v2
    # the v2 event arrives first, then the stale v1 event
    handle_ecr_event(streams, EcrEvent("e2", "PUSH", WEB.stream, digest(2), WEB.tag, "SUCCESS"))
    outcome = handle_ecr_event(streams, EcrEvent("e1", "PUSH", WEB.stream, digest(1), WEB.tag, "SUCCESS"))
    assert outcome.status == "unchanged"
    assert [e.digest for e in streams.history(WEB)] == [digest(2)]


def test_history_is_a_stack_newest_first():
    streams, store, registry, *_ = make()
    for n in (1, 2, 1):
        push(streams, registry, WEB, n)
    entries = streams.history(WEB)
    assert [(e.digest, e.generation) for e in entries] == [(digest(1), 3), (digest(2), 2), (digest(1), 1)]


def test_history_is_capped_and_keeps_the_head():
    streams, store, registry, *_ = make(history_limit=3)
    for n in range(1, 7):
        push(streams, registry, WEB, n)
    assert [e.generation for e in streams.history(WEB, 100)] == [6, 5, 4]
    assert store.get_head(WEB).digest == digest(6)


def test_event_for_tag_ecr_no_longer_has_tombstones_it():
    streams, store, registry, *_ = make()
    push(streams, registry, WEB, 1)
    registry.remove(WEB.stream, WEB.tag)
    # the push event for v2 arrives after the tag was already deleted in ECR
    outcome = handle_ecr_event(streams, EcrEvent("e", "PUSH", WEB.stream, digest(2), WEB.tag, "SUCCESS"))
    assert outcome.moves[0].as_dict() == {"tag": str(WEB), "from": digest(1), "to": None, "generation": 2,
                                          "cause": "delete"}
    head = store.get_head(WEB)
    assert head.deleted and head.digest == digest(1)
    assert [e.cause for e in streams.history(WEB)] == ["delete", "push"]
    # generations continue after the tombstone
    push(streams, registry, WEB, 3)
    assert store.get_head(WEB).generation == 3


def test_event_for_never_seen_missing_tag_writes_nothing():
    streams, store, registry, *_ = make()
    outcome = handle_ecr_event(streams, EcrEvent("e", "DELETE", WEB.stream, digest(1), WEB.tag, "SUCCESS"))
    assert outcome.status == "unchanged" and store.writes == 0


def test_push_without_tag_moves_nothing():
    streams, store, registry, *_ = make()
    outcome = handle_ecr_event(streams, EcrEvent("e", "PUSH", WEB.stream, digest(1), None, "SUCCESS"))
    assert outcome.status == "ignored" and store.writes == 0 and registry.resolves == 0


def test_failed_result_is_ignored():
    streams, store, registry, *_ = make()
    registry.set(WEB.stream, WEB.tag, digest(1))
    outcome = handle_ecr_event(streams, EcrEvent("e", "PUSH", WEB.stream, digest(1), WEB.tag, "FAILURE"))
    assert outcome.status == "ignored" and store.writes == 0


def test_delete_by_digest_re_resolves_tags_on_that_digest():
    streams, store, registry, *_ = make()
    prod = StreamTag(WEB.stream, "prod")
    push(streams, registry, WEB, 1)
    push(streams, registry, prod, 1)
    other = StreamTag(WEB.stream, "other")
    push(streams, registry, other, 2)
    registry.remove(WEB.stream, "latest")
    registry.remove(WEB.stream, "prod")
    outcome = handle_ecr_event(streams, EcrEvent("e", "DELETE", WEB.stream, digest(1), None, "SUCCESS"))
    assert sorted(m.stream_tag.tag for m in outcome.moves) == ["latest", "prod"]
    assert store.get_head(other).digest == digest(2) and not store.get_head(other).deleted


class RacingStore(MemoryStore):
    """Lets a competing writer move the head between our read and our write, once."""

    def __init__(self, registry, competitor_digest):
        super().__init__()
        self.registry, self.competitor_digest, self.raced = registry, competitor_digest, False

    def commit(self, expected, new, drop_generation):
        if not self.raced:
            self.raced = True
            from datetime import datetime, timezone

            from imagestreams.model import Head

            competitor = Head(new.stream_tag, self.competitor_digest, (expected.generation if expected else 0) + 1,
                              datetime.now(timezone.utc), "push", "ecr", new.registry)
            super().commit(expected, competitor, None)
        super().commit(expected, new, drop_generation)


def test_conflicting_write_starts_over_and_records_one_entry_per_move():
    registry = MemoryRegistry()
    store = RacingStore(registry, digest(2))
    streams = ImageStreams(store, registry, {})
    registry.set(WEB.stream, WEB.tag, digest(2))
    move = streams.observe(WEB)
    # our first write lost; the re-read found the competitor already at ECR's digest: nothing more to write
    assert move is None
    assert [e.digest for e in streams.history(WEB)] == [digest(2)]


def test_concurrent_pushes_on_one_tag_one_entry_per_distinct_move():
    streams, store, registry, *_ = make()
    registry.set(WEB.stream, WEB.tag, digest(7))
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        streams.observe(WEB)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.digest for e in streams.history(WEB)] == [digest(7)]


def test_gives_up_loudly_when_head_never_settles():
    class AlwaysConflicting(MemoryStore):
        def commit(self, expected, new, drop_generation):
            raise ConcurrentUpdate("x")

    registry = MemoryRegistry()
    registry.set(WEB.stream, WEB.tag, digest(1))
    with pytest.raises(ConcurrentUpdate):
        ImageStreams(AlwaysConflicting(), registry, {}, max_attempts=3).observe(WEB)


# ------------------------------------------------------------------------------------------ triggers

def target(service: str) -> EcsTarget:
    return EcsTarget("prod", service, "web")


def test_trigger_add_without_head_waits_for_image():
    streams, store, registry, ecs, _ = make()
    ecs.images[("prod", "api")] = {"web": "nginx:latest"}
    trigger = streams.add_trigger(WEB, target("api"))
    assert trigger.status == "WaitingForImage" and ecs.calls == 0


def test_trigger_add_fires_at_once_when_head_exists():
    streams, store, registry, ecs, _ = make()
    ecs.images[("prod", "api")] = {"web": "nginx:latest"}
    push(streams, registry, WEB, 1)
    trigger = streams.add_trigger(WEB, target("api"))
    assert ecs.images[("prod", "api")]["web"] == f"{REG}/team/web@{digest(1)}"
    assert (trigger.status, trigger.last_triggered_digest) == ("Deploying", digest(1))
    # adding it again is idempotent: same id, no second deploy
    again = streams.add_trigger(WEB, target("api"))
    assert again.id == trigger.id and ecs.revisions[("prod", "api")] == 2


def test_head_move_queues_unpaused_triggers_and_fire_uses_current_head():
    streams, store, registry, ecs, queue = make()
    for svc in ("a", "b", "c"):
        ecs.images[("prod", svc)] = {"web": "nginx:latest"}
    streams.add_trigger(WEB, target("a"))
    streams.add_trigger(WEB, target("b"), paused=True)
    streams.add_trigger(WEB, target("c"))
    push(streams, registry, WEB, 1)
    push(streams, registry, WEB, 2)
    queued = streams.head_moved(store.get_head(WEB))
    assert sorted(t.target.service for t in queued) == ["a", "c"]
    for stream_tag, trigger_id, _digest in list(queue.items):
        streams.fire_by_id(stream_tag, trigger_id)
    assert ecs.images[("prod", "a")]["web"].endswith(digest(2))
    assert ecs.images[("prod", "b")]["web"] == "nginx:latest"  # paused target never moved


def test_missing_service_fails_its_trigger_and_others_still_deploy():
    streams, store, registry, ecs, queue = make()
    ecs.images[("prod", "ok")] = {"web": "nginx:latest"}
    push(streams, registry, WEB, 1)
    broken = streams.add_trigger(WEB, target("gone"))
    fine = streams.add_trigger(WEB, target("ok"))
    assert broken.status == "Failed" and "not found" in broken.last_error
    assert fine.status == "Deploying" and ecs.images[("prod", "ok")]["web"].endswith(digest(1))


def test_already_pinned_target_is_a_no_op():
    streams, store, registry, ecs, queue = make()
    push(streams, registry, WEB, 1)
    ecs.images[("prod", "api")] = {"web": f"{REG}/team/web@{digest(1)}"}
    trigger = streams.add_trigger(WEB, target("api"))
    assert trigger.status == "Deployed" and ("prod", "api") not in ecs.revisions


def test_tombstone_sets_waiting_for_image_and_keeps_the_target():
    streams, store, registry, ecs, queue = make()
    ecs.images[("prod", "api")] = {"web": "nginx:latest"}
    push(streams, registry, WEB, 1)
    trigger = streams.add_trigger(WEB, target("api"))
    registry.remove(WEB.stream, WEB.tag)
    streams.observe(WEB, cause="import")
    assert streams.head_moved(store.get_head(WEB)) == []
    assert store.get_trigger(trigger.id).status == "WaitingForImage"
    assert ecs.images[("prod", "api")]["web"].endswith(digest(1))


def test_describe_and_history_not_found():
    streams, *_ = make()
    with pytest.raises(NotFound):
        streams.describe("team/none")
    with pytest.raises(NotFound):
        streams.history(WEB)


def test_expired_tombstone_takes_its_history_along():
    streams, store, registry, *_ = make()
    push(streams, registry, WEB, 1)
    push(streams, registry, WEB, 2)
    registry.remove(WEB.stream, WEB.tag)
    streams.observe(WEB, cause="import")
    tombstone = store.get_head(WEB)
    assert streams.tombstone_expired(tombstone) == 3
    assert store.history(WEB, 10) == []
    assert streams.tombstone_expired(tombstone._replace(deleted=False)) == 0  # only tombstones
