"""The README's demo story, end to end through the local runner."""

import io
import re

import pytest

from imagestreams_local.demo import run


@pytest.mark.e2e
def test_demo_story_passes_every_check():
    out = io.StringIO()
    assert run(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "every check passed" in text and "FAIL" not in text
    assert "IngestFunction: unchanged: head already matches ECR" in text  # the replayed event was harmless

    # the promotion act: staging selects 1.4.0 by policy, prod waits for the soak, then for a person
    act = text[text.index("promotion pipeline"):]
    staged = re.search(r"ok  team/web:staging moved to (sha256:\w+) \(cause policy, actor policy:semver\)", act)
    assert staged, act
    digest = staged[1]
    steps = [f"ok  web-staging rolls out team/web@{digest}",
             "ok  team/web:prod is Gated (waiting for tr-",
             "RolloutFunction: ECS deployment COMPLETED",
             "GatesFunction: 1 wake-up(s) from the gate clock",
             f"ok  verified gate passed; team/web:prod waits for an approval of {digest}",
             f"ok  notification on the bus: 'Gate Waiting' {{\"digest\": \"{digest}\"",
             "$ imagestreams approve team/web:prod sha256:",
             f"ok  team/web:prod moved to {digest} (cause policy, actor = the approver)",
             f"ok  web-prod runs team/web@{digest}"]
    positions = [act.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), list(zip(steps, positions, strict=True))
    assert '"target": "team/web:prod"' in act

    # the scan act: a clean scan lets a1 through, a CRITICAL finding holds a2 back
    scan = text[text.index("scan gate:"):]
    assert re.search(r"ok  trigger tr-\w+ is Gated: waiting for the scan result", scan), scan
    assert "GatesFunction: ECR Image Scan for" in scan
    kept = re.search(r"ok  api runs team/api@(sha256:\w+) \(scan passed\)", scan)
    assert kept, scan
    assert re.search(r"ok  trigger tr-\w+ is Blocked: 1 CRITICAL finding", scan), scan
    assert f"ok  api keeps team/api@{kept[1]}" in scan
