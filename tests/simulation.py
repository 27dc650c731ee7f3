"""Randomized model test: a seeded world of pushes, retags, deletes, aliases, triggers, rollbacks, policy tags and
gates, with ECR events duplicated, reordered, delayed and dropped, and injected faults (throttling, 5xx,
conditional-check races, rollouts that fail and are rolled back by the circuit breaker). After quiescence plus
reconciler runs, the invariants docs/concepts.md describes must hold. Reproducible by seed:
``python bench/soak.py --seed N -v``.

It drives the real domain (ImageStreams, ingest, admin dispatch, Reconciler) on in-memory ports that keep the
adapters' contracts; the adapters themselves are covered by the integration tests.

Fault kinds (``World(faults=...)``; all of them by default), each switchable on its own:

- ``shared_targets``: several triggers on containers of one ECS service and of one Kubernetes workload; a target
  write is split into "read the whole definition" and "write a clone of it", and another fire (of another trigger
  on the same resource, through ``fire_by_id`` like a second deployer) or a target rollback may run in between,
  or just before the target is read.
- ``rollout_reorder``: every ECS deployment reports IN_PROGRESS, then COMPLETED or FAILED, each event delayed,
  duplicated, dropped and reordered (FAILED before IN_PROGRESS) like any other event. (Every rollout event, with
  or without this kind, is sometimes keyed by an old-format service ARN, which names no cluster.)
- ``crash_after_apply``: the function dies after the target call succeeded and before the trigger write (its
  target lease stays held until it expires); the message is received again (SQS retry).
- ``foreign_repo``: pushes to a repository IAM does not let us read (``describe_images`` answers AccessDenied).
- ``alias_race``: a push to the source of an alias is ingested while another ingest is about to retag the alias.
- ``index_lag``: the trigger indexes (every trigger, the triggers of a target) are eventually consistent: a read
  may return trigger records as they were at the start of the step (a rollout event or a reconciler run then acts
  on an older record than a fire just wrote), and so may the live heads' keys a reconciler run counts; and a
  reconciler run is long: while it reads a target, a push to that trigger's tag is ingested and fired.
- ``policies_gates``: policy tags (a semver range, a numeric pattern, and ``release`` following ``staging`` past a
  ``verified`` gate on a staging trigger and an ``approval`` gate), triggers with gates (scan with ``blockAt``,
  signature, approval), pushes and deletes of version tags (``1.2.3``, ``v1.3.0``, ``main-17`` …), scan and signing
  evidence arriving late, duplicated, never, or before the push's own event (through the gates use cases, as the
  gates function calls them), gate clock messages delivered late, duplicated or early, approvals and rejections
  (of wrong digests too), ``deploy --force``, rollbacks of policy tags (they hold) and ``policy.resume``, gates
  changed, time passing. The world and its invariants are in ``tests/simulation_policies.py``.

Every scenario also prunes now and then (``prune`` with small ``keepTagRevisions`` / ``keepYoungerThanMinutes``: a
dry run, then the same with ``confirm``) between its pushes, rollbacks and fires: a dry run deletes nothing, and a
prune never deletes what a trigger's target runs or last received, a head, or a tag's kept revisions.

Every violation starts with its class in brackets (``[pins]``, ``[target]``, ``[paused]``, ``[redeploy]``, ``[alias]``,
``[foreign]``, ``[deployment]``, ``[rollout]``, ``[record]``, ``[tags]``, ``[history]``, ``[reconciler]``,
``[prune]``; with ``policies_gates``: ``[policy]`` a policy tag off its best candidate after quiescence, ``[held]``
a held policy tag moved, ``[gated]`` a digest reached a gated trigger's target or a gated policy tag before its gates
passed, ``[blocked]`` a blocked digest got there, ``[approval]`` a wrong digest's approval was not a Conflict or
wrote something, ``[stuck]`` a gate whose evidence is in still waits), so a soak can count them per class.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.errors import (
    ConcurrentUpdate,
    ImageStreamsError,
    NotOurs,
    TargetChanged,
    TargetError,
    TransientTargetError,
)
from imagestreams.events import EcrEvent
from imagestreams.ingest import handle_ecr_event
from imagestreams.model import EcsTarget, EksTarget, Head, StreamTag, Target, TaskPins, Trigger, pinned_ref, target_key
from imagestreams.ports import DriverResult, TargetState
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams
from tests.simulation_policies import ModelGateClock, PolicyWorld

REPOS = ("team/web", "team/api")
FOREIGN = "vendor/base"  # exists in the account; our role may not read it
TAGS = ("latest", "prod", "edge")
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CONTAINERS = ("app", "sidecar", "worker")
FAULT_KINDS = frozenset({"shared_targets", "rollout_reorder", "crash_after_apply", "foreign_repo", "alias_race",
                         "index_lag", "policies_gates"})
VIOLATION_CLASSES = ("pins", "target", "paused", "redeploy", "alias", "foreign", "deployment", "rollout", "record",
                     "tags", "history", "reconciler", "prune", "policy", "held", "gated", "blocked", "approval",
                     "stuck")
MAX_RECEIVES = 5  # the fire queue's maxReceiveCount, then the DLQ
MAX_RACES_PER_STEP = 20
VISIBILITY_TIMEOUT = timedelta(seconds=360)  # the fire queue's: a failed receive is seen again this much later


class Throttled(Exception):
    """An AWS fault the event source retries (throttling, 5xx)."""


class Crash(Exception):
    """The function died (timeout, out of memory) after the target call and before the trigger write."""


def violation_class(violation: str) -> str:
    return violation[1:violation.index("]")] if violation.startswith("[") else "other"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class OutboxStore(MemoryStore):
    """MemoryStore plus the table's change stream (head writes, in order), injected write races, a crash after a
    target call, and a hook where another writer may get in just before a target lease is taken."""

    def __init__(self, rng: random.Random, race_rate: float, clock: Clock) -> None:
        super().__init__()
        self.lease_clock = lambda: clock.now.timestamp()  # leases expire in model time
        self.dead = False  # the function died: its finally blocks never run, its lease stays until it expires
        self.index_lag = 0.0
        self.indexed: dict[str, Trigger] = {}
        self.indexed_keys: dict[str, list[str]] = {}
        self.violations: list[str] = []  # the World's own list (set by it)
        self.outbox: list[Head] = []
        self.rng, self.race_rate = rng, race_rate
        self.racer: Callable[[StreamTag], None] | None = None
        self.lease_racer: Callable[[str], None] | None = None
        self.crash_on_save: str | None = None  # trigger id whose next save dies
        self._racing = False

    def commit(self, expected: Head | None, new: Head, drop_generation: int | None) -> None:
        if self.racer and not self._racing and self.rng.random() < self.race_rate:
            self._racing = True  # another ingest of the same tag gets in between our read and our write
            try:
                self.racer(new.stream_tag)
            finally:
                self._racing = False
        super().commit(expected, new, drop_generation)
        self.outbox.append(new)

    def save_trigger(self, trigger: Trigger, **kwargs: Any) -> bool:
        if self.crash_on_save is not None and self.crash_on_save == trigger.id:
            self.crash_on_save = None
            self.dead = True
            raise Crash(f"Task timed out after the target call, before trigger {trigger.id} was written")
        stored = self.triggers.get(trigger.id)
        stale = stored is not None and stored.last_triggered_at is not None and (
            trigger.last_triggered_at is None or trigger.last_triggered_at < stored.last_triggered_at)
        written = super().save_trigger(trigger, **kwargs)  # a conditional save (expect=) may refuse it
        if written and stale:
            # only a fire (or a target rollback) sets it, to the time it wrote: older is a stale record written back
            self.violations.append(f"[record] trigger {trigger.id}: a write put back an older record (fired at "
                                   f"{trigger.last_triggered_at}, deployment {trigger.deployment}) over a newer one "
                                   f"(fired at {stored.last_triggered_at}, deployment {stored.deployment})")
        return written

    # The trigger indexes (all_triggers, triggers_for_target) and the live heads' keys the reconciler counts are
    # eventually consistent: with ``index_lag`` a read may return them as they were at the start of the step. The
    # model's own bookkeeping reads them fresh.
    def snapshot_index(self) -> None:
        self.indexed = {t.id: t for t in super().all_triggers()}
        self.indexed_keys = {stream: super(OutboxStore, self).live_head_keys(stream, "", 10**6)
                             for stream in {st.stream for st in self.heads_by_tag}}

    def live_head_keys(self, stream: str, after: str, limit: int) -> list[str]:
        if not self.index_lag or self.rng.random() >= self.index_lag:
            return super().live_head_keys(stream, after, limit)
        return [k for k in self.indexed_keys.get(stream, []) if k > after][:limit]

    def _lagged(self, triggers: list[Trigger]) -> list[Trigger]:
        if not self.index_lag or self.rng.random() >= self.index_lag:
            return triggers
        return [self.indexed.get(t.id, t) for t in triggers]

    def all_triggers(self) -> list[Trigger]:
        return self._lagged(super().all_triggers())

    def triggers_for_target(self, key: str) -> list[Trigger]:
        return self._lagged(super().triggers_for_target(key))

    def fresh_triggers(self) -> list[Trigger]:
        return super().all_triggers()

    def fresh_for_target(self, key: str) -> list[Trigger]:
        return super().triggers_for_target(key)

    def listed(self) -> list[Trigger]:
        return sorted(super().all_triggers(), key=lambda t: (str(t.stream_tag), t.id))

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        if self.lease_racer is not None:
            self.lease_racer(name)  # a rival writer of the same resource gets there first
        return super().acquire_lease(name, owner, seconds)  # type: ignore[misc]

    def release_lease(self, name: str, owner: str) -> None:
        if not self.dead:
            super().release_lease(name, owner)


class FlakyRegistry(MemoryRegistry):
    def __init__(self, rng: random.Random, fault_rate: float) -> None:
        super().__init__(REG)
        self.rng, self.fault_rate, self.faults_on = rng, fault_rate, True
        self.foreign: set[str] = set()
        self.retag_racer: Callable[[str, str], None] | None = None
        self.retag_watch: Callable[[str, str, str], None] | None = None  # sees every retag before it lands
        self.now: Callable[[], datetime] | None = None  # model time: when an image was pushed (prune's age)

    def set(self, stream: str, tag: str, digest: str, media_type: str | None = None) -> None:
        if self.now is not None and digest not in self.images.get(stream, set()):
            self.push(stream, digest, pushed_at=self.now())  # a new (or deleted and pushed again) image
        super().set(stream, tag, digest, media_type)

    def resolve(self, stream: str, tag: str) -> Any:
        if stream in self.foreign:
            raise NotOurs(stream, "AccessDeniedException: not authorized to perform ecr:DescribeImages")
        if self.faults_on and self.rng.random() < self.fault_rate:
            raise Throttled("ThrottlingException: Rate exceeded")
        return super().resolve(stream, tag)

    def tags(self, stream: str, token: str | None = None) -> tuple[dict[str, str], str | None] | None:
        return None if stream in self.foreign else super().tags(stream, token)  # like the adapter on AccessDenied

    def retag(self, stream: str, digest: str, tag: str) -> None:
        if self.retag_racer is not None:
            self.retag_racer(stream, tag)  # a concurrent ingest may finish before our PutImage lands
        if self.retag_watch is not None:
            self.retag_watch(stream, digest, tag)
        super().retag(stream, digest, tag)


class FlakyEcs(MemoryEcs):
    """ECS with throttling, digests whose rollout fails (the circuit breaker restores the previous revision in a
    new deployment, and the failed one leaves the service's ``deployments``: only the deployment history still
    knows how it went, as the real driver reads it), one deployment id per UpdateService, and a target write split
    like the real driver's: read the service's current task definition (every container), then register a clone of
    *that* with one image replaced and update the service — a write by someone else in between is lost, exactly as
    on ECS."""

    def __init__(self, world: World, fault_rate: float) -> None:
        super().__init__()
        self.world, self.rng, self.fault_rate, self.faults_on = world, world.rng, fault_rate, True

    def apply(self, target: EcsTarget, image: str, *, pins: TaskPins | None = None) -> DriverResult:
        world = self.world
        if self.faults_on and self.rng.random() < self.fault_rate:
            raise TransientTargetError("UpdateService: 500 InternalFailure")
        key = (target.cluster, target.service)
        if key not in self.images or target.container not in self.images[key]:
            return super().apply(target, image, pins=pins)  # raises like the real driver
        world.race(target, "before-read")
        read = dict(self.images[key])  # DescribeServices + DescribeTaskDefinition: the whole revision
        world.race(target, "between-read-and-write")
        if read[target.container] != image:
            lost = [f"{c} ({now[-15:]} -> {read[c][-15:]})" for c, now in self.images[key].items()
                    if c != target.container and now != read[c]]
            if lost:
                world.violations.append(f"[pins] a write of {target.describe()} put back what it read of "
                                        f"{', '.join(lost)}")
            self.images[key] = read  # RegisterTaskDefinition clones what we read: a write in between is lost
            world.check_refire(target, image)
        result = super().apply(target, image, pins=pins)
        if result.changed:
            world.reached(target, image)
            world.deployed(target, image, result)
        return result

    def inspect(self, target: EcsTarget, deployment: str | None, *, image: str | None = None) -> TargetState:
        self.world.during_check(target)
        return super().inspect(target, deployment, image=image)

    def finish_rollout(self, target: EcsTarget, bad: bool) -> None:
        """The deployment just started settles: COMPLETED, or FAILED and rolled back by the circuit breaker (a new
        deployment with the revision before; the failed one is only in the history from then on)."""
        key = (target.cluster, target.service)
        if bad:
            failed = self.past[key][-1]
            self.circuit_breaker(target.cluster, target.service)
            self.past[key].append({"id": self.deployments[key], "images": dict(self.images[key]),
                                   "before": dict(failed["images"]), "state": "COMPLETED",
                                   "reason": "ECS deployment circuit breaker: rolled back"})
        else:
            self.past[key][-1].update(state="COMPLETED", reason="ECS deployment completed.")
            self.rollouts[key] = "COMPLETED"

    def outcome(self, key: tuple[str, str], deployment: str | None) -> str | None:
        """How a deployment went, from the history (the model's own view; the domain only sees inspect)."""
        return next((e["state"] for e in self.past.get(key, []) if e["id"] == deployment), None)


class FlakyEks:
    """Kubernetes workloads → {container: image}, written like the real driver: GET (resourceVersion), then a
    strategic-merge PATCH of one container with that resourceVersion as precondition; a 409 writes nothing and
    raises ``TargetChanged`` (the fire starts over, re-reading the trigger; another container's patch is never
    lost)."""

    def __init__(self, world: World, fault_rate: float) -> None:
        self.world, self.rng, self.fault_rate, self.faults_on = world, world.rng, fault_rate, True
        self.workloads: dict[tuple[str, str, str, str], dict[str, str]] = {}
        self.versions: dict[tuple[str, str, str, str], int] = {}

    @staticmethod
    def _key(target: EksTarget) -> tuple[str, str, str, str]:
        return target.cluster, target.namespace, target.kind, target.name

    def platform(self, target: EksTarget) -> str | None:
        return None

    def inspect(self, target: EksTarget, deployment: str | None) -> TargetState:
        self.world.during_check(target)
        containers = self.workloads.get(self._key(target), {})
        if target.container not in containers:
            raise TargetError(f"{target.describe()} not found")
        return TargetState(containers[target.container], "COMPLETED")

    def apply(self, target: EksTarget, image: str) -> DriverResult:
        if self.faults_on and self.rng.random() < self.fault_rate:
            raise TransientTargetError("PATCH: 503 Service Unavailable")
        key = self._key(target)
        if target.container not in self.workloads.get(key, {}):
            raise TargetError(f"{target.describe()} not found")
        self.world.race(target, "before-read")
        version, previous = self.versions[key], self.workloads[key][target.container]  # GET
        self.world.race(target, "between-read-and-write")
        if previous == image:
            return DriverResult(changed=False, previous_image=previous, rollout_state="COMPLETED")
        if self.versions[key] != version:  # 409 Conflict: nothing written; the fire starts over
            raise TargetChanged(f"{target.describe()} was changed by someone else since our read")
        self.world.check_refire(target, image)
        self.workloads[key][target.container] = image
        self.world.reached(target, image)
        self.versions[key] += 1
        return DriverResult(True, previous, "IN_PROGRESS", None, str(self.versions[key]))


class World(PolicyWorld):
    def __init__(self, seed: int, *, faults: Iterable[str] = FAULT_KINDS, drop: float = 0.1, dup: float = 0.15,
                 fault_rate: float = 0.1, races: float = 0.1, bad: float = 0.05, target_races: float = 0.3,
                 crashes: float = 0.2, alias_races: float = 0.5, index_lag: float = 0.3) -> None:
        self.faults = frozenset(faults)
        unknown = self.faults - FAULT_KINDS
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; known: {sorted(FAULT_KINDS)}")
        self.rng = random.Random(seed)
        self.seed = seed
        self.drop, self.dup = drop, dup
        self.target_races = target_races if "shared_targets" in self.faults else 0.0
        self.crashes = crashes if "crash_after_apply" in self.faults else 0.0
        self.alias_races = alias_races if "alias_race" in self.faults else 0.0
        self.clock = Clock()
        self.store = OutboxStore(self.rng, races, self.clock)
        self.store.index_lag = index_lag if "index_lag" in self.faults else 0.0
        self.registry = FlakyRegistry(self.rng, fault_rate)
        self.registry.now = lambda: self.clock.now
        if "foreign_repo" in self.faults:
            self.registry.foreign.add(FOREIGN)
        self.bad_digests: set[str] = set()
        self.bad_rate = bad
        self.ecs = FlakyEcs(self, fault_rate)
        self.eks = FlakyEks(self, fault_rate)
        self.queue = ListQueue()
        self.policies_on = "policies_gates" in self.faults
        self.streams = ImageStreams(self.store, self.registry, {"ecs": self.ecs, "eks": self.eks}, self.queue,
                                    clock=self.clock, sleep=self._sleep,
                                    gate_clock=ModelGateClock(self) if self.policies_on else None)
        self.store.racer = lambda st: self.streams.observe(st, cause="push")
        self.store.lease_racer = self._lease_race
        self.registry.retag_racer = self._alias_race
        self.events: list[tuple[str, Any]] = []  # pending deliveries: ("ecr", EcrEvent) | ("rollout", args)
        self.fires: list[list[Any]] = []  # the fire queue: [(stream tag, trigger id, digest), receives]
        self.counter = 0
        self.services = [("prod", f"svc{i}") for i in range(4)]
        for key in self.services:
            self.ecs.images[key] = {"app": "nginx:latest", "sidecar": "envoy:1", "worker": "busybox:1"}
        self.workloads = [("k8s", "default", "Deployment", name) for name in ("web", "api")]
        for key in self.workloads:
            self.eks.workloads[key] = {"app": "nginx:latest", "sidecar": "envoy:1", "worker": "busybox:1"}
            self.eks.versions[key] = 1
        self.paused_images: dict[str, str] = {}  # trigger id -> image its target must keep while paused
        self.explicit: set[str] = set()  # trigger ids a person is deploying or rolling back right now
        self.unsettled: set[str] = set()  # paused by a rollback that failed while a write was in flight
        self.failed_known: dict[tuple[str, str], int] = {}  # (trigger, digest) -> head generation when FAILED
        self._failed_seen: set[tuple[str, str, str | None]] = set()
        self.made: list[tuple[str, str, str, str]] = []  # deployments by fires: (trigger id, container, image, id)
        self.added_at: dict[str, int] = {}  # trigger id -> len(made) when it was (re-)registered
        self.foreign_failed: set[str] = set()
        self._alias_raced: tuple[str, str, str] | None = None
        self._first_try = False
        self._from_queue = False
        self._racing = False
        self.reconciling = False
        self.races_left = MAX_RACES_PER_STEP
        self.violations: list[str] = []
        self.store.violations = self.violations
        self.log: list[str] = []
        self.ran = {}  # target -> [(when it got an image, digest)] (the policies_gates part reads it)
        self.held_at = {}  # policy tag a person rolled back -> where it must stay (ditto)
        if self.policies_on:
            self._init_policies()
            self.registry.retag_watch = self.retagged

    # ---------------------------------------------------------------------------------------- world

    def _sleep(self, seconds: float) -> None:
        """A person's call waiting for a busy target: time passes in the model, not on the machine."""
        self.clock.now += timedelta(seconds=seconds)

    def _emit(self, action: str, stream: str, digest: str | None, tag: str | None) -> EcrEvent:
        self.counter += 1
        event = EcrEvent(f"e{self.counter}", action, stream, digest, tag, "SUCCESS")
        self.events.append(("ecr", event))
        return event

    def new_digest(self) -> str:
        self.counter += 1
        digest = f"sha256:{self.rng.getrandbits(256):064x}"
        if self.rng.random() < self.bad_rate:
            self.bad_digests.add(digest)
        return digest

    def known_digests(self, stream: str) -> list[str]:
        return sorted(self.registry.images.get(stream, set()))

    def _trigger_on(self, target: Target) -> Trigger | None:
        return next((t for t in self.store.fresh_for_target(target_key(target)) if t.target == target), None)

    def deployed(self, target: EcsTarget, image: str, result: DriverResult) -> None:
        """UpdateService started deployment ``result.deployment``: its rollout goes its way (synchronously here:
        a bad digest trips the circuit breaker), its events go out, and the function may die before it records
        what it did."""
        deployment = result.deployment or ""
        trigger = self._trigger_on(target)
        if trigger is not None:
            self.made.append((trigger.id, target.container, image, deployment))
        bad = image.rsplit("@", 1)[-1] in self.bad_digests
        self.ecs.finish_rollout(target, bad)
        # an old-format service ARN names no cluster: the event then reaches us keyed by the service name alone
        args = (f"ecs:*/{target.service}" if self.rng.random() < 0.2 else target_key(target), deployment)
        if "rollout_reorder" in self.faults:
            self.events.append(("rollout", (*args, "IN_PROGRESS", "ECS deployment in progress.")))
            self.events.append(("rollout", (*args, "FAILED", "circuit breaker")) if bad else
                               ("rollout", (*args, "COMPLETED", "ECS deployment completed.")))
        elif bad:
            self.events.append(("rollout", (*args, "FAILED", "circuit breaker")))
        if trigger is not None and self._from_queue and self.rng.random() < self.crashes:
            self.store.crash_on_save = trigger.id  # (an admin call that dies is the caller's to look at)

    # ------------------------------------------------------------------------------------- racers

    def during_check(self, target: Target) -> None:
        """A reconciler run reads a target: with ``index_lag`` (a long run over a lagging listing), a push to the
        tag of the trigger being checked is ingested and fired meanwhile, so the record the run listed is stale."""
        if not self.reconciling or self._racing or self.rng.random() >= self.store.index_lag:
            return
        trigger = self._trigger_on(target)
        if trigger is None:
            return
        self._racing = True
        try:
            stream, tag = trigger.stream_tag
            digest = self.new_digest()
            self.registry.set(stream, tag, digest)
            if (stream, tag) in self.held_at:
                self.held_at[(stream, tag)] = digest  # a person pushed to a held policy tag: that is where it stays
            event = self._emit("PUSH", stream, digest, tag)
            self.events.remove(("ecr", event))
            self.log.append(f"during a reconciler check of {target.describe()}: push {stream}:{tag} {digest[:15]}")
            self._deliver("ecr", event)
            self.pump()
        finally:
            self._racing = False

    def race(self, target: Target, where: str) -> None:
        """Another writer of the same target resource gets in: a second deployer firing another trigger on it
        (its message is re-queued on a transient error, like SQS would), or a person rolling one target back."""
        if self._racing or not self.target_races:
            return
        key = target_key(target)
        queued = any(f[0][1] != "" and self._target_of(f[0][1]) in self._keys_of(key, target) for f in self.fires)
        # messages of several triggers on one resource in the queue at once go to parallel deployers
        if self.rng.random() < (0.8 if queued else self.target_races):
            self._race_on(key, target)

    def _target_of(self, trigger_id: str) -> Target | None:
        trigger = self.store.get_trigger(trigger_id)
        return trigger.target if trigger else None

    def _keys_of(self, key: str, target: Target) -> list[Target]:
        return [t.target for t in self.store.fresh_for_target(key) if t.target != target]

    def _lease_race(self, name: str) -> None:
        if self._racing or not self.target_races or self.rng.random() >= self.target_races:
            return
        self._race_on(name.removeprefix("target:"), None)

    def _race_on(self, key: str, target: Target | None) -> None:
        triggers = sorted(self.store.fresh_for_target(key), key=lambda t: t.id)
        if not triggers or self.races_left <= 0:
            return  # (a bounded number of rival writers per step: a rival's retry may meet a rival of its own)
        self.races_left -= 1
        self._racing = True
        try:
            others = [t for t in triggers if t.target != target]
            if others and self.rng.random() < 0.8:
                queued = [t for t in others if any(f[0][1] == t.id for f in self.fires)] or \
                    [t for t in others if not t.paused and self._behind(t)]
                rival = self.rng.choice(queued or others)  # a message another deployer is working on
                pending = next((f for f in self._visible() if f[0][1] == rival.id), None)
                if pending is not None:
                    self.fires.remove(pending)
                self.log.append(f"race {key}: fire {rival.id} ({where_of(target)})")
                self._fire_message(pending or [(rival.stream_tag, rival.id, ""), 0])
            else:
                rival = self.rng.choice(triggers)
                self.log.append(f"race {key}: rollback {rival.id} ({where_of(target)})")
                answer = self._admin({"action": "rollback", "trigger": rival.id})
                if not (answer and answer["ok"]):
                    # refused or failed while another write was in flight: whatever it left paused is not a
                    # settled human choice until that write is done (the next step)
                    self.unsettled.add(rival.id)
                    self.paused_images.pop(rival.id, None)
        finally:
            self._racing = False

    def _alias_race(self, stream: str, tag: str) -> None:
        """While an ingest is about to retag ``tag``, a push to the tag it tracks is ingested to the end."""
        if self._racing or not self.alias_races or stream not in REPOS or self._alias_raced:
            return  # two pushes at once, not a source moving faster than anyone can follow
        head = self.store.get_head(StreamTag(stream, tag))
        if head is None or not head.alias_of or self.rng.random() >= self.alias_races:
            return
        self._racing = True
        try:
            digest = self.new_digest()
            self.registry.set(stream, head.alias_of, digest)
            event = self._emit("PUSH", stream, digest, head.alias_of)
            self.log.append(f"race: push {stream}:{head.alias_of} {digest[:15]} ingested during a retag of {tag}")
            self.events.remove(("ecr", event))
            if self._deliver("ecr", event) and self._first_try:
                self._alias_raced = (stream, tag, head.alias_of)
        except ImageStreamsError as exc:
            self.log.append(f"race: that ingest failed {exc!r}")
        finally:
            self._racing = False

    # -------------------------------------------------------------------------------------- actions

    def step(self) -> None:
        self.unsettled.clear()
        self.races_left = MAX_RACES_PER_STEP
        self.store.snapshot_index()
        if self.policies_on and self.rng.random() < 0.35:
            self.policy_step()
            self.deliver_some()
            self.check_paused()
            self.check_held()
            return
        r = self.rng.random()
        stream, tag = self.rng.choice(REPOS), self.rng.choice(TAGS)
        ref = f"{stream}:{tag}"
        if r < 0.30:  # docker push
            if "foreign_repo" in self.faults and self.rng.random() < 0.15:
                stream = FOREIGN
            digest = self.new_digest() if self.rng.random() < 0.8 or not self.known_digests(stream) else \
                self.rng.choice(self.known_digests(stream))
            self.registry.set(stream, tag, digest)
            self._emit("PUSH", stream, digest, tag)
            self.log.append(f"push {stream}:{tag} {digest[:15]}")
        elif r < 0.34:  # push by digest (no tag)
            digest = self.new_digest()
            self.registry.push(stream, digest, pushed_at=self.clock.now)
            self._emit("PUSH", stream, digest, None)
        elif r < 0.40:  # delete the tag in ECR
            if (stream, tag) in self.registry.tag_map:
                digest = self.registry.tag_map[(stream, tag)]
                self.registry.remove(stream, tag)
                self._emit("DELETE", stream, digest, tag)
                self.log.append(f"delete {ref}")
        elif r < 0.50:
            self._admin({"action": "tag", "source": f"{stream}:{self.rng.choice(TAGS)}", "target": ref,
                         "alias": self.rng.random() < 0.4})
        elif r < 0.54:
            self._admin({"action": "untag", "target": ref, "keep_in_registry": self.rng.random() < 0.3})
        elif r < 0.60:
            self._admin({"action": "rollback", "target": ref})
        elif r < 0.70:
            if "shared_targets" in self.faults and self.rng.random() < 0.5:
                ref = f"{REPOS[0]}:{TAGS[0]}"  # containers built together follow one tag: their fires coincide
            self._admin({"action": "trigger.add", "from": ref, "target": self._new_target()})
        elif r < 0.88:
            triggers = self.store.listed()
            if triggers:
                trigger = self.rng.choice(triggers)
                action = self.rng.choice(["trigger.pause", "trigger.resume", "rollback", "deploy"])
                command = {"action": action, "id": trigger.id} if action != "rollback" else {
                    "action": "rollback", "trigger": trigger.id}
                self._admin(command)
        elif r < 0.90:
            self.reconcile()
        elif r < 0.94:
            self.prune()
        else:
            self.deliver_some()
        self.deliver_some()
        self.check_paused()
        if self.policies_on:
            self.check_held()

    def _new_target(self) -> dict[str, str]:
        if "shared_targets" not in self.faults:
            service = self.rng.choice(self.services)
            return {"type": "ecs", "cluster": service[0], "service": service[1], "container": "app"}
        container = self.rng.choice(CONTAINERS)
        if self.rng.random() < 0.25:
            cluster, namespace, kind, name = self.rng.choice(self.workloads)
            return {"type": "eks", "cluster": cluster, "namespace": namespace, "kind": kind, "name": name,
                    "container": container}
        service = self.rng.choice(self.services[:2])  # few services, so triggers share them
        return {"type": "ecs", "cluster": service[0], "service": service[1], "container": container}

    def _admin(self, command: dict[str, Any]) -> dict[str, Any] | None:
        before, self.explicit = self.explicit, set(self.explicit)
        from_queue, self._from_queue = self._from_queue, False
        if command["action"] in ("deploy", "rollback", "trigger.resume") and ("id" in command or "trigger" in command):
            self.explicit.add(command.get("id") or command["trigger"])  # a person asks for this target's image
        existing = {t.id for t in self.store.fresh_triggers()}
        self._reopen(command)
        try:
            answer = dispatch(self.streams, {**command, "actor": "sim"})
        except (Throttled, TransientTargetError, ConcurrentUpdate, Crash) as exc:
            self.log.append(f"admin {command['action']} fault {exc!r}")  # the caller sees the error, may retry
            answer = None
        finally:
            self.explicit, self._from_queue = before, from_queue
        for trigger in self.store.fresh_triggers():
            if trigger.id not in existing:  # registered now: a new trigger, with a fresh record
                self.added_at[trigger.id] = len(self.made)
                self.failed_known = {k: g for k, g in self.failed_known.items() if k[0] != trigger.id}
        if answer and answer["ok"]:
            self.log.append(f"admin {command}")
            if command["action"] == "tag":  # ECR emits a PUSH for each retagged tag
                targets = command["target"] if isinstance(command["target"], list) else [command["target"]]
                for target in targets:
                    stream, _, tag = target.partition(":")
                    self._emit("PUSH", stream, self.registry.tag_map.get((stream, tag)), tag)
            if command["action"] == "untag" and not command.get("keep_in_registry"):
                stream, _, tag = command["target"].partition(":")
                self._emit("DELETE", stream, None, tag)
        elif answer:
            self.log.append(f"admin {command} -> {answer['error']['type']}")
        self._track_paused(moved={command.get("id") or command.get("trigger")}
                           if command["action"] in ("deploy", "rollback") else set())
        return answer

    def _reopen(self, command: dict[str, Any]) -> None:
        """A person asks for the head: ``deploy`` always, ``trigger.resume`` when the trigger does not record that
        the head's rollout FAILED (e.g. a target rollback since replaced that record). The head's digest may go out
        again for that trigger — also by the queued retry of the command, or the reconciler's retry of it."""
        trigger = self.store.get_trigger(command.get("id") or "")
        if command["action"] not in ("deploy", "trigger.resume") or trigger is None:
            return
        head = self.store.get_head(trigger.stream_tag)
        if head is None or head.deleted:
            return
        if command["action"] == "deploy" or not (trigger.rollout_state == "FAILED"
                                                 and trigger.last_triggered_digest == head.digest):
            self.failed_known.pop((trigger.id, head.digest), None)

    def _track_paused(self, moved: set[Any]) -> None:
        """After each admin command (the only explicit moves of a paused target: deploy, target rollback), note
        what every paused target runs: nothing else may change it until it is resumed."""
        self.check_paused(skip=moved)
        self.paused_images = {t.id: self._image(t) for t in self.store.listed()
                              if t.paused and t.id not in self.unsettled}

    def _behind(self, trigger: Trigger) -> bool:
        head = self.store.get_head(trigger.stream_tag)
        return head is not None and not head.deleted and self._image(trigger) != head.pinned

    def _image(self, trigger: Trigger) -> str:
        target = trigger.target
        if isinstance(target, EksTarget):
            return self.eks.workloads[FlakyEks._key(target)][target.container]
        return self.ecs.images[(target.cluster, target.service)][target.container]

    def check_paused(self, skip: set[Any] = frozenset()) -> None:  # type: ignore[assignment]
        for trigger in self.store.listed():
            if trigger.paused and trigger.id in self.paused_images and trigger.id not in skip and \
                    self._image(trigger) != self.paused_images[trigger.id]:
                self.violations.append(f"[paused] paused trigger {trigger.id} ({trigger.target.describe()}) moved: "
                                       f"{self.paused_images[trigger.id][-15:]} -> {self._image(trigger)[-15:]}")
                self.paused_images[trigger.id] = self._image(trigger)  # report each move once

    def check_refire(self, target: Target, image: str) -> None:
        """Called right before a target write: a digest whose rollout FAILED (as recorded on the trigger) must not
        go out again automatically for that trigger until its head moves (a person may deploy it)."""
        trigger = self._trigger_on(target)
        digest = image.rsplit("@", 1)[-1]
        if trigger is not None and trigger.id in self.explicit:
            self.failed_known.pop((trigger.id, digest), None)  # a person deployed it again: re-opened
        if trigger is None or trigger.id in self.explicit:
            return
        generation = self.failed_known.get((trigger.id, digest))
        head = self.store.get_head(trigger.stream_tag)
        if generation is not None and head is not None and head.generation == generation:
            self.violations.append(f"[redeploy] {digest[:15]} went out again to {target.describe()} (trigger "
                                   f"{trigger.id}) after its rollout FAILED, with no head move or deploy")

    def note_failed(self) -> None:
        """Remember when each trigger first recorded a FAILED rollout for a digest (and at which head)."""
        for trigger in self.store.fresh_triggers():
            if trigger.rollout_state != "FAILED" or not trigger.last_triggered_digest:
                continue
            seen = (trigger.id, trigger.last_triggered_digest, trigger.deployment)
            if seen in self._failed_seen:
                continue
            self._failed_seen.add(seen)
            head = self.store.get_head(trigger.stream_tag)
            if head is not None:
                self.failed_known[(trigger.id, trigger.last_triggered_digest)] = head.generation

    # ------------------------------------------------------------------------------------- delivery

    def deliver_some(self, *, all_: bool = False, lossy: bool = True) -> None:
        rounds = len(self.events) if all_ else self.rng.randint(0, 3)
        for _ in range(rounds):
            if not self.events:
                break
            kind, payload = self.events.pop(self.rng.randrange(len(self.events)))  # any order
            if lossy and kind != "clock" and self.rng.random() < self.drop:
                continue  # best-effort delivery: lost (an SQS message is not: it is received again)
            if lossy and self.rng.random() < self.dup:
                self.events.append((kind, payload))  # delivered again later
            self._deliver(kind, payload)
        self.pump(lossy=lossy)

    def _deliver(self, kind: str, payload: Any) -> bool:
        """One event, as an async invoke: first try + 2 retries, then the DLQ (lost to us). True if handled."""
        self._alias_raced = None
        for attempt in range(3):
            try:
                if kind == "ecr":
                    handle_ecr_event(self.streams, payload)
                    if self._alias_raced and attempt == 0:  # a retry may leave repairs to the reconciler
                        self._check_alias_race(*self._alias_raced)
                    self._alias_raced = None
                    self._first_try = attempt == 0
                elif kind in ("gate", "clock"):
                    self.deliver_gate(kind, payload)
                else:
                    self.streams.rollout_event(*payload)
                    self.note_failed()
                return True
            except (Throttled, ConcurrentUpdate, Crash):
                self.store.dead = False
                continue
            except Exception as exc:
                if kind == "ecr" and payload.stream in self.registry.foreign:
                    if payload.id not in self.foreign_failed:
                        self.foreign_failed.add(payload.id)
                        self.violations.append(f"[foreign] ingest of a push to {payload.stream}:{payload.tag} "
                                               f"failed the invocation: {exc!r}"[:200])
                    return False
                raise
        return False

    def _check_alias_race(self, stream: str, alias: str, source: str) -> None:
        """Both ingests are done: the alias must have ended where its source is, in the table and in ECR."""
        self._alias_raced = None
        heads = {t: self.store.get_head(StreamTag(stream, t)) for t in (alias, source)}
        if any(h is None or h.deleted for h in heads.values()) or heads[alias].alias_of != source:
            return
        ecr = self.registry.tag_map.get((stream, alias)), self.registry.tag_map.get((stream, source))
        if heads[alias].digest != heads[source].digest or ecr[0] != ecr[1]:
            self.violations.append(f"[alias] after two concurrent ingests {stream}:{alias} is "
                                   f"{heads[alias].digest[:15]} (ECR {str(ecr[0])[:15]}), its source {source} is "
                                   f"{heads[source].digest[:15]} (ECR {str(ecr[1])[:15]})")

    def _fire_message(self, message: list[Any]) -> None:
        """One receive of a fire message by the deployer; on a transient error SQS delivers it again later."""
        (stream_tag, trigger_id, _digest), receives = message
        if receives and not self._racing:  # (a rival deployer runs during another fire: no time passes)
            self.clock.now += VISIBILITY_TIMEOUT  # received again once the failed receive's visibility timed out
        from_queue, self._from_queue = self._from_queue, True
        try:
            self.streams.fire_by_id(stream_tag, trigger_id)
        except (TransientTargetError, Throttled, Crash):
            self.store.dead = False  # the next invocation is a fresh process
            if receives + 1 < MAX_RECEIVES:
                self.fires.append([message[0], receives + 1])
        finally:
            self._from_queue = from_queue

    def pump(self, *, lossy: bool = True) -> None:
        """The table stream → fan-out, and the FIFO queue → deployer (5 receives, then the DLQ)."""
        while self.store.outbox or self.queue.items or self._visible():
            while self.store.outbox:
                self._fan_out(self.store.outbox.pop(0))
            self.fires += [[item, 0] for item in self.queue.items]
            self.queue.items = []
            while visible := self._visible():
                self.fires.remove(visible[0])
                self._fire_message(visible[0])
            self.check_paused()
        self.note_failed()

    def _fan_out(self, head: Head) -> None:
        """One change of the table's stream through the fan-out; a fault (its policy moves call ECR) fails the batch,
        which the stream delivers again (a few times here; then it is left to the reconciler)."""
        for _ in range(3):
            try:
                self.streams.head_moved(head)
                return
            except (Throttled, ConcurrentUpdate, Crash):
                self.store.dead = False

    def _visible(self) -> list[list[Any]]:
        """The fire messages a deployer may receive now. Inside another call (a rival deployer, a push during a
        reconciler run) no time passes, so a message received before is not visible again yet: it waits for its
        visibility timeout, i.e. for the outer pump."""
        return [f for f in self.fires if not self._racing or f[1] == 0]

    def prune(self) -> None:
        """A person prunes with small limits: a dry run, then the same with ``confirm``."""
        keep, young = self.rng.choice((1, 2, 3)), self.rng.choice((0, 1, 10))
        command: dict[str, Any] = {"action": "prune", "keepTagRevisions": keep, "keepYoungerThanMinutes": young}
        if self.rng.random() < 0.5:
            command["stream"] = self.rng.choice(REPOS)
        before = self._images()
        self._admin(dict(command))
        if self._images() != before:
            self.violations.append(f"[prune] a dry run deleted {sorted(before - self._images())}")
            return
        protected = self._prune_protected(keep)
        self._admin({**command, "confirm": True})
        for stream, digest in sorted(before - self._images()):
            why = protected.get((stream, digest))
            if why:
                self.violations.append(f"[prune] deleted {stream}@{digest[:15]}, which {why}")

    def _images(self) -> set[tuple[str, str]]:
        return {(stream, d) for stream, digests in self.registry.images.items() for d in digests}

    def _prune_protected(self, keep: int) -> dict[tuple[str, str], str]:
        """(repository, digest) -> why a prune must keep it, from the world's truth at this moment."""
        why: dict[tuple[str, str], str] = {}
        for trigger in self.store.fresh_triggers():
            stream = trigger.stream_tag.stream
            name, _, running = self._image(trigger).partition("@")
            if running and name.endswith("/" + stream):
                why[(stream, running)] = f"trigger {trigger.id}'s target runs"
            for received in (trigger.last_triggered_digest, (trigger.deployed_image or "").partition("@")[2]):
                if received:
                    why.setdefault((stream, received), f"trigger {trigger.id} last received")
        for stream in REPOS:
            for head in self.store.heads(stream):
                why.setdefault((stream, head.digest), f"is the head of {head.stream_tag.tag}")
                newest: list[str] = []
                for entry in self.store.history(head.stream_tag, 1000):
                    if entry.digest not in newest:
                        newest.append(entry.digest)
                for digest in newest[:keep]:
                    why.setdefault((stream, digest), f"is among the newest {keep} revisions of {head.stream_tag.tag}")
        return why

    def reconcile(self) -> dict[str, Any]:
        self.reconciling = True
        try:
            report = Reconciler(self.streams, self.registry, self.store).run()
        finally:
            self.reconciling = False
        self.note_failed()
        self.pump()
        return report

    # ----------------------------------------------------------------------------------- invariants

    def quiesce_and_check(self) -> list[str]:
        self.deliver_some(all_=True)  # the stragglers, still lossy
        self.registry.faults_on = self.ecs.faults_on = self.eks.faults_on = False
        self.store.race_rate = self.store.index_lag = self.target_races = self.crashes = self.alias_races = 0.0
        self.store.crash_on_save = None
        self.clock.now += timedelta(days=1)  # every backoff has passed
        for _ in range(2):  # twice: what one run repairs or records may need the next one
            report = self.reconcile()
            self.deliver_some(all_=True, lossy=False)
            if report["errors"]:
                self.violations.append(f"[reconciler] errors: {report['errors']}")
        for _ in range(3 if self.policies_on else 0):  # soaks and timeouts run out; the gate clock fires
            self.clock.now += timedelta(days=1)
            self.deliver_some(all_=True, lossy=False)
            report = self.reconcile()
            self.deliver_some(all_=True, lossy=False)
            if report["errors"]:
                self.violations.append(f"[reconciler] errors: {report['errors']}")
        if self.policies_on:
            self.check_held(final=True)
            self.check_policies()
            self.check_stuck()
        self._check_tags()
        self._check_aliases()
        self._check_targets()
        self._check_deployments()
        self._check_history()
        return self.violations

    def _check_tags(self) -> None:
        heads = {h.stream_tag: h for s in REPOS for h in self.store.heads(s)}
        for (stream, tag), digest in self.registry.tag_map.items():
            if stream in self.registry.foreign:
                continue
            head = heads.get(StreamTag(stream, tag))
            if head is None or head.digest != digest or (head.deleted and not head.kept_in_registry):
                self.violations.append(f"[tags] {stream}:{tag}: ECR has {digest[:15]}, stream has "
                                       f"{head and (head.digest[:15], 'deleted' if head.deleted else 'live')}")
        for st, head in heads.items():
            if not head.deleted and (st.stream, st.tag) not in self.registry.tag_map:
                self.violations.append(f"[tags] {st}: live in the stream, gone from ECR")

    def _check_aliases(self) -> None:
        """A live alias points where its live source points, in the table and in ECR."""
        for stream in REPOS:
            heads = {h.stream_tag.tag: h for h in self.store.heads(stream)}
            for tag, head in heads.items():
                source = heads.get(head.alias_of) if head.alias_of else None
                if head.deleted or source is None or source.deleted:
                    continue
                # a person may push to (or roll back) the alias itself: then it differs until the source moves
                # again. Left behind is: the source moved after the alias did, or the alias flow itself put a
                # digest that is not the source's.
                behind = head.at < source.at or head.cause == "alias"
                ecr = self.registry.tag_map.get((stream, tag)), self.registry.tag_map.get((stream, head.alias_of))
                if behind and (head.digest != source.digest or ecr[0] != ecr[1]):
                    self.violations.append(f"[alias] {stream}:{tag} tracks {head.alias_of} but is "
                                           f"{head.digest[:15]} (ECR {str(ecr[0])[:15]}), source is "
                                           f"{source.digest[:15]} (ECR {str(ecr[1])[:15]})")

    def _check_targets(self) -> None:
        """Every container of every target (shared ones included) runs its own trigger's head, unless the trigger
        is paused, its tag is gone, or the rollout of the head FAILED."""
        for trigger in self.store.listed():
            head = self.store.get_head(trigger.stream_tag)
            if trigger.paused or head is None or head.deleted or trigger.rollout_state == "FAILED":
                continue
            if self.policies_on and self.gated_now(trigger, head.digest):
                continue  # held by its gates: its target keeps what it runs
            if isinstance(trigger.target, EcsTarget) and self.ecs.outcome(
                    (trigger.target.cluster, trigger.target.service), trigger.deployment) == "FAILED":
                # its FAILED event was lost, and the circuit breaker's rollback took the deployment off the
                # service: only the deployment history still tells
                self.violations.append(f"[rollout] trigger {trigger.id} ({trigger.target.describe()}) never learnt "
                                       f"that its deployment {trigger.deployment} FAILED (status {trigger.status}, "
                                       f"rollout {trigger.rollout_state}, drift {bool(trigger.drift)})")
                continue
            expected = pinned_ref(head.registry, head.stream_tag.stream, head.digest)
            if self._image(trigger) != expected:
                shared = len(self.store.fresh_for_target(target_key(trigger.target))) > 1
                self.violations.append(f"[target] trigger {trigger.id} ({trigger.stream_tag} -> "
                                       f"{trigger.target.describe()}{', shared' if shared else ''}) runs "
                                       f"{self._image(trigger)[-15:]}, head is {head.digest[:15]} "
                                       f"(status {trigger.status}, drift {bool(trigger.drift)})")

    def _check_deployments(self) -> None:
        """A trigger whose image runs names a deployment whose revision has that image in the trigger's container:
        the one whose events tell how it went (the one its fire started, or one running the image it adopted after
        finding it in place, e.g. a clone by another container's fire, or the circuit breaker's rollback to it). A
        deployment from before, with another image there, would leave the trigger deaf to its own rollout. (A fire
        that died and was never received again cannot have recorded anything.)"""
        for trigger in self.store.fresh_triggers():
            if not isinstance(trigger.target, EcsTarget) or not trigger.deployed_image or \
                    self._image(trigger) != trigger.deployed_image:
                continue
            mine = [m for m in self.made[self.added_at.get(trigger.id, 0):]
                    if m[0] == trigger.id and m[1] == trigger.target.container and m[2] == trigger.deployed_image]
            history = self.ecs.past.get((trigger.target.cluster, trigger.target.service), [])
            runs_it = any(e["id"] == trigger.deployment and
                          e["images"].get(trigger.target.container) == trigger.deployed_image for e in history)
            if mine and not runs_it:
                self.violations.append(f"[deployment] trigger {trigger.id} records deployment {trigger.deployment}, "
                                       f"whose revision does not run {trigger.deployed_image[-15:]} (that went out "
                                       f"with {mine[-1][3]})")

    def _check_history(self) -> None:
        for stream in REPOS:
            for head in self.store.heads(stream):
                entries = self.store.history(head.stream_tag, 1000)
                generations = [e.generation for e in entries]
                if generations != list(range(head.generation, head.generation - len(entries), -1)):
                    self.violations.append(f"[history] {head.stream_tag}: generations not contiguous {generations}")
                for newer, older in zip(entries, entries[1:], strict=False):
                    if newer.cause != "delete" and older.cause != "delete" and newer.digest == older.digest:
                        self.violations.append(f"[history] {head.stream_tag}: two consecutive entries for "
                                               f"{newer.digest[:15]} (generations {older.generation}, "
                                               f"{newer.generation})")


def where_of(target: Target | None) -> str:
    return "before the lease" if target is None else f"during a write of {target.describe()}"


def run_world(world: World, steps: int = 60) -> list[str]:
    for _ in range(steps):
        try:
            world.step()
        except ImageStreamsError as exc:
            world.log.append(f"error {exc!r}")
    return world.quiesce_and_check()


def run_scenario(seed: int, steps: int = 60, faults: Iterable[str] = FAULT_KINDS, **rates: float) -> list[str]:
    return run_world(World(seed, faults=faults, **rates), steps)
