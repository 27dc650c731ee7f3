"""The playground as a user drives it: `imagestreams-local up` in one terminal, the CLI and `push` in another
(subprocesses, with the export lines `up` printed), Ctrl-C to stop, `--state DIR` to come back."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGESTREAMS_")) and k not in (
        "TABLE_NAME", "FIRE_QUEUE_URL")}
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in ("layers/core", "local"))
    return env


class Playground:
    def __init__(self, state: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imagestreams_local", "up", "--dynamodb", "moto", "--state", str(state)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_base_env(), start_new_session=True)
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("up exited early:\n" + "".join(self.lines))
            self.lines.append(line)
            if line.strip() == "# ready":
                break
        else:
            raise AssertionError("up printed no '# ready' within 60 s")
        self.env = _base_env()
        for line in self.lines:
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                self.env[key] = shlex.split(value)[0] if value else ""

    def run(self, *argv: str, module: str = "imagestreams.cli") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, env=self.env,
                              timeout=60, cwd=ROOT)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        rest, _ = self.proc.communicate(timeout=30)
        return rest


def _port_open(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((parsed.hostname, parsed.port)) == 0


def test_a_hand_session_then_ctrl_c_leaves_nothing_and_state_survives_a_restart(tmp_path):
    play = Playground(tmp_path / "state")
    try:
        assert "TABLE_NAME" in play.env and play.env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        first = play.run("push", "team/web:latest", module="imagestreams_local")
        assert first.returncode == 0, first.stderr
        digest1 = first.stdout.split()[2]
        assert digest1.startswith("sha256:") and "generation 1" in first.stdout

        added = play.run("trigger", "add", "team/web:latest", "--ecs", "prod/web:web")
        assert added.returncode == 0, added.stderr
        trigger_id = added.stdout.splitlines()[1].split()[0]
        assert trigger_id.startswith("tr-") and digest1[:19] in added.stdout

        second = play.run("push", "team/web:latest", module="imagestreams_local")
        assert second.returncode == 0 and "generation 2" in second.stdout, second.stdout + second.stderr
        digest2 = second.stdout.split()[2]

        described = play.run("describe", "team/web")
        assert described.returncode == 0, described.stderr
        row = [line for line in described.stdout.splitlines() if line.startswith("latest ")][0].split()
        assert row[1] == digest2[:19] and row[2] == "2" and trigger_id in row[-1]

        history = play.run("history", "team/web:latest", "--output", "json")
        entries = __import__("json").loads(history.stdout)["result"]["entries"]
        assert [e["digest"] for e in entries] == [digest2, digest1]

        # the ECS service the trigger follows runs the pinned ref of the second push (fired by `up`'s delivery)
        listed = play.run("trigger", "list", "--output", "json")
        trigger = __import__("json").loads(listed.stdout)["result"]["triggers"][0]
        assert trigger["lastTriggeredDigest"] == digest2
    finally:
        output = play.stop()
    assert play.proc.returncode == 0, output
    assert "# stopped" in output
    assert not _port_open(play.env["AWS_ENDPOINT_URL"]), "the embedded AWS still listens after Ctrl-C"
    with pytest.raises(ProcessLookupError):  # nothing of `up`'s process group is left
        os.killpg(play.proc.pid, 0)

    again = Playground(tmp_path / "state")
    try:
        assert any("state restored" in line for line in again.lines)
        described = again.run("describe", "team/web", "--output", "json")
        tags = __import__("json").loads(described.stdout)["result"]["tags"]
        assert [(t["tag"], t["digest"], t["generation"], t["triggers"]) for t in tags] == [
            ("latest", digest2, 2, [trigger_id])]
        # ECR kept the images: a rollback to the first push works after the restart
        rolled = again.run("rollback", "team/web:latest")
        assert rolled.returncode == 0, rolled.stderr
        assert digest1[:19] in rolled.stdout and "rollback" in rolled.stdout
    finally:
        again.stop()
    assert again.proc.returncode == 0


def test_demo_output_tells_revisions_from_image_versions_and_explains_in_progress():
    import io

    from imagestreams_local.demo import run

    out = io.StringIO()
    assert run(out, use_dynamodb_local=False) == 0, out.getvalue()
    text = out.getvalue()
    assert "service now on task definition web:2 (a new revision)" in text
    assert "the local ECS never finishes a deployment" in text
