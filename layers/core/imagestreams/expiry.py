"""Expiry risk: which digests a repository's lifecycle policy would expire (or archive) although a target runs them
or they are among a tag's newest history entries — found by the reconciler, so nobody has to run ``check`` to learn
that a running digest is about to go.

ECR's lifecycle policy preview is asynchronous: a run starts the previews of a few repositories and the next run
reads them (one period later), so a run never waits. Work per run is bounded: at most :data:`PREVIEWS_PER_RUN`
previews pending or asked for; repositories are visited round-robin. A repository without a lifecycle policy costs one
call, and that answer is remembered for :data:`NO_POLICY_RECHECK` (no call at all meanwhile); one whose preview
cannot be started (denied, throttled) is reported and asked again after :data:`ERROR_RECHECK`.

What a run finds is written as one ``RISK`` item per digest at risk (stream, digest, tags, triggers, rule, message,
at; ``expiresAt`` for DynamoDB's TTL), only when it is new or changed: a stable risk writes nothing, a cleared risk
is deleted when its repository is checked again (or found gone). The TTL is only a backstop (DynamoDB removes expired
items within days, not at once): a day or three check cycles, renewed when fewer than two cycles are left. The
count of digests at risk is kept in the state and published as the metric ``ExpiryRisk``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from .check import DEFAULT_KEEP_TAG_REVISIONS, Unreadable, running_digest
from .model import rfc3339

log = logging.getLogger(__name__)
PREVIEWS_PER_RUN = 20  # StartLifecyclePolicyPreview calls per run, pending previews included (a low rate quota)
NO_POLICY_RECHECK = timedelta(hours=6)  # how long "no lifecycle policy" is believed without asking again
ERROR_RECHECK = timedelta(hours=1)  # a repository whose preview could not be started is asked again after this
PREVIEW_GIVE_UP = timedelta(hours=1)  # a preview still running after this is dropped (started again later)
RISK_TTL = timedelta(days=1)  # a RISK item's TTL (at least three check cycles): renewed about once a day
MAX_LISTED = 10  # digests named in one message


class PreviewHit(NamedTuple):
    """What the lifecycle policy would do to one image: ``EXPIRE`` or ``TRANSITION`` (archive), by which rule."""

    action: str
    rule: str
    tags: tuple[str, ...] = ()


class LifecyclePreviews(Protocol):
    def start_preview(self, repository: str) -> bool:
        """Start (or join) the repository's lifecycle policy preview; False when it has no lifecycle policy.
        Raises :class:`~imagestreams.check.Unreadable`."""

    def preview_result(self, repository: str) -> dict[str, PreviewHit] | None:
        """The finished preview (digest -> hit), None while it still runs. Raises ``Unreadable`` (failed,
        expired, not found)."""


class RiskStore(Protocol):
    def load_expiry_state(self) -> dict[str, Any]: ...

    def save_expiry_state(self, state: dict[str, Any]) -> None: ...

    def risks(self, stream: str) -> list[dict[str, Any]]:
        """The stream's RISK items (plain dicts, as stored)."""

    def put_risk(self, item: dict[str, Any]) -> None: ...

    def delete_risk(self, stream: str, digest: str) -> None: ...


def at_risk(stream: str, hits: dict[str, PreviewHit], kept: dict[str, list[str]],
            running: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """digest -> the RISK fields (without ``at``/``expiresAt``) of every digest the preview would expire or archive
    that a trigger's target runs (``running``: digest -> trigger ids) or that is among a tag's newest history
    entries (``kept``: digest -> tags)."""
    out: dict[str, dict[str, Any]] = {}
    for digest, hit in hits.items():
        triggers, tags = sorted(set(running.get(digest, ()))), sorted(set(kept.get(digest, ())))
        if not triggers and not tags:
            continue
        verb = "archive" if hit.action == "TRANSITION" else "expire"
        what = []
        if triggers:
            what.append(f"{len(triggers)} trigger target(s) run it ({', '.join(triggers[:MAX_LISTED])})")
        if tags:
            what.append(f"it is among the newest history entries of {', '.join(tags[:MAX_LISTED])}")
        out[digest] = {
            "stream": stream, "digest": digest, "tags": tags, "triggers": triggers, "rule": hit.rule,
            "message": f"the lifecycle policy of {stream} would {verb} {digest} ({hit.rule}), but "
                       + " and ".join(what),
        }
    return out


def _compact(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if v not in (None, "", {})}


def _same(stored: dict[str, Any], fields: dict[str, Any]) -> bool:
    return all(_norm(stored.get(k)) == _norm(v) for k, v in fields.items())


def _norm(value: Any) -> Any:
    return sorted(value) if isinstance(value, (list, tuple, set)) else value


class ExpiryWatch:
    """One bounded pass per reconciler run over the repositories' lifecycle previews (see the module text)."""

    def __init__(self, streams: Any, repositories: Callable[[], Iterable[str]], previews: LifecyclePreviews,
                 risks: RiskStore, *, clock: Callable[[], datetime], period: timedelta = timedelta(minutes=15),
                 keep: int = DEFAULT_KEEP_TAG_REVISIONS, per_run: int = PREVIEWS_PER_RUN,
                 owns: Callable[[str], bool] = lambda _repository: True) -> None:
        self.streams = streams
        self.owns = owns
        self.repositories = repositories
        self.previews = previews
        self.risks = risks
        self.clock = clock
        self.period = period
        self.keep = keep
        self.per_run = per_run

    def run(self, out_of_time: Callable[[], bool] = lambda: False,
            listed: Iterable[str] | None = None) -> dict[str, Any]:
        """One pass. ``listed``: the registry's repositories as the caller just listed them (else listed here);
        only those :attr:`owns` accepts are looked at."""
        now = self.clock()
        epoch = int(now.timestamp())
        saved = self.risks.load_expiry_state()
        state = {"after": saved.get("after", ""), "pending": dict(saved.get("pending") or {}),
                 "none": dict(saved.get("none") or {}), "risky": dict(saved.get("risky") or {})}
        repos = sorted(r for r in set(self.repositories() if listed is None else listed) if self.owns(r))
        known = set(repos)
        # a check comes round once every `cycle` (plus the run that reads it): RISK items outlive two of them
        cycle = self.period * (math.ceil(len(repos) / max(self.per_run, 1)) + 1)
        report: dict[str, Any] = {"checked": [], "started": [], "errors": [], "written": 0, "deleted": 0}
        for repo in sorted(state["pending"]):
            if out_of_time():
                break
            started = int(state["pending"][repo])
            if repo not in known:  # the repository is gone: so are its images
                del state["pending"][repo]
                self._clear(repo, state, report)
                continue
            try:
                hits = self.previews.preview_result(repo)
            except Unreadable as exc:
                del state["pending"][repo]
                report["errors"].append(f"{repo}: {exc}")
                continue
            if hits is None:
                if epoch - started > PREVIEW_GIVE_UP.total_seconds():
                    del state["pending"][repo]
                continue
            del state["pending"][repo]
            self._evaluate(repo, hits, now, cycle, state, report)
        state["none"] = {r: until for r, until in state["none"].items() if r in known and int(until) > epoch}
        state["risky"] = {r: n for r, n in state["risky"].items() if r in known or r in state["pending"]}
        self._start(repos, state, epoch, report, out_of_time)
        if _compact(state) != _compact(saved):
            self.risks.save_expiry_state(state)
        report["atRisk"] = sum(int(n) for n in state["risky"].values())
        return report

    def _start(self, repos: list[str], state: dict[str, Any], epoch: int, report: dict[str, Any],
               out_of_time: Callable[[], bool]) -> None:
        """Start the next previews, round-robin after the last repository started."""
        after = state["after"]
        ordered = [r for r in repos if r > after] + [r for r in repos if r <= after]
        budget = self.per_run - len(state["pending"])
        for repo in ordered:
            if budget <= 0 or out_of_time():
                return
            if repo in state["pending"] or int(state["none"].get(repo, 0)) > epoch:
                continue
            state["after"] = repo
            try:
                has_policy = self.previews.start_preview(repo)
            except Unreadable as exc:  # reported, and not asked again for a while (a denial is not hammered)
                report["errors"].append(f"{repo}: {exc}")
                state["none"][repo] = epoch + int(ERROR_RECHECK.total_seconds())
                budget -= 1
                continue
            budget -= 1  # every call counts: ECR's lifecycle preview calls have a low rate quota
            if has_policy:
                state["pending"][repo] = epoch
                report["started"].append(repo)
            else:
                state["none"][repo] = epoch + int(NO_POLICY_RECHECK.total_seconds())
                if state["risky"].get(repo):
                    self._clear(repo, state, report)

    def _clear(self, repo: str, state: dict[str, Any], report: dict[str, Any]) -> None:
        for item in self.risks.risks(repo):
            self.risks.delete_risk(repo, item["digest"])
            report["deleted"] += 1
        state["risky"].pop(repo, None)

    def _evaluate(self, repo: str, hits: dict[str, PreviewHit], now: datetime, cycle: timedelta,
                  state: dict[str, Any], report: dict[str, Any]) -> None:
        found: dict[str, dict[str, Any]] = {}
        if hits:  # a preview that touches nothing needs no read of the stream
            found = at_risk(repo, hits, *self._protected(repo))
        stored = {i["digest"]: i for i in self.risks.risks(repo)} if (found or state["risky"].get(repo)) else {}
        ttl = max(RISK_TTL, 3 * cycle)
        renew_before = int((now + 2 * cycle).timestamp())
        for digest, fields in found.items():
            old = stored.get(digest)
            if old is not None and _same(old, fields) and int(old.get("expiresAt") or 0) > renew_before:
                continue  # unchanged, and its TTL outlives the next check
            item = {**fields, "at": old["at"] if old is not None and _same(old, fields) else rfc3339(now),
                    "expiresAt": int((now + ttl).timestamp())}
            self.risks.put_risk(item)
            report["written"] += 1
        for digest in set(stored) - set(found):  # the risk cleared
            self.risks.delete_risk(repo, digest)
            report["deleted"] += 1
        if found:
            state["risky"][repo] = len(found)
        else:
            state["risky"].pop(repo, None)
        report["checked"].append(repo)

    def _protected(self, repo: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(kept: digest -> tags whose newest ``keep`` history entries hold it, running: digest -> trigger ids
        whose target runs or last received it)."""
        store = self.streams.store
        heads, triggers = store.stream_state(repo)
        histories = store.histories(repo)
        kept: dict[str, list[str]] = {}
        for head in heads:
            if head.deleted:
                continue
            tag = head.stream_tag.tag
            digests = [e.digest for e in histories.get(tag, [])[: self.keep]] or [head.digest]
            for digest in digests:
                kept.setdefault(digest, []).append(tag)
        running: dict[str, list[str]] = {}
        for trigger in triggers:
            for digest in {trigger.last_triggered_digest,
                           running_digest(trigger.deployed_image or "", repo)} - {None}:
                running.setdefault(digest, []).append(trigger.id)
        return kept, running
