"""Soak: N randomized scenarios of the model test (tests/simulation.py), printing the count and every violation.

    make soak                      # 2,000 scenarios
    python bench/soak.py --seed 17 -v   # one scenario, with its operation log
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

from tests.simulation import World, run_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, help="run one seed")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.seed is not None:
        world = World(args.seed)
        for _ in range(args.steps):
            try:
                world.step()
            except Exception as exc:  # noqa: BLE001 - shown, like the test does
                world.log.append(f"error {exc!r}")
        violations = world.quiesce_and_check()
        if args.verbose:
            print("\n".join(world.log))
        print(f"seed {args.seed}: {len(violations)} violation(s)", *violations, sep="\n")
        return 1 if violations else 0
    started = time.perf_counter()
    failing = {}
    for seed in range(args.scenarios):
        violations = run_scenario(seed, args.steps)
        if violations:
            failing[seed] = violations
    elapsed = time.perf_counter() - started
    for seed, violations in failing.items():
        print(f"seed {seed}:", *violations, sep="\n  ")
    total = sum(len(v) for v in failing.values())
    print(f"{args.scenarios} scenarios x {args.steps} steps in {elapsed:.1f} s: {total} violations "
          f"({len(failing)} failing scenarios)")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
