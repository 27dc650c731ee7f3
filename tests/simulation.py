"""Randomized model test: a seeded world of pushes, retags, deletes, aliases, triggers and rollbacks, with ECR events
duplicated, reordered, delayed and dropped, and injected faults (throttling, 5xx, conditional-check races, rollouts
that fail and are rolled back by the circuit breaker). After quiescence plus one reconciler run, the invariants of
DESIGN §3 must hold. Reproducible by seed: ``python bench/soak.py --seed N -v``.

It drives the real domain (ImageStreams, ingest, admin dispatch, Reconciler) on in-memory ports that keep the
adapters' contracts; the adapters themselves are covered by the integration tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.errors import ConcurrentUpdate, ImageStreamsError, TransientTargetError
from imagestreams.events import EcrEvent
from imagestreams.ingest import handle_ecr_event
from imagestreams.model import EcsTarget, Head, StreamTag, pinned_ref, target_key
from imagestreams.ports import DriverResult
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams

REPOS = ("team/web", "team/api")
TAGS = ("latest", "prod", "edge")
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class Throttled(Exception):
    """An AWS fault the event source retries (throttling, 5xx)."""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class OutboxStore(MemoryStore):
    """MemoryStore plus the table's change stream (head writes, in order) and injected write races."""

    def __init__(self, rng: random.Random, race_rate: float) -> None:
        super().__init__()
        self.outbox: list[Head] = []
        self.rng, self.race_rate = rng, race_rate
        self.racer: Callable[[StreamTag], None] | None = None
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


class FlakyRegistry(MemoryRegistry):
    def __init__(self, rng: random.Random, fault_rate: float) -> None:
        super().__init__(REG)
        self.rng, self.fault_rate, self.faults_on = rng, fault_rate, True

    def resolve(self, stream: str, tag: str) -> Any:
        if self.faults_on and self.rng.random() < self.fault_rate:
            raise Throttled("ThrottlingException: Rate exceeded")
        return super().resolve(stream, tag)


class FlakyEcs(MemoryEcs):
    """ECS with throttling, and digests whose rollout fails (the circuit breaker restores the previous image)."""

    def __init__(self, rng: random.Random, fault_rate: float, bad: set[str], on_failed: Callable[..., None]) -> None:
        super().__init__()
        self.rng, self.fault_rate, self.bad, self.on_failed, self.faults_on = rng, fault_rate, bad, on_failed, True

    def apply(self, target: EcsTarget, image: str) -> DriverResult:
        if self.faults_on and self.rng.random() < self.fault_rate:
            raise TransientTargetError("UpdateService: 500 InternalFailure")
        result = super().apply(target, image)
        if result.changed and image.rsplit("@", 1)[-1] in self.bad:
            self.images[(target.cluster, target.service)][target.container] = result.previous_image or ""
            self.rollouts[(target.cluster, target.service)] = "FAILED"
            self.on_failed(target, result.deployment)
        return result


class World:
    def __init__(self, seed: int, *, drop: float = 0.1, dup: float = 0.15, faults: float = 0.1,
                 races: float = 0.1, bad: float = 0.05) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.drop, self.dup = drop, dup
        self.clock = Clock()
        self.store = OutboxStore(self.rng, races)
        self.registry = FlakyRegistry(self.rng, faults)
        self.bad_digests: set[str] = set()
        self.bad_rate = bad
        self.ecs = FlakyEcs(self.rng, faults, self.bad_digests, self._rollout_failed)
        self.queue = ListQueue()
        self.streams = ImageStreams(self.store, self.registry, {"ecs": self.ecs}, self.queue, clock=self.clock)
        self.store.racer = lambda st: self.streams.observe(st, cause="push")
        self.events: list[tuple[str, Any]] = []  # pending deliveries: ("ecr", EcrEvent) | ("rollout", args)
        self.counter = 0
        self.services = [("prod", f"svc{i}") for i in range(4)]
        for key in self.services:
            self.ecs.images[key] = {"app": "nginx:latest", "sidecar": "envoy:1"}
        self.paused_images: dict[str, str] = {}  # trigger id -> image its target must keep while paused
        self.violations: list[str] = []
        self.log: list[str] = []

    # ---------------------------------------------------------------------------------------- world

    def _rollout_failed(self, target: EcsTarget, deployment: str | None) -> None:
        self.events.append(("rollout", (target_key(target), deployment or "", "FAILED", "circuit breaker")))

    def _emit(self, action: str, stream: str, digest: str | None, tag: str | None) -> None:
        self.counter += 1
        self.events.append(("ecr", EcrEvent(f"e{self.counter}", action, stream, digest, tag, "SUCCESS")))

    def new_digest(self) -> str:
        self.counter += 1
        digest = f"sha256:{self.rng.getrandbits(256):064x}"
        if self.rng.random() < self.bad_rate:
            self.bad_digests.add(digest)
        return digest

    def known_digests(self, stream: str) -> list[str]:
        return sorted(self.registry.images.get(stream, set()))

    # -------------------------------------------------------------------------------------- actions

    def step(self) -> None:
        r = self.rng.random()
        stream, tag = self.rng.choice(REPOS), self.rng.choice(TAGS)
        ref = f"{stream}:{tag}"
        if r < 0.30:  # docker push
            digest = self.new_digest() if self.rng.random() < 0.8 or not self.known_digests(stream) else \
                self.rng.choice(self.known_digests(stream))
            self.registry.set(stream, tag, digest)
            self._emit("PUSH", stream, digest, tag)
            self.log.append(f"push {ref} {digest[:15]}")
        elif r < 0.34:  # push by digest (no tag)
            self._emit("PUSH", stream, self.new_digest(), None)
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
            service = self.rng.choice(self.services)
            self._admin({"action": "trigger.add", "from": ref, "target": {
                "type": "ecs", "cluster": service[0], "service": service[1], "container": "app"}})
        elif r < 0.88:
            triggers = self.streams.list_triggers()
            if triggers:
                trigger = self.rng.choice(triggers)
                action = self.rng.choice(["trigger.pause", "trigger.resume", "rollback", "deploy"])
                command = {"action": action, "id": trigger.id} if action != "rollback" else {
                    "action": "rollback", "trigger": trigger.id}
                self._admin(command)
        else:
            self.deliver_some()
        self.deliver_some()
        self.check_paused()

    def _admin(self, command: dict[str, Any]) -> None:
        try:
            answer = dispatch(self.streams, {**command, "actor": "sim"})
        except (Throttled, TransientTargetError, ConcurrentUpdate) as exc:
            self.log.append(f"admin {command['action']} fault {exc}")  # the caller sees the error and may retry
            answer = None
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
        self._track_paused()

    def _track_paused(self) -> None:
        """After each admin command (the only explicit moves of a paused target: deploy, target rollback), note
        what every paused target runs: nothing else may change it until it is resumed."""
        self.paused_images = {t.id: self._image(t) for t in self.streams.list_triggers() if t.paused}

    def _image(self, trigger: Any) -> str:
        target = trigger.target
        return self.ecs.images[(target.cluster, target.service)][target.container]

    def check_paused(self) -> None:
        for trigger in self.streams.list_triggers():
            if trigger.paused and trigger.id in self.paused_images and \
                    self._image(trigger) != self.paused_images[trigger.id]:
                self.violations.append(f"paused trigger {trigger.id} moved: {self.paused_images[trigger.id]} -> "
                                       f"{self._image(trigger)}")

    # ------------------------------------------------------------------------------------- delivery

    def deliver_some(self, *, all_: bool = False, lossy: bool = True) -> None:
        rounds = len(self.events) if all_ else self.rng.randint(0, 3)
        for _ in range(rounds):
            if not self.events:
                break
            kind, payload = self.events.pop(self.rng.randrange(len(self.events)))  # any order
            if lossy and self.rng.random() < self.drop:
                continue  # best-effort delivery: lost
            if lossy and self.rng.random() < self.dup:
                self.events.append((kind, payload))  # delivered again later
            for _attempt in range(3):  # async invoke: first try + 2 retries, then the DLQ (lost to us)
                try:
                    if kind == "ecr":
                        handle_ecr_event(self.streams, payload)
                    else:
                        self.streams.rollout_event(*payload)
                    break
                except (Throttled, ConcurrentUpdate):
                    continue
        self.pump(lossy=lossy)

    def pump(self, *, lossy: bool = True) -> None:
        """The table stream → fan-out, and the FIFO queue → deployer (5 receives, then the DLQ)."""
        while self.store.outbox or self.queue.items:
            while self.store.outbox:
                self.streams.head_moved(self.store.outbox.pop(0))
            items, self.queue.items = self.queue.items, []
            for stream_tag, trigger_id, _digest in items:
                for _receive in range(5):
                    try:
                        self.streams.fire_by_id(stream_tag, trigger_id)
                        break
                    except (TransientTargetError, Throttled):
                        continue
            self.check_paused()

    # ----------------------------------------------------------------------------------- invariants

    def quiesce_and_check(self) -> list[str]:
        self.deliver_some(all_=True)  # the stragglers, still lossy
        self.registry.faults_on = self.ecs.faults_on = False
        self.store.race_rate = 0.0
        self.clock.now += timedelta(days=1)  # every backoff has passed
        report = Reconciler(self.streams, self.registry, self.store).run()
        self.pump(lossy=False)
        self.deliver_some(all_=True, lossy=False)
        if report["errors"]:
            self.violations.append(f"reconciler errors: {report['errors']}")
        self._check_tags()
        self._check_targets()
        self._check_history()
        return self.violations

    def _check_tags(self) -> None:
        heads = {h.stream_tag: h for s in REPOS for h in self.store.heads(s)}
        for (stream, tag), digest in self.registry.tag_map.items():
            head = heads.get(StreamTag(stream, tag))
            if head is None or head.digest != digest or (head.deleted and not head.kept_in_registry):
                self.violations.append(f"{stream}:{tag}: ECR has {digest[:15]}, stream has "
                                       f"{head and (head.digest[:15], 'deleted' if head.deleted else 'live')}")
        for st, head in heads.items():
            if not head.deleted and (st.stream, st.tag) not in self.registry.tag_map:
                self.violations.append(f"{st}: live in the stream, gone from ECR")

    def _check_targets(self) -> None:
        for trigger in self.streams.list_triggers():
            head = self.store.get_head(trigger.stream_tag)
            if trigger.paused or head is None or head.deleted or trigger.rollout_state == "FAILED":
                continue
            expected = pinned_ref(head.registry, head.stream_tag.stream, head.digest)
            if self._image(trigger) != expected:
                self.violations.append(f"trigger {trigger.id} ({trigger.stream_tag}) target runs "
                                       f"{self._image(trigger)[-15:]}, head is {head.digest[:15]}")

    def _check_history(self) -> None:
        for stream in REPOS:
            for head in self.store.heads(stream):
                entries = self.store.history(head.stream_tag, 1000)
                generations = [e.generation for e in entries]
                if generations != list(range(head.generation, head.generation - len(entries), -1)):
                    self.violations.append(f"{head.stream_tag}: generations not contiguous {generations}")
                for newer, older in zip(entries, entries[1:], strict=False):
                    if newer.cause != "delete" and older.cause != "delete" and newer.digest == older.digest:
                        self.violations.append(f"{head.stream_tag}: two consecutive entries for "
                                               f"{newer.digest[:15]} (generations {older.generation}, "
                                               f"{newer.generation})")


def run_scenario(seed: int, steps: int = 60) -> list[str]:
    world = World(seed)
    for _ in range(steps):
        try:
            world.step()
        except ImageStreamsError:
            pass
    return world.quiesce_and_check()
