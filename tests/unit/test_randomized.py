"""Randomized model test (tests/simulation.py): 200 seeded scenarios with every fault kind in CI, plus each fault
kind on its own; `make soak` runs 2,000. The mutation checks that show each invariant bites are in
test_model_bites.py."""

import os

import pytest

from tests.simulation import FAULT_KINDS, run_scenario, violation_class

SEEDS = int(os.environ.get("IMAGESTREAMS_SCENARIOS", "200"))


@pytest.mark.parametrize("block", range(10))
def test_invariants_hold_under_lossy_reordered_delivery_and_faults(block):
    per_block = SEEDS // 10
    failures = {seed: v for seed in range(block * per_block, (block + 1) * per_block) if (v := run_scenario(seed))}
    assert not failures, f"violations (reproduce: python bench/soak.py --seed N -v): {failures}"


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
def test_invariants_hold_with_each_fault_kind_alone(kind):
    """One kind at a time takes other paths than all of them together (e.g. no rollback races hiding a lost pin
    behind a paused trigger)."""
    seeds = range(10_000, 10_000 + SEEDS // 4)
    failures = {seed: v for seed in seeds if (v := run_scenario(seed, faults={kind}))}
    assert not failures, f"violations (reproduce: python bench/soak.py --faults {kind} --seed N -v): {failures}"


def test_the_invariants_can_fail():
    """The checker is not vacuous: a fan-out that also fires paused triggers is caught."""
    from imagestreams.services import ImageStreams

    original = ImageStreams.head_moved

    def reckless(self, head):
        _, triggers = self.store.head_and_triggers(head.stream_tag)
        for trigger in triggers:
            if not head.deleted:
                try:
                    self.fire(trigger, head, force=True)
                except Exception:  # noqa: BLE001 - injected faults
                    pass
        return triggers

    ImageStreams.head_moved = reckless
    try:
        caught = [seed for seed in range(40)
                  if any(violation_class(v) == "paused" for v in run_scenario(seed, faults=()))]
        assert len(caught) > 5
    finally:
        ImageStreams.head_moved = original
