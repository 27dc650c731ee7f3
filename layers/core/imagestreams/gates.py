"""Gates: conditions a digest must meet before a trigger fires it or a policy tag takes it.

Four kinds, each ``waiting``, ``passed`` or ``blocked`` for the digest D in question:

- ``{"type": "scan", "blockAt": SEVERITY, "timeoutMinutes": 60}``: D's ECR scan (basic or enhanced) is complete with
  no finding at or above ``blockAt`` (passed); findings at or above it block (counts in the reason); no result by
  the timeout blocks ("not scanned").
- ``{"type": "signature", "timeoutMinutes": 30}``: ECR managed signing says COMPLETE for D, or D has a Notation or
  cosign signature referrer (passed); signing FAILED, or nothing by the timeout, blocks.
- ``{"type": "approval"}``: a person approves D (``approve``) or rejects it (``reject``, with a reason).
- ``{"type": "verified", "triggers": [id…], "minutes": N}``: D has run with rollout COMPLETED on every named
  trigger's target for at least N minutes, and none of them has a FAILED rollout of D.

:class:`GateState` is what is remembered for one digest (when it started waiting, who decided, who forced it); a
state for another digest is discarded, so a newer head starts over. The :class:`Gating` mixin evaluates gates
(:meth:`Gating.gate_verdict`) and records decisions (:meth:`Gating.decide`); when a verdict waits on time (a soak,
a timeout) it schedules a wake-up on the gate clock once, so the gate passes or blocks on time rather than at the
next reconciler run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .errors import Conflict, Invalid
from .model import TRIGGER_ID_RE, cap_text, fields, rfc3339, show
from .ports import ScanResult

log = logging.getLogger(__name__)

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")  # highest first
GATE_TYPES = ("scan", "signature", "approval", "verified")
_FIELDS = {
    "scan": {"type", "blockAt", "timeoutMinutes"},
    "signature": {"type", "timeoutMinutes"},
    "approval": {"type"},
    "verified": {"type", "triggers", "minutes"},
}
DEFAULT_TIMEOUT = {"scan": 60, "signature": 30}
MAX_GATES = 10
MAX_VERIFIED_TRIGGERS = 20
MAX_MINUTES = 7 * 24 * 60  # a week: longer waits are a process, not a gate
SCAN_DONE = ("COMPLETE", "ACTIVE")  # ACTIVE: enhanced scanning, continuously scanned
SCAN_SKIPPED = ("UNSUPPORTED_IMAGE",)  # manifests ECR does not scan (attestations)
MAX_SCANNED_CHILDREN = 20  # platform manifests of one index judged by the scan gate
# Artifact types of OCI referrers that are signatures: Notation, cosign (OCI 1.1 referrers and sigstore bundles)
SIGNATURE_ARTIFACT_TYPES = frozenset({
    "application/vnd.cncf.notary.signature",
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
})


class Gate(NamedTuple):
    type: str
    block_at: str | None = None  # scan
    timeout_minutes: int | None = None  # scan, signature
    triggers: tuple[str, ...] = ()  # verified
    minutes: int = 0  # verified

    def as_dict(self) -> dict[str, Any]:
        if self.type == "scan":
            return {"type": "scan", "blockAt": self.block_at, "timeoutMinutes": self.timeout_minutes}
        if self.type == "signature":
            return {"type": "signature", "timeoutMinutes": self.timeout_minutes}
        if self.type == "verified":
            return {"type": "verified", "triggers": list(self.triggers), "minutes": self.minutes}
        return {"type": self.type}


def _minutes(raw: dict[str, Any], name: str, default: int | None, low: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_MINUTES:
        raise Invalid(f"gate {raw.get('type')}: {name} must be an integer from {low} to {MAX_MINUTES}, "
                      f"got {show(value)}")
    return value


def parse_gate(raw: Any) -> Gate:
    if not isinstance(raw, dict):
        raise Invalid(f"a gate must be an object with a type, got {show(raw)}")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in GATE_TYPES:
        raise Invalid(f"unknown gate type {show(kind)}; expected one of {', '.join(GATE_TYPES)}")
    unknown = set(raw) - _FIELDS[kind]
    if unknown:
        raise Invalid(f"unknown {fields(unknown)} for a {kind} gate; accepted: {', '.join(sorted(_FIELDS[kind]))}")
    if kind == "scan":
        block_at = raw.get("blockAt")
        if not isinstance(block_at, str) or block_at not in SEVERITIES:
            raise Invalid(f"scan gate: blockAt must be one of {', '.join(SEVERITIES)}, got {show(block_at)}")
        return Gate("scan", block_at=block_at, timeout_minutes=_minutes(raw, "timeoutMinutes", 60, 1))
    if kind == "signature":
        return Gate("signature", timeout_minutes=_minutes(raw, "timeoutMinutes", 30, 1))
    if kind == "approval":
        return Gate("approval")
    ids = raw.get("triggers")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_VERIFIED_TRIGGERS:
        raise Invalid(f"verified gate: triggers must be a non-empty list of at most {MAX_VERIFIED_TRIGGERS} "
                      f"trigger ids, got {show(ids)}")
    for one in ids:
        if not isinstance(one, str) or not TRIGGER_ID_RE.fullmatch(one):
            raise Invalid(f"verified gate: invalid trigger id {show(one)}: expected tr- followed by 12 hex "
                          "characters")
    if "minutes" not in raw:
        raise Invalid("verified gate: missing field minutes (how long D must run, 0 or more)")
    return Gate("verified", triggers=tuple(dict.fromkeys(ids)), minutes=_minutes(raw, "minutes", None, 0))


def parse_gates(raw: Any) -> tuple[Gate, ...]:
    """A gate list as given to ``trigger.add``, ``trigger.gates`` or ``policy.set``; :class:`Invalid` on anything
    else (unknown types or fields, bad severities, negative minutes, bad trigger ids, a kind given twice)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_GATES:
        raise Invalid(f"gates must be a list of at most {MAX_GATES} gates, got {show(raw)}")
    gates = tuple(parse_gate(g) for g in raw)
    seen: set[str] = set()
    for gate in gates:
        if gate.type != "verified" and gate.type in seen:
            raise Invalid(f"gates: {gate.type} is given twice")
        seen.add(gate.type)
    return gates


def as_gates(gates: Any) -> tuple[Gate, ...]:
    """Gates as :class:`Gate` values, whether given parsed or as the stored list of gate objects."""
    if not gates:
        return ()
    if all(isinstance(g, Gate) for g in gates):
        return tuple(gates)
    return parse_gates([g.as_dict() if isinstance(g, Gate) else g for g in gates])


def gates_from_dicts(raw: Any) -> tuple[Gate, ...]:
    """Stored gates (already validated when written)."""
    return parse_gates(list(raw)) if raw else ()


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class GateState(NamedTuple):
    """What is remembered for the digest the gates are judging."""

    digest: str
    since: datetime  # when this digest started waiting (timeouts count from here)
    approved_by: str | None = None
    rejected_by: str | None = None
    reason: str | None = None  # a rejection's reason
    forced_by: str | None = None  # a `deploy --force` released it past its gates
    wake_at: datetime | None = None  # the gate clock wake-up already scheduled for it

    def as_dict(self) -> dict[str, Any]:
        out = {"digest": self.digest, "since": self.since.isoformat(), "approvedBy": self.approved_by,
               "rejectedBy": self.rejected_by, "reason": cap_text(self.reason), "forcedBy": self.forced_by,
               "wakeAt": self.wake_at.isoformat() if self.wake_at else None}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> GateState | None:
        if not raw:
            return None
        return cls(raw["digest"], _dt(raw["since"]), raw.get("approvedBy"),  # type: ignore[arg-type]
                   raw.get("rejectedBy"), raw.get("reason"), raw.get("forcedBy"), _dt(raw.get("wakeAt")))


class Verdict(NamedTuple):
    state: str  # passed | waiting | blocked
    gate: dict[str, Any] | None  # the public detail {"type", "state", "reason", "digest"} of the gate reported
    gate_state: GateState
    wake_at: datetime | None  # when the gates must be looked at again (already scheduled on the gate clock)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def scan_counts_reason(counts: dict[str, int], block_at: str) -> str | None:
    """``"3 CRITICAL findings"`` (or ``"3 CRITICAL, 1 HIGH findings"``) for the severities at or above
    ``block_at``; None when there are none."""
    at_or_above = SEVERITIES[: SEVERITIES.index(block_at) + 1]
    found = [(s, int(counts.get(s) or 0)) for s in at_or_above if int(counts.get(s) or 0) > 0]
    if not found:
        return None
    total = sum(n for _, n in found)
    return ", ".join(f"{n} {s}" for s, n in found) + (" finding" if total == 1 else " findings")


def _decide(state: GateState | None, gates: tuple[Gate, ...] | list[Gate], digest: str, actor: str, *,
            approve: bool, reason: str | None = None) -> GateState:
    """The gate state after a person approves (or rejects) ``digest``. :class:`Conflict` (nothing is written)
    when no approval gate is configured, ``digest`` is not the one waiting, or it was already decided."""
    gates = as_gates(gates)
    if not any(g.type == "approval" for g in gates):
        raise Conflict("no approval gate waits here: it has no approval gate")
    if state is None:
        raise Conflict(f"{digest} is not waiting for approval: nothing is waiting here yet")
    if state.digest != digest:
        raise Conflict(f"{digest} is not the digest waiting for approval; {state.digest} is")
    if state.forced_by:
        raise Conflict(f"{digest} was already deployed past its gates by {state.forced_by}")
    if state.rejected_by:
        raise Conflict(f"{digest} was already rejected by {state.rejected_by}")
    if approve:
        if state.approved_by:
            raise Conflict(f"{digest} was already approved by {state.approved_by}")
        return state._replace(approved_by=actor)
    return state._replace(rejected_by=actor, reason=cap_text(reason) if reason else None)


class Gating:
    """Gate evaluation and decisions, over the ports :class:`~imagestreams.services.ImageStreams` holds. The
    optional ``gate_clock`` port (``schedule(message, due)``) wakes waiting gates on time."""

    store: Any
    registry: Any
    clock: Callable[[], datetime]
    gate_clock: Any = None

    # ------------------------------------------------------------------------------------ verdicts

    def gate_verdict(self, gates: tuple[Gate, ...] | list[Gate], stream: str, digest: str,
                     state: GateState | None, *, owner: str | None = None) -> Verdict:
        """Judge ``digest`` of ``stream`` against ``gates``. ``state`` for another digest is discarded (a newer
        head starts over). Blocked wins over waiting; the gate reported is the first blocked one, else the first
        waiting one. ``owner`` (a trigger id, or a policy's ``stream:tag``) names who the gate-clock wake-up is
        for; without it the wake-up re-checks every gate of ``stream`` that waits on ``digest``."""
        gates = as_gates(gates)
        now = self.clock()
        if state is None or state.digest != digest:
            state = GateState(digest, now)
        if state.forced_by:
            return Verdict("passed", None, state, None)
        waiting: tuple[Gate, str] | None = None
        wakes: list[datetime] = []
        for gate in gates:
            result, reason, wake = self._judge(gate, stream, digest, state, now)
            if result == "blocked":
                return Verdict("blocked", _detail(gate, "blocked", reason, digest), state._replace(wake_at=None),
                               None)
            if result == "waiting":
                waiting = waiting or (gate, reason)
                if wake is not None:
                    wakes.append(wake)
        if waiting is None:
            return Verdict("passed", None, state._replace(wake_at=None), None)
        wake_at = min(wakes) if wakes else None
        if wake_at is not None and wake_at != state.wake_at:
            self._schedule(stream, digest, wake_at, owner)
            state = state._replace(wake_at=wake_at)
        return Verdict("waiting", _detail(waiting[0], "waiting", waiting[1], digest), state, wake_at)

    def _judge(self, gate: Gate, stream: str, digest: str, state: GateState,
               now: datetime) -> tuple[str, str, datetime | None]:
        if gate.type == "approval":
            if state.rejected_by:
                reason = f"rejected by {state.rejected_by}" + (f": {state.reason}" if state.reason else "")
                return "blocked", reason, None
            if state.approved_by:
                return "passed", f"approved by {state.approved_by}", None
            return "waiting", "approval needed: run approve or reject for this digest", None
        if gate.type == "scan":
            return self._judge_scan(gate, stream, digest, state, now)
        if gate.type == "signature":
            return self._judge_signature(gate, stream, digest, state, now)
        return self._judge_verified(gate, digest, now)

    def _judge_scan(self, gate: Gate, stream: str, digest: str, state: GateState,
                    now: datetime) -> tuple[str, str, datetime | None]:
        result = self._scan_of(stream, digest)
        if result is not None and result.status in SCAN_DONE:
            reason = scan_counts_reason(result.counts, gate.block_at or "CRITICAL")
            if reason:
                return "blocked", reason, None
            return "passed", "scanned: nothing at or above " + (gate.block_at or "CRITICAL"), None
        deadline = state.since + timedelta(minutes=gate.timeout_minutes or DEFAULT_TIMEOUT["scan"])
        seen = f" (scan status {result.status})" if result is not None and result.status else ""
        if now >= deadline:
            return "blocked", f"not scanned within {gate.timeout_minutes} minutes{seen}", None
        return "waiting", f"waiting for the scan result{seen}", deadline

    def _scan_of(self, stream: str, digest: str) -> Any:
        """The scan result of ``digest``. ECR scans image manifests, not indexes: for a multi-platform image (no
        result of its own) the results of its platform manifests are summed — complete only when every one that
        can be scanned is (attestation manifests, UNSUPPORTED_IMAGE, are skipped)."""
        result = self.registry.scan_result(stream, digest)
        if result is not None and result.status in SCAN_DONE:
            return result
        children_of = getattr(self.registry, "index_children", None)
        kids = children_of(stream, [digest]).get(digest) if children_of is not None else None
        if not kids:
            return result
        counts: dict[str, int] = {}
        scanned = 0
        for kid in kids[:MAX_SCANNED_CHILDREN]:
            part = self.registry.scan_result(stream, kid)
            if part is not None and part.status in SCAN_SKIPPED:
                continue  # e.g. an attestation manifest: nothing to scan
            if part is None or part.status not in SCAN_DONE:
                return part or result  # a platform not scanned (yet): the index waits for it
            scanned += 1
            for severity, n in (part.counts or {}).items():
                counts[severity] = counts.get(severity, 0) + int(n)
        if not scanned:
            return result
        return ScanResult("COMPLETE", counts)

    def _judge_signature(self, gate: Gate, stream: str, digest: str, state: GateState,
                         now: datetime) -> tuple[str, str, datetime | None]:
        signing = self.registry.signing_status(stream, digest)
        if signing is not None and signing.status == "COMPLETE":
            return "passed", "signed (ECR managed signing)", None
        if any(t in SIGNATURE_ARTIFACT_TYPES for t in self.registry.signature_referrers(stream, digest)):
            return "passed", "signature referrer found", None
        if signing is not None and signing.status == "FAILED":
            return "blocked", "signing FAILED" + (f": {signing.reason}" if signing.reason else ""), None
        deadline = state.since + timedelta(minutes=gate.timeout_minutes or DEFAULT_TIMEOUT["signature"])
        if now >= deadline:
            return "blocked", f"not signed within {gate.timeout_minutes} minutes", None
        return "waiting", "waiting for a signature", deadline

    def _judge_verified(self, gate: Gate, digest: str, now: datetime) -> tuple[str, str, datetime | None]:
        soak = timedelta(minutes=gate.minutes)
        waiting: str | None = None
        wake: datetime | None = None
        for trigger_id in gate.triggers:
            named = self.store.get_trigger(trigger_id)
            if named is None:
                return "blocked", f"trigger {trigger_id} no longer exists", None
            if named.last_triggered_digest != digest:
                waiting = waiting or f"waiting for {trigger_id} to deploy it"
                continue
            if named.rollout_state == "FAILED":
                return "blocked", f"rollout on {trigger_id} FAILED", None
            if named.rollout_state == "COMPLETED" or (named.rollout_state is None and named.status == "Deployed"):
                start = named.rollout_at or named.last_triggered_at or now
                if now < start + soak:  # a reason that stays the same while it soaks: no write per look
                    waiting = waiting or (f"running on {trigger_id} since {rfc3339(start)}; verified at "
                                          f"{rfc3339(start + soak)}")
                    wake = max(wake, start + soak) if wake else start + soak
                continue
            waiting = waiting or f"waiting for the rollout on {trigger_id} to complete"
        if waiting:
            return "waiting", waiting, wake
        return "passed", f"verified on {len(gate.triggers)} target(s) for {gate.minutes} minutes", None

    def _schedule(self, stream: str, digest: str, due: datetime, owner: str | None) -> None:
        clock = getattr(self, "gate_clock", None)
        if clock is None:
            log.info("no gate clock configured: gates on %s@%s are looked at again by the reconciler", stream,
                     digest)
            return
        clock.schedule(clock_message(stream, digest, due, owner), due)

    # ------------------------------------------------------------------------------------ decisions

    def decide(self, state: GateState | None, gates: tuple[Gate, ...] | list[Gate], digest: str, actor: str, *,
               approve: bool, reason: str | None = None) -> GateState:
        """The gate state after a person approves (or rejects) ``digest`` (see :func:`decide`)."""
        return _decide(state, gates, digest, actor, approve=approve, reason=reason)


def decide(state: GateState | None, gates: tuple[Gate, ...] | list[Gate], digest: str, actor: str, *,
           approve: bool, reason: str | None = None) -> GateState:
    """The gate state after a person approves (or rejects) ``digest``: :class:`Conflict` (nothing is written) when
    no approval gate is configured, ``digest`` is not the one waiting, or it was already decided. What a policy
    tag's ``approve``/``reject`` calls; the same rule as :meth:`Gating.decide` (it reads nothing)."""
    return Gating.decide(None, state, gates, digest, actor, approve=approve, reason=reason)  # type: ignore[arg-type]


def _detail(gate: Gate, state: str, reason: str, digest: str) -> dict[str, Any]:
    return {"type": gate.type, "state": state, "reason": reason, "digest": digest}


def clock_message(stream: str, digest: str, due: datetime, owner: str | None) -> dict[str, Any]:
    """The gate clock's message body: ``{"kind": "trigger", "id"}`` or ``{"kind": "policy", "target"}`` plus
    ``digest`` and ``due``. Without an owner, ``target`` is the stream: every gate of it waiting on ``digest``."""
    if owner and TRIGGER_ID_RE.fullmatch(owner):
        body: dict[str, Any] = {"kind": "trigger", "id": owner}
    else:
        body = {"kind": "policy", "target": owner or stream}
    body.update(digest=digest, due=rfc3339(due))
    return body
