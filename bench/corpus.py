"""Run the bad-input corpus (tests/corpus.py) and print the count: every entry must get a clear error, change
nothing, and raise nothing unexpected. `make corpus`."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

from imagestreams.admin import dispatch  # noqa: E402
from imagestreams.errors import Invalid  # noqa: E402
from imagestreams.events import parse_ecr_event  # noqa: E402
from imagestreams.ingest import handle_ecr_event  # noqa: E402
from tests.corpus import bad_commands, bad_events  # noqa: E402
from tests.unit.test_corpus import world  # noqa: E402


def main() -> int:
    counts = {"events": 0, "commands": 0}
    problems = []
    for name, event in bad_events():
        streams, store, registry, _ = world()
        counts["events"] += 1
        try:
            handle_ecr_event(streams, parse_ecr_event(event))
            problems.append(f"event {name}: accepted")
        except Invalid:
            pass
        except Exception as exc:  # noqa: BLE001 - that is what we are looking for
            problems.append(f"event {name}: unhandled {exc!r}")
        if store.writes != 1:  # the one write is the world's own setup
            problems.append(f"event {name}: wrote")
    for name, command in bad_commands():
        streams, store, registry, ecs = world()
        counts["commands"] += 1
        try:
            answer = dispatch(streams, command)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"command {name}: unhandled {exc!r}")
            continue
        if answer.get("ok") or store.writes != 1 or registry.retags or ecs.calls:
            problems.append(f"command {name}: {answer}")
    total = counts["events"] + counts["commands"]
    print("\n".join(problems))
    print(f"bad-input corpus: {counts['events']} ingest events + {counts['commands']} admin commands/targets = "
          f"{total} inputs; {total - len(problems)} refused cleanly with zero writes, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
