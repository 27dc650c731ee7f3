"""Reconciler, rollout tracking, backoff, allow-list — on in-memory ports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.errors import Forbidden, TransientTargetError
from imagestreams.model import EcsTarget, EksTarget, LambdaTarget, StreamTag, target_key
from imagestreams.policy import TargetPolicy
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams
from tests.conftest import digest

WEB = StreamTag("team/web", "latest")
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


@pytest.fixture
def env():
    clock = Clock()
    store, registry, ecs, queue = MemoryStore(), MemoryRegistry(), MemoryEcs(), ListQueue()
    ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    streams = ImageStreams(store, registry, {"ecs": ecs}, queue, clock=clock)
    reconciler = Reconciler(streams, registry, store)

    def drain():
        while queue.items:
            stream_tag, trigger_id, _ = queue.items.pop(0)
            streams.fire_by_id(stream_tag, trigger_id)

    return streams, store, registry, ecs, queue, reconciler, clock, drain


def target():
    return EcsTarget("prod", "web", "web")


def test_missed_push_is_imported_and_fanned_out(env):
    streams, store, registry, ecs, queue, reconciler, clock, drain = env
    registry.set("team/web", "latest", digest(1))
    streams.sync(WEB)
    streams.add_trigger(WEB, target())
    registry.set("team/web", "latest", digest(2))  # the PUSH event for v2 was lost
    report = reconciler.run()
    assert report["complete"] and [m["cause"] for m in report["moves"]] == ["import"]
    assert report["fired"] == []  # the import is a head move: the table stream fans it out
    streams.head_moved(store.get_head(WEB))
    drain()
    assert ecs.images[("prod", "web")]["web"] == f"{REG}/team/web@{digest(2)}"


def test_lost_fire_is_made_by_the_reconciler(env):
    streams, store, registry, ecs, queue, reconciler, clock, drain = env
    registry.set("team/web", "latest", digest(1))
    streams.sync(WEB)
    trigger = streams.add_trigger(WEB, target())
    registry.set("team/web", "latest", digest(2))
    streams.sync(WEB)  # ingested, but the fan-out of this move never happened
    report = reconciler.run()
    assert report["moves"] == [] and report["fired"] == [trigger.id]
    drain()
    assert ecs.images[("prod", "web")]["web"] == f"{REG}/team/web@{digest(2)}"
    assert reconciler.run()["fired"] == []  # in sync now: nothing more


def test_gone_tags_and_gone_repositories_become_tombstones(env):
    streams, store, registry, *_ = env
    registry.set("team/web", "latest", digest(1))
    registry.set("team/old", "v1", digest(2))
    streams.sync(WEB)
    streams.sync(StreamTag("team/old", "v1"))
    registry.remove("team/web", "latest")
    registry.remove("team/old", "v1")
    registry.images.pop("team/old")  # the whole repository was deleted
    report = reconciler_run(env)
    assert sorted(m["tag"] for m in report["moves"]) == ["team/old:v1", "team/web:latest"]
    assert store.get_head(WEB).deleted and store.get_head(StreamTag("team/old", "v1")).deleted


def reconciler_run(env):
    return env[5].run()


def test_drift_is_reported_and_left_alone(env):
    streams, store, registry, ecs, queue, reconciler, clock, drain = env
    registry.set("team/web", "latest", digest(1))
    streams.sync(WEB)
    trigger = streams.add_trigger(WEB, target())
    ecs.images[("prod", "web")]["web"] = "nginx:hotfix"  # someone changed it by hand
    report = reconciler.run()
    assert report["fired"] == [] and report["drift"][0]["image"] == "nginx:hotfix"
    assert "out of band" in store.get_trigger(trigger.id).drift
    assert ecs.images[("prod", "web")]["web"] == "nginx:hotfix"
    # `deploy` is the explicit way back; it clears the drift
    dispatch(streams, {"action": "deploy", "id": trigger.id})
    assert store.get_trigger(trigger.id).drift is None and ecs.images[("prod", "web")]["web"].endswith(digest(1))


def test_failed_rollout_is_not_refired_and_the_restored_digest_is_not_drift(env):
    streams, store, registry, ecs, queue, reconciler, clock, drain = env
    registry.set("team/web", "latest", digest(1))
    streams.sync(WEB)
    trigger = streams.add_trigger(WEB, target())
    registry.set("team/web", "latest", digest(2))
    streams.sync(WEB)
    streams.fire_by_id(WEB, trigger.id)
    deployment = store.get_trigger(trigger.id).deployment
    # the circuit breaker fails v2 and restores v1
    updated = streams.rollout_event(target_key(target()), deployment, "FAILED", "tasks failed to start")
    assert updated[0].status == "Failed" and updated[0].rollout_state == "FAILED"
    ecs.images[("prod", "web")]["web"] = f"{REG}/team/web@{digest(1)}"
    for _ in range(3):
        report = reconciler.run()
        assert report["fired"] == [] and report["drift"] == [] and report["retried"] == []
    assert streams.head_moved(store.get_head(WEB))  # the fan-out would still queue it...
    before = ecs.revisions.get(("prod", "web"))
    streams.fire_by_id(WEB, trigger.id)  # ...but the deployer does not re-fire the failed digest
    assert ecs.revisions.get(("prod", "web")) == before
    registry.set("team/web", "latest", digest(3))  # a new head: fires again
    streams.sync(WEB)
    streams.fire_by_id(WEB, trigger.id)
    assert ecs.images[("prod", "web")]["web"].endswith(digest(3))


def test_rollout_events_only_touch_the_deployment_we_started(env):
    streams, store, registry, ecs, *_ = env
    registry.set("team/web", "latest", digest(1))
    streams.sync(WEB)
    trigger = streams.add_trigger(WEB, target())
    assert streams.rollout_event(target_key(target()), "ecs-svc/other", "FAILED") == []
    done = streams.rollout_event(target_key(target()), store.get_trigger(trigger.id).deployment, "COMPLETED")
    assert done[0].status == "Deployed" and done[0].rollout_state == "COMPLETED"


def test_api_error_is_retried_with_backoff(env):
    streams, store, registry, ecs, queue, reconciler, clock, drain = env
    registry.set("team/web", "latest", digest(1))
    streams.sync(WEB)
    original = ecs.apply
    ecs.apply = lambda t, i, **_: (_ for _ in ()).throw(TransientTargetError("ThrottlingException"))
    with pytest.raises(TransientTargetError):
        streams.add_trigger(WEB, target())
    trigger = next(iter(store.triggers.values()))
    assert trigger.status == "Failed" and trigger.failures == 1 and trigger.retry_at == clock.now + timedelta(minutes=1)
    assert reconciler.run()["retried"] == []  # not yet
    clock.now += timedelta(minutes=2)
    ecs.apply = original
    assert reconciler.run()["retried"] == [trigger.id]
    drain()
    after = store.get_trigger(trigger.id)
    assert after.status == "Deploying" and after.failures == 0 and after.retry_at is None


def test_backoff_grows_and_is_capped(env):
    streams, store, registry, ecs, queue, reconciler, clock, drain = env
    registry.set("team/web", "latest", digest(1))
    streams.sync(WEB)
    trigger = streams.add_trigger(WEB, EcsTarget("prod", "ghost", "web"))  # permanent error, retried slowly
    delays = []
    for _ in range(12):
        current = store.get_trigger(trigger.id)
        delays.append(current.retry_at - clock.now)
        clock.now = current.retry_at
        reconciler.run()
        drain()
    assert delays[:4] == [timedelta(minutes=m) for m in (1, 2, 4, 8)] and max(delays) == timedelta(hours=6)


def test_cursor_resumes_where_the_last_run_stopped(env):
    streams, store, registry, *_ = env
    for n in range(6):
        registry.set(f"team/r{n}", "latest", digest(n))  # all missed
    ticks = iter(range(100))
    # the deadline is asked twice per repository here: before it, and before counting its heads (its one
    # re-resolve comes right after the first); six answers of "not yet" let three repositories finish
    report = env[5].run(out_of_time=lambda: next(ticks) >= 6)
    assert report["complete"] is False and report["cursor"] == {"phase": "tags", "after": "team/r2"}
    assert len(report["moves"]) == 3
    report = env[5].run()
    assert report["complete"] and len(report["moves"]) == 3 and report["resumed_from"]["after"] == "team/r2"
    assert all(store.get_head(StreamTag(f"team/r{n}", "latest")) for n in range(6))


def test_allow_list_and_same_account():
    policy = TargetPolicy.from_strings("prod-*", "prod/apps,prod/web-*", "svc-*", "123456789012")
    policy.check(EcsTarget("prod-eu", "web", "web"))
    policy.check(EcsTarget("arn:aws:ecs:us-east-1:123456789012:cluster/prod-eu", "web", "web"))
    policy.check(EksTarget("prod", "web-2", "Deployment", "w", "w"))
    policy.check(LambdaTarget("svc-resize"))
    for target_ in (EcsTarget("staging", "web", "web"),
                    EcsTarget("arn:aws:ecs:us-east-1:999999999999:cluster/prod-eu", "web", "web"),
                    EksTarget("prod", "kube-system", "Deployment", "w", "w"),
                    EksTarget("other", "apps", "Deployment", "w", "w"),
                    LambdaTarget("arn:aws:lambda:us-east-1:999999999999:function:svc-x"),
                    LambdaTarget("payments")):
        with pytest.raises(Forbidden):
            policy.check(target_)


def test_trigger_outside_the_allow_list_is_forbidden_and_writes_nothing():
    store, registry, ecs = MemoryStore(), MemoryRegistry(), MemoryEcs()
    streams = ImageStreams(store, registry, {"ecs": ecs}, policy=TargetPolicy.from_strings("prod", None, None, None))
    answer = dispatch(streams, {"action": "trigger.add", "from": "team/web:latest",
                                "target": {"type": "ecs", "cluster": "payments", "service": "s", "container": "c"}})
    assert answer["error"]["type"] == "Forbidden" and "allow-list" in answer["error"]["message"]
    assert store.writes == 0


def test_ecs_deployment_event_sample_parses():
    from imagestreams.events import parse_ecs_deployment_event
    from tests.conftest import load_event

    change = parse_ecs_deployment_event(load_event("ecs_deployment_failed.json"))
    assert change == ("ecs:prod/web", "ecs-svc/123", "FAILED", "ECS deployment circuit breaker: task failed to start.")


def test_unreadable_repository_is_skipped_not_tombstoned_and_errors_do_not_stop_the_run(env):
    streams, store, registry, ecs, queue, reconciler, clock, drain = env
    registry.set("team/web", "latest", digest(1))
    registry.set("team/secret", "v1", digest(2))
    registry.set("team/api", "v1", digest(3))
    for st in (WEB, StreamTag("team/secret", "v1")):
        streams.sync(st)
    original = registry.tags

    def tags(stream):
        if stream == "team/secret":
            return None  # AccessDenied: outside RepositoryPattern
        if stream == "team/api":
            raise RuntimeError("ECR 500 after retries")
        return original(stream)

    registry.tags = tags
    report = reconciler.run()
    assert report["complete"] and not store.get_head(StreamTag("team/secret", "v1")).deleted
    assert len(report["errors"]) == 1 and "team/api" in report["errors"][0]
