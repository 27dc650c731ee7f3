"""Every sample in events/ through `imagestreams-local invoke`, in the order the README tells the story (one
repository, team/web, on the playground), each after its setup, each with the answer the README documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_playground import ROOT, Playground

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
EVENTS = ROOT / "events"
PLACEHOLDER = "tr-0123456789ab"


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    playground = Playground(tmp_path_factory.mktemp("events") / "state")
    yield playground
    playground.stop()


class Story:
    def __init__(self, play: Playground, tmp: Path) -> None:
        self.play, self.tmp, self.used = play, tmp, set()

    def local(self, *argv: str) -> str:
        done = self.play.run(*argv, module="imagestreams_local")
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def push(self, ref: str, *extra: str) -> str:
        return self.local("push", ref, *extra).split()[2]

    def invoke(self, function: str, name: str, *, replace: dict[str, str] | None = None) -> dict:
        self.used.add(name)
        path = EVENTS / name
        if replace:
            text = path.read_text()
            for old, new in replace.items():
                text = text.replace(old, new)
            path = self.tmp / name
            path.write_text(text)
        return json.loads(self.local("invoke", function, "--event", str(path)))

    def head(self, tag: str) -> dict:
        tags = self.invoke("admin", "admin_describe.json")["result"]["tags"]
        return {t["tag"]: t for t in tags}[tag]


def test_every_event_sample_gives_the_documented_answer(play, tmp_path):
    story = Story(play, tmp_path)
    # a push whose ECR event was lost; the sample event (a hint naming team/web:latest) brings the head in
    d1 = story.push("team/web:latest", "--no-event")
    answer = story.invoke("ingest", "ecr_image_push.json")
    assert answer["status"] == "moved" and answer["moves"][0]["to"] == d1 and answer["moves"][0]["generation"] == 1
    assert story.invoke("ingest", "ecr_image_push.json")["status"] != "moved"  # a duplicate moves nothing

    added = story.invoke("admin", "admin_trigger_add.json")
    assert added["ok"] and added["result"]["trigger"]["lastTriggeredDigest"] == d1
    trigger_id = added["result"]["id"]
    described = story.invoke("admin", "admin_describe.json")["result"]
    assert [(t["tag"], t["digest"], t["triggers"]) for t in described["tags"]] == [("latest", d1, [trigger_id])]
    assert [e["digest"] for e in story.invoke("admin", "admin_history.json")["result"]["entries"]] == [d1]
    assert story.invoke("admin", "admin_import.json") == {"ok": True, "result": {"moves": []}}

    moves = story.invoke("admin", "admin_tag.json")["result"]["moves"]
    assert [(m["tag"], m["to"], m["cause"]) for m in moves] == [("team/web:prod", d1, "tag")]
    moves = story.invoke("admin", "admin_tag_alias.json")["result"]["moves"]
    assert [(m["tag"], m["to"]) for m in moves] == [("team/web:edge", d1)]
    assert story.head("edge")["alias_of"] == "latest"

    d2 = story.push("team/web:latest")  # a second build; the alias edge follows latest
    assert story.head("edge")["digest"] == d2
    story.invoke("admin", "admin_tag.json")  # promote it to prod
    moves = story.invoke("admin", "admin_rollback_tag.json")["result"]["moves"]
    assert [(m["tag"], m["from"], m["to"], m["cause"]) for m in moves] == [("team/web:prod", d2, d1, "rollback")]

    listed = story.invoke("admin", "admin_trigger_list.json")["result"]["triggers"]
    assert [(t["id"], t["lastTriggeredDigest"]) for t in listed] == [(trigger_id, d2)]
    assert story.invoke("admin", "admin_trigger_pause.json")["result"]["triggers"][0]["paused"] is True
    assert story.invoke("admin", "admin_trigger_resume.json")["result"]["triggers"][0]["paused"] is False
    assert story.invoke("admin", "admin_deploy.json")["result"]["triggers"][0]["lastTriggeredDigest"] == d2

    # the two samples naming a trigger id answer NotFound as shipped, and work with the id `trigger list` shows
    for name in ("admin_rollback_trigger.json", "admin_trigger_remove.json"):
        answer = story.invoke("admin", name)
        assert answer["ok"] is False and answer["error"]["type"] == "NotFound" and PLACEHOLDER in answer["error"][
            "message"]
    rolled = story.invoke("admin", "admin_rollback_trigger.json", replace={PLACEHOLDER: trigger_id})["result"]
    assert rolled["triggers"][0]["paused"] is True and rolled["triggers"][0]["lastTriggeredDigest"] == d1
    removed = story.invoke("admin", "admin_trigger_remove.json", replace={PLACEHOLDER: trigger_id})
    assert removed["ok"] and story.invoke("admin", "admin_trigger_list.json")["result"]["triggers"] == []

    story.push("team/web:old")
    moves = story.invoke("admin", "admin_untag.json")["result"]["moves"]
    assert [(m["tag"], m["cause"]) for m in moves] == [("team/web:old", "delete")]

    # a tag deleted in ECR whose event was lost: the sample DELETE event (checked against ECR) removes it
    story.push("team/web:beta")
    story.local("delete", "team/web:beta", "--no-event")
    answer = story.invoke("ingest", "ecr_image_delete.json")
    assert answer["status"] == "moved"
    assert [(m["tag"], m["cause"]) for m in answer["moves"]] == [("team/web:beta", "delete")]

    answer = story.invoke("ingest", "ecr_push_untagged.json")  # push by digest: moves no tag
    assert answer["status"] != "moved" and not answer.get("moves")

    d3 = story.push("team/web:v2", "--no-event")  # replicated into this region; its REPLICATE event arrives
    answer = story.invoke("ingest", "ecr_replication.json")
    assert answer["status"] == "moved" and [(m["tag"], m["to"]) for m in answer["moves"]] == [("team/web:v2", d3)]

    answer = story.invoke("rollout", "ecs_deployment_failed.json")  # not a deployment one of our fires started
    assert answer.get("triggers", []) == []  # not a deployment one of our fires recorded: no trigger changes

    # gates: v2 scanned with a CRITICAL finding holds back a trigger gated on the scan and on a signature
    sample_digest = json.loads((EVENTS / "ecr-image-scan.json").read_text())["detail"]["image-digest"]
    answer = story.invoke("gates", "ecr-image-scan.json")  # as shipped: a digest nobody waits on
    assert answer == {"kind": "scan", "stream": "team/web", "digest": sample_digest, "triggers": [],
                      "policies": False}
    story.local("scan", f"team/web@{d3}", "--critical", "1", "--high", "2", "--medium", "5")
    command = tmp_path / "trigger_add_gated.json"
    command.write_text(json.dumps({"action": "trigger.add", "from": "team/web:v2", "target": {
        "type": "ecs", "cluster": "prod", "service": "web", "container": "web"},
        "gates": [{"type": "scan", "blockAt": "CRITICAL"}, {"type": "signature"}]}))
    gated = json.loads(story.local("invoke", "admin", "--event", str(command)))["result"]
    gated_id = gated["id"]
    assert (gated["trigger"]["status"], gated["trigger"]["gate"]) == (
        "Blocked", {"type": "scan", "state": "blocked", "reason": "1 CRITICAL finding", "digest": d3})
    waiting = {"stream": "team/web", "digest": d3, "triggers": [gated_id], "policies": False}
    for name in ("ecr-image-scan.json", "inspector2-scan.json"):  # the scan finished (Inspector names an ARN)
        assert story.invoke("gates", name, replace={sample_digest: d3}) == {"kind": "scan", **waiting}
    # a Signer event names no image: every gate list waiting on a signature is looked at again
    assert story.invoke("gates", "signer-job-status-change.json") == {"kind": "signing", "rechecked": [waiting]}
    command.write_text(json.dumps({"action": "trigger.list", "from": "team/web:v2"}))
    listed = json.loads(story.local("invoke", "admin", "--event", str(command)))["result"]["triggers"]
    assert [(t["id"], t["status"], t["lastTriggeredDigest"]) for t in listed] == [(gated_id, "Blocked", None)]

    published = {p.name for p in EVENTS.glob("imagestreams-*.json")}  # what the stack sends: test_notifications.py
    assert story.used == {p.name for p in EVENTS.glob("*.json")} - published, "a sample in events/ is not in the story"
