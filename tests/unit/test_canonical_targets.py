"""Targets are canonicalised once, at trigger.add: alternate spellings of one target are one trigger; ARNs of
another account or region, and service ARNs of another cluster, are refused before anything is written."""

from __future__ import annotations

import pytest

from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.errors import Forbidden, Invalid
from imagestreams.model import EcsTarget, LambdaTarget, StreamTag, Trigger, canonical_target, target_key, trigger_id
from imagestreams.policy import TargetPolicy
from imagestreams.services import ImageStreams
from tests.conftest import digest
from tests.corpus import ALTERNATE_SPELLINGS

ACCOUNT, REGION = "123456789012", "us-east-1"
ECS_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
FN_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"


class FakeLambda:
    """Just enough of a Lambda driver: function name → image; records every update."""

    def __init__(self) -> None:
        self.images: dict[str, str] = {"resize": "x:latest"}
        self.calls = 0

    def platform(self, target):
        return None

    def inspect(self, target, deployment):
        from imagestreams.ports import TargetState

        return TargetState(self.images[target.function], "COMPLETED")

    def apply(self, target, image):
        from imagestreams.ports import DriverResult

        self.calls += 1
        previous = self.images[target.function]  # KeyError for an ARN: drivers get names only
        self.images[target.function] = image
        return DriverResult(previous != image, previous, "COMPLETED")


def world(*, account=ACCOUNT, region=REGION, ecs_allowed="*"):
    store, registry, ecs, fn = MemoryStore(), MemoryRegistry(), MemoryEcs(), FakeLambda()
    ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    streams = ImageStreams(store, registry, {"ecs": ecs, "lambda": fn},
                           policy=TargetPolicy.from_strings(ecs_allowed, None, "*", account, region))
    for tag, n in (("latest", 1), ("prod", 2)):
        registry.set("team/web", tag, digest(n))
        streams.sync(StreamTag("team/web", tag))
    return streams, store, ecs, fn


def add(streams, target, from_="team/web:latest"):
    return dispatch(streams, {"action": "trigger.add", "from": from_, "target": target})


ECS_SPELLINGS = [
    {"cluster": "prod", "service": "web"},
    {"cluster": f"{ECS_ARN}:cluster/prod", "service": "web"},
    {"cluster": "prod", "service": f"{ECS_ARN}:service/prod/web"},
    {"cluster": f"{ECS_ARN}:cluster/prod", "service": f"{ECS_ARN}:service/prod/web"},
    {"cluster": "prod", "service": f"{ECS_ARN}:service/web"},  # old-format service ARN (no cluster in it)
]


def test_every_spelling_of_one_ecs_service_is_one_trigger_and_stored_by_name():
    streams, store, ecs, _ = world()
    ids = set()
    for spelling in ECS_SPELLINGS:
        answer = add(streams, {"type": "ecs", "container": "web", **spelling})
        assert answer["ok"], answer
        ids.add(answer["result"]["id"])
    assert len(ids) == 1 and len(store.triggers) == 1
    stored = next(iter(store.triggers.values()))
    assert stored.target == EcsTarget("prod", "web", "web")
    assert answer["result"]["trigger"]["target"] == {"type": "ecs", "cluster": "prod", "service": "web",
                                                     "container": "web"}


def test_an_arn_spelling_on_another_tag_is_refused_as_a_second_writer():
    streams, store, ecs, _ = world()
    assert add(streams, {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"})["ok"]
    writes = store.writes
    answer = add(streams, {"type": "ecs", "cluster": f"{ECS_ARN}:cluster/prod", "service": "web",
                           "container": "web"}, "team/web:prod")
    assert answer["error"]["type"] == "Conflict" and "already follows team/web:latest" in answer["error"]["message"]
    assert store.writes == writes


LAMBDA_SPELLINGS = [
    {"function": "resize", "alias": "live"},
    {"function": "resize:live"},
    {"function": f"{ACCOUNT}:function:resize:live"},
    {"function": f"{FN_ARN}:resize:live"},
    {"function": f"{FN_ARN}:resize", "alias": "live"},
    {"function": f"{FN_ARN}:resize:live", "alias": "live"},
]


def test_every_spelling_of_one_lambda_alias_is_one_trigger():
    streams, store, _, fn = world()
    ids = {add(streams, {"type": "lambda", **spelling})["result"]["id"] for spelling in LAMBDA_SPELLINGS}
    assert len(ids) == 1 and len(store.triggers) == 1
    assert next(iter(store.triggers.values())).target == LambdaTarget("resize", "live")


def test_a_function_with_and_without_alias_cannot_follow_two_tags():
    streams, store, _, fn = world()
    assert add(streams, {"type": "lambda", "function": f"{FN_ARN}:resize"})["ok"]
    writes, calls = store.writes, fn.calls
    answer = add(streams, {"type": "lambda", "function": "resize:live"}, "team/web:prod")
    assert answer["error"]["type"] == "Conflict", answer
    assert (store.writes, fn.calls) == (writes, calls)


def test_two_aliases_of_one_function_may_follow_two_tags():
    streams, store, _, _ = world()
    assert add(streams, {"type": "lambda", "function": "resize", "alias": "staging"})["ok"]
    assert add(streams, {"type": "lambda", "function": "resize", "alias": "live"}, "team/web:prod")["ok"]


@pytest.mark.parametrize("target, error", [
    ({"type": "lambda", "function": "999999999999:function:resize"}, "Forbidden"),
    ({"type": "lambda", "function": "arn:aws:lambda:us-east-1:999999999999:function:resize"}, "Forbidden"),
    ({"type": "lambda", "function": "arn:aws:lambda:eu-west-1:123456789012:function:resize"}, "Forbidden"),
    ({"type": "lambda", "function": "resize:7"}, "Invalid"),
    ({"type": "lambda", "function": f"{FN_ARN}:resize:7"}, "Invalid"),
    ({"type": "lambda", "function": "resize:$LATEST"}, "Invalid"),
    ({"type": "lambda", "function": "resize:live", "alias": "staging"}, "Invalid"),
    ({"type": "ecs", "cluster": "arn:aws:ecs:us-east-1:999999999999:cluster/prod", "service": "web",
      "container": "web"}, "Forbidden"),
    ({"type": "ecs", "cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/prod", "service": "web",
      "container": "web"}, "Forbidden"),
    ({"type": "ecs", "cluster": "prod", "service": "arn:aws:ecs:us-east-1:999999999999:service/prod/web",
      "container": "web"}, "Forbidden"),
    ({"type": "ecs", "cluster": "prod", "service": f"{ECS_ARN}:service/payments/web", "container": "web"},
     "Invalid"),
    ({"type": "ecs", "cluster": f"{ECS_ARN}:service/prod/web", "service": "web", "container": "web"}, "Invalid"),
    ({"type": "ecs", "cluster": "prod", "service": f"{ECS_ARN}:cluster/prod", "container": "web"}, "Invalid"),
])
def test_foreign_or_inconsistent_spellings_are_refused_and_write_nothing(target, error):
    streams, store, ecs, fn = world()
    writes = store.writes
    answer = add(streams, target)
    assert answer["ok"] is False and answer["error"]["type"] == error, answer
    assert (store.writes, ecs.calls, fn.calls) == (writes, 0, 0)


def test_a_service_arn_of_another_cluster_cannot_pass_the_cluster_allow_list():
    streams, store, ecs, _ = world(ecs_allowed="prod")
    ecs.images[("payments", "web")] = {"web": "nginx:latest"}
    answer = add(streams, {"type": "ecs", "cluster": "prod", "service": f"{ECS_ARN}:service/payments/web",
                           "container": "web"})
    assert answer["ok"] is False and "payments" in answer["error"]["message"]
    assert ecs.images[("payments", "web")]["web"] == "nginx:latest" and not store.triggers


def test_without_the_stacks_account_an_arn_is_refused_and_a_name_works():
    streams, store, _, _ = world(account=None, region=None)
    for target in ({"type": "ecs", "cluster": f"{ECS_ARN}:cluster/prod", "service": "web", "container": "web"},
                   {"type": "lambda", "function": f"{ACCOUNT}:function:resize"}):
        answer = add(streams, target)
        assert answer["error"]["type"] == "Invalid" and "give the name" in answer["error"]["message"]
    assert not store.triggers
    assert add(streams, {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"})["ok"]
    assert add(streams, {"type": "lambda", "function": "resize:live"})["ok"]  # no account in it: nothing to check


def test_a_trigger_stored_with_arns_keeps_working_and_is_found_again():
    streams, store, ecs, _ = world()
    old_target = EcsTarget(f"{ECS_ARN}:cluster/prod", f"{ECS_ARN}:service/prod/web", "web")
    stream_tag = StreamTag("team/web", "latest")
    old = Trigger(trigger_id(stream_tag, old_target), stream_tag, old_target)
    store.add_trigger(old)  # as an earlier version stored it
    assert target_key(old.target) == "ecs:prod/web"
    again = add(streams, {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"})
    assert again["ok"] and again["result"]["id"] == old.id and len(store.triggers) == 1
    other_tag = add(streams, {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}, "team/web:prod")
    assert other_tag["error"]["type"] == "Conflict"


def test_canonical_target_on_its_own():
    assert canonical_target(EcsTarget(f"{ECS_ARN}:cluster/prod", "web", "c"), ACCOUNT, REGION) == \
        EcsTarget("prod", "web", "c")
    assert canonical_target(LambdaTarget(f"{FN_ARN}:f:live"), ACCOUNT, REGION) == LambdaTarget("f", "live")
    with pytest.raises(Forbidden):
        canonical_target(LambdaTarget("999999999999:function:f"), ACCOUNT, REGION)
    with pytest.raises(Invalid):
        canonical_target(LambdaTarget("f:12"), ACCOUNT, REGION)


@pytest.mark.parametrize("group", ALTERNATE_SPELLINGS, ids=["ecs", "lambda", "lambda-alias"])
def test_alternate_spellings_from_the_corpus_give_one_trigger_id(group):
    streams, store, _, _ = world()
    ids = set()
    for target in group:
        answer = add(streams, target)
        assert answer["ok"], (target, answer)
        ids.add(answer["result"]["id"])
    assert len(ids) == 1 and len(store.triggers) == 1


@pytest.mark.parametrize("spec", ["resize:live", "123456789012:function:resize:live",
                                  "arn:aws:lambda:us-east-1:123456789012:function:resize:live"])
def test_cli_lambda_shortcut_accepts_every_spelling(spec):
    from imagestreams.cli import main

    streams, store, _, _ = world()
    assert main(["--actor", "me", "trigger", "add", "team/web:latest", "--lambda", spec],
                transport=lambda cmd: dispatch(streams, cmd)) == 0
    assert [t.target for t in store.triggers.values()] == [LambdaTarget("resize", "live")]
