"""Policy tags as use cases: set, remove, resume, list, approve, and the evaluation that keeps every policy tag of a
stream on its best candidate (what :mod:`.policytags` selects). Mixed into
:class:`imagestreams.services.ImageStreams`.

The evaluation reads nothing per policy: the fan-out hands it the heads and policies of the stream it read in one
query, and it writes only what changed — a policy tag already on its selection costs no ECR call and no write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .errors import ConcurrentUpdate, Conflict, ImageStreamsError, Invalid, NotFound
from .gates import GateState, parse_gates
from .model import Head, Move, StreamTag
from .policytags import MAX_FOLLOW_CHAIN, Candidate, Policy, parse_policy, select
from .ports import Registry

log = logging.getLogger(__name__)

MAX_REREADS = 3  # a policy decided on a lagging view: times it is decided again from consistent reads before a move


def _gate_state(raw: dict[str, Any] | None) -> GateState | None:
    return GateState.from_dict(raw) if raw else None


class PolicyTags:
    """Policy tags over the ports :class:`~imagestreams.services.ImageStreams` holds; moves go through its tag
    flow (``sync``)."""

    store: Any
    registry: Registry
    clock: Callable[[], datetime]
    max_attempts: int
    gate_verdict: Callable[..., Any]  # from Gating
    decide: Callable[..., GateState]  # from Gating
    check_gate_triggers: Callable[..., None]  # from GateFlow

    # ------------------------------------------------------------------------------------------ actions

    def set_policy(self, stream_tag: StreamTag, spec: Any, gates: Any = None, actor: str = "unknown") -> Policy:
        """Give ``stream_tag`` a policy (replacing its previous one) and evaluate it at once. A tag that is an
        alias cannot get one (``Conflict``); a tag that exists keeps its history."""
        parsed = parse_policy(spec)
        gate_dicts: tuple[dict[str, Any], ...] = ()
        if gates is not None:
            if not isinstance(gates, list):
                raise Invalid(f"gates must be a list of gate objects, got {type(gates).__name__}")
            if gates:
                parsed_gates = parse_gates(gates)
                self.check_gate_triggers(parsed_gates)  # a verified gate naming no trigger would hold it for good
                gate_dicts = tuple(g.as_dict() for g in parsed_gates)
        head = self.store.get_head(stream_tag)
        if head is not None and not head.deleted and head.alias_of:
            raise Conflict(f"{stream_tag} tracks {stream_tag.stream}:{head.alias_of} (an alias): a tag is either an "
                           f"alias or a policy tag; make it a plain tag first (tag without alias)")
        existing = self.store.get_policy(stream_tag)
        if parsed.kind == "follow":
            self._refuse_follow_cycle(stream_tag, parsed.matcher)
        same = existing is not None and existing.policy == parsed.raw and existing.gates == gate_dicts
        policy = Policy(stream_tag, parsed.raw, gate_dicts, held=existing.held if existing else False,
                        at=self.clock())
        if same and existing is not None:
            policy = existing
        else:
            for _ in range(self.max_attempts):
                try:
                    policy = self.store.put_policy(policy, existing)
                    break
                except ConcurrentUpdate:
                    existing = self.store.get_policy(stream_tag)
            else:
                raise ConcurrentUpdate(f"{stream_tag}: policy kept changing")
        log.info("policy of %s set by %s: %s", stream_tag, actor, parsed.raw)
        self.evaluate_policies(stream_tag.stream)
        return self.store.get_policy(stream_tag) or policy

    def _refuse_follow_cycle(self, stream_tag: StreamTag, followed: str) -> None:
        if followed == stream_tag.tag:
            raise Invalid(f"{stream_tag} cannot follow itself")
        follows = {p.stream_tag.tag: p.policy.get("follow") for p in self.store.policies(stream_tag.stream)}
        follows[stream_tag.tag] = followed
        tag, depth = stream_tag.tag, 0
        seen = {tag}
        while follows.get(tag):
            tag = follows[tag]
            depth += 1
            if tag in seen:
                raise Invalid(f"follow cycle: {stream_tag} would end up following itself through "
                              f"{stream_tag.stream}:{followed}")
            if depth > MAX_FOLLOW_CHAIN:
                raise Invalid(f"follow chain from {stream_tag} would be more than {MAX_FOLLOW_CHAIN} links long")
            seen.add(tag)
        for other, target in follows.items():  # tags following this one, further up the chain
            if target == stream_tag.tag and other != stream_tag.tag:
                chain, at = 1, other
                while at in follows.values() and chain <= MAX_FOLLOW_CHAIN + 1:
                    at = next(k for k, v in follows.items() if v == at)
                    chain += 1
                if chain + depth > MAX_FOLLOW_CHAIN:
                    raise Invalid(f"follow chain through {stream_tag} would be more than {MAX_FOLLOW_CHAIN} links "
                                  "long")

    def get_policy(self, stream_tag: StreamTag) -> Policy:
        policy = self.store.get_policy(stream_tag)
        if policy is None:
            raise NotFound(f"{stream_tag} has no policy")
        return policy

    def remove_policy(self, stream_tag: StreamTag) -> None:
        """The tag stays where it is, as a plain tag (its history too)."""
        self.get_policy(stream_tag)
        self.store.delete_policy(stream_tag)

    def resume_policy(self, stream_tag: StreamTag, actor: str = "unknown") -> Policy:
        """Release a hold (after a rollback of the tag) and evaluate at once."""
        self._set_held(stream_tag, False)
        log.info("policy of %s resumed by %s", stream_tag, actor)
        self.evaluate_policies(stream_tag.stream)
        return self.get_policy(stream_tag)

    def hold_policy(self, stream_tag: StreamTag) -> bool:
        """Hold the policy of ``stream_tag`` if it has one (a rollback of the tag). True when this put the hold on
        (it has a policy that was not held), so a rollback that then fails can take it off again."""
        policy = self.store.get_policy(stream_tag)
        if policy is None or policy.held:
            return False
        self._set_held(stream_tag, True)
        return True

    def release_hold(self, stream_tag: StreamTag) -> None:
        self._set_held(stream_tag, False)

    def _set_held(self, stream_tag: StreamTag, held: bool) -> Policy:
        for _ in range(self.max_attempts):
            policy = self.get_policy(stream_tag)
            if policy.held == held:
                return policy
            try:
                return self.store.put_policy(policy._replace(held=held, at=self.clock()), policy)
            except ConcurrentUpdate:
                continue
        raise ConcurrentUpdate(f"{stream_tag}: policy kept changing")

    def list_policies(self, stream: str | None = None) -> list[Policy]:
        found = self.store.all_policies() if stream is None else self.store.policies(stream)
        return sorted(found, key=lambda p: str(p.stream_tag))

    def approve_policy(self, stream_tag: StreamTag, digest: str, actor: str, approve: bool,
                       reason: str | None = None) -> Policy:
        """A person approves (or rejects) the digest a policy tag's approval gate waits for; an approval that
        releases the move records the approver as its actor."""
        for _ in range(self.max_attempts):
            policy = self.get_policy(stream_tag)
            state = self.decide(_gate_state(policy.gate_state), parse_gates(list(policy.gates)), digest, actor,
                                approve=approve, reason=reason)
            try:
                self.store.put_policy(policy._replace(gate_state=state.as_dict(), at=self.clock()), policy)
            except ConcurrentUpdate:
                continue
            break
        else:
            raise ConcurrentUpdate(f"{stream_tag}: policy kept changing")
        self.evaluate_policies(stream_tag.stream)
        return self.get_policy(stream_tag)

    # --------------------------------------------------------------------------------------- evaluation

    def evaluate_policies(self, stream: str, heads: list[Head] | None = None,
                          policies: list[Policy] | None = None) -> list[Move]:
        """Bring every policy tag of ``stream`` to its selection, from ``heads`` and ``policies`` as read by the
        caller (one query of the stream when not given). A policy tag whose selection moved is retagged in ECR
        byte-exact and synced (cause ``policy``); chains of ``follow`` are followed within this call, at most
        ``MAX_FOLLOW_CHAIN`` rounds. Held policies are left alone; no candidate leaves the tag where it is."""
        if heads is None or policies is None:
            heads, _, policies = self.store.stream_view(stream)
        if not policies:
            return []
        live = {h.stream_tag.tag: h for h in heads if not h.deleted}
        policy_tags = {p.stream_tag.tag for p in policies}
        current = {p.stream_tag.tag: p for p in policies}
        moves: list[Move] = []
        for _ in range(MAX_FOLLOW_CHAIN):
            moved = False
            for tag in sorted(current):
                policy = current[tag]
                if policy.held:
                    continue
                try:
                    done, policy = self._evaluate_one(policy, live, policy_tags)
                except ImageStreamsError as exc:  # e.g. the tag is immutable in ECR: the others still go on
                    log.warning("policy of %s cannot move: %s", policy.stream_tag, exc.message)
                    continue
                current[tag] = policy
                if done:
                    moves += done
                    moved = True
            if not moved:
                break
        return moves

    def _candidates(self, policy: Policy, live: dict[str, Head], policy_tags: set[str]) -> list[Candidate]:
        follow = policy.kind == "follow"
        return [Candidate(tag, head.digest, head.pushed_at or head.at) for tag, head in live.items()
                if tag != policy.stream_tag.tag
                and (follow or (not head.alias_of and tag not in policy_tags))]

    def _evaluate_one(self, policy: Policy, live: dict[str, Head], policy_tags: set[str],
                      rereads: int = MAX_REREADS) -> tuple[list[Move], Policy]:
        st = policy.stream_tag
        try:
            spec = policy.spec
        except Invalid as exc:  # stored before a rule tightened: reported, never a failed fan-out
            log.warning("policy of %s is no longer valid: %s", st, exc.message)
            return [], policy
        choice = select(spec, self._candidates(policy, live, policy_tags))
        tag, digest = choice if choice is not None else (None, None)
        head = live.get(st.tag)
        settled = None  # what to record when the tag does not move
        if choice is None:
            settled = policy._replace(status="NoCandidate", selected=None, digest=None, gate=None)
        elif head is not None and head.digest == digest:
            settled = policy._replace(status="Selected", selected=tag, digest=digest, gate=None)
        if settled is not None and settled.outcome() == policy.outcome():
            return [], policy  # nothing changes: nothing read again, nothing written
        stale = self._stale(policy, tag, digest, live)
        if stale is not None:  # the view lagged: decide again from what is stored
            if stale.held or rereads <= 0:
                return [], stale
            return self._evaluate_one(stale, live, policy_tags, rereads - 1)
        if settled is not None or tag is None or digest is None:
            return [], self._record(policy, settled or policy)
        actor = f"policy:{spec.kind}"
        after = policy._replace(selected=tag, digest=digest)
        if policy.gates:
            verdict = self._gate_verdict(policy, digest)
            if verdict.state != "passed":
                status = "Blocked" if verdict.state == "blocked" else "Gated"
                gate = verdict.gate
                state = verdict.gate_state.as_dict() if verdict.gate_state else None
                return [], self._record(policy, after._replace(status=status, gate=gate,
                                                               gate_state=state or policy.gate_state))
            state = verdict.gate_state
            if state is not None and getattr(state, "approved_by", None):
                actor = state.approved_by  # a move released by an approval is the approver's
            after = after._replace(gate_state=state.as_dict() if state is not None else policy.gate_state)
        self.registry.retag(st.stream, digest, st.tag)
        moves = self.sync(st, cause="policy", actor=actor)  # type: ignore[attr-defined]
        base = head or live.get(tag)
        if base is not None:
            live[st.tag] = base._replace(stream_tag=st, digest=digest, deleted=False, alias_of=None)
        return moves, self._record(policy, after._replace(status="Selected", gate=None))

    def _stale(self, policy: Policy, tag: str | None, digest: str | None, live: dict[str, Head]) -> Policy | None:
        """Before an evaluation changes anything (a move, a gate wait, a new status): the policy, and the heads of
        its candidate, of the tag itself and of what the stored policy selects, read again consistently (the
        fan-out's view of the stream comes from an eventually consistent index). None when all are as seen; else
        the stored policy, with ``live`` corrected (a policy removed meanwhile comes back held: nothing moves)."""
        st = policy.stream_tag
        stored = self.store.get_policy(st)
        if stored is None:
            return policy._replace(held=True)
        tags = sorted({st.tag} | {t for t in (tag, stored.selected) if t})
        fresh = {h.stream_tag.tag: h for h in self.store.heads_of(st.stream, tags) if not h.deleted}

        def seen(head: Head | None) -> tuple[Any, ...] | None:
            return (head.digest, head.alias_of) if head is not None else None

        changed = [t for t in tags if seen(fresh.get(t)) != seen(live.get(t))]
        if not changed and stored.rev == policy.rev:
            return None
        log.info("policy of %s: %s changed since the view was read; deciding again", st,
                 ", ".join(changed) or "the policy")
        for t in changed:
            if t in fresh:
                live[t] = fresh[t]
            else:
                live.pop(t, None)
        return stored

    def _gate_verdict(self, policy: Policy, digest: str) -> Any:
        """The gates' verdict on ``digest`` for this policy tag."""
        return self.gate_verdict(parse_gates(list(policy.gates)), policy.stream_tag.stream, digest,
                                 _gate_state(policy.gate_state))

    def _record(self, before: Policy, after: Policy) -> Policy:
        """Store what an evaluation decided, only when it changed; a policy changed meanwhile (set, resume,
        approve) wins, and its own evaluation follows."""
        if after.outcome() == before.outcome():
            return before
        try:
            return self.store.put_policy(after._replace(at=self.clock()), before)
        except ConcurrentUpdate:
            log.info("policy of %s changed while it was evaluated; its own evaluation follows", before.stream_tag)
            return before
