"""Registry boundaries on in-memory ports: repositories that are not ours, references to other registries, alias
flows that must end with every alias on its source, alias limits, and malformed image indexes."""

from __future__ import annotations

import json
import logging

import pytest

from imagestreams.adapters.ecr import pick_platform
from imagestreams.adapters.eks import parse_triggers_annotation
from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.errors import Invalid, NotFound, NotOurs
from imagestreams.events import parse_ecr_event
from imagestreams.ingest import handle_ecr_event
from imagestreams.model import ImageRef, StreamTag, Trigger
from imagestreams.ports import DriverResult, TargetState
from imagestreams.reconcile import Reconciler
from imagestreams.services import MAX_ALIAS_DEPTH, MAX_ALIASES, ImageStreams
from tests.conftest import digest
from tests.corpus import (
    ALIAS_CHAIN,
    ECS,
    FOREIGN_REGISTRIES,
    alias_bad_commands,
    alias_limit_world,
    registry_bad_commands,
    valid_event,
)

REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
FOREIGN = "111111111111.dkr.ecr.eu-west-1.amazonaws.com"
LATEST, STABLE = StreamTag("team/web", "latest"), StreamTag("team/web", "stable")


class DeniedRegistry(MemoryRegistry):
    """ECR as IAM shows it to a stack whose RepositoryPattern is ``team/*``: every call on another repository is
    denied (the ECR adapter turns AccessDenied into NotOurs)."""

    def __init__(self, *, knows_pattern: bool = True) -> None:
        super().__init__()
        self.host = self.registry
        self.denied_calls = 0
        if not knows_pattern:
            self.owns = None  # the pattern is not known here: only IAM's AccessDenied tells

    def owns(self, stream: str) -> bool:
        return stream.startswith("team/")

    def _deny(self, stream: str) -> None:
        if not stream.startswith("team/"):
            self.denied_calls += 1
            raise NotOurs(stream, "AccessDeniedException: not authorized to perform ecr:DescribeImages")

    def resolve(self, stream, tag):
        self._deny(stream)
        return super().resolve(stream, tag)

    def check_can_tag(self, stream, digest_, tags):
        self._deny(stream)
        return super().check_can_tag(stream, digest_, tags)

    def untag(self, stream, tag):
        self._deny(stream)
        return super().untag(stream, tag)


def world(registry: MemoryRegistry | None = None):
    store, registry, ecs = MemoryStore(), registry or MemoryRegistry(), MemoryEcs()
    ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    streams = ImageStreams(store, registry, {"ecs": ecs}, ListQueue())
    return streams, store, registry, ecs


def push(streams, registry, stream_tag, n):
    registry.set(stream_tag.stream, stream_tag.tag, digest(n))
    return streams.sync(stream_tag)


def push_event(stream: str, tag: str = "latest") -> dict:
    event = valid_event()
    event["detail"].update({"repository-name": stream, "image-tag": tag})
    return event


# ------------------------------------------------------------------------------------- not ours (AccessDenied)


def test_push_to_a_repository_we_may_not_read_is_ignored_not_failed():
    streams, store, registry, _ = world(DeniedRegistry(knows_pattern=False))
    registry.set("other/app", "latest", digest(1))
    outcome = handle_ecr_event(streams, parse_ecr_event(push_event("other/app")))  # raised AccessDenied before
    assert outcome.status == "ignored" and outcome.not_ours and "other/app" in outcome.reason
    assert store.writes == 0 and registry.denied_calls == 1
    # a repository that is ours is still ingested as before
    registry.set("team/web", "latest", digest(2))
    assert handle_ecr_event(streams, parse_ecr_event(push_event("team/web"))).status == "moved"


def test_ingest_handler_counts_and_logs_events_that_are_not_ours(monkeypatch, lambda_context, capsys):
    import ingest as handler

    streams, store, registry, _ = world(DeniedRegistry())
    monkeypatch.setattr(handler, "services", lambda: streams)
    answer = handler.lambda_handler(push_event("other/app"), lambda_context)
    assert answer["status"] == "ignored" and answer["reason"].startswith("not ours")
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in metrics for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert "EventsNotOurs" in names and store.writes == 0


@pytest.mark.parametrize("command", [
    {"action": "import", "target": "other/app:latest"},
    {"action": "tag", "source": "other/app:latest", "target": "other/app:prod"},
    {"action": "untag", "target": "other/app:latest"},
    {"action": "trigger.add", "from": "other/app:latest", "target": ECS},
    {"action": "describe", "stream": "other/app"},
])
def test_admin_commands_on_a_repository_that_is_not_ours_are_forbidden(command):
    streams, store, registry, ecs = world(DeniedRegistry())
    answer = dispatch(streams, command)
    assert answer["ok"] is False and answer["error"]["type"] == "Forbidden", answer
    assert "other/app" in answer["error"]["message"] and "RepositoryPattern" in answer["error"]["message"]
    assert (store.writes, registry.retags, ecs.calls) == (0, 0, 0)


def test_admin_answers_forbidden_when_iam_denies_what_the_pattern_allows():
    streams, store, registry, _ = world(DeniedRegistry(knows_pattern=False))
    answer = dispatch(streams, {"action": "import", "target": "other/app:latest"})
    assert answer["error"]["type"] == "Forbidden" and store.writes == 0 and registry.denied_calls == 1


# ---------------------------------------------------------------------------------------- alias left behind


class InterleavingRegistry(MemoryRegistry):
    """Runs ``hook`` once, just before the first retag: another ingest gets in between ours and ECR."""

    hook = None

    def retag(self, stream, digest_, tag):
        hook, self.hook = self.hook, None
        if hook:
            hook()
        super().retag(stream, digest_, tag)


def test_two_pushes_ingested_concurrently_leave_the_alias_on_the_source():
    streams, store, registry, _ = world(InterleavingRegistry())
    push(streams, registry, LATEST, 0)
    streams.tag(ImageRef("team/web", "latest"), [STABLE], alias=True)
    # push A is ingested; just before its follower retags stable=A, push B is ingested all the way through
    registry.set("team/web", "latest", digest("A"))

    def push_b():
        push(streams, registry, LATEST, "B")

    registry.hook = push_b
    streams.sync(LATEST)
    assert registry.tag_map[("team/web", "latest")] == digest("B")
    assert registry.tag_map[("team/web", "stable")] == digest("B")  # was left on A
    assert store.get_head(STABLE).digest == digest("B") == store.get_head(LATEST).digest


def test_reconciler_repairs_an_alias_left_behind_and_reports_it():
    streams, store, registry, _ = world()
    push(streams, registry, LATEST, 1)
    streams.tag(ImageRef("team/web", "latest"), [STABLE], alias=True)
    # an alias flow that died after the source moved (table and ECR agree with each other, not with the source)
    push(streams, registry, LATEST, 2)
    registry.set("team/web", "stable", digest(1))
    stale = store.get_head(STABLE)
    store.heads_by_tag[STABLE] = stale._replace(digest=digest(1))
    report = Reconciler(streams, registry, store).run()
    assert report["aliases"] == ["team/web:stable -> team/web:latest"]
    assert registry.tag_map[("team/web", "stable")] == digest(2) == store.get_head(STABLE).digest
    assert Reconciler(streams, registry, store).run().get("aliases") is None  # nothing left to repair


def test_reconciler_restores_a_missing_back_link_so_the_alias_follows_again():
    streams, store, registry, _ = world()
    push(streams, registry, LATEST, 1)
    streams.tag(ImageRef("team/web", "latest"), [STABLE], alias=True)
    store.heads_by_tag[LATEST] = store.get_head(LATEST)._replace(aliases=())  # half-written link
    report = Reconciler(streams, registry, store).run()
    assert report["aliases"] == ["team/web:stable -> team/web:latest"]
    assert store.get_head(LATEST).aliases == ("stable",)
    push(streams, registry, LATEST, 2)
    assert store.get_head(STABLE).digest == digest(2)


def test_tag_alias_catches_up_when_the_source_moved_while_linking():
    streams, store, registry, _ = world(InterleavingRegistry())
    push(streams, registry, LATEST, 1)
    registry.hook = lambda: push(streams, registry, LATEST, 2)  # lands between our read of latest and the link
    streams.tag(ImageRef("team/web", "latest"), [STABLE], alias=True)
    assert store.get_head(STABLE).digest == digest(2) == registry.tag_map[("team/web", "stable")]


def test_rolling_back_an_alias_alone_is_refused():
    streams, store, registry, _ = world()
    push(streams, registry, LATEST, 1)
    streams.tag(ImageRef("team/web", "latest"), [STABLE], alias=True)
    push(streams, registry, LATEST, 2)
    writes = store.writes
    answer = dispatch(streams, {"action": "rollback", "target": "team/web:stable"})
    assert answer["error"]["type"] == "Invalid" and "tracks team/web:latest" in answer["error"]["message"]
    assert store.writes == writes and registry.tag_map[("team/web", "stable")] == digest(2)


# ------------------------------------------------------------------------------------------ alias limits


@pytest.fixture
def limits():
    streams, store, registry, ecs = world()
    alias_limit_world(streams, registry)
    return streams, store, registry, ecs


def test_the_limits_themselves_are_accepted_and_followed(limits):
    streams, store, registry, _ = limits
    assert len(ALIAS_CHAIN) == MAX_ALIAS_DEPTH and len(store.get_head(StreamTag("team/web", "many")).aliases) == 100
    moves = push(streams, registry, LATEST, 2)
    assert [m.stream_tag.tag for m in moves] == ["latest", *ALIAS_CHAIN]
    assert store.get_head(StreamTag("team/web", "a10")).digest == digest(2)


@pytest.mark.parametrize("name, command", list(alias_bad_commands()), ids=[n for n, _ in alias_bad_commands()])
def test_alias_structures_beyond_the_limits_are_refused_before_any_write(limits, name, command):
    streams, store, registry, ecs = limits
    writes, retags = store.writes, registry.retags
    answer = dispatch(streams, command)
    assert answer["ok"] is False and answer["error"]["type"] == "Invalid", answer
    assert 0 < len(answer["error"]["message"]) < 600
    assert (store.writes, registry.retags, ecs.calls) == (writes, retags, 0)


def test_too_many_aliases_message_names_the_limit(limits):
    streams, *_ = limits
    with pytest.raises(Invalid, match=f"at most {MAX_ALIASES}"):
        streams.tag(ImageRef("team/web", "many"), [StreamTag("team/web", "extra")], alias=True)
    with pytest.raises(Invalid, match=f"at most {MAX_ALIAS_DEPTH}"):
        streams.tag(ImageRef("team/web", "a10"), [StreamTag("team/web", "a11")], alias=True)


def test_an_existing_over_deep_chain_never_fails_ingest(caplog):
    """Chains made before the limit existed: followed as far as the limit, with a log line; the push succeeds."""
    streams, store, registry, _ = world()
    tags = ["latest", *[f"d{i}" for i in range(1, 14)]]  # 13 links
    for tag in tags:
        push(streams, registry, StreamTag("team/web", tag), 1)
    for source, alias in zip(tags, tags[1:], strict=False):  # written directly: the tag command refuses this
        head = store.get_head(StreamTag("team/web", source))
        store.heads_by_tag[head.stream_tag] = head._replace(aliases=(alias,))
        child = store.get_head(StreamTag("team/web", alias))
        store.heads_by_tag[child.stream_tag] = child._replace(alias_of=source)
    registry.set("team/web", "latest", digest(2))
    with caplog.at_level(logging.WARNING):
        outcome = handle_ecr_event(streams, parse_ecr_event(push_event("team/web")))  # raised Conflict before
    assert outcome.status == "moved" and len(outcome.moves) == 1 + MAX_ALIAS_DEPTH
    assert store.get_head(StreamTag("team/web", "d10")).digest == digest(2)
    assert store.get_head(StreamTag("team/web", "d11")).digest == digest(1)
    assert "deeper than 10" in caplog.text


# ------------------------------------------------------------------------------------ registry in references


def registry_world():
    registry = MemoryRegistry()
    registry.host = REG
    streams, store, registry, ecs = world(registry)
    push(streams, registry, LATEST, 1)
    return streams, store, registry, ecs


@pytest.mark.parametrize("name, command", list(registry_bad_commands()), ids=[n for n, _ in registry_bad_commands()])
def test_a_reference_to_another_registry_is_invalid_never_rewritten(name, command):
    streams, store, registry, ecs = registry_world()
    writes = store.writes
    answer = dispatch(streams, command)
    assert answer["ok"] is False and answer["error"]["type"] == "Invalid", answer
    assert "registry" in answer["error"]["message"] and len(answer["error"]["message"]) < 600
    assert (store.writes, registry.retags, ecs.calls) == (writes, 0, 0)


def test_the_reported_case_other_account_nginx_is_not_this_accounts_nginx():
    streams, store, registry, ecs = registry_world()
    push(streams, registry, StreamTag("base/nginx", "stable"), 7)
    answer = dispatch(streams, {"action": "trigger.add", "from": f"{FOREIGN}/base/nginx:stable", "target": ECS})
    assert answer["error"]["type"] == "Invalid" and FOREIGN in answer["error"]["message"]
    assert store.triggers == {} and ecs.images[("prod", "web")]["web"] == "nginx:latest"


@pytest.mark.parametrize("command", [
    {"action": "history", "target": f"{REG}/team/web:latest"},
    {"action": "describe", "stream": f"{REG}/team/web"},
    {"action": "import", "stream": f"{REG}/team/web"},
    {"action": "tag", "source": f"{REG}/team/web:latest", "target": f"{REG}/team/web:prod"},
    {"action": "trigger.add", "from": f"{REG}/team/web:latest", "target": ECS},
])
def test_a_full_uri_of_the_stacks_own_registry_is_accepted(command):
    streams, *_ = registry_world()
    answer = dispatch(streams, command)
    assert answer["ok"], answer


def test_with_the_stacks_registry_unknown_every_registry_qualified_reference_is_refused():
    streams, store, registry, _ = world()  # MemoryRegistry without a host: the account is not known
    push(streams, registry, LATEST, 1)
    answer = dispatch(streams, {"action": "history", "target": f"{REG}/team/web:latest"})
    assert answer["error"]["type"] == "Invalid" and "not known" in answer["error"]["message"]
    assert dispatch(streams, {"action": "history", "target": "team/web:latest"})["ok"]


def deployment(name_ref: str) -> tuple[dict, str]:
    obj = {"metadata": {"name": "web", "namespace": "apps"},
           "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
    text = json.dumps([{"from": {"kind": "ImageStreamTag", "name": name_ref},
                        "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image'}])
    return obj, text


@pytest.mark.parametrize("host", FOREIGN_REGISTRIES)
def test_openshift_annotation_naming_another_registry_is_reported_not_adopted(host):
    obj, text = deployment(f"{host}/base/nginx:stable")
    found, errors = parse_triggers_annotation("prod", "Deployment", obj, text, registry=REG)
    assert found == [] and len(errors) == 1 and "registry" in errors[0], errors


def test_openshift_annotation_with_the_stacks_own_registry_or_none_is_adopted():
    for name in (f"{REG}/base/nginx:stable", "base/nginx:stable"):
        found, errors = parse_triggers_annotation("prod", "Deployment", *deployment(name), registry=REG)
        assert errors == [] and found[0][0] == StreamTag("base/nginx", "stable")
    found, errors = parse_triggers_annotation("prod", "Deployment", *deployment(f"{REG}/base/nginx:stable"))
    assert found == [] and "not known" in errors[0]  # the stack's registry unknown: nothing can be verified


# ---------------------------------------------------------------------------- malformed image index (platform)

IDX = "application/vnd.oci.image.index.v1+json"
MALFORMED_INDEXES = {
    "not json": "{",
    "json array": "[]",
    "json string": '"index"',
    "manifests is an object": json.dumps({"mediaType": IDX, "manifests": {"digest": digest(1)}}),
    "manifests is a string": json.dumps({"mediaType": IDX, "manifests": "linux/arm64"}),
    "manifests is null": json.dumps({"mediaType": IDX, "manifests": None}),
    "entries are not objects": json.dumps({"mediaType": IDX, "manifests": [1, "x", None, []]}),
    "entries without platform": json.dumps({"mediaType": IDX, "manifests": [{"digest": digest(1)}]}),
    "platform is a string": json.dumps({"mediaType": IDX, "manifests": [{"digest": digest(1),
                                                                         "platform": "linux/arm64"}]}),
    "platform is a list": json.dumps({"mediaType": IDX, "manifests": [{"digest": digest(1), "platform": []}]}),
    "digest missing": json.dumps({"mediaType": IDX, "manifests": [{"platform": {"os": "linux",
                                                                               "architecture": "arm64"}}]}),
    "digest not a digest": json.dumps({"mediaType": IDX, "manifests": [
        {"digest": "nginx:latest", "platform": {"os": "linux", "architecture": "arm64"}}]}),
    "digest is a list": json.dumps({"mediaType": IDX, "manifests": [
        {"digest": [digest(1)], "platform": {"os": "linux", "architecture": "arm64"}}]}),
    "mediaType is a list": json.dumps({"mediaType": [IDX], "manifests": "x"}),
    "huge platform strings": json.dumps({"mediaType": IDX, "manifests": [
        {"digest": digest(i), "platform": {"os": "linux\x1b[2J" + "x" * 200_000,
                                           "architecture": "a" * 100_000 + str(i)}}
        for i in range(30)]}),
    "unhashable platform values": json.dumps({"mediaType": IDX, "manifests": [
        {"digest": digest(1), "platform": {"os": ["linux"], "architecture": {"a": 1}}}]}),
    "deeply nested": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("name", list(MALFORMED_INDEXES))
def test_a_malformed_index_is_a_clean_not_found(name):
    with pytest.raises(NotFound) as info:
        pick_platform(MALFORMED_INDEXES[name], digest(0), "arm64")
    assert 0 < len(info.value.message) < 600 and "\x1b" not in info.value.message


def test_well_formed_indexes_still_pick_their_platform():
    index = json.dumps({"mediaType": IDX, "manifests": [
        {"digest": digest("att"), "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": digest("amd"), "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": digest("arm"), "platform": {"os": "linux", "architecture": "arm64"}}]})
    assert pick_platform(index, digest(0), "arm64") == digest("arm")
    with pytest.raises(NotFound, match="it has: linux/amd64"):
        pick_platform(index, digest(0), "s390x")
    single = json.dumps({"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []})
    assert pick_platform(single, digest(0), "arm64") == digest(0)


class IndexRegistry(MemoryRegistry):
    """Serves a raw index body for platform_digest, as ECR's BatchGetImage would."""

    manifest = ""

    def platform_digest(self, stream, digest_, architecture):
        return pick_platform(self.manifest, digest_, architecture)


class LambdaLike:
    """A target that takes no index (like Lambda): it asks for one architecture."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    def platform(self, target):
        return "arm64"

    def inspect(self, target, deployment):
        return TargetState("nothing")

    def apply(self, target, image):
        self.applied.append(image)
        return DriverResult(True, "nothing", "COMPLETED")


@pytest.mark.parametrize("name", ["manifests is an object", "platform is a string", "huge platform strings"])
def test_a_fire_on_a_malformed_index_fails_the_trigger_with_a_short_reason(name):
    from imagestreams.model import LambdaTarget

    registry = IndexRegistry()
    registry.manifest = MALFORMED_INDEXES[name]
    store, driver = MemoryStore(), LambdaLike()
    streams = ImageStreams(store, registry, {"lambda": driver})
    registry.set("team/web", "latest", digest(1))
    streams.sync(LATEST)
    trigger = Trigger("tr-000000000001", LATEST, LambdaTarget("f"))
    store.add_trigger(trigger)
    fired = streams.fire(trigger, store.get_head(LATEST))  # raised TypeError/AttributeError before
    assert fired.status == "Failed" and 0 < len(fired.last_error) < 600 and driver.applied == []


def test_every_event_for_a_repository_outside_the_pattern_counts_as_not_ours():
    streams, store, registry, _ = world(DeniedRegistry())
    delete_by_digest = valid_event()
    delete_by_digest["detail"].update({"repository-name": "other/app", "action-type": "DELETE"})
    del delete_by_digest["detail"]["image-tag"]
    untagged_push = valid_event()
    untagged_push["detail"]["repository-name"] = "other/app"
    del untagged_push["detail"]["image-tag"]
    for event in (delete_by_digest, untagged_push):
        assert handle_ecr_event(streams, parse_ecr_event(event)).not_ours
    assert store.writes == 0 and registry.denied_calls == 0  # decided by the pattern alone
