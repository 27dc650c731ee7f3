"""Soak: N randomized scenarios of the model test (tests/simulation.py), printing every violation and a count per
violation class; with --each, a table of failing scenarios per fault kind (each kind alone, then all together).

    make soak                                        # 2,000 scenarios, every fault kind
    python bench/soak.py --scenarios 200 --faults shared_targets,alias_race
    python bench/soak.py --scenarios 500 --faults policies_gates   # policy tags and gates alone
    python bench/soak.py --each --scenarios 200      # which fault kind finds which class of violation
    python bench/soak.py --seed 17 -v                # one scenario, with its operation log
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

from tests.simulation import (  # noqa: E402
    FAULT_KINDS,
    VIOLATION_CLASSES,
    World,
    run_scenario,
    run_world,
    violation_class,
)

SHOWN_PER_SEED = 5


def fault_kinds(text: str) -> frozenset[str]:
    if text in ("all", "none"):
        return FAULT_KINDS if text == "all" else frozenset()
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = kinds - FAULT_KINDS
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault kind(s) {', '.join(sorted(unknown))}; "
                                         f"known: {', '.join(sorted(FAULT_KINDS))}, all, none")
    return kinds


def soak(scenarios: int, steps: int, faults: frozenset[str]) -> tuple[dict[int, list[str]], float]:
    started = time.perf_counter()
    failing = {}
    for seed in range(scenarios):
        violations = run_scenario(seed, steps, faults)
        if violations:
            failing[seed] = violations
    return failing, time.perf_counter() - started


def per_class(failing: dict[int, list[str]]) -> Counter[str]:
    """Failing scenarios per violation class (a scenario counts once per class)."""
    return Counter(c for violations in failing.values() for c in {violation_class(v) for v in violations})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--faults", type=fault_kinds, default=FAULT_KINDS,
                        help=f"comma-separated fault kinds, all (default) or none: {', '.join(sorted(FAULT_KINDS))}")
    parser.add_argument("--each", action="store_true",
                        help="each fault kind alone, then all: failing scenarios per violation class")
    parser.add_argument("--seed", type=int, help="run one seed")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the reconciler logs each injected fault it survives
    if args.seed is not None:
        world = World(args.seed, faults=args.faults)
        violations = run_world(world, args.steps)
        if args.verbose:
            print("\n".join(world.log))
        print(f"seed {args.seed} ({', '.join(sorted(args.faults)) or 'no fault kinds'}): "
              f"{len(violations)} violation(s)", *violations, sep="\n")
        return 1 if violations else 0
    if args.each:
        runs = [(kind, frozenset({kind})) for kind in sorted(FAULT_KINDS)] + [("all", FAULT_KINDS)]
        classes = list(VIOLATION_CLASSES)
        print(f"failing scenarios of {args.scenarios} (x {args.steps} steps) per violation class")
        print(f"{'fault kinds':<18}" + "".join(f"{c:>11}" for c in classes) + f"{'any':>7}{'s':>7}")
        worst = 0
        for name, kinds in runs:
            failing, elapsed = soak(args.scenarios, args.steps, kinds)
            counts = per_class(failing)
            print(f"{name:<18}" + "".join(f"{counts.get(c, 0):>11}" for c in classes) +
                  f"{len(failing):>7}{elapsed:>7.1f}")
            worst = max(worst, len(failing))
        return 1 if worst else 0
    failing, elapsed = soak(args.scenarios, args.steps, args.faults)
    for seed, violations in failing.items():
        more = f"  ... {len(violations) - SHOWN_PER_SEED} more" if len(violations) > SHOWN_PER_SEED else ""
        print(f"seed {seed}:", *violations[:SHOWN_PER_SEED], sep="\n  ", end=f"\n{more}\n" if more else "\n")
    total = sum(len(v) for v in failing.values())
    counts = per_class(failing)
    print(f"{args.scenarios} scenarios x {args.steps} steps ({', '.join(sorted(args.faults)) or 'no fault kinds'}) "
          f"in {elapsed:.1f} s: {total} violations ({len(failing)} failing scenarios)")
    if counts:
        print("failing scenarios per violation class: " +
              ", ".join(f"{c} {counts[c]}" for c in [*VIOLATION_CLASSES, "other"] if counts.get(c)))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
