"""Exit codes when a gate says no: the command did what was asked (a trigger added, a digest rejected), so the
CLI exits 0 and shows the status; only a `deploy` that a gate stopped did not happen (exit 1)."""

from __future__ import annotations

from typing import Any

import pytest

from imagestreams.cli import main

DIGEST = "sha256:" + "c" * 64


def _blocked(command: dict[str, Any]) -> dict[str, Any]:
    trigger = {"id": "tr-0123456789ab", "from": "team/web:latest", "paused": False, "status": "Blocked",
               "target": {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"},
               "lastTriggeredDigest": None, "lastTriggeredAt": None, "lastError": None, "rolloutState": None,
               "drift": None, "gates": [{"type": "approval"}],
               "gate": {"type": "approval", "state": "blocked", "reason": "rejected by me", "digest": DIGEST}}
    if command["action"] == "trigger.add":
        return {"ok": True, "result": {"id": trigger["id"], "trigger": trigger}}
    return {"ok": True, "result": {"triggers": [trigger]}}


@pytest.mark.parametrize("argv, code", [
    (["reject", "tr-0123456789ab", DIGEST, "--reason", "breaks checkout"], 0),
    (["trigger", "add", "team/web:latest", "--ecs", "prod/web:web", "--gate", "approval"], 0),
    (["deploy", "tr-0123456789ab"], 1),
])
def test_a_blocked_gate_fails_only_a_deploy(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--actor", "me", *argv], transport=_blocked) == code
    out = capsys.readouterr()
    assert "Blocked" in out.out + out.err
