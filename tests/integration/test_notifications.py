"""Notifications on the embedded AWS: the notify function reads the real table stream (its own event source
mapping, as template.yaml declares it) and its PutEvents reach moto's EventBridge, where a rule copies them to a
queue (``EmbeddedAws.notifications``)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import TEST_PARAMETERS, make_service

ECS_TARGET = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def admin(stack, **command):
    answer = stack.invoke("AdminFunction", command)
    assert answer["ok"], answer
    return answer["result"]


def received(stack):
    return [(e["detail-type"], e["detail"]) for e in stack.notifications()]


@pytest.fixture
def repo(stack):
    stack.client("ecr").create_repository(repositoryName="team/web")
    stack.notifications()  # start from an empty watch queue
    return stack


def test_a_push_is_a_tag_move_and_a_fire_on_the_bus(repo):
    make_service(repo)
    trigger_id = admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET)["id"]
    repo.pump()
    assert received(repo) == []  # a trigger added on a tag without an image fired nothing
    d1 = repo.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repo.pump()
    events = repo.notifications()
    assert {e["source"] for e in events} == {"imagestreams"}
    assert {tuple(e["resources"]) for e in events} == {(repo.resolver.attrs[("StreamsTable", "Arn")],)}
    got = [(e["detail-type"], e["detail"]) for e in events]
    assert ("Stream Tag Moved", {"stream": "team/web", "tag": "latest", "from": None, "to": d1, "generation": 1,
                                 "cause": "push", "actor": "ecr"}) in got
    assert ("Trigger Fired", {"id": trigger_id, "from": "team/web:latest", "target": ECS_TARGET,
                              "digest": d1}) in got
    assert [t for t, _ in got].count("Trigger Fired") == 1

    d2 = repo.push_image("team/web", "latest", seed="2")["detail"]["image-digest"]
    repo.pump()
    got = received(repo)
    moves = [d for t, d in got if t == "Stream Tag Moved"]
    assert [(m["from"], m["to"], m["generation"]) for m in moves] == [(d1, d2, 2)]
    assert [d["digest"] for t, d in got if t == "Trigger Fired"] == [d2]


def test_alias_links_and_removed_triggers_say_nothing_untag_does(repo):
    d1 = repo.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repo.pump()
    repo.notifications()
    admin(repo, action="tag", source="team/web:latest", target="team/web:edge", alias=True)
    repo.pump()
    got = received(repo)
    # the new alias tag moved (a first tag); the source's head item only gained an alias link: no move for it
    assert [(d["tag"], d["from"], d["to"]) for t, d in got if t == "Stream Tag Moved"] == [("edge", None, d1)]
    trigger_id = admin(repo, action="trigger.add", **{"from": "team/web:latest"}, target=ECS_TARGET,
                       paused=True)["id"]
    repo.pump()
    repo.notifications()
    admin(repo, action="trigger.remove", id=trigger_id)
    repo.pump()
    assert received(repo) == []
    admin(repo, action="untag", target="team/web:edge")
    repo.pump()
    got = received(repo)
    assert [(t, d["tag"], d["from"], d["to"], d["cause"]) for t, d in got] == [
        ("Stream Tag Moved", "edge", d1, None, "delete")]


def test_a_refused_event_is_delivered_again_never_lost(repo, monkeypatch):
    from imagestreams.adapters.events import EventBridgePublisher

    publish = EventBridgePublisher.publish
    refused = []

    def flaky(self, notes):
        errors = publish(self, notes)
        if not refused:  # EventBridge refuses the first batch once (e.g. throttled)
            refused.append(len(notes))
            return ["ThrottlingException: rate exceeded"] * len(notes)
        return errors

    monkeypatch.setattr(EventBridgePublisher, "publish", flaky)
    d1 = repo.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    repo.pump()
    got = received(repo)
    moves = [d for t, d in got if t == "Stream Tag Moved"]
    assert refused and moves and all(m["to"] == d1 for m in moves)  # at least once (here: twice)
    assert repo.client("sqs").receive_message(QueueUrl=repo.outputs["NotifyDLQUrl"]).get("Messages", []) == []


def test_events_go_to_the_named_bus(embedded):
    embedded.reset()
    embedded.deploy(parameters={**TEST_PARAMETERS, "EventBusName": "team-events"})
    assert embedded.outputs["NotificationBusName"] == "team-events"
    embedded.client("ecr").create_repository(repositoryName="team/web")
    embedded.notifications()
    d1 = embedded.push_image("team/web", "latest", seed="1")["detail"]["image-digest"]
    embedded.pump()
    assert [(t, d["to"]) for t, d in received(embedded)] == [("Stream Tag Moved", d1)]
