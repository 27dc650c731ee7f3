"""The ``policies_gates`` part of the randomized model (tests/simulation.py): policy tags, gates and their evidence.

Mixed into ``World``. It adds to the world, in ``team/web``:

- three policy tags: ``staging`` (a semver range, sometimes with a scan gate), ``nightly`` (a numeric pattern,
  sometimes with a signature gate) and ``release`` — the promotion: it follows ``staging`` once a ``verified`` gate
  on a trigger of ``staging`` (0, 5 or 30 minutes) and an ``approval`` gate pass (``release`` plays the part of
  ``prod``: the plain ``prod`` tag is pushed to by people in this model);
- pushes of version tags (``1.2.3``, ``v1.3.0``, ``2.0.0-rc.1``, ``main-17`` …) and their deletes;
- gate evidence in the memory registry (``scans``, ``signing``, ``referrers``): a scan result (clean, or with
  CRITICAL/HIGH findings; sometimes IN_PROGRESS first) and managed signing (COMPLETE or FAILED) or a signature
  referrer arrive late, duplicated, never, or before the push's own event; their events go through the gates use
  cases the way the gates function calls them (``gate_evidence``; a signing event that names no image:
  ``recheck_signatures``);
- the gate clock (its queue port): every wake-up is a message delivered late, duplicated, or early (then sent again
  for the rest of the wait, like the function does; or, sometimes, acted on at once: a wake-up must never let a gate
  pass early);
- triggers with gates (scan with ``blockAt``, signature, approval), approvals and rejections of the waiting digest
  (and of wrong digests: a ``Conflict`` that writes nothing), ``deploy`` with ``force``, rollbacks of policy tags
  (which hold them) and ``policy.resume``, and time passing (soaks, timeouts).

Its invariants (classes ``[policy]``, ``[held]``, ``[gated]``, ``[blocked]``, ``[approval]``, ``[stuck]``): after
quiescence, every policy tag that is not held and not waiting on its gates is on its best candidate
(``policytags.select`` over the live candidate heads), in the table and in ECR, and one that waits does so on its best
candidate; a held policy tag does not move; no digest reaches a gated trigger's target (every image the ECS and EKS
fakes take is checked when it is written) or a gated policy tag before its gates passed — by the world's own record
of the evidence, approvals and what ran where — unless a person forced it (``deploy --force``, a target rollback, a
tag rollback); a blocked digest (findings at or above ``blockAt``, signing FAILED, rejected) never gets there; a
wrong digest's approval is refused and writes nothing; a gate whose scan or signature is in, or whose verified soak
is over, does not stay waiting; a move released by an approval records the approver; and a trigger's or policy's
``gate`` detail matches its status (``[record]``, ``[policy]``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from imagestreams.gate_events import parse_clock_message
from imagestreams.gates import SCAN_DONE, SIGNATURE_ARTIFACT_TYPES, as_gates, scan_counts_reason
from imagestreams.model import StreamTag, Target, Trigger
from imagestreams.policytags import Candidate, parse_policy, select
from imagestreams.ports import ScanResult, SigningStatus

POLICY_STREAM = "team/web"
POLICY_TAGS = ("staging", "nightly", "release")
HELD_STATUSES = ("Gated", "Blocked")
STAGE_SERVICE = ("prod", "stage")  # the staging trigger's own service (its rollout is what `verified` soaks)


class ModelGateClock:
    """The gate clock's queue: a message is an event of the world (delivered in any order, duplicated, late)."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.sent = 0

    def schedule(self, message: dict[str, Any], due: datetime) -> None:
        self.sent += 1
        self.world.events.append(("clock", (dict(message), due)))


class PolicyWorld:
    """The policy-tag and gate part of the world (see the module docstring)."""

    # set by World
    rng: Any
    clock: Any
    store: Any
    registry: Any
    streams: Any
    events: list[tuple[str, Any]]
    violations: list[str]
    log: list[str]

    def _init_policies(self) -> None:
        self.policies_on = True
        self.ran: dict[Target, list[tuple[datetime, str]]] = {}  # target -> (when it got it, digest)
        self.applying: list[tuple[str, bool]] = []  # fires in progress: (trigger id, gates judged)
        self.forced: set[tuple[str, str]] = set()  # (trigger id, digest) a person forced past the gates
        self.cleared: set[tuple[str, str]] = set()  # (trigger id, digest) that reached the target past its gates
        self.decisions: dict[tuple[str, str], list[tuple[datetime, bool]]] = {}  # (owner, digest) -> decisions
        self.held_at: dict[tuple[str, str], str | None] = {}  # policy tag rolled back by a person -> its digest
        self.person_moving: set[tuple[str, str]] = set()  # tags a person is rolling back right now
        self.pending_evidence: list[str] = []  # digests whose scan / signing has not arrived yet
        self.version_digests: list[str] = []
        self.trigger_targets: dict[str, Target] = {}
        self.ecs.images[STAGE_SERVICE] = {"app": "nginx:latest", "sidecar": "envoy:1", "worker": "busybox:1"}
        self._original_apply = self.streams._apply
        self._original_force = self.streams.force_past_gates
        self.streams._apply = self._applying_one
        self.streams.force_past_gates = self._forcing
        self.registry.faults_on = self.ecs.faults_on = False
        try:
            for tag in ("1.0.0", "main-1"):  # something to select from the start
                self._push_version(tag)
            answer = self._admin({"action": "trigger.add", "from": f"{POLICY_STREAM}:staging",
                                  "target": {"type": "ecs", "cluster": STAGE_SERVICE[0],
                                             "service": STAGE_SERVICE[1], "container": "app"}})
            self.stage_trigger = answer["result"]["id"] if answer and answer["ok"] else None
            staging_gates = [{"type": "scan", "blockAt": self.rng.choice(("CRITICAL", "HIGH"))}] \
                if self.rng.random() < 0.5 else []
            nightly_gates = [{"type": "signature", "timeoutMinutes": 30}] if self.rng.random() < 0.3 else []
            release_gates: list[dict[str, Any]] = [{"type": "approval"}]
            if self.stage_trigger:
                release_gates.insert(0, {"type": "verified", "triggers": [self.stage_trigger],
                                         "minutes": self.rng.choice((0, 5, 30))})
            for tag, policy, gates in (
                    ("staging", {"semver": "^1.0 || ^2.0"}, staging_gates),
                    ("nightly", {"pattern": "main-(?P<n>[0-9]+)", "order": "numeric", "extract": "n"}, nightly_gates),
                    ("release", {"follow": "staging"}, release_gates)):
                answer = self._admin({"action": "policy.set", "target": f"{POLICY_STREAM}:{tag}", "policy": policy,
                                      "gates": gates})
                if not (answer and answer["ok"]):
                    raise AssertionError(f"policy.set {tag} failed: {answer}")
        finally:
            self.registry.faults_on = self.ecs.faults_on = True

    # ------------------------------------------------------------------------------------------- hooks

    def _applying_one(self, trigger: Trigger, head: Any, **kwargs: Any) -> Trigger:
        """ImageStreams._apply, noting which trigger is writing its target (and whether its gates are judged: a
        target rollback deploys an older digest exactly, past them)."""
        self.applying.append((trigger.id, kwargs.get("gated", True)))
        try:
            return self._original_apply(trigger, head, **kwargs)
        finally:
            self.applying.pop()

    def _forcing(self, triggers: list[Trigger], actor: str, wait: float | None = 5.0) -> list[Trigger]:
        out = self._original_force(triggers, actor, wait)
        for trigger in out:
            if trigger.gate_state is not None and trigger.gate_state.forced_by:
                self.forced.add((trigger.id, trigger.gate_state.digest))
        return out

    def reached(self, target: Target, image: str) -> None:
        """A target container was just written with ``image``: was it a gated trigger's, before its gates passed?"""
        digest = image.rpartition("@")[2]
        self.ran.setdefault(target, []).append((self.clock.now, digest))
        if not self.policies_on or not self.applying:
            return
        trigger_id, judged = self.applying[-1]
        trigger = self.store.get_trigger(trigger_id)
        if trigger is None or not trigger.gates or trigger.target != target:
            return
        if not judged or (trigger_id, digest) in self.forced | self.cleared:
            # a person put it there (a target rollback, deploy --force), or it went through once: it may go back
            # after drift (gates changed since, or a head that moved back to it, do not take it back)
            self.cleared.add((trigger_id, digest))
            return
        problem = self.gates_problem(trigger.gates, trigger.stream_tag.stream, digest, trigger.id, self.clock.now)
        if not problem:
            self.cleared.add((trigger_id, digest))
        else:
            self.violations.append(f"[{problem[0]}] {digest[:15]} reached {target.describe()} (trigger {trigger.id} "
                                   f"on {trigger.stream_tag}, gates {[g.type for g in trigger.gates]}): "
                                   f"{problem[1]}")

    def retagged(self, stream: str, digest: str, tag: str) -> None:
        """ECR is about to point ``stream:tag`` at ``digest``: a gated policy tag only goes where its gates passed."""
        if not self.policies_on or (stream, tag) in self.person_moving or self.registry.tag_map.get(
                (stream, tag)) == digest:
            return
        policy = self.store.get_policy(StreamTag(stream, tag))
        if policy is None:
            return
        if (stream, tag) in self.held_at:
            self.violations.append(f"[held] {stream}:{tag} was rolled back (held) but moves to {digest[:15]}")
        if policy.gates:
            problem = self.gates_problem(policy.gates, stream, digest, f"{stream}:{tag}", self.clock.now)
            if problem:
                self.violations.append(f"[{problem[0]}] policy tag {stream}:{tag} moves to {digest[:15]} "
                                       f"(gates {[g['type'] for g in policy.gates]}): {problem[1]}")

    def gates_problem(self, gates: Any, stream: str, digest: str, owner: str, at: datetime) -> tuple[str, str] | None:
        """Why ``digest`` has not passed ``gates`` at ``at`` by the world's own record (None: it may have): a
        necessary condition of each gate, from the evidence, the decisions and what ran where."""
        self.note_trigger_targets()
        for gate in as_gates(gates):
            if gate.type == "scan":
                scan = self.registry.scans.get((stream, digest))
                if scan is None or scan.status not in SCAN_DONE:
                    return "gated", "not scanned"
                reason = scan_counts_reason(scan.counts, gate.block_at or "CRITICAL")
                if reason:
                    return "blocked", f"scan found {reason}"
            elif gate.type == "signature":
                signing = self.registry.signing.get((stream, digest))
                if not ((signing is not None and signing.status == "COMPLETE") or any(
                        t in SIGNATURE_ARTIFACT_TYPES for t in self.registry.referrers.get((stream, digest), ()))):
                    failed = signing is not None and signing.status == "FAILED"
                    return ("blocked", "signing FAILED") if failed else ("gated", "not signed")
            elif gate.type == "approval":
                decided = [ok for when, ok in self.decisions.get((owner, digest), []) if when <= at]
                if not decided or not decided[-1]:
                    return ("blocked", "rejected") if decided else ("gated", "never approved")
            elif gate.type == "verified":
                for trigger_id in gate.triggers:
                    target = self.trigger_targets.get(trigger_id)
                    since = at - timedelta(minutes=gate.minutes)
                    if target is None or not any(d == digest and when <= since
                                                 for when, d in self.ran.get(target, [])):
                        return "gated", f"not running on {trigger_id}'s target since {gate.minutes} minutes before"
        return None

    # ----------------------------------------------------------------------------------------- actions

    def _version_tag(self) -> str:
        if self.rng.random() < 0.6:
            major = self.rng.choice((1, 1, 2, 3))
            tag = f"{self.rng.choice(('', 'v'))}{major}.{self.rng.randint(0, 3)}.{self.rng.randint(0, 9)}"
            return tag + ("-rc.1" if self.rng.random() < 0.1 else "")
        return f"main-{self.rng.randint(1, 40)}"

    def _push_version(self, tag: str | None = None) -> None:
        tag = tag or self._version_tag()
        digest = self.new_digest() if self.rng.random() < 0.8 or not self.version_digests else \
            self.rng.choice(self.version_digests)
        self.registry.set(POLICY_STREAM, tag, digest)
        self._emit("PUSH", POLICY_STREAM, digest, tag)
        self.log.append(f"push {POLICY_STREAM}:{tag} {digest[:15]}")
        if digest in self.version_digests:
            return
        self.version_digests.append(digest)
        r = self.rng.random()
        if r < 0.3:  # the scan finished before the push's own event reaches us
            self._evidence(digest)
        elif r < 0.85:
            self.pending_evidence.append(digest)
            if self.rng.random() < 0.4:  # the scan has started: its status says so until it completes
                self.registry.scans[(POLICY_STREAM, digest)] = ScanResult("IN_PROGRESS", {})
                self.events.append(("gate", (POLICY_STREAM, digest)))
        elif self.rng.random() < 0.5:
            self.registry.scans[(POLICY_STREAM, digest)] = ScanResult("IN_PROGRESS", {})  # and never finishes

    def _evidence(self, digest: str) -> None:
        """The scan (and signing) of ``digest`` finish; their events go out (to be delivered like any other)."""
        r = self.rng.random()
        counts = {"CRITICAL": self.rng.randint(1, 3)} if r < 0.2 else {"HIGH": 1} if r < 0.35 else \
            {"LOW": 2} if r < 0.5 else {}
        self.registry.scans[(POLICY_STREAM, digest)] = ScanResult(self.rng.choice(SCAN_DONE), counts)
        sign = self.rng.random()
        if sign < 0.5:
            self.registry.signing[(POLICY_STREAM, digest)] = SigningStatus("COMPLETE")
        elif sign < 0.6:
            self.registry.signing[(POLICY_STREAM, digest)] = SigningStatus("FAILED", "profile revoked")
        elif sign < 0.75:
            self.registry.referrers[(POLICY_STREAM, digest)] = ["application/vnd.cncf.notary.signature"]
        self.log.append(f"evidence {digest[:15]}: scan {counts}")
        self.events.append(("gate", (POLICY_STREAM, digest)))
        if sign < 0.6:  # a signing event: naming the image, or not (then every waiting signature gate is re-judged)
            self.events.append(("gate", (POLICY_STREAM, digest) if self.rng.random() < 0.7 else (None, None)))
        if self.rng.random() < 0.3:  # delivered right away, before whatever else is in flight
            self._deliver("gate", (POLICY_STREAM, digest))

    def policy_step(self) -> None:
        r = self.rng.random()
        if r < 0.28:
            self._push_version()
        elif r < 0.38:
            if self.pending_evidence:
                self._evidence(self.pending_evidence.pop(self.rng.randrange(len(self.pending_evidence))))
        elif r < 0.45:
            self.clock.now += timedelta(minutes=self.rng.choice((1, 5, 20, 45)))
            self.log.append(f"time passes: {self.clock.now}")
        elif r < 0.60:
            self._decide()
        elif r < 0.70:
            tag = self.rng.choice(POLICY_TAGS)
            self._rollback_policy_tag(tag)
        elif r < 0.75:
            tag = self.rng.choice(POLICY_TAGS)
            was = self.held_at.pop((POLICY_STREAM, tag), None)  # it may move within the call
            answer = self._admin({"action": "policy.resume", "target": f"{POLICY_STREAM}:{tag}"})
            policy = self.store.get_policy(StreamTag(POLICY_STREAM, tag))
            if not (answer and answer["ok"]) and policy is not None and policy.held:
                self.held_at[(POLICY_STREAM, tag)] = was
        elif r < 0.82:
            self._add_gated_trigger()
        elif r < 0.86:
            self._change_gates()
        elif r < 0.93:
            gated = [t for t in self.store.listed() if t.gates and t.status in HELD_STATUSES]
            if gated:
                self._admin({"action": "deploy", "id": self.rng.choice(gated).id, "force": True})
        else:
            versions = [tag for (stream, tag) in self.registry.tag_map if stream == POLICY_STREAM
                        and (tag[:1].isdigit() or tag.startswith(("v", "main-")))]
            if versions:
                tag = self.rng.choice(sorted(versions))
                if (POLICY_STREAM, tag) in self.registry.tag_map:
                    digest = self.registry.tag_map[(POLICY_STREAM, tag)]
                    self.registry.remove(POLICY_STREAM, tag)
                    self._emit("DELETE", POLICY_STREAM, digest, tag)
                    self.log.append(f"delete {POLICY_STREAM}:{tag}")

    def _add_gated_trigger(self) -> None:
        gates = self._random_gates()
        source = self.rng.choice(("latest", "latest", "nightly", *POLICY_TAGS)) if self.rng.random() < 0.85 else "prod"
        self._admin({"action": "trigger.add", "from": f"{POLICY_STREAM}:{source}", "target": self._new_target(),
                     "gates": gates})

    def _random_gates(self) -> list[dict[str, Any]]:
        gates: list[dict[str, Any]] = []
        if self.rng.random() < 0.6:
            gates.append({"type": "scan", "blockAt": self.rng.choice(("CRITICAL", "HIGH")),
                          "timeoutMinutes": self.rng.choice((10, 60))})
        if self.rng.random() < 0.3:
            gates.append({"type": "signature", "timeoutMinutes": 30})
        if self.rng.random() < 0.4 or not gates:
            gates.append({"type": "approval"})
        return gates

    def _change_gates(self) -> None:
        """A person changes gates: a trigger's (``trigger.gates``), or those of ``staging``/``nightly``."""
        triggers = [t for t in self.store.listed() if t.gates]
        if triggers and self.rng.random() < 0.6:
            self._admin({"action": "trigger.gates", "id": self.rng.choice(triggers).id, "gates": self._random_gates()})
            return
        tag = self.rng.choice(("staging", "nightly"))
        policy = self.store.get_policy(StreamTag(POLICY_STREAM, tag))
        if policy is not None:
            gates = [] if policy.gates else [g for g in self._random_gates() if g["type"] != "approval"]
            self._admin({"action": "policy.set", "target": str(policy.stream_tag), "policy": policy.policy,
                         "gates": gates})

    def _rollback_policy_tag(self, tag: str) -> None:
        key = (POLICY_STREAM, tag)
        self.person_moving.add(key)
        try:
            answer = self._admin({"action": "rollback", "target": f"{POLICY_STREAM}:{tag}"})
        finally:
            self.person_moving.discard(key)
        policy = self.store.get_policy(StreamTag(*key))
        if (answer and answer["ok"]) or (policy is not None and policy.held):
            self.held_at[key] = self.registry.tag_map.get(key)
            if policy is None or not policy.held:
                self.violations.append(f"[held] {POLICY_STREAM}:{tag} was rolled back but its policy is not held")

    def _waiting(self) -> list[tuple[dict[str, Any], str, str | None]]:
        """Who an approval could be for: (command keys, owner, the digest waiting)."""
        out: list[tuple[dict[str, Any], str, str | None]] = []
        for policy in self.store.policies(POLICY_STREAM):
            if any(g["type"] == "approval" for g in policy.gates):
                target = str(policy.stream_tag)
                out.append(({"target": target}, target, (policy.gate_state or {}).get("digest")))
        for trigger in self.store.listed():
            if any(g.type == "approval" for g in trigger.gates):
                waiting = trigger.gate_state.digest if trigger.gate_state and trigger.status in HELD_STATUSES \
                    else None
                out.append(({"id": trigger.id}, trigger.id, waiting))
        return out

    def _decide(self) -> None:
        waiting = self._waiting()
        if not waiting:
            return
        really = [w for w in waiting if w[2] is not None and (w[1].startswith("tr-") or self.rng.random() < 0.5)]
        keys, owner, digest = self.rng.choice(really if really and self.rng.random() < 0.75 else waiting)
        r = self.rng.random()
        approve = r < 0.8
        wrong = digest is None or self.rng.random() < 0.25
        if wrong:
            others = [d for d in self.version_digests if d != digest]
            digest = self.rng.choice(others) if others and self.rng.random() < 0.7 else self.new_digest()
        command: dict[str, Any] = {"action": "approve" if approve else "reject", **keys, "digest": digest}
        if not approve and self.rng.random() < 0.5:
            command["reason"] = "CVE-2026-0001 is exploitable here"
        before = self._owner_record(keys)
        decided = self.decisions.setdefault((owner, digest), [])
        decided.append((self.clock.now, approve))  # the move it releases happens within the call
        racing, self._racing = self._racing, wrong  # no rival writer while we look at what a refusal wrote
        try:
            answer = self._admin(command)
        finally:
            self._racing = racing
        if answer is not None and not answer["ok"]:
            decided.pop()  # refused: nothing was recorded (a fault midway may have recorded it)
        if wrong:
            if answer is None or answer["ok"] or answer["error"]["type"] != "Conflict":
                self.violations.append(f"[approval] {command['action']} of {digest[:15]} (not the digest waiting "
                                       f"on {owner}) answered {answer and (answer.get('error') or 'ok')}")
            elif self._owner_record(keys) != before:
                self.violations.append(f"[approval] a refused {command['action']} of {digest[:15]} on {owner} "
                                       "wrote something")
            return

    def _owner_record(self, keys: dict[str, Any]) -> Any:
        if "id" in keys:
            return self.store.get_trigger(keys["id"])
        return self.store.get_policy(StreamTag.parse(keys["target"]))

    # ------------------------------------------------------------------------------------------ delivery

    def deliver_gate(self, kind: str, payload: Any) -> None:
        """A scan/signing event (to the gates function) or a gate clock message (its SQS queue)."""
        if kind == "gate":
            stream, digest = payload
            if stream is None:
                self.streams.recheck_signatures()
            else:
                self.streams.gate_evidence(stream, digest)
            return
        body, due = payload
        message = parse_clock_message(body)  # the clock's messages must be what the function accepts
        if message.due > self.clock.now and self.rng.random() < 0.8:
            self.streams.gate_clock.schedule(body, message.due)  # not due: sent again for the rest of the wait
            return
        self.streams.gate_wake(message.kind, message.key, message.digest)  # (early, now and then: must be safe)

    def note_trigger_targets(self) -> None:
        for trigger in self.store.fresh_triggers():
            self.trigger_targets.setdefault(trigger.id, trigger.target)

    # ---------------------------------------------------------------------------------------- invariants

    def check_held(self, *, final: bool = False) -> None:
        for (stream, tag), digest in list(self.held_at.items()):
            policy = self.store.get_policy(StreamTag(stream, tag))
            if policy is None:
                self.held_at.pop((stream, tag))
                continue
            ecr = self.registry.tag_map.get((stream, tag))
            head = self.store.get_head(StreamTag(stream, tag))
            if ecr != digest or (final and (head is None or head.digest != digest)):
                self.violations.append(f"[held] {stream}:{tag} was rolled back to {str(digest)[:15]} (held) but is "
                                       f"{str(ecr)[:15]} in ECR, {head and head.digest[:15]} in the table")
                self.held_at[(stream, tag)] = ecr
            if final and not policy.held:
                self.violations.append(f"[held] {stream}:{tag} was rolled back but its policy is not held")

    def check_policies(self) -> None:
        heads = {h.stream_tag.tag: h for h in self.store.heads(POLICY_STREAM)}
        live = {tag: h for tag, h in heads.items() if not h.deleted}
        policies = self.store.policies(POLICY_STREAM)
        policy_tags = {p.stream_tag.tag for p in policies}
        for policy in policies:
            st = policy.stream_tag
            gate = policy.gate or {}
            if (policy.status in HELD_STATUSES) != bool(gate) or gate.get("state", "waiting") != (
                    "blocked" if policy.status == "Blocked" else "waiting") or gate.get("digest", policy.digest) \
                    != policy.digest:
                self.violations.append(f"[policy] {st} is {policy.status} (digest {str(policy.digest)[:15]}) with "
                                       f"gate {gate}")
            if any(g["type"] == "approval" for g in policy.gates):
                for entry in self.store.history(st, 1000):
                    if entry.cause == "policy" and entry.actor != "sim":
                        self.violations.append(f"[policy] {st} moved to {entry.digest[:15]} past its approval gate "
                                               f"with actor {entry.actor}, not the approver")
            if policy.held:
                continue
            spec = parse_policy(policy.policy)
            candidates = [Candidate(tag, h.digest, h.pushed_at or h.at) for tag, h in live.items()
                          if tag != st.tag and (spec.kind == "follow" or (not h.alias_of and tag not in policy_tags))]
            best = select(spec, candidates)
            if best is None:
                if policy.status != "NoCandidate":
                    self.violations.append(f"[policy] {st}: no candidate, but status {policy.status}")
                continue
            if policy.status in HELD_STATUSES:
                if policy.digest != best[1]:
                    self.violations.append(f"[policy] {st} waits ({policy.status}) on {str(policy.digest)[:15]}, "
                                           f"its best candidate is {best[0]} {best[1][:15]}")
                continue
            head, ecr = live.get(st.tag), self.registry.tag_map.get((st.stream, st.tag))
            if head is None or head.digest != best[1] or ecr != best[1] or policy.status != "Selected" or \
                    policy.digest != best[1]:
                self.violations.append(f"[policy] {st} is {head and head.digest[:15]} (ECR {str(ecr)[:15]}, "
                                       f"status {policy.status}, recorded {str(policy.digest)[:15]}); its best "
                                       f"candidate is {best[0]} {best[1][:15]}")

    def check_stuck(self) -> None:
        """A gate whose scan or signature is there, or whose verified soak is over (the named triggers completed a
        rollout of the digest, which ran there long enough), does not stay waiting: the evidence, the clock or the
        reconciler wakes it."""
        owners: list[tuple[str, str, Any, dict[str, Any] | None]] = []
        for trigger in self.store.listed():
            if trigger.status in HELD_STATUSES and (
                    not trigger.gate or trigger.gate.get("state") != ("blocked" if trigger.status == "Blocked"
                                                                      else "waiting")
                    or trigger.gate_state is None or trigger.gate.get("digest") != trigger.gate_state.digest):
                self.violations.append(f"[record] trigger {trigger.id} is {trigger.status} with gate {trigger.gate} "
                                       f"and gate state {trigger.gate_state}")
            if trigger.gate and trigger.gate.get("state") != "passed" and trigger.status not in HELD_STATUSES and \
                    trigger.status != "WaitingForImage":
                self.violations.append(f"[record] trigger {trigger.id} is {trigger.status}"
                                       f"{' (paused)' if trigger.paused else ''} but shows its {trigger.gate['type']} "
                                       f"gate {trigger.gate['state']} for {trigger.gate['digest'][:15]}")
            head = self.store.get_head(trigger.stream_tag)
            if trigger.status in HELD_STATUSES and not trigger.paused and head is not None and not head.deleted:
                owners.append((f"trigger {trigger.id}", trigger.stream_tag.stream, trigger.gates, trigger.gate))
        for policy in self.store.policies(POLICY_STREAM):
            if policy.status in HELD_STATUSES and not policy.held:
                owners.append((f"policy tag {policy.stream_tag}", POLICY_STREAM, policy.gates, policy.gate))
        for who, stream, gates, gate in owners:
            if not gate or gate.get("type") not in ("scan", "signature", "verified") or (
                    gate.get("state") != "waiting" and " within " not in str(gate.get("reason"))):
                continue  # (blocked by a timeout: evidence that came in after it still passes the gate)
            judged = [g for g in as_gates(gates) if g.type == gate["type"]]
            if gate["type"] == "verified" and not all(self._completed(i, gate["digest"]) for g in judged
                                                      for i in g.triggers):
                continue  # a named trigger has not (yet) completed a rollout of it: waiting is right
            if judged and self.gates_problem(judged, stream, gate["digest"], who, self.clock.now) is None:
                self.violations.append(f"[stuck] {who} still {gate['state']} on its {gate['type']} gate for "
                                       f"{gate['digest'][:15]}, whose evidence is in: {gate.get('reason')}")

    def _completed(self, trigger_id: str, digest: str) -> bool:
        trigger = self.store.get_trigger(trigger_id)
        return trigger is not None and trigger.last_triggered_digest == digest and \
            trigger.rollout_state == "COMPLETED"

    def gated_now(self, trigger: Trigger, digest: str) -> bool:
        """The trigger is held by its gates on ``digest`` (its target keeps its image)."""
        return bool(trigger.gates) and trigger.status in HELD_STATUSES and trigger.gate_state is not None and \
            trigger.gate_state.digest == digest

