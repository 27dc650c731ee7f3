"""Gate use cases: setting a trigger's gates, approving or rejecting a digest, forcing a deploy past the gates, and
waking waiting gates when their evidence changes (scan and signing events, rollouts of the triggers a verified gate
names, the gate clock). Mixed into :class:`imagestreams.services.ImageStreams`.

A gate is only ever *judged* by a fire (:meth:`~imagestreams.firing.Firing.fire`) or a policy evaluation; this module
finds who waits on a digest and hands them to those, so the target-lease and one-writer rules hold for every gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from .errors import Conflict, Invalid, NotFound, TransientTargetError
from .gates import Gate, GateState
from .model import Head, Trigger

log = logging.getLogger(__name__)

HELD = ("Gated", "Blocked")
MAX_RECHECKED = 50  # waiting signature gates re-checked for one signing event that names no image


def _holds(trigger: Trigger, digest: str | None = None) -> bool:
    """Whether ``trigger`` is held by its gates (on ``digest``, when given)."""
    return (bool(trigger.gates) and trigger.status in HELD and trigger.gate_state is not None
            and (digest is None or trigger.gate_state.digest == digest))


class GateFlow:
    store: Any
    fire_queue: Any
    clock: Callable[[], datetime]

    # ---------------------------------------------------------------------------------- admin side

    def set_trigger_gates(self, trigger: Trigger, gates: tuple[Gate, ...]) -> Trigger:
        """Replace a trigger's gates (the gate state is kept: an approval of the waiting digest still counts)."""
        self.check_gate_triggers(gates)
        if not self.store.set_gates(trigger, gates):
            raise NotFound(f"no trigger with id {trigger.id}")
        return trigger.with_outcome(gates=gates)

    def check_gate_triggers(self, gates: Iterable[Gate]) -> None:
        """A verified gate must name triggers that exist."""
        for gate in gates:
            for trigger_id in getattr(gate, "triggers", None) or ():
                if self.store.get_trigger(trigger_id) is None:
                    raise Invalid(f"verified gate names trigger {trigger_id}, which does not exist")

    def decide_trigger(self, trigger: Trigger, digest: str, actor: str, *, approve: bool,
                       reason: str | None = None, wait: float | None = 5.0) -> Trigger:
        """Record an approval (or rejection) of ``digest`` on ``trigger``; :class:`Conflict` (nothing written) when
        ``digest`` is not the one waiting there. The caller fires the trigger afterwards (that judges the gates).

        Read and written under the target's lease, like every fire: a fire judging the gates meanwhile cannot write
        back the state it read before this decision."""
        with self._target_lease(trigger.target, wait):  # type: ignore[attr-defined]
            current = self.store.refresh_trigger(trigger)
            if current is None:
                raise NotFound(f"no trigger with id {trigger.id}")
            if current.status not in HELD:
                raise Conflict(f"trigger {current.id} is not waiting on its gates (status {current.status})")
            state = self.decide(current.gate_state, current.gates, digest, actor,  # type: ignore[attr-defined]
                                approve=approve, reason=reason)
            if not self.store.set_gate_state(current, state):
                raise NotFound(f"no trigger with id {trigger.id}")
        return current.with_outcome(gate_state=state)

    def force_past_gates(self, triggers: list[Trigger], actor: str, wait: float | None = 5.0) -> list[Trigger]:
        """``deploy`` with ``force``: the head each gated trigger would deploy now is released past its gates, and
        who did it is recorded on the trigger's gate state (a newer head is judged again). Under the target's
        lease, like a decision."""
        out = []
        for trigger in triggers:
            if not trigger.gates:
                out.append(trigger)
                continue
            with self._target_lease(trigger.target, wait):  # type: ignore[attr-defined]
                head, listed = self.store.head_and_triggers(trigger.stream_tag)
                current = next((t for t in listed if t.id == trigger.id), None)
                if current is None or head is None or head.deleted:
                    out.append(current or trigger)
                    continue
                state = current.gate_state
                if state is None or state.digest != head.digest:
                    state = GateState(head.digest, self.clock())
                state = state._replace(forced_by=actor, wake_at=None)
                self.store.set_gate_state(current, state)
            out.append(current.with_outcome(gate_state=state))
        return out

    # ---------------------------------------------------------------------------------- evidence side

    def gate_evidence(self, stream: str, digest: str) -> dict[str, Any]:
        """New evidence about ``stream@digest`` (a scan, a signature, a gate-clock wake-up): re-judge whatever waits
        on it. One query of the stream's heads, held triggers and policy tags (never its history); nothing written
        when nobody waits on the digest."""
        heads, triggers, policies = self.store.gate_view(stream)
        waiting = [t for t in triggers if _holds(t, digest) and not t.paused]
        policy_wait = [p for p in policies if p.status in HELD
                       and (p.digest == digest or (p.gate or {}).get("digest") == digest)]
        by_tag = {h.stream_tag: h for h in heads}
        for trigger in waiting:  # a view without heads (the stream index): only the tags someone waits on
            if trigger.stream_tag not in by_tag:
                by_tag[trigger.stream_tag] = self.store.get_head(trigger.stream_tag)
        fired = self._refire(waiting, by_tag, "gate")
        evaluated = False
        if policy_wait and hasattr(self, "evaluate_policies"):
            # heads and policies without the history; a move re-reads first
            self.evaluate_policies(stream, *self.store.policy_view(stream))  # type: ignore[attr-defined]
            evaluated = True
        return {"stream": stream, "digest": digest, "triggers": fired, "policies": evaluated}

    def _refire(self, triggers: list[Trigger], heads: dict[Any, Head], why: str) -> list[str]:
        """Fire held triggers again (through the FIFO queue when there is one): the fire judges the gates."""
        done: list[str] = []
        for trigger in triggers:
            head = heads.get(trigger.stream_tag)
            if head is None or head.deleted:
                continue
            if self.fire_queue is not None:
                self.fire_queue.enqueue([trigger], head, reason=f"{why}-{int(self.clock().timestamp() * 1000)}")
            else:
                try:
                    self.fire(trigger, head)  # type: ignore[attr-defined]
                except TransientTargetError as exc:
                    log.warning("gate re-check of %s: fire failed: %s", trigger.id, exc)
            done.append(trigger.id)
        return done

    def gate_wake(self, kind: str, key: str, digest: str) -> dict[str, Any]:
        """The gate clock's wake-up for one trigger (``kind`` trigger, ``key`` its id) or policy tag (``kind``
        policy, ``key`` ``stream:tag`` or just the stream)."""
        if kind == "trigger":
            trigger = self.store.get_trigger(key)
            if trigger is None:
                return {"stream": None, "digest": digest, "triggers": [], "policies": False}
            stream = trigger.stream_tag.stream
        else:
            stream = key.partition(":")[0]
        outcome = self.gate_evidence(stream, digest)
        if kind == "trigger" and trigger.id not in outcome["triggers"] and _holds(trigger, digest) \
                and not trigger.paused:  # held since before the stream index listed held triggers
            outcome["triggers"] += self._refire([trigger], {trigger.stream_tag: self.store.get_head(
                trigger.stream_tag)}, "gate")
        return outcome

    def recheck_signatures(self) -> list[dict[str, Any]]:
        """A signing event that names no image: re-judge every held gate list with a signature gate (bounded)."""
        seen: dict[tuple[str, str], None] = {}
        for trigger in self.store.all_triggers():
            if _holds(trigger) and any(g.type == "signature" for g in trigger.gates):
                seen[(trigger.stream_tag.stream, trigger.gate_state.digest)] = None  # type: ignore[union-attr]
        for policy in self.store.all_policies():
            gate = policy.gate or {}
            if policy.status in HELD and gate.get("type") == "signature" and gate.get("digest"):
                seen[(policy.stream_tag.stream, gate["digest"])] = None
        return [self.gate_evidence(stream, digest) for stream, digest in list(seen)[:MAX_RECHECKED]]

    def rollout_done(self, triggers: list[Trigger]) -> list[str]:
        """Rollouts of ``triggers`` completed or failed: gate lists of the same stream whose verified gate names one
        of them are judged again, so a soak passes at completion + N minutes (the verdict schedules that) and a
        failure blocks now. One query of what waits in that stream (its held triggers and policy tags), never a read
        of every trigger; a verified gate in another stream learns of it at its next wake-up or reconciler run."""
        ids = {t.id for t in triggers}
        held: list[Trigger] = []
        policies: list[Any] = []
        for stream in sorted({t.stream_tag.stream for t in triggers}):
            _, waiting, found = self.store.gate_view(stream)
            held += [t for t in waiting if _holds(t) and not t.paused and any(ids & set(g.triggers) for g in t.gates)]
            policies += found
        fired: list[str] = []
        by_tag: dict[Any, list[Trigger]] = {}
        for trigger in held:
            by_tag.setdefault(trigger.stream_tag, []).append(trigger)
        for stream_tag, due in by_tag.items():
            fired += self._refire(due, {stream_tag: self.store.get_head(stream_tag)}, "rollout")
        streams = set()
        for policy in policies:
            named = {i for g in policy.gates for i in g.get("triggers", ())}
            if policy.status in HELD and named & ids:
                streams.add(policy.stream_tag.stream)
        for stream in sorted(streams):
            self.evaluate_policies(stream)  # type: ignore[attr-defined]
        return fired
