"""Prune on the in-memory ports: every protection rule, dry run, confirm, pruned history marks, rollbacks to pruned
or archived digests, bad input, and paging/resuming."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from imagestreams import prune as prune_mod
from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.model import EcsTarget, HistoryEntry, StreamTag, pinned_ref, rfc3339
from imagestreams.services import ImageStreams
from tests.conftest import digest

S = "team/web"
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=30)
TARGET = EcsTarget("prod", "web", "app")


class World:
    def __init__(self) -> None:
        self.store, self.registry, self.ecs = MemoryStore(), MemoryRegistry(REG), MemoryEcs()
        self.streams = ImageStreams(self.store, self.registry, {"ecs": self.ecs}, None, clock=lambda: NOW)

    def push(self, tag: str, n: int, *, at: datetime = OLD, **kw) -> str:
        d = digest(n)
        if d not in self.registry.images.get(S, set()):
            self.registry.push(S, d, pushed_at=at, **kw)
        self.registry.set(S, tag, d)
        self.streams.sync(StreamTag(S, tag))
        return d

    def untagged(self, n: int, *, at: datetime = OLD, **kw) -> str:
        self.registry.push(S, digest(n), pushed_at=at, **kw)
        return digest(n)

    def prune(self, **params) -> dict:
        answer = dispatch(self.streams, {"action": "prune", "stream": S, **params})
        assert answer["ok"], answer
        return answer["result"]

    def service(self, n: int | None) -> None:
        self.ecs.images[("prod", "web")] = {"app": pinned_ref(REG, S, digest(n)) if n else "nginx:latest"}

    def present(self) -> set[str]:
        return set(self.registry.images.get(S, set()))


def digests(result: dict, key: str = "candidates") -> set[str]:
    return {c["digest"] for c in result[key]}


def test_dry_run_keeps_heads_revisions_and_young_images_and_writes_nothing():
    w = World()
    for n in range(1, 7):
        w.push("latest", n)  # latest: 6, 5, 4 kept (the head is the first of 3 revisions)
    w.untagged(7)
    w.untagged(8, at=NOW - timedelta(minutes=30))  # younger than 60 minutes
    writes, before = w.store.writes, w.present()
    result = w.prune()
    assert digests(result) == {digest(1), digest(2), digest(3), digest(7)}
    assert result["deleted"] == []
    assert result["reclaimableBytes"] == sum(c["sizeBytes"] for c in result["candidates"]) == 4000
    first = next(c for c in result["candidates"] if c["digest"] == digest(7))
    assert first == {"stream": S, "digest": digest(7), "tags": [], "pushedAt": rfc3339(OLD),
                     "sizeBytes": 1000}
    assert (w.store.writes, w.present(), w.registry.delete_calls) == (writes, before, 0)


def test_keep_tag_revisions_and_age_threshold_are_honoured():
    w = World()
    for n in range(1, 5):
        w.push("latest", n)
    w.untagged(9, at=NOW - timedelta(minutes=30))
    assert digests(w.prune(keepTagRevisions=1)) == {digest(1), digest(2), digest(3)}
    assert digests(w.prune(keepTagRevisions=4)) == set()
    assert digests(w.prune(keepTagRevisions=4, keepYoungerThanMinutes=10)) == {digest(9)}


def test_every_tag_in_ecr_is_kept_even_unknown_to_the_table():
    w = World()
    w.push("a", 1)
    w.push("b", 2)
    w.registry.push(S, digest(3), pushed_at=OLD, tags=("never-ingested",))
    assert digests(w.prune(keepTagRevisions=0)) == set()


def test_a_single_entry_history_is_kept():
    one = {"t": [HistoryEntry(digest(1), 1, OLD, "push", "ecr")]}
    two = {"t": [HistoryEntry(digest(2), 2, OLD, "push", "ecr"), HistoryEntry(digest(1), 1, OLD, "push", "ecr")]}
    assert prune_mod.history_protected(one, 0) == {digest(1)}
    assert prune_mod.history_protected(two, 0) == set()
    assert prune_mod.history_protected(two, 1) == {digest(2)}


def test_what_a_target_runs_now_is_read_live_and_kept():
    w = World()
    for n in range(1, 7):
        w.push("latest", n)
    w.service(6)
    w.streams.add_trigger(StreamTag(S, "latest"), TARGET)
    w.service(1)  # changed out of band after the fire: the table still says 6
    assert w.store.get_trigger(next(iter(w.store.triggers))).last_triggered_digest == digest(6)
    result = w.prune(confirm=True)
    assert digest(1) not in digests(result) and digest(1) in w.present()
    assert digests(result, "deleted") == {digest(2), digest(3)}


def test_what_a_target_last_received_is_kept():
    w = World()
    for n in range(1, 7):
        w.push("latest", n)
    w.service(6)
    trigger = w.streams.add_trigger(StreamTag(S, "latest"), TARGET)
    w.store.triggers[trigger.id] = trigger.with_outcome(last_triggered_digest=digest(2),
                                                        deployed_image=pinned_ref(REG, S, digest(3)))
    assert digests(w.prune()) == {digest(1)}


def test_an_unreadable_target_makes_prune_refuse_and_delete_nothing():
    w = World()
    for n in range(1, 7):
        w.push("latest", n)
    w.service(6)
    w.streams.add_trigger(StreamTag(S, "latest"), TARGET)
    del w.ecs.images[("prod", "web")]  # the service is gone / cannot be read
    before, writes = w.present(), w.store.writes
    answer = dispatch(w.streams, {"action": "prune", "stream": S, "confirm": True})
    assert answer["ok"] is False and answer["error"]["type"] == "Conflict"
    assert "prod" in answer["error"]["message"] and "web" in answer["error"]["message"]
    assert (w.present(), w.store.writes, w.registry.delete_calls) == (before, writes, 0)


def test_children_of_a_kept_index_are_kept_and_an_unkept_index_goes_before_its_children():
    w = World()
    kept_kids = {"amd64": w.untagged(11), "arm64": w.untagged(12)}
    w.push("multi", 10, children=kept_kids)
    old_kids = {"amd64": w.untagged(21), "arm64": w.untagged(22)}
    w.untagged(20, children=old_kids)  # an old untagged index: it and its children go
    young_kids = {"amd64": w.untagged(31)}
    w.untagged(30, at=NOW - timedelta(minutes=5), children=young_kids)  # young index keeps its old child
    dry = w.prune()
    assert digests(dry) == {digest(20), digest(21), digest(22)}
    done = w.prune(confirm=True)
    assert digests(done, "deleted") == digests(dry)  # the index first, or ECR refuses its children
    assert "failures" not in done
    assert w.present() == {digest(10), digest(11), digest(12), digest(30), digest(31)}


def test_confirm_deletes_exactly_the_candidates_and_marks_their_history():
    w = World()
    for n in range(1, 7):
        w.push("latest", n)
    w.push("stable", 2)
    w.push("stable", 7)  # stable: 7, 2 (both kept: two newest revisions)
    w.untagged(8)
    before = w.present()
    dry = w.prune()
    done = w.prune(confirm=True, actor="alice")
    assert digests(done, "deleted") == digests(dry) == {digest(1), digest(3), digest(8)}
    assert w.present() == before - digests(dry)
    entries = dispatch(w.streams, {"action": "history", "target": f"{S}:latest"})["result"]["entries"]
    marked = {e["digest"] for e in entries if e.get("pruned") is True}
    assert marked == {digest(1), digest(3)}
    assert all("pruned" not in e for e in entries if e["digest"] not in marked)
    assert len(entries) == 6  # the entries stay, for audit
    assert digests(w.prune()) == set()  # nothing left to prune


def test_rollback_of_a_tag_to_a_pruned_digest_is_a_conflict():
    w = World()
    for n in range(1, 5):
        w.push("latest", n)
    w.prune(confirm=True, keepTagRevisions=1)
    writes = w.store.writes
    answer = dispatch(w.streams, {"action": "rollback", "target": f"{S}:latest", "to": digest(2)})
    assert answer["ok"] is False and answer["error"]["type"] == "Conflict"
    assert "pruned" in answer["error"]["message"]
    assert w.store.writes == writes and w.store.get_head(StreamTag(S, "latest")).digest == digest(4)


def test_rollback_of_a_target_to_a_pruned_digest_is_a_conflict_and_leaves_it_running():
    w = World()
    for n in range(1, 5):
        w.push("latest", n)
    w.service(4)
    trigger = w.streams.add_trigger(StreamTag(S, "latest"), TARGET)
    w.prune(confirm=True, keepTagRevisions=1)
    answer = dispatch(w.streams, {"action": "rollback", "trigger": trigger.id})
    assert answer["ok"] is False and answer["error"]["type"] == "Conflict"
    assert "pruned" in answer["error"]["message"]
    assert w.ecs.images[("prod", "web")]["app"] == pinned_ref(REG, S, digest(4))
    assert w.store.get_trigger(trigger.id).paused is False


def test_rollback_to_an_archived_digest_is_a_conflict_saying_how_to_restore():
    w = World()
    for n in range(1, 4):
        w.push("latest", n)
    w.registry.image_details[(S, digest(2))] = w.registry.image_details[(S, digest(2))]._replace(status="ARCHIVED")
    w.service(3)
    trigger = w.streams.add_trigger(StreamTag(S, "latest"), TARGET)
    for command in ({"action": "rollback", "target": f"{S}:latest", "steps": 1},
                    {"action": "rollback", "trigger": trigger.id}):
        answer = dispatch(w.streams, command)
        assert answer["ok"] is False and answer["error"]["type"] == "Conflict", command
        assert "archived" in answer["error"]["message"]
        assert "update-image-storage-class" in answer["error"]["message"]
        assert "STANDARD" in answer["error"]["message"]
    assert w.ecs.images[("prod", "web")]["app"] == pinned_ref(REG, S, digest(3))
    assert digest(2) not in digests(w.prune(keepTagRevisions=0))  # archived images are not listed, not pruned


def test_rollback_to_a_live_digest_still_works():
    w = World()
    for n in range(1, 4):
        w.push("latest", n)
    answer = dispatch(w.streams, {"action": "rollback", "target": f"{S}:latest", "steps": 1})
    assert answer["ok"], answer
    assert w.store.get_head(StreamTag(S, "latest")).digest == digest(2)


@pytest.mark.parametrize("params", [
    {"keepTagRevisions": -1}, {"keepTagRevisions": "3"}, {"keepTagRevisions": True}, {"keepTagRevisions": 1.5},
    {"keepYoungerThanMinutes": -5}, {"keepYoungerThanMinutes": None}, {"confirm": "yes"}, {"force": True},
    {"cursor": "not-a-cursor"}, {"cursor": 3}, {"stream": "BAD REPO"}, {"actor": ""},
    {"cursor": prune_mod.encode_cursor("other/repo", "")},
])
def test_bad_input_is_invalid_and_changes_nothing(params):
    w = World()
    for n in range(1, 6):
        w.push("latest", n)
    before, writes = w.present(), w.store.writes
    answer = dispatch(w.streams, {"action": "prune", "stream": S, "confirm": True, **params}
                      if "confirm" not in params else {"action": "prune", "stream": S, **params})
    assert answer["ok"] is False and answer["error"]["type"] == "Invalid", answer
    assert (w.present(), w.store.writes, w.registry.delete_calls, w.registry.describe_pages) == (
        before, writes, 0, 0)


def test_large_repository_is_listed_in_pages_and_answered_through_a_cursor(monkeypatch):
    w = World()
    w.registry.page_size = 10
    monkeypatch.setattr(prune_mod, "MAX_PER_CALL", 7)
    w.push("latest", 1)
    expected = {w.untagged(n) for n in range(100, 135)}
    seen: list[str] = []
    cursor, calls = None, 0
    while True:
        result = w.prune(**({"cursor": cursor} if cursor else {}))
        calls += 1
        assert len(result["candidates"]) <= 7
        assert result["describeImagesPages"] == math.ceil(36 / 10)
        seen += [c["digest"] for c in result["candidates"]]
        cursor = result["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    assert calls == math.ceil(35 / 7)


def test_a_confirm_that_runs_out_of_time_answers_next_and_resumes(monkeypatch):
    w = World()
    monkeypatch.setattr(prune_mod, "DELETE_BATCH", 5)
    w.push("latest", 1)
    expected = {w.untagged(n) for n in range(100, 123)}
    ticks = iter(range(10_000))
    deleted: set[str] = set()
    cursor, rounds = None, 0
    while True:
        options = prune_mod.Options(stream=S, confirm=True, cursor=cursor)
        result = prune_mod.prune(w.streams, options, budget_seconds=3, monotonic=lambda: next(ticks))
        rounds += 1
        assert digests(result, "deleted") <= expected
        deleted |= digests(result, "deleted")
        cursor = result["next"]
        if cursor is None:
            break
        assert rounds < 20
    assert rounds > 1 and deleted == expected and w.present() == {digest(1)}


def test_a_digest_protected_after_listing_is_not_deleted():
    w = World()
    for n in range(1, 7):
        w.push("latest", n)
    listing = w.registry.list_images

    def images_then_rollback(stream, token=None):
        page, nxt = listing(stream, token)
        if nxt is None:  # the listing is done: someone rolls latest back to 1 before the delete
            w.registry.set(S, "latest", digest(1))
            w.streams.sync(StreamTag(S, "latest"), cause="rollback")
        return page, nxt

    w.registry.list_images = images_then_rollback
    result = w.prune(confirm=True)
    assert digest(1) in digests(result) and digest(1) not in digests(result, "deleted")
    assert digest(1) in w.present()
    assert {f["digest"] for f in result["failures"]} == {digest(1)}


def test_without_stream_every_known_stream_is_pruned():
    w = World()
    for n in range(1, 6):
        w.push("latest", n)
    w.registry.push("team/api", digest(50), pushed_at=OLD)
    w.registry.push("team/api", digest(51), pushed_at=OLD)
    w.registry.set("team/api", "v1", digest(51))
    w.streams.sync(StreamTag("team/api", "v1"))
    answer = dispatch(w.streams, {"action": "prune", "keepTagRevisions": 1})
    assert answer["ok"], answer
    assert {(c["stream"], c["digest"]) for c in answer["result"]["candidates"]} == {
        (S, digest(n)) for n in range(1, 5)} | {("team/api", digest(50))}


def test_cli_prune_lists_then_confirms_across_pages(monkeypatch, capsys):
    from imagestreams import cli

    w = World()
    monkeypatch.setattr(prune_mod, "MAX_PER_CALL", 4)
    for n in range(1, 5):
        w.push("latest", n)
    extra = {w.untagged(n) for n in range(100, 110)}
    sent: list[dict] = []

    def transport(command: dict) -> dict:
        sent.append(dict(command))
        return dispatch(w.streams, command)

    assert cli.main(["prune", S, "--keep-tag-revisions", "2"], transport=transport) == 0
    listed = capsys.readouterr().out
    assert "dry run" in listed and listed.count(digest(100)[:19]) == 1
    assert w.present() >= extra and all("confirm" not in c for c in sent)
    sent.clear()
    assert cli.main(["--actor", "bob", "--output", "json", "prune", S, "--confirm", "--keep-tag-revisions", "2"],
                    transport=transport) == 0
    import json

    answer = json.loads(capsys.readouterr().out)
    assert digests(answer["result"], "deleted") == extra | {digest(1), digest(2)}
    assert w.present() == {digest(3), digest(4)}
    assert len(sent) == math.ceil(12 / 4) and all(c["actor"] == "bob" and c["confirm"] for c in sent)
    assert [c.get("cursor") is None for c in sent] == [True] + [False] * (len(sent) - 1)


def test_cli_prune_reports_a_refusal(capsys):
    from imagestreams import cli

    w = World()
    code = cli.main(["prune", S, "--keep-tag-revisions", "-1"], transport=lambda c: dispatch(w.streams, c))
    assert code == 1 and "Invalid" in capsys.readouterr().err


class FakeEcrClient:
    """Answers like ECR (which pages DescribeImages by maxResults/nextToken, unlike moto)."""

    def __init__(self, details: list[dict], manifests: dict[str, str] | None = None) -> None:
        self.details, self.manifests, self.calls = details, manifests or {}, []

    def describe_images(self, **kw):
        self.calls.append(("describe_images", kw))
        if "imageIds" in kw:
            found = [d for d in self.details if d["imageDigest"] == kw["imageIds"][0]["imageDigest"]]
            if not found:
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "ImageNotFoundException", "Message": "no"}}, "DescribeImages")
            return {"imageDetails": found}
        start = int(kw.get("nextToken") or 0)
        page = self.details[start : start + kw["maxResults"]]
        more = start + kw["maxResults"] < len(self.details)
        return {"imageDetails": page, **({"nextToken": str(start + kw["maxResults"])} if more else {})}

    def batch_get_image(self, **kw):
        self.calls.append(("batch_get_image", kw))
        ids = [i["imageDigest"] for i in kw["imageIds"]]
        return {"images": [{"imageId": {"imageDigest": d}, "imageManifest": self.manifests[d]}
                           for d in ids if d in self.manifests], "failures": []}

    def batch_delete_image(self, **kw):
        self.calls.append(("batch_delete_image", kw))
        ids = [i["imageDigest"] for i in kw["imageIds"]]
        return {"imageIds": [{"imageDigest": d} for d in ids[1:]],
                "failures": [{"imageId": {"imageDigest": ids[0]}, "failureCode": "ImageReferencedByManifestList"}]}


def test_ecr_adapter_lists_pages_reads_index_children_deletes_and_reads_status():
    import json

    from imagestreams.adapters.ecr import EcrRegistry

    details = [{"imageDigest": digest(n), "imageSizeInBytes": n, "imagePushedAt": OLD,
                "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
                **({"imageTags": ["v1"]} if n == 0 else {}), **({"imageStatus": "ARCHIVED"} if n == 7 else {})}
               for n in range(2500)]
    index = json.dumps({"manifests": [{"digest": digest(1)}, {"digest": digest(2)}, {"digest": "not-a-digest"}]})
    client = FakeEcrClient(details, {digest(0): index})
    ecr = EcrRegistry(client, host=REG)
    images, token, pages = [], None, 0
    while True:
        page, token = ecr.list_images(S, token)
        images += page
        pages += 1
        if token is None:
            break
    assert pages == math.ceil(2500 / ecr.page_size) and len(images) == 2500
    assert all(kw["maxResults"] == 1000 for name, kw in client.calls if name == "describe_images")
    assert images[0].tags == ("v1",) and images[3].size == 3 and images[3].pushed_at == OLD
    assert ecr.index_children(S, [digest(0), digest(5)]) == {digest(0): sorted([digest(1), digest(2)])}
    deleted, failures = ecr.delete_images(S, [digest(10), digest(11), digest(12)])
    assert deleted == [digest(11), digest(12)] and failures == {digest(10): "ImageReferencedByManifestList"}
    assert ecr.image_status(S, digest(7)) == "ARCHIVED" and ecr.image_status(S, digest(8)) == "ACTIVE"
    assert ecr.image_status(S, digest(99999)) is None
