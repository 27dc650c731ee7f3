"""Randomized: pushes, retags, rollbacks (of tags and targets), fires, out-of-band target changes and prunes
interleaved on the in-memory ports. Invariants: a prune never deletes what a target runs, what a trigger last
received, a tag's head or kept revision, or a young image; and no target ever runs a digest ECR no longer has."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.model import StreamTag, pinned_ref, runs_digest
from imagestreams.prune import history_protected
from imagestreams.services import ImageStreams
from tests.conftest import digest

S = "team/web"
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
TAGS = ("latest", "prod", "canary")
SERVICES = {"a": "latest", "b": "prod", "c": "latest"}


class Model:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.store, self.registry, self.ecs = MemoryStore(), MemoryRegistry(REG), MemoryEcs()
        self.streams = ImageStreams(self.store, self.registry, {"ecs": self.ecs}, None, clock=lambda: self.now)
        self.next_image = 1
        self.triggers: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.prunes = 0
        for name in SERVICES:  # every service has its trigger from the start: prune knows targets by triggers
            self.ecs.images[("prod", name)] = {"app": "nginx:latest"}
            self.add_trigger(name)

    def new_image(self) -> str:
        d = digest(self.next_image)
        self.next_image += 1
        self.registry.push(S, d, pushed_at=self.now, size=self.rng.randint(1, 10) * 1000)
        return d

    def running(self) -> dict[str, str | None]:
        return {name: runs_digest(self.ecs.images[("prod", name)]["app"], REG, S) for name in SERVICES}

    def present(self) -> set[str]:
        return set(self.registry.images.get(S, set()))

    # ------------------------------------------------------------------ steps

    def push(self) -> None:
        tag = self.rng.choice(TAGS)
        self.registry.set(S, tag, self.new_image())
        self.streams.sync(StreamTag(S, tag))

    def push_untagged(self) -> None:
        self.new_image()

    def retag(self) -> None:
        source, target = self.rng.sample(TAGS, 2)
        if self.store.get_head(StreamTag(S, source)) is not None:
            dispatch(self.streams, {"action": "tag", "source": f"{S}:{source}", "target": f"{S}:{target}"})

    def rollback_tag(self) -> None:
        dispatch(self.streams, {"action": "rollback", "target": f"{S}:{self.rng.choice(TAGS)}",
                                "steps": self.rng.randint(1, 4)})

    def add_trigger(self, name: str) -> None:
        if name not in self.triggers:
            answer = dispatch(self.streams, {"action": "trigger.add", "from": f"{S}:{SERVICES[name]}",
                                             "target": {"type": "ecs", "cluster": "prod", "service": name,
                                                        "container": "app"}})
            assert answer["ok"], answer
            self.triggers[name] = answer["result"]["id"]

    def fire(self) -> None:
        if self.triggers:
            dispatch(self.streams, {"action": "deploy", "id": self.rng.choice(list(self.triggers.values()))})

    def rollback_target(self) -> None:
        if self.triggers:
            dispatch(self.streams, {"action": "rollback", "trigger": self.rng.choice(list(self.triggers.values()))})

    def out_of_band(self) -> None:
        """Someone sets a service to an older image that still exists (never to one that is gone)."""
        name = self.rng.choice(list(SERVICES))
        choices = sorted(self.present())
        if choices:
            self.ecs.images[("prod", name)]["app"] = pinned_ref(REG, S, self.rng.choice(choices))

    def prune(self) -> None:
        keep = self.rng.randint(0, 3)
        younger = self.rng.choice([0, 30, 60])
        confirm = self.rng.random() < 0.7
        protected = self.protected(keep, younger)
        before = self.present()
        answer = dispatch(self.streams, {"action": "prune", "stream": S, "keepTagRevisions": keep,
                                         "keepYoungerThanMinutes": younger, "confirm": confirm})
        assert answer["ok"], answer
        result = answer["result"]
        candidates = {c["digest"] for c in result["candidates"]}
        gone = {c["digest"] for c in result["deleted"]}
        assert not candidates & protected, (candidates & protected, keep)
        assert gone <= candidates and gone == before - self.present()
        if not confirm:
            assert not gone
        self.deleted |= gone
        self.prunes += 1

    def protected(self, keep: int, younger: int) -> set[str]:
        """What must survive, computed from the fakes' own state (not through prune's code paths)."""
        kept = {d for d in self.running().values() if d}
        for trigger in self.store.triggers.values():
            kept.add(trigger.last_triggered_digest)
        heads = self.store.heads(S)
        kept |= {h.digest for h in heads}
        kept |= {d for (s, _), d in self.registry.tag_map.items() if s == S}
        kept |= history_protected(self.store.histories(S), keep)
        cutoff = self.now - timedelta(minutes=younger)
        kept |= {d for (s, d), image in self.registry.image_details.items()
                 if s == S and image.pushed_at is not None and image.pushed_at > cutoff}
        return kept

    def check(self) -> None:
        present = self.present()
        for name, running in self.running().items():
            assert running is None or running in present, f"service {name} runs {running}, which ECR lost"

    def step(self) -> None:
        self.now += timedelta(minutes=self.rng.choice([1, 5, 20, 45, 90]))
        action = self.rng.choices(
            [self.push, self.push_untagged, self.retag, self.rollback_tag, self.fire, self.rollback_target,
             self.out_of_band, self.prune],
            weights=[6, 2, 2, 2, 3, 2, 1, 3])[0]
        action()
        self.check()


@pytest.mark.parametrize("seed", range(40))
def test_prune_never_deletes_what_a_target_runs_or_a_protected_digest(seed):
    model = Model(random.Random(seed))
    for _ in range(120):
        model.step()
    model.now += timedelta(days=1)
    model.prune()
    model.check()
    assert model.prunes >= 2


def test_the_random_walk_does_prune_something():
    """The invariant above is not vacuous: across seeds, prunes delete images."""
    deleted = 0
    for seed in range(10):
        model = Model(random.Random(seed))
        for _ in range(120):
            model.step()
        deleted += len(model.deleted)
    assert deleted > 20


def test_the_invariant_catches_a_prune_that_does_not_read_targets(monkeypatch):
    """Without the live read of targets (only the table), some walk deletes what a target runs."""
    from imagestreams import prune as prune_mod

    monkeypatch.setattr(prune_mod, "running_now", lambda streams, triggers: set())
    caught = 0
    for seed in range(40):
        model = Model(random.Random(seed))
        try:
            for _ in range(120):
                model.step()
        except AssertionError:
            caught += 1
    assert caught > 0
