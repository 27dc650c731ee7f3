"""Expiry risk from the reconciler: a lifecycle rule that would expire a digest a target runs (or a tag's newest
history entry) becomes a RISK item and the ExpiryRisk count, without anybody running ``check``; previews are read a
run after they start, the work per run is bounded, and a repository without a lifecycle policy costs one call a
while."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber

from imagestreams.adapters.diagnose import AwsDiagnosis
from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.adapters.risks import MemoryRiskStore
from imagestreams.check import Unreadable
from imagestreams.expiry import ERROR_RECHECK, NO_POLICY_RECHECK, ExpiryWatch, PreviewHit
from imagestreams.model import EcsTarget, StreamTag
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams
from tests.conftest import digest

REPO = "team/web"
WEB = StreamTag(REPO, "latest")
RULE = "rule 1: keep 2 images"


class Previews:
    """Lifecycle policy previews as ECR runs them: asynchronous (a preview started is finished at the next read),
    per repository a policy (None: no lifecycle policy) that expires these digests."""

    def __init__(self) -> None:
        self.policies: dict[str, set[str] | None] = {}
        self.broken: set[str] = set()
        self.started: list[str] = []
        self.reads: list[str] = []

    def start_preview(self, repository: str) -> bool:
        self.started.append(repository)
        if repository in self.broken:
            raise Unreadable(f"ecr:StartLifecyclePolicyPreview {repository}: access denied (AccessDenied)")
        return self.policies.get(repository) is not None

    def preview_result(self, repository: str):
        self.reads.append(repository)
        expired = self.policies.get(repository) or set()
        return {d: PreviewHit("EXPIRE", RULE, ("old",)) for d in expired}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, delta: timedelta = timedelta(minutes=15)) -> None:
        self.now += delta


def world(repos=(REPO,), per_run=20):
    clock = Clock()
    store, registry, ecs = MemoryStore(), MemoryRegistry(), MemoryEcs()
    ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    streams = ImageStreams(store, registry, {"ecs": ecs}, clock=clock)
    for n in range(1, 5):  # latest: 1, 2, 3, 4 (head 4; history 4, 3, 2, 1)
        registry.set(REPO, "latest", digest(n))
        streams.sync(WEB)
    trigger = streams.add_trigger(WEB, EcsTarget("prod", "web", "web"))  # runs digest 4 (the head)
    previews, risks = Previews(), MemoryRiskStore()
    watch = ExpiryWatch(streams, lambda: list(repos), previews, risks, clock=clock, per_run=per_run)
    return watch, previews, risks, clock, trigger


def run(watch, clock):
    report = watch.run()
    clock.tick()
    return report


def test_a_rule_that_would_expire_the_running_digest_is_a_risk_item_and_counted():
    watch, previews, risks, clock, trigger = world()
    previews.policies[REPO] = {digest(4), digest(1)}  # 4: running and the head; 1: 4th history entry (not kept)
    first = run(watch, clock)
    assert first["started"] == [REPO] and first["atRisk"] == 0 and risks.items == {}  # read by the next run
    second = run(watch, clock)
    assert second["checked"] == [REPO] and second["atRisk"] == 1
    (item,) = risks.risks(REPO)
    assert item["kind"] == "RISK" and item["digest"] == digest(4) and item["stream"] == REPO
    assert item["triggers"] == [trigger.id] and item["tags"] == ["latest"] and item["rule"] == RULE
    assert "would expire" in item["message"] and trigger.id in item["message"]
    assert item["expiresAt"] > int(clock.now.timestamp()) and item["at"].startswith("2026-11-29T12:15")


def test_a_kept_history_entry_nobody_runs_is_a_risk_with_no_trigger():
    watch, previews, risks, clock, _ = world()
    previews.policies[REPO] = {digest(2)}  # the 3rd newest entry of latest: kept (keepTagRevisions 3)
    run(watch, clock), run(watch, clock)
    (item,) = risks.risks(REPO)
    assert item["digest"] == digest(2) and item["triggers"] == [] and item["tags"] == ["latest"]


def test_a_stable_risk_writes_nothing_and_a_cleared_one_is_deleted():
    watch, previews, risks, clock, _ = world()
    previews.policies[REPO] = {digest(4)}
    run(watch, clock), run(watch, clock)
    (first,) = risks.risks(REPO)
    puts = dict(risks.items)
    for _ in range(6):  # the same finding again and again: no RISK write (its TTL outlives the next check)
        report = run(watch, clock)
        assert report["written"] == 0 and report["deleted"] == 0 and report["atRisk"] == 1
    assert risks.items == puts and risks.risks(REPO)[0]["at"] == first["at"]
    previews.policies[REPO] = {digest(1)}  # the rule now spares what runs and what is kept
    for _ in range(2):
        report = run(watch, clock)
    assert risks.risks(REPO) == [] and report["atRisk"] == 0


def test_a_risk_item_that_would_outlive_its_ttl_is_renewed_without_changing_its_time():
    watch, previews, risks, clock, _ = world()
    previews.policies[REPO] = {digest(4)}
    run(watch, clock), run(watch, clock)
    (first,) = risks.risks(REPO)
    renewed = None
    for _ in range(4 * 30):  # 30 hours of runs every 15 minutes
        run(watch, clock)
        (now,) = risks.risks(REPO)
        assert now["expiresAt"] > int(clock.now.timestamp())  # never lapses while the risk stands
        if now["expiresAt"] != first["expiresAt"]:
            renewed = now
    assert renewed is not None and renewed["at"] == first["at"]


def test_repositories_without_a_policy_are_asked_a_bounded_number_at_a_time():
    repos = [f"team/r{n:03d}" for n in range(50)]
    watch, previews, risks, clock, _ = world(repos=repos, per_run=20)
    for _ in range(3):
        before = len(previews.started)
        run(watch, clock)
        assert len(previews.started) - before <= 20
    assert sorted(previews.started) == repos  # each asked once, then believed for hours
    run(watch, clock)
    assert len(previews.started) == 50


def test_no_lifecycle_policy_costs_one_call_then_none_for_hours():
    watch, previews, risks, clock, _ = world()
    for _ in range(8):
        run(watch, clock)
    assert previews.started == [REPO] and previews.reads == [] and risks.items == {}
    clock.tick(NO_POLICY_RECHECK)
    run(watch, clock)
    assert previews.started == [REPO, REPO]


def test_work_per_run_is_bounded_and_every_repository_comes_round():
    repos = [f"team/r{n:03d}" for n in range(50)]
    watch, previews, risks, clock, _ = world(repos=repos, per_run=20)
    for repo in repos:
        previews.policies[repo] = set()
    seen: set[str] = set()
    for _ in range(4):
        before = len(previews.started)
        report = run(watch, clock)
        assert len(previews.started) - before <= 20
        seen |= set(report["checked"])
    assert seen == set(repos)


def test_an_unreadable_preview_is_reported_and_not_hammered():
    watch, previews, risks, clock, _ = world()
    previews.broken.add(REPO)
    report = run(watch, clock)
    assert report["errors"] and "access denied" in report["errors"][0]
    for _ in range(3):
        assert run(watch, clock)["errors"] == []
    assert previews.started == [REPO]
    clock.tick(ERROR_RECHECK)
    assert run(watch, clock)["errors"]


def test_the_pass_uses_the_runs_listing_and_only_repositories_we_own():
    watch, previews, risks, clock, _ = world(repos=())
    watch.owns = lambda repository: repository.startswith("team/")
    previews.policies[REPO] = set()
    report = watch.run(listed=[REPO, "vendor/base"])
    assert report["started"] == [REPO] and previews.started == [REPO]


def test_a_repository_that_is_gone_takes_its_risks_along():
    repos = [REPO]
    watch, previews, risks, clock, _ = world()
    watch.repositories = lambda: list(repos)
    previews.policies[REPO] = {digest(4)}
    run(watch, clock), run(watch, clock)  # a risk; and a new preview pending
    assert risks.risks(REPO)
    repos.clear()
    report = run(watch, clock)
    assert risks.risks(REPO) == [] and report["atRisk"] == 0


def test_the_reconciler_reports_a_failing_pass_instead_of_raising():
    class Broken:
        def run(self, out_of_time, listed=None):
            raise RuntimeError("boom")

    streams = ImageStreams(MemoryStore(), MemoryRegistry(), {})
    rec = Reconciler(streams, streams.registry, streams.store, expiry=Broken())
    out = rec.expiry_risk()
    assert out["atRisk"] is None and "boom" in out["errors"][0]
    assert Reconciler(streams, streams.registry, streams.store).expiry_risk() is None


# ------------------------------------------------------------------------------ the adapter, stubbed

def _ecr():
    client = boto3.client("ecr", region_name="us-east-1")
    return client, Stubber(client)


POLICY = json.dumps({"rules": [{"rulePriority": 1, "description": "keep 2 images",
                                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2},
                                "action": {"type": "expire"}}]})


def test_the_adapter_starts_without_waiting_and_reads_every_page_with_the_rule():
    ecr, stub = _ecr()
    stub.add_response("start_lifecycle_policy_preview", {"repositoryName": REPO, "status": "IN_PROGRESS"},
                      {"repositoryName": REPO})
    stub.add_response("get_lifecycle_policy_preview", {"repositoryName": REPO, "status": "IN_PROGRESS"},
                      {"repositoryName": REPO})
    stub.add_response("get_lifecycle_policy_preview", {
        "repositoryName": REPO, "status": "COMPLETE", "lifecyclePolicyText": POLICY, "nextToken": "t1",
        "previewResults": [{"imageDigest": digest(1), "imageTags": ["v1"], "action": {"type": "EXPIRE"},
                            "appliedRulePriority": 1}]}, {"repositoryName": REPO})
    stub.add_response("get_lifecycle_policy_preview", {
        "repositoryName": REPO, "status": "COMPLETE",
        "previewResults": [{"imageDigest": digest(2), "action": {"type": "TRANSITION"}, "appliedRulePriority": 7}]},
        {"repositoryName": REPO, "nextToken": "t1"})
    diag = AwsDiagnosis(lambda s: ecr)
    with stub:
        assert diag.start_preview(REPO) is True
        assert diag.preview_result(REPO) is None  # still running: no waiting
        hits = diag.preview_result(REPO)
    assert hits[digest(1)] == PreviewHit("EXPIRE", "rule 1: keep 2 images", ("v1",))
    assert hits[digest(2)] == PreviewHit("TRANSITION", "rule 7", ())
    stub.assert_no_pending_responses()


def test_the_adapter_says_no_policy_and_reports_failures():
    ecr, stub = _ecr()
    stub.add_client_error("start_lifecycle_policy_preview", "LifecyclePolicyNotFoundException", "none")
    stub.add_client_error("start_lifecycle_policy_preview", "AccessDeniedException", "no")
    stub.add_response("get_lifecycle_policy_preview", {"repositoryName": REPO, "status": "FAILED"},
                      {"repositoryName": REPO})
    diag = AwsDiagnosis(lambda s: ecr)
    with stub:
        assert diag.start_preview(REPO) is False
        with pytest.raises(Unreadable, match="access denied"):
            diag.start_preview(REPO)
        with pytest.raises(Unreadable, match="FAILED"):
            diag.preview_result(REPO)
