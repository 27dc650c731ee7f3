"""Outside text stays in its slot: stored at most 1 KB (marked as cut), rendered without control characters, and
discovery answers stay bounded however many problems a cluster has."""

from __future__ import annotations

import json
import unicodedata

import pytest

from imagestreams.adapters.dynamodb import trigger_item
from imagestreams.adapters.eks import parse_triggers_annotation
from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.cli import clean, main
from imagestreams.errors import TargetError
from imagestreams.model import EcsTarget, Problems, StreamTag, Trigger, cap_text, trigger_id
from imagestreams.reconcile import Reconciler
from imagestreams.services import ImageStreams
from tests.conftest import digest
from tests.corpus import BAD_ANNOTATIONS, HOSTILE_OUTSIDE_TEXT

WEB = StreamTag("team/web", "latest")
ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}
HUGE = "linux/" + "\u00e9x" * 150_000  # a 450 kB platform string (two bytes per é)
ESCAPE = "evil\x1b[2K\r\ntr-000000000000  team/web:latest  ecs prod/web:web  Deployed  no"


def utf8(text: str | None) -> int:
    return len((text or "").encode())


def controls(text: str) -> set[str]:
    """Characters that move the cursor or change how the rest of a line is shown (everything non-printable
    except the newlines that separate table rows)."""
    return {c for c in text if c != "\n" and (not c.isprintable() or unicodedata.category(c) in ("Cc", "Cf"))}


# ------------------------------------------------------------------------------------------------ cap_text

@pytest.mark.parametrize("text", ["x" * 5000, "é" * 3000, "网" * 2000, "a" * 1023 + "é", "\ud83d" * 600])
def test_cap_text_is_at_most_1_kb_of_utf8_and_says_it_was_cut(text):
    capped = cap_text(text)
    assert utf8(capped) <= 1024
    assert "[cut, " in capped and capped.endswith(" more bytes]")
    capped.encode("utf-8")  # valid UTF-8 (no half character, no lone surrogate)


def test_cap_text_keeps_short_text_as_is():
    for text in ("", "boom", "é" * 512, None):
        assert cap_text(text) == text


# ------------------------------------------------------------------------------------------ stored text

def world(images=None):
    store, registry, ecs = MemoryStore(), MemoryRegistry(), MemoryEcs()
    ecs.images[("prod", "web")] = {"web": "nginx:latest", **(images or {})}
    streams = ImageStreams(store, registry, {"ecs": ecs})
    registry.set("team/web", "latest", digest(1))
    streams.sync(WEB)
    return streams, store, registry, ecs


class HugeErrors(MemoryEcs):
    def apply(self, target, image, **_):
        raise TargetError("RegisterTaskDefinition: ClientException: " + HUGE)


def test_a_huge_api_message_is_stored_capped():
    streams, store, registry, _ = world()
    streams.drivers = {"ecs": HugeErrors(images={("prod", "web"): {"web": "x"}})}
    answer = dispatch(streams, {"action": "trigger.add", "from": "team/web:latest", "target": ECS})
    stored = store.get_trigger(answer["result"]["id"])
    assert stored.status == "Failed" and stored.last_error.startswith("RegisterTaskDefinition: ClientException")
    assert utf8(stored.last_error) <= 1024 and "[cut, " in stored.last_error
    assert utf8(answer["result"]["trigger"]["lastError"]) <= 1024


def test_a_huge_rollout_reason_is_stored_capped():
    streams, store, _, _ = world()
    trigger = streams.add_trigger(WEB, EcsTarget("prod", "web", "web"))
    streams.rollout_event("ecs:prod/web", trigger.deployment, "FAILED", reason=HUGE)
    stored = store.get_trigger(trigger.id)
    assert stored.rollout_state == "FAILED" and utf8(stored.last_error) <= 1024


def test_drift_from_a_huge_workload_image_is_stored_capped():
    streams, store, registry, ecs = world()
    trigger = streams.add_trigger(WEB, EcsTarget("prod", "web", "web"))
    ecs.images[("prod", "web")]["web"] = "nginx:" + HUGE  # changed out of band
    Reconciler(streams, registry, store).run()
    stored = store.get_trigger(trigger.id)
    assert stored.drift and utf8(stored.drift) <= 1024 and "[cut, " in stored.drift


def test_the_dynamodb_item_caps_outside_text_even_when_nothing_else_did():
    raw = Trigger(trigger_id(WEB, EcsTarget("prod", "web", "web")), WEB, EcsTarget("prod", "web", "web"))
    raw = raw._replace(last_error=HUGE, drift=HUGE)  # _replace bypasses with_outcome: the store still caps
    item = trigger_item(raw)
    assert utf8(item["lastError"]) <= 1024 and utf8(item["drift"]) <= 1024
    assert len(json.dumps(item).encode()) < 8 * 1024  # far below DynamoDB's 400 KB item limit


# ------------------------------------------------------------------------------------------- rendering

def test_clean_shows_control_and_bidi_characters_as_escapes():
    assert clean("a\x1b[2K\r\nb") == "a\\x1b[2K\\x0d\\x0ab"
    assert clean("x\u202eabc\u2028\x85\x7f") == "x\\u202eabc\\u2028\\x85\\x7f"
    assert clean("web:v1 é 网") == "web:v1 é 网" and clean(None) == "-"


@pytest.fixture
def drifted(capsys):
    """A workload image carrying an erase-line + carriage return + newline and a fake row, seen as drift."""
    streams, store, registry, ecs = world()
    trigger = streams.add_trigger(WEB, EcsTarget("prod", "web", "web"))
    ecs.images[("prod", "web")]["web"] = ESCAPE
    Reconciler(streams, registry, store).run()
    assert ESCAPE in store.get_trigger(trigger.id).drift  # stored exactly (JSON keeps it exact)
    return streams, trigger


def test_a_workload_image_cannot_fake_a_table_row(drifted, capsys):
    streams, trigger = drifted
    assert main(["trigger", "list"], transport=lambda cmd: dispatch(streams, cmd)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 2, out  # the header and the one real trigger: no fake row
    assert lines[1].startswith(trigger.id)
    assert controls(out) == set()
    assert "\\x1b[2K\\x0d\\x0atr-000000000000" in lines[1]  # the attempt stays visible, escaped


def test_json_output_keeps_outside_text_exact(drifted, capsys):
    streams, trigger = drifted
    assert main(["--output", "json", "trigger", "list"], transport=lambda cmd: dispatch(streams, cmd)) == 0
    answer = json.loads(capsys.readouterr().out)
    assert ESCAPE in answer["result"]["triggers"][0]["drift"]


def test_every_table_and_message_is_free_of_control_characters(capsys):
    evil = "team/web\x1b]0;pwned\x07\u202e"
    answers = {
        "describe": {"stream": evil, "tags": [{"tag": evil, "digest": evil, "generation": 1, "at": None,
                                                "alias_of": evil, "triggers": [evil]}]},
        "history": {"target": evil, "entries": [{"generation": 1, "digest": evil, "at": None, "cause": evil,
                                                  "actor": evil}]},
        "untag": {"moves": [{"tag": evil, "from": evil, "to": evil, "generation": 1, "cause": evil}]},
    }
    argv = {"describe": ["describe", "team/web"], "history": ["history", "team/web:a"],
            "untag": ["--actor", "me", "untag", "team/web:a"]}
    for action, result in answers.items():
        assert main(argv[action], transport=lambda cmd, r=result: {"ok": True, "result": r}) == 0
        assert controls(capsys.readouterr().out) == set(), action
    error = {"ok": False, "error": {"type": "Conflict", "message": evil + "\nimagestreams: ok"}}
    assert main(["describe", "team/web"], transport=lambda cmd: error) == 1
    err = capsys.readouterr().err
    assert controls(err) == set() and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------ discovery answers

def discovery_answer(triggers, errors):
    first = triggers[0] if triggers else None
    return {"ok": True, "result": {"id": first["id"] if first else None, "trigger": first,
                                   "triggers": triggers, "errors": errors}}


def test_cli_shows_every_adopted_trigger_and_every_problem(capsys):
    streams, store, registry, ecs = world()
    ecs.images[("prod", "api")] = {"web": "nginx:latest"}
    triggers = [streams.add_trigger(WEB, EcsTarget("prod", name, "web")).as_dict() for name in ("web", "api")]
    answer = discovery_answer(triggers, ["apps/Deployment/a: bad\x1b[31m", "apps/Deployment/b: worse"])
    argv = ["--actor", "me", "trigger", "add", "*", "--target", '{"type": "eks", "cluster": "c", "discover": true}']
    assert main(argv, transport=lambda cmd: answer) == 0
    out = capsys.readouterr().out
    assert all(t["id"] in out for t in triggers)
    assert "apps/Deployment/a: bad\\x1b[31m" in out and "apps/Deployment/b: worse" in out
    assert controls(out) == set()


def test_cli_renders_an_answer_with_problems_only(capsys):
    argv = ["--actor", "me", "trigger", "add", "*", "--target", '{"type": "eks", "cluster": "c", "discover": true}']
    assert main(argv, transport=lambda cmd: discovery_answer([], ["apps/Deployment/a: not valid JSON"])) == 0
    out = capsys.readouterr().out
    assert "no workload adopted" in out and "apps/Deployment/a: not valid JSON" in out


def test_problems_keep_100_lines_of_at_most_1_kb_and_count_the_rest():
    problems = Problems(100)
    problems += ("x" * 5000 for _ in range(5696))
    lines = problems.lines()
    assert len(problems) == 5696 and len(lines) == 101 and lines[-1] == "and 5596 more"
    assert max(utf8(line) for line in lines) <= 1024


def test_a_huge_annotation_is_one_problem_not_thousands():
    obj = {"metadata": {"namespace": "apps", "name": "web"},
           "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}
    text = json.dumps([{"from": {"kind": "ImageStreamTag", "name": "x"}}] * 5696)  # ~255 KiB of bad entries
    assert len(text) > 250_000
    found, errors = parse_triggers_annotation("prod", "Deployment", obj, text)
    assert found == [] and len(errors) == 1 and "not parsed" in errors[0] and utf8(errors[0]) < 1024
    many = json.dumps([{"from": {"kind": "ImageStreamTag", "name": "team/web:x"},
                        "fieldPath": 'spec.template.spec.containers[?(@.name=="web")].image'}] * 101)
    found, errors = parse_triggers_annotation("prod", "Deployment", obj, many)
    assert found == [] and len(errors) == 1 and "101 entries" in errors[0]


# ------------------------------------------------------------------------------------------------- corpus

@pytest.mark.parametrize("text", HOSTILE_OUTSIDE_TEXT, ids=range(len(HOSTILE_OUTSIDE_TEXT)))
def test_hostile_outside_text_is_stored_capped_and_rendered_clean(text, capsys):
    streams, store, registry, ecs = world()
    trigger = streams.add_trigger(WEB, EcsTarget("prod", "web", "web"))
    ecs.images[("prod", "web")]["web"] = text  # out of band: drift carries the image string
    Reconciler(streams, registry, store).run()
    stored = store.get_trigger(trigger.id)
    assert stored.drift and utf8(stored.drift) <= 1024
    assert main(["trigger", "list"], transport=lambda cmd: dispatch(streams, cmd)) == 0
    out = capsys.readouterr().out
    assert controls(out) == set() and len(out.splitlines()) == 2


@pytest.mark.parametrize("text", BAD_ANNOTATIONS, ids=range(len(BAD_ANNOTATIONS)))
def test_an_oversized_or_hostile_annotation_is_at_most_one_problem(text):
    obj = {"metadata": {"namespace": "apps", "name": "web"},
           "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}
    found, errors = parse_triggers_annotation("prod", "Deployment", obj, text)
    assert found == [] and len(errors) <= 1 and all(utf8(e) <= 1024 for e in errors)
