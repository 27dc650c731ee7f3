"""Policy tags on in-memory ports: what each kind selects, how a policy tag moves (byte-exact retag, cause
``policy``), holds after a rollback, conflicts with aliases, the regex safety limits (timed), and what an
evaluation reads and writes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.cli import main as cli_main
from imagestreams.cli import parse_gate_flag
from imagestreams.errors import Conflict, Invalid
from imagestreams.model import EcsTarget, ImageRef, StreamTag
from imagestreams.policytags import Candidate, compile_pattern, parse_policy, select
from imagestreams.services import ImageStreams
from tests.conftest import digest
from tests.corpus import policy_conflict_commands, policy_world, worst_pattern_match_ms

S = "team/web"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make():
    store, registry, ecs, queue = MemoryStore(), MemoryRegistry(), MemoryEcs(), ListQueue()
    return ImageStreams(store, registry, {"ecs": ecs}, queue), store, registry, queue


def push(streams: ImageStreams, registry: MemoryRegistry, tag: str, n: int, pushed_at: datetime | None = None):
    """A push as the pipeline handles it: ECR moves, ingest syncs, the fan-out sees the head move."""
    registry.set(S, tag, digest(n), pushed_at=pushed_at)
    streams.sync(StreamTag(S, tag))
    streams.head_moved(streams.store.get_head(StreamTag(S, tag)))


def cands(*tags: str) -> list[Candidate]:
    return [Candidate(t, digest(t)) for t in tags]


def chosen(policy: dict, *tags: str) -> str | None:
    found = select(parse_policy(policy), cands(*tags))
    return found[0] if found else None


# ------------------------------------------------------------------------------------------ selection


@pytest.mark.parametrize("policy, tags, expected", [
    ({"semver": "^1.2"}, ("v1.2.0", "v1.3.0", "v2.0.0", "latest"), "v1.3.0"),
    ({"semver": "~1.2.3"}, ("1.2.3", "1.2.9", "1.3.0"), "1.2.9"),
    ({"semver": "1.2.x"}, ("1.2.0", "1.2.10", "1.2.9", "1.3.0"), "1.2.10"),  # versions, not text
    ({"semver": ">=1.2.0 <2.0.0"}, ("1.1.0", "1.9.0", "2.0.0"), "1.9.0"),
    ({"semver": "^1.2 || ^3.0"}, ("1.4.0", "2.5.0", "3.1.0", "4.0.0"), "3.1.0"),
    ({"semver": "^1.2 || ^3.0"}, ("1.4.0", "2.5.0", "4.0.0"), "1.4.0"),
    ({"semver": "^1.2"}, ("1.3.0-rc.1", "1.2.5"), "1.2.5"),  # pre-releases only when asked for
    ({"semver": "^1.2", "prerelease": True}, ("1.3.0-rc.1", "1.2.5"), "1.3.0-rc.1"),
    ({"semver": "^1.2", "prerelease": True}, ("1.3.0-rc.1", "1.3.0", "1.2.5"), "1.3.0"),
    ({"semver": "^1.2", "prerelease": True}, ("2.0.0-rc.1", "1.2.5"), "1.2.5"),  # 2.0.0-rc.1 is not ^1.2
    ({"semver": "^1.2"}, ("v1.2.0", "V1.9.0", "1.2", "1.2.0.1", "vv1.3.0"), "v1.2.0"),
    ({"semver": "^1.2"}, ("latest", "main-5", "1.1.9"), None),
])
def test_semver_selects_the_highest_version_in_range(policy, tags, expected):
    assert chosen(policy, *tags) == expected


@pytest.mark.parametrize("policy, tags, expected", [
    ({"pattern": r"^main-(?P<n>[0-9]+)$", "order": "numeric", "extract": "n"}, ("main-9", "main-10", "dev-99"),
     "main-10"),
    ({"pattern": r"^main-(?P<n>[0-9]+)$", "order": "alphabetical", "extract": "n"}, ("main-9", "main-10"), "main-9"),
    ({"pattern": r"main-.*", "order": "alphabetical"}, ("main-a", "main-b", "xmain-z"), "main-b"),  # full match
    ({"pattern": r"build-(\w+)", "order": "numeric", "extract": 1}, ("build-7", "build-x9", "build-12"),
     "build-12"),  # a non-numeric value is no candidate
    ({"pattern": r"build-(\w+)", "order": "numeric", "extract": "$1"}, ("build-x9",), None),
    ({"pattern": r"rel-(?P<v>[0-9]+\.[0-9]+)", "order": "numeric", "extract": "v"}, ("rel-1.10", "rel-1.9"),
     "rel-1.9"),  # numbers: 1.9 > 1.10
])
def test_pattern_orders_by_the_extracted_group(policy, tags, expected):
    assert chosen(policy, *tags) == expected


def test_pattern_order_pushed_uses_the_image_push_time():
    spec = parse_policy({"pattern": r"sha-[a-f0-9]+", "order": "pushed"})
    candidates = [Candidate("sha-aaa", digest(1), T0 + timedelta(minutes=5)),
                  Candidate("sha-fff", digest(2), T0), Candidate("sha-bbb", digest(3), None)]
    assert select(spec, candidates) == ("sha-aaa", digest(1))


def test_follow_selects_the_named_tag_or_nothing():
    assert chosen({"follow": "staging"}, "staging", "latest") == "staging"
    assert chosen({"follow": "staging"}, "latest") is None


# ----------------------------------------------------------------------------------- the regex limits

def test_the_worst_allowed_patterns_match_a_hostile_128_character_tag_in_under_50_ms():
    worst = min(worst_pattern_match_ms() for _ in range(3))  # the best of three runs, against a shared machine's noise
    print(f"\nworst pattern match on a 128-character tag: {worst:.2f} ms")
    assert worst < 50


@pytest.mark.parametrize("pattern", [r"(a+)+", r"(a|aa)*", r".*.*.*x", r".*-.*-.*", r"(.*|a)(.*|b)(.*|c)y",
                                     r"(a)\1", r"(?=a)a", r"a{200}"])
def test_patterns_that_could_backtrack_without_end_are_refused(pattern):
    with pytest.raises(Invalid):
        compile_pattern(pattern)


def test_a_pattern_that_does_not_compile_names_the_position():
    with pytest.raises(Invalid, match="position 4"):
        compile_pattern("main(-[0-9]+")


@pytest.mark.parametrize("pattern", [
    r"^main-(?P<n>[0-9]+)$", r"v?(\d+)\.(\d+)\.(\d+)", r"(?P<maj>\d+)\.(?P<min>\d+)\.(?P<pat>\d+)-rc(?P<rc>\d+)",
    r"[a-z]+-[0-9]+-[a-z]+-[0-9]+", r"(?i)release-[a-z0-9]+", r"(stable|beta)-[0-9]+", r"(?P<b>.*)-(?P<n>\d+)",
    r"[^-]*-[^-]*-.*"])
def test_ordinary_patterns_are_accepted(pattern):
    compile_pattern(pattern)


# ----------------------------------------------------------------------------------------- the flow


def test_semver_policy_moves_the_tag_byte_exact_with_cause_policy_and_its_trigger_fires():
    streams, store, registry, queue = make()
    for n, tag in enumerate(("v1.2.0", "v1.3.0", "v2.0.0"), 1):
        push(streams, registry, tag, n)
    stable = StreamTag(S, "stable")
    policy = streams.set_policy(stable, {"semver": "^1.2"})
    assert (policy.status, policy.selected, policy.digest) == ("Selected", "v1.3.0", digest(2))
    assert registry.tag_map[(S, "stable")] == digest(2)
    [entry] = streams.history(stable)
    assert (entry.cause, entry.actor, entry.digest) == ("policy", "policy:semver", digest(2))
    trigger = streams.add_trigger(stable, EcsTarget("prod", "web", "web"))
    queue.items.clear()
    push(streams, registry, "v1.4.0", 4)  # a better candidate: the policy tag moves, and its move fans out
    assert registry.tag_map[(S, "stable")] == digest(4)
    streams.head_moved(store.get_head(stable))
    assert (stable, trigger.id, digest(4)) in queue.items


def test_no_candidate_leaves_the_tag_where_it_is():
    streams, store, registry, _ = make()
    push(streams, registry, "v1.2.0", 1)
    stable = StreamTag(S, "stable")
    streams.set_policy(stable, {"semver": "^1.2"})
    registry.remove(S, "v1.2.0")
    streams.sync(StreamTag(S, "v1.2.0"), cause="delete")  # the only candidate is deleted
    streams.head_moved(store.get_head(StreamTag(S, "v1.2.0")))
    policy = streams.get_policy(stable)
    assert (policy.status, policy.selected) == ("NoCandidate", None)
    assert store.get_head(stable).digest == digest(1)
    assert streams.set_policy(StreamTag(S, "never"), {"semver": "^9"}).status == "NoCandidate"
    tags = {t["tag"]: t for t in streams.describe(S)["tags"]}
    assert tags["never"]["digest"] is None and tags["never"]["policy"]["status"] == "NoCandidate"
    assert tags["stable"]["policy"]["policy"] == {"semver": "^1.2"}
    assert tags["v1.2.0"]["policy"] if "v1.2.0" in tags else True


def test_policy_tags_and_aliases_are_no_candidates_but_follow_may_follow_a_policy_tag():
    streams, store, registry, _ = make()
    push(streams, registry, "v1.2.0", 1)
    push(streams, registry, "v1.5.0", 2)
    streams.tag(ImageRef(S, "v1.5.0"), [StreamTag(S, "v1.9.0")], alias=True)  # an alias named like a version
    streams.set_policy(StreamTag(S, "stable"), {"semver": "^1.2"})
    assert streams.get_policy(StreamTag(S, "stable")).selected == "v1.5.0"
    streams.set_policy(StreamTag(S, "prod"), {"follow": "stable"})
    streams.set_policy(StreamTag(S, "9.9.9"), {"follow": "v1.2.0"})  # a policy tag named like a version
    push(streams, registry, "v1.6.0", 3)
    assert registry.tag_map[(S, "stable")] == digest(3)
    assert registry.tag_map[(S, "prod")] == digest(3)  # the chain is followed in the same flow
    assert streams.get_policy(StreamTag(S, "stable")).selected == "v1.6.0"
    assert [e.actor for e in streams.history(StreamTag(S, "prod"))][0] == "policy:follow"


def test_rollback_of_a_policy_tag_holds_it_until_resume():
    streams, store, registry, _ = make()
    push(streams, registry, "v1.2.0", 1)
    stable = StreamTag(S, "stable")
    streams.set_policy(stable, {"semver": "^1.2"})
    push(streams, registry, "v1.3.0", 2)
    assert store.get_head(stable).digest == digest(2)
    streams.rollback_tag(stable, actor="alice")
    streams.head_moved(store.get_head(stable))  # the rollback's own move fans out: it must not undo it
    assert store.get_head(stable).digest == digest(1)
    assert streams.get_policy(stable).held is True
    push(streams, registry, "v1.4.0", 3)  # held: nothing moves
    assert registry.tag_map[(S, "stable")] == digest(1)
    answer = dispatch(streams, {"action": "policy.resume", "target": "team/web:stable", "actor": "alice"})
    [p] = answer["result"]["policies"]
    assert (p["held"], p["selected"], p["digest"]) == (False, "v1.4.0", digest(3))
    assert registry.tag_map[(S, "stable")] == digest(3)


def test_a_rollback_that_fails_in_ecr_leaves_the_policy_unheld(monkeypatch):
    streams, store, registry, _ = make()
    push(streams, registry, "v1.2.0", 1)
    stable = StreamTag(S, "stable")
    streams.set_policy(stable, {"semver": "^1.2"})
    push(streams, registry, "v1.3.0", 2)

    def refused(*_args):
        raise Conflict("ECR refused the retag")

    monkeypatch.setattr(registry, "retag", refused)
    with pytest.raises(Conflict):
        streams.rollback_tag(stable)
    assert streams.get_policy(stable).held is False


@pytest.mark.parametrize("name, command", list(policy_conflict_commands()),
                         ids=[n for n, _ in policy_conflict_commands()])
def test_alias_and_policy_conflicts_are_refused_and_write_nothing(name, command):
    streams, store, registry, _ = make()
    policy_world(streams, registry)
    writes, retags = store.writes, registry.retags
    answer = dispatch(streams, command)
    assert answer["ok"] is False, answer
    assert answer["error"]["type"] in ("Conflict", "Invalid")
    assert (store.writes, registry.retags) == (writes, retags)


def test_an_alias_tag_cannot_get_a_policy():
    streams, store, registry, _ = make()
    policy_world(streams, registry)
    with pytest.raises(Conflict):
        streams.set_policy(StreamTag(S, "edge"), {"semver": "^1"})


def test_remove_keeps_the_tag_as_a_plain_tag():
    streams, store, registry, _ = make()
    policy_world(streams, registry)
    assert dispatch(streams, {"action": "policy.remove", "target": "team/web:stable"})["result"] == {"policies": []}
    push(streams, registry, "v1.9.0", 9)
    assert registry.tag_map[(S, "stable")] == "sha256:" + "3" * 64
    assert [p["target"] for p in dispatch(streams, {"action": "policy.list"})["result"]["policies"]] == [
        "team/web:prod"]


# --------------------------------------------------------------------------------------- cost


class CountingStore:
    """Counts the table reads made through it (every method but the writes)."""

    WRITES = {"commit", "relink", "put_policy", "delete_policy", "save_trigger", "add_trigger", "set_paused"}

    def __init__(self, inner: MemoryStore) -> None:
        self.inner, self.reads = inner, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if callable(attr) and name not in self.WRITES:
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.reads += 1
                return attr(*args, **kwargs)
            return counted
        return attr


def test_a_push_to_a_stream_with_20_policy_tags_reads_once_and_retags_only_what_changed():
    streams, store, registry, _ = make()
    for n in range(5):
        push(streams, registry, f"v1.{n}.0", n)
    for i in range(20):
        streams.set_policy(StreamTag(S, f"p{i}"), {"semver": f"~1.{i % 5}"} if i < 10 else
                           {"pattern": r"v1\.(?P<m>[0-9]+)\.0", "order": "numeric", "extract": "m"})
    for head in store.heads(S):  # the fan-outs the table stream delivers for the policy tags' first heads
        streams.head_moved(head)
    counting = CountingStore(store)
    streams.store = counting
    retags, writes = registry.retags, store.writes
    registry.set(S, "latest", digest("latest"))
    streams.sync(StreamTag(S, "latest"))  # not a candidate of any policy: nothing may change
    counting.reads = 0
    streams.head_moved(store.get_head(StreamTag(S, "latest")))
    # the tag's head + triggers, then the stream's heads and policies (an index without history): not one per policy
    assert counting.reads == 2
    assert registry.retags == retags
    assert store.writes == writes + 1  # the sync's commit only
    registry.set(S, "v1.9.0", digest(9))
    streams.sync(StreamTag(S, "v1.9.0"))
    retags = registry.retags
    streams.head_moved(store.get_head(StreamTag(S, "v1.9.0")))
    assert registry.retags - retags == 10  # the ten pattern policies now select v1.9.0; the ~1.x ones stay


# ------------------------------------------------------------------------------------------------ gates


def test_promotion_waits_for_approval_and_records_the_approver():
    streams, store, registry, _ = make()
    push(streams, registry, "staging", 1)
    prod = StreamTag(S, "prod")
    answer = dispatch(streams, {"action": "policy.set", "target": "team/web:prod", "policy": {"follow": "staging"},
                                "gates": [{"type": "approval"}]})
    [p] = answer["result"]["policies"]
    assert (p["status"], p["gate"]["state"], p["digest"]) == ("Gated", "waiting", digest(1))
    assert (S, "prod") not in registry.tag_map
    with pytest.raises(Conflict):
        streams.approve_policy(prod, digest(2), "bob", approve=True)
    policy = streams.approve_policy(prod, digest(1), "bob", approve=True)
    assert (policy.status, policy.digest) == ("Selected", digest(1))
    assert registry.tag_map[(S, "prod")] == digest(1)
    assert streams.history(prod)[0].actor == "bob"


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_gate_flags_become_gate_objects():
    assert parse_gate_flag("verified:tr-0123456789ab,tr-ba9876543210:30") == {
        "type": "verified", "triggers": ["tr-0123456789ab", "tr-ba9876543210"], "minutes": 30}
    assert parse_gate_flag("approval") == {"type": "approval"}
    assert parse_gate_flag("scan:critical:60") == {"type": "scan", "blockAt": "CRITICAL", "timeoutMinutes": 60}
    assert parse_gate_flag("signature:30") == {"type": "signature", "timeoutMinutes": 30}


def test_cli_policy_set_and_list(capsys):
    streams, store, registry, _ = make()
    push(streams, registry, "main-9", 9)
    push(streams, registry, "main-10", 10)
    sent = []

    def transport(command):
        sent.append(command)
        return dispatch(streams, command)

    assert cli_main(["policy", "set", "team/web:nightly", "--pattern", r"^main-(?P<n>[0-9]+)$", "--order",
                     "numeric", "--extract", "n", "--actor", "me"], transport=transport) == 0
    assert sent[0]["policy"] == {"pattern": r"^main-(?P<n>[0-9]+)$", "order": "numeric", "extract": "n"}
    out = capsys.readouterr().out
    assert "team/web:nightly" in out and "main-10" in out and "Selected" in out
    assert cli_main(["policy", "list", "--stream", "team/web", "--output", "json"], transport=transport) == 0
    assert '"selected": "main-10"' in capsys.readouterr().out
    assert cli_main(["policy", "set", "team/web:x", "--semver", "^1", "--follow", "a"], transport=transport) == 2


# --------------------------------------------------------------------------------------- randomized


def test_random_pushes_and_deletes_keep_every_policy_tag_on_its_best_candidate():
    """Random pushes, re-pushes and deletes of version and build tags, each fanned out as the table stream would
    (the policy tags' own moves too): afterwards every policy tag equals what its policy selects from the live
    candidates, or stays where it was when there is none."""
    import random

    rng = random.Random(7)
    for _ in range(60):
        streams, store, registry, _queue = make()
        specs = {"stable": {"semver": "^1.2"}, "pre": {"semver": ">=1.0.0", "prerelease": True},
                 "nightly": {"pattern": r"main-(?P<n>[0-9]+)", "order": "numeric", "extract": "n"},
                 "prod": {"follow": "stable"}, "edge": {"follow": "prod"}}
        for tag, spec in specs.items():
            streams.set_policy(StreamTag(S, tag), spec)
        tags = ["1.1.0", "v1.2.0", "1.3.0", "1.4.0-rc.1", "2.0.0", "main-3", "main-12", "main-7", "latest"]
        for step in range(12):
            tag = rng.choice(tags)
            if rng.random() < 0.25 and (S, tag) in registry.tag_map:
                registry.remove(S, tag)
            else:
                registry.set(S, tag, digest(rng.randrange(6)))
            streams.sync(StreamTag(S, tag), cause="push")
            pending = [store.get_head(StreamTag(S, tag))]
            while pending:  # the table stream: every head change is fanned out, policy tags' moves included
                head = pending.pop(0)
                before = {t: store.get_head(StreamTag(S, t)) for t in specs}
                streams.head_moved(head)
                pending += [h for t, h in ((t, store.get_head(StreamTag(S, t))) for t in specs)
                            if h is not None and h != before[t]]
            live = {h.stream_tag.tag: h for h in store.heads(S) if not h.deleted}
            for policy_tag, spec in specs.items():
                pool = [Candidate(t, h.digest, h.pushed_at or h.at) for t, h in live.items()
                        if t != policy_tag and ("follow" in spec or t not in specs)]
                want = select(parse_policy(spec), pool)
                have = live.get(policy_tag)
                if want is not None:
                    assert have is not None and have.digest == want[1], (step, policy_tag, want, have)
                    assert registry.tag_map[(S, policy_tag)] == want[1]
