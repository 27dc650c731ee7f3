"""Notifications: which table change is worth an EventBridge event, its detail, and how the notify function sends
them (one PutEvents call per batch; what EventBridge refused is delivered again, never dropped)."""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import notify
import pytest
from boto3.dynamodb.types import TypeSerializer

from imagestreams import batch, notifications
from imagestreams.adapters.dynamodb import head_item, trigger_item
from imagestreams.adapters.events import EventBridgePublisher
from imagestreams.model import EcsTarget, Head, StreamTag, Trigger
from imagestreams.notifications import Notification

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/imagestreams-StreamsTable-1A2B3C"
STREAM_ARN = TABLE_ARN + "/stream/2026-11-29T12:00:00.000"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
WEB = StreamTag("team/web", "latest")
TARGET = EcsTarget("prod", "web", "app")
_ser = TypeSerializer()
_sequence = iter(range(1000, 10**6))


def ddb(item: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if item is None else {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def record(old: dict[str, Any] | None, new: dict[str, Any] | None, event: str | None = None) -> dict[str, Any]:
    """A DynamoDB stream record as Lambda delivers it (NEW_AND_OLD_IMAGES)."""
    event = event or ("INSERT" if old is None else "REMOVE" if new is None else "MODIFY")
    item = new or old
    dynamodb: dict[str, Any] = {"Keys": ddb({"pk": item["pk"], "sk": item["sk"]}),
                                "SequenceNumber": str(next(_sequence)), "StreamViewType": "NEW_AND_OLD_IMAGES",
                                "ApproximateCreationDateTime": 1796040000, "SizeBytes": 512}
    if new is not None:
        dynamodb["NewImage"] = ddb(new)
    if old is not None:
        dynamodb["OldImage"] = ddb(old)
    return {"eventID": "e" + dynamodb["SequenceNumber"], "eventName": event, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": dynamodb,
            "eventSourceARN": STREAM_ARN}


def head(generation: int, digest: str = D1, **changes: Any) -> dict[str, Any]:
    fields = dict(stream_tag=WEB, digest=digest, generation=generation, at=T0 + timedelta(minutes=generation),
                  cause="push", actor="ecr", registry=REGISTRY, rev=generation)
    fields.update(changes)
    return head_item(Head(**fields))


def trigger(**changes: Any) -> dict[str, Any]:
    gate = changes.pop("gate", None)
    item = trigger_item(Trigger("tr-0123456789ab", WEB, TARGET, **changes))
    if gate is not None:  # stored with the gate fields (the public gate detail)
        item.update(gate=gate, gates=[{"type": gate["type"]}], gateState={"digest": gate["digest"]})
    return item


DEPLOYED = dict(status="Deployed", last_triggered_digest=D1, last_triggered_at=T0, rollout_state="COMPLETED",
                deployed_image=f"{REGISTRY}/team/web@{D1}", deployment="ecs-svc/111")
FIRED = dict(DEPLOYED, status="Deploying", last_triggered_digest=D2, last_triggered_at=T0 + timedelta(hours=1),
             rollout_state="IN_PROGRESS", deployed_image=f"{REGISTRY}/team/web@{D2}", deployment="ecs-svc/222")


def policy(**changes: Any) -> dict[str, Any]:
    item = {"pk": "S#team/web", "sk": "T#stable#P", "kind": "POLICY", "stream": "team/web", "tag": "stable",
            "policy": {"semver": "^1.2", "prerelease": False}, "gates": [], "held": False, "status": "Selected",
            "selected": "v1.2.3", "digest": D1, "gate": None, "gateState": None, "rev": 1, "at": T0.isoformat()}
    item.update(changes)
    return item


def risk(**changes: Any) -> dict[str, Any]:
    item = {"pk": "S#team/web", "sk": f"RISK#{D1}", "kind": "RISK", "stream": "team/web", "digest": D1,
            "tags": ["latest", "v1.2.3"], "triggers": ["tr-0123456789ab"],
            "rule": "rule 1: expire untagged after 14 days",
            "message": "ECS prod/web runs this digest; rule 1 expires it once its tags move",
            "at": T0.isoformat(), "expiresAt": 1796644800}
    item.update(changes)
    return item


def events(rec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(n.detail_type, n.detail) for n in notifications.notifications(rec)]


# ------------------------------------------------------------------------------------------ what notifies

def test_a_push_moves_the_tag():
    assert events(record(head(1), head(2, D2, actor="ci-bot"))) == [("Stream Tag Moved", {
        "stream": "team/web", "tag": "latest", "from": D1, "to": D2, "generation": 2, "cause": "push",
        "actor": "ci-bot"})]


def test_a_new_tag_moves_from_nothing_and_an_untag_moves_to_nothing():
    assert events(record(None, head(1)))[0][1]["from"] is None
    untagged = events(record(head(1), head(2, D1, deleted=True, cause="delete")))
    assert untagged[0][1] == {"stream": "team/web", "tag": "latest", "from": D1, "to": None, "generation": 2,
                                  "cause": "delete", "actor": "ecr"}
    retagged = events(record(head(2, D1, deleted=True), head(3, D2)))
    assert retagged[0][1]["from"] is None and retagged[0][1]["to"] == D2


def test_an_alias_link_edit_is_no_move():
    assert events(record(head(2, D2), head(2, D2, aliases=("stable",), rev=3))) == []
    assert events(record(head(2, D2, alias_of="main"), head(2, D2, rev=3))) == []


def test_a_fire_is_notified_once_with_the_target_and_digest():
    fired = events(record(trigger(**DEPLOYED), trigger(**FIRED)))
    assert fired == [("Trigger Fired", {"id": "tr-0123456789ab", "from": "team/web:latest",
                                        "target": TARGET.as_dict(), "digest": D2})]
    # the rollout goes on: no second fire
    assert events(record(trigger(**FIRED), trigger(**dict(FIRED, status="Deploying")))) == []


def test_a_settled_trigger_that_keeps_its_fire_time_fired_nothing():
    """The target already ran the digest (e.g. the reconciler confirmed it): the record of the last fire stays."""
    confirmed = dict(DEPLOYED, last_triggered_digest=D2, deployed_image=f"{REGISTRY}/team/web@{D2}")
    assert [t for t, _ in events(record(trigger(**DEPLOYED), trigger(**confirmed)))] == []


def test_rollout_outcomes():
    done = events(record(trigger(**FIRED), trigger(**dict(FIRED, status="Deployed", rollout_state="COMPLETED"))))
    assert done == [("Rollout Completed", {"id": "tr-0123456789ab", "target": TARGET.as_dict(), "digest": D2,
                                           "reason": None})]
    error = f"rollout of {D2} failed: ECS deployment circuit breaker: tasks failed to start"
    failed = events(record(trigger(**FIRED), trigger(**dict(FIRED, status="Failed", rollout_state="FAILED",
                                                            last_error=error))))
    assert failed == [("Rollout Failed", {"id": "tr-0123456789ab", "target": TARGET.as_dict(), "digest": D2,
                                          "reason": error})]
    still_failed = dict(FIRED, status="Failed", rollout_state="FAILED", last_error=error)
    assert events(record(trigger(**still_failed), trigger(**dict(still_failed, failures=1)))) == []


def test_drift_names_what_runs_and_what_was_expected():
    running, expected = f"{REGISTRY}/team/web:hotfix", f"{REGISTRY}/team/web@{D1}"
    text = (f"runs {running}, not {expected} (what this trigger last deployed: {expected}); changed out of band at "
            "or before 2026-11-29T13:00:00Z — left alone until `deploy` or the next head move")
    drifted = trigger(**DEPLOYED, drift=text)
    assert events(record(trigger(**DEPLOYED), drifted)) == [("Drift Detected", {
        "id": "tr-0123456789ab", "target": TARGET.as_dict(), "expected": expected, "running": running})]
    assert events(record(drifted, trigger(**DEPLOYED, drift=text, failures=0))) == []  # the same drift again
    pins = "ECS service web: task role changed from app-role to admin-role"
    detail = events(record(trigger(**DEPLOYED), trigger(**DEPLOYED, drift=pins)))[0][1]
    assert detail["expected"] == expected and detail["running"] == pins
    assert events(record(drifted, trigger(**DEPLOYED))) == []  # drift cleared: nothing to say


def gate(kind: str, state: str, digest: str = D2, reason: str = "waiting for an approval") -> dict[str, Any]:
    return {"type": kind, "state": state, "reason": reason, "digest": digest}


def test_an_approval_waiting_is_a_gate_waiting_event_once_per_digest():
    gated = dict(DEPLOYED, status="Gated")
    waiting = trigger(**gated, gate=gate("approval", "waiting"))
    assert events(record(trigger(**DEPLOYED), waiting)) == [("Gate Waiting", {
        "id": "tr-0123456789ab", "digest": D2, "gate": gate("approval", "waiting"),
        "reason": "waiting for an approval"})]
    # the same gate still waiting for the same digest (a new reason text, a re-evaluation): nothing new
    assert events(record(waiting, trigger(**gated, gate=gate("approval", "waiting", reason="still waiting")))) == []
    # a newer head starts over: waiting again, for the new digest
    newer = events(record(waiting, trigger(**gated, gate=gate("approval", "waiting", "sha256:" + "3" * 64))))
    assert [(t, d["digest"]) for t, d in newer] == [("Gate Waiting", "sha256:" + "3" * 64)]
    # the scan passed, the next gate waits: a person cares
    scan = trigger(**gated, gate=gate("scan", "waiting", reason="no scan result yet"))
    assert [t for t, _ in events(record(scan, waiting))] == ["Gate Waiting"]


def test_a_blocked_gate_and_a_passed_one():
    waiting = trigger(**dict(DEPLOYED, status="Gated"), gate=gate("scan", "waiting", reason="scanning"))
    blocked = trigger(**dict(DEPLOYED, status="Blocked"), gate=gate("scan", "blocked", reason="3 CRITICAL findings"))
    assert events(record(waiting, blocked)) == [("Gate Blocked", {
        "id": "tr-0123456789ab", "digest": D2, "gate": gate("scan", "blocked", reason="3 CRITICAL findings"),
        "reason": "3 CRITICAL findings"})]
    passed = trigger(**FIRED, gate=gate("scan", "passed", reason="no findings at or above HIGH"))
    assert [t for t, _ in events(record(waiting, passed))] == ["Trigger Fired"]


def test_policy_selection_and_policy_gates():
    moved = events(record(policy(), policy(selected="v1.3.0", digest=D2, rev=2)))
    assert moved == [("Policy Selected", {"target": "team/web:stable", "selected": "v1.3.0", "digest": D2})]
    assert events(record(None, policy()))[0][0] == "Policy Selected"
    assert events(record(policy(), policy(rev=2, at=(T0 + timedelta(hours=1)).isoformat()))) == []  # re-evaluated
    assert events(record(policy(), policy(selected=None, digest=None, status="NoCandidate"))) == []
    approval = gate("approval", "waiting", reason="approve to promote staging to prod")
    gated = policy(status="Gated", selected="v1.3.0", digest=D2, gate=approval)
    out = events(record(policy(), gated))
    # stable has not moved while its gate waits: Policy Selected comes with the move, once the gate passes
    assert out == [("Gate Waiting", {"target": "team/web:stable", "digest": D2, "gate": approval,
                                     "reason": "approve to promote staging to prod"})]
    released = events(record(gated, policy(selected="v1.3.0", digest=D2, rev=3)))
    assert released == [("Policy Selected", {"target": "team/web:stable", "selected": "v1.3.0", "digest": D2})]


def test_expiry_risk_once_per_finding():
    assert events(record(None, risk())) == [("Expiry Risk", {
        "stream": "team/web", "digest": D1, "tags": ["latest", "v1.2.3"], "triggers": ["tr-0123456789ab"],
        "rule": "rule 1: expire untagged after 14 days",
        "message": "ECS prod/web runs this digest; rule 1 expires it once its tags move"})]
    seen_again = risk(at=(T0 + timedelta(minutes=15)).isoformat(), expiresAt=1796645700)
    assert events(record(risk(), seen_again)) == []
    assert [t for t, _ in events(record(risk(), risk(tags=["latest"])))] == ["Expiry Risk"]


def test_nothing_for_what_did_not_happen():
    assert events(record(trigger(**FIRED), None)) == []  # a removed trigger is no fire
    assert events(record(head(2, D1, deleted=True), None)) == []  # an expired tombstone is no move
    assert events(record(risk(), None)) == []  # an expired risk is no risk
    assert events(record(policy(), None)) == []
    history = {"pk": "S#team/web", "sk": "T#latest#V#000000000002", "kind": "HIST", "stream": "team/web",
               "tag": "latest", "digest": D2, "generation": 2}
    assert events(record(None, history)) == []
    lease = {"pk": "LEASE#reconcile", "sk": "LEASE", "kind": "LEASE", "owner": "r1", "expiresAt": 1796040000}
    assert events(record(None, lease)) == []
    for item in (head(2, D2), trigger(**FIRED), policy(), risk(),
                 trigger(**DEPLOYED, gate=gate("approval", "waiting"), drift="runs x, not y ")):
        assert events(record(item, dict(item))) == [], item["kind"]  # unchanged


def test_a_record_delivered_twice_gives_the_same_event():
    rec = record(trigger(**DEPLOYED), trigger(**FIRED))
    again = json.loads(json.dumps(rec))
    assert notifications.notifications(rec) == notifications.notifications(again)
    assert [n.entry() for n in notifications.notifications(rec)] == [n.entry() for n in
                                                                     notifications.notifications(again)]


def test_every_detail_has_exactly_its_documented_fields():
    approval = gate("approval", "waiting")
    records = [record(head(1), head(2, D2)), record(trigger(**DEPLOYED), trigger(**FIRED)),
               record(trigger(**FIRED), trigger(**dict(FIRED, rollout_state="COMPLETED"))),
               record(trigger(**FIRED), trigger(**dict(FIRED, rollout_state="FAILED", last_error="x"))),
               record(trigger(**DEPLOYED), trigger(**DEPLOYED, drift="runs a, not b (…)")),
               record(trigger(**DEPLOYED), trigger(**DEPLOYED, gate=approval)),
               record(trigger(**DEPLOYED), trigger(**DEPLOYED, gate=gate("scan", "blocked"))),
               record(policy(), policy(selected="v2.0.0", digest=D2)), record(None, risk())]
    seen = {}
    for rec in records:
        for note in notifications.notifications(rec):
            seen[note.detail_type] = set(note.detail)
    assert seen == {k: set(v) for k, v in notifications.SCHEMAS.items()}
    policy_gate = notifications.notifications(record(policy(), policy(gate=approval)))[0]
    assert set(policy_gate.detail) == {"target", "digest", "gate", "reason"}


def test_entries_carry_the_source_the_bus_and_the_table():
    note = notifications.notifications(record(head(1), head(2, D2)))[0]
    entry = note.entry("team-events")
    assert entry["Source"] == "imagestreams" and entry["DetailType"] == "Stream Tag Moved"
    assert entry["EventBusName"] == "team-events" and entry["Resources"] == [TABLE_ARN]
    assert json.loads(entry["Detail"]) == note.detail
    assert "EventBusName" not in note.entry(None) and "EventBusName" not in note.entry("")


def test_dynamodb_json_of_every_type():
    raw = {"s": {"S": "x"}, "n": {"N": "2"}, "f": {"N": "1.5"}, "b": {"BOOL": False}, "z": {"NULL": True},
           "m": {"M": {"l": {"L": [{"N": "1"}, {"S": "y"}]}}}, "ss": {"SS": ["b", "a"]}}
    assert notifications.image(raw) == {"s": "x", "n": 2, "f": 1.5, "b": False, "z": None,
                                        "m": {"l": [1, "y"]}, "ss": ["a", "b"]}


# ---------------------------------------------------------------------------------------- the notify function

class Events:
    """A counting EventBridge client: fails the entries whose detail-type is in ``refuse``."""

    def __init__(self, refuse: tuple[str, ...] = (), raise_error: Exception | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.refuse, self.raise_error = refuse, raise_error

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        assert 1 <= len(Entries) <= 10
        self.calls.append(Entries)
        if self.raise_error:
            raise self.raise_error
        results = [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"} if e["DetailType"] in self.refuse
                   else {"EventId": f"id-{i}"} for i, e in enumerate(Entries)]
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


@pytest.fixture
def client(monkeypatch):
    def use(events: Events, bus: str | None = None) -> Events:
        monkeypatch.setattr(notify, "publisher", lambda: EventBridgePublisher(events, bus))
        return events
    return use


def ten_moves() -> list[dict[str, Any]]:
    return [record(head(n), head(n + 1, digest="sha256:" + f"{n:064x}")) for n in range(1, 11)]


def test_a_batch_of_ten_is_one_put_events_call(client, lambda_context):
    events_client = client(Events(), bus="team-events")
    out = notify.lambda_handler({"Records": ten_moves()}, lambda_context)
    assert out == {"batchItemFailures": []}
    assert len(events_client.calls) == 1 and len(events_client.calls[0]) == 10
    assert {e["EventBusName"] for e in events_client.calls[0]} == {"team-events"}
    assert [json.loads(e["Detail"])["generation"] for e in events_client.calls[0]] == list(range(2, 12))


def test_a_batch_with_nothing_to_say_calls_nothing(client, lambda_context):
    events_client = client(Events())
    rec = record(head(2, D2), head(2, D2, aliases=("stable",), rev=3))
    assert notify.lambda_handler({"Records": [rec]}, lambda_context) == {"batchItemFailures": []}
    assert events_client.calls == []


def test_refused_entries_are_delivered_again(client, lambda_context):
    records = [record(head(1), head(2, D2)), record(trigger(**DEPLOYED), trigger(**FIRED)),
               record(policy(), policy(selected="v2.0.0", digest=D2))]
    events_client = client(Events(refuse=("Trigger Fired",)))
    out = notify.lambda_handler({"Records": records}, lambda_context)
    assert out == {"batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}
    assert len(events_client.calls) == 1


def test_nothing_accepted_fails_the_invocation(client, lambda_context):
    client(Events(refuse=("Stream Tag Moved",)))
    with pytest.raises(batch.BatchFailed):
        notify.lambda_handler({"Records": ten_moves()[:3]}, lambda_context)
    client(Events(raise_error=RuntimeError("EventBridge is down")))
    with pytest.raises(RuntimeError):  # the call itself failed: the whole batch is retried
        notify.lambda_handler({"Records": ten_moves()[:3]}, lambda_context)


def test_an_unreadable_record_is_retried_and_the_others_are_sent(client, lambda_context):
    events_client = client(Events())
    broken = record(head(1), head(2, D2))
    broken["dynamodb"]["NewImage"]["generation"] = {"Q": "2"}
    good = record(head(2, D2), head(3, D1))
    out = notify.lambda_handler({"Records": [broken, good]}, lambda_context)
    assert out == {"batchItemFailures": [{"itemIdentifier": broken["dynamodb"]["SequenceNumber"]}]}
    assert [json.loads(e["Detail"])["generation"] for e in events_client.calls[0]] == [3]


def test_more_events_than_one_call_takes_are_split():
    events_client = Events()
    notes = [Notification("Stream Tag Moved", {"n": n}) for n in range(23)]
    assert EventBridgePublisher(events_client).publish(notes) == [None] * 23
    assert [len(c) for c in events_client.calls] == [10, 10, 3]
    big = [Notification("Drift Detected", {"running": "x" * 100_000}) for _ in range(3)]
    events_client.calls.clear()
    EventBridgePublisher(events_client).publish(big)
    assert [len(c) for c in events_client.calls] == [2, 1]  # 256 KB per call


# ------------------------------------------------------------------------------------------------ samples

SAMPLES = {
    "Stream Tag Moved": record(head(1), head(2, D2, actor="ci-bot")),
    "Trigger Fired": record(trigger(**DEPLOYED), trigger(**FIRED)),
    "Rollout Completed": record(trigger(**FIRED), trigger(**dict(FIRED, status="Deployed",
                                                                 rollout_state="COMPLETED"))),
    "Rollout Failed": record(trigger(**FIRED), trigger(**dict(
        FIRED, status="Failed", rollout_state="FAILED",
        last_error=f"rollout of {D2} failed: ECS deployment circuit breaker: tasks failed to start"))),
    "Drift Detected": record(trigger(**DEPLOYED), trigger(**DEPLOYED, drift=(
        f"runs {REGISTRY}/team/web:hotfix, not {REGISTRY}/team/web@{D1} (what this trigger last deployed: "
        f"{REGISTRY}/team/web@{D1}); changed out of band at or before 2026-11-29T13:00:00Z"))),
    "Gate Waiting": record(trigger(**DEPLOYED), trigger(**dict(DEPLOYED, status="Gated"), gate=gate(
        "approval", "waiting", reason="waiting for an approval"))),
    "Gate Blocked": record(trigger(**DEPLOYED), trigger(**dict(DEPLOYED, status="Blocked"), gate=gate(
        "scan", "blocked", reason="3 CRITICAL findings"))),
    "Policy Selected": record(policy(), policy(selected="v1.3.0", digest=D2)),
    "Expiry Risk": record(None, risk()),
}


def sample_path(detail_type: str) -> Path:
    return ROOT / "events" / f"imagestreams-{detail_type.lower().replace(' ', '-')}.json"


@pytest.mark.parametrize("detail_type", list(notifications.SCHEMAS))
def test_each_sample_is_what_a_rule_target_receives(detail_type):
    sample = json.loads(sample_path(detail_type).read_text())
    assert sample["source"] == "imagestreams" and sample["detail-type"] == detail_type
    assert {"version", "id", "account", "time", "region", "resources", "detail"} <= set(sample)
    produced = {n.detail_type: n for n in notifications.notifications(SAMPLES[detail_type])}[detail_type]
    assert set(sample["detail"]) == set(produced.detail) == set(notifications.SCHEMAS[detail_type])
    assert sample["detail"] == json.loads(produced.entry()["Detail"])
    assert sample["resources"] == [TABLE_ARN]


# ----------------------------------------------------------------------------------------------- template

@functools.lru_cache(maxsize=1)
def _template() -> dict[str, Any]:
    from imagestreams_local.template import load_template

    return load_template(ROOT / "template.yaml")


class _Attributes(dict):
    def __missing__(self, key: tuple[str, str]) -> str:
        return f"<{key[0]}.{key[1]}>"


def _resolver(**parameters: str) -> Any:
    from imagestreams_local.template import Resolver

    resolve = Resolver(_template(), "us-east-1", "123456789012", parameters)
    resolve.attrs = _Attributes()
    return resolve


def test_every_detail_type_has_a_readable_line_on_the_topic():
    template = _template()
    rules = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"
             and r.get("Condition") == "HasNotificationTopic"]
    covered: dict[tuple[str, str], int] = {}
    for rule in rules:
        pattern = rule["EventPattern"]
        assert pattern["source"] == ["imagestreams"]
        assert pattern["resources"] == [{"Fn::GetAtt": ["StreamsTable", "Arn"]}]  # this stack's events only
        subjects = list((pattern.get("detail") or {})) or ["-"]
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": "NotificationTopicArn"}
        transformer = target["InputTransformer"]
        line = json.loads(transformer["InputTemplate"])
        assert isinstance(line, str) and "\n" not in line and line.startswith("ImageStreams: ")
        paths = transformer["InputPathsMap"]
        assert set(re.findall(r"<([a-z]+)>", line)) == set(paths)
        for detail_type in pattern["detail-type"]:
            fields = set(notifications.SCHEMAS[detail_type])
            if detail_type.startswith("Gate "):
                fields = {"target" if subjects == ["target"] else "id", "digest", "gate", "reason"}
            for path in paths.values():
                if path != "$.detail-type":
                    assert path.startswith("$.detail.") and path.split(".")[2] in fields, (detail_type, path)
            for subject in subjects:
                covered[(detail_type, subject)] = covered.get((detail_type, subject), 0) + 1
    expected = {(t, "-") for t in notifications.SCHEMAS if not t.startswith("Gate ")}
    expected |= {(t, s) for t in ("Gate Waiting", "Gate Blocked") for s in ("id", "target")}
    assert covered == dict.fromkeys(expected, 1)


def test_rules_exist_only_with_a_topic_and_live_on_the_stack_bus():
    template = _template()
    rules = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Events::Rule"}
    assert rules and all(r.get("Condition") == "HasNotificationTopic" for r in rules.values())
    assert not _resolver().condition("HasNotificationTopic")
    topic = "arn:aws:sns:us-east-1:123456789012:team-alerts"
    assert _resolver(NotificationTopicArn=topic).condition("HasNotificationTopic")
    for rule in rules.values():
        assert "EventBusName" not in _resolver()(rule["Properties"])  # the default bus
        assert _resolver(EventBusName="team-events")(rule["Properties"])["EventBusName"] == "team-events"


def test_the_notify_function_reads_the_stream_and_may_only_put_events_on_its_bus():
    template = _template()
    props = template["Resources"]["NotifyFunction"]["Properties"]
    source = props["Events"]["ItemChanges"]["Properties"]
    assert source["Stream"] == {"Fn::GetAtt": ["StreamsTable", "StreamArn"]}
    assert source["BatchSize"] <= notifications.MAX_ENTRIES
    (only,) = [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]
    assert only["eventName"] == ["INSERT", "MODIFY"]  # a removed item never notifies
    assert set(only["dynamodb"]["NewImage"]["kind"]["S"]) == set(notifications.KINDS)
    for parameters, bus in (({}, "default"), ({"EventBusName": "team-events"}, "team-events")):
        resolve = _resolver(**parameters)
        statements = [s for p in resolve(props["Policies"]) if "Statement" in p for s in p["Statement"]]
        assert statements == [{"Sid": "PublishNotifications", "Effect": "Allow", "Action": ["events:PutEvents"],
                               "Resource": f"arn:aws:events:us-east-1:123456789012:event-bus/{bus}"}]
        assert resolve(props["Environment"]["Variables"]["EVENT_BUS_NAME"]) == parameters.get("EventBusName", "")
        assert resolve(template["Outputs"]["NotificationBusName"]["Value"]) == bus


def _emitted_metrics() -> set[str]:
    """Every metric name the handlers can emit (static names, and the dynamic ones from their parts)."""
    code = "\n".join(p.read_text() for p in (ROOT / "functions").glob("*/*.py"))
    names = set(re.findall(r'add_metric\(name="(\w+)"', code)) | set(re.findall(r'\("(\w+)", "\w+"\)', code))
    names |= {"Fires" + s for s in ("Deployed", "Deploying", "Failed", "WaitingForImage")}
    names |= {"Rollout" + s for s in ("InProgress", "Completed", "Failed")}
    names |= {"Notified" + t.replace(" ", "") for t in notifications.SCHEMAS}
    return names


def test_the_dashboard_shows_every_dlq_and_only_metrics_that_exist():
    template = _template()
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    titles = [w["properties"]["title"] for w in dashboard["widgets"]]
    assert titles == ["Tags moved", "Fires", "Failures", "Gate waits", "DLQ depths", "Reconciler errors"]
    dlqs = {a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for a in template["Resources"].values()
            if a["Type"] == "AWS::CloudWatch::Alarm" and a["Properties"]["Namespace"] == "AWS/SQS"}
    assert dlqs >= {"IngestDLQ", "FanoutDLQ", "FireDLQ", "OpsDLQ", "NotifyDLQ"}
    shown = set(re.findall(r'"QueueName", "\$\{(\w+)\.QueueName\}"', body))
    assert shown == dlqs
    ours = set(re.findall(r'\["ImageStreams", "(\w+)", "service", "\$\{AWS::StackName\}"\]', body))
    assert ours and ours <= _emitted_metrics(), ours - _emitted_metrics()
    assert "ReconcileErrors" in ours and "NotifiedGateWaiting" in ours
    assert "DashboardName" not in template["Resources"]["Dashboard"]["Properties"]  # two stacks fit in one account
    assert template["Outputs"]["DashboardName"]["Value"] == {"Ref": "Dashboard"}


def test_the_notify_handler_imports_nothing_the_fan_out_does_not():
    """Cold start: what ``import notify`` loads is what ``import fanout`` loads, plus the pure notifications module
    (the EventBridge client and adapter are built on the first batch)."""
    import subprocess
    import sys

    def loaded(handler: str) -> set[str]:
        paths = [str(ROOT / "functions" / handler), str(ROOT / "layers" / "core")]
        code = f"import sys; sys.path[:0] = {paths!r}; import {handler}; print('\\n'.join(sorted(sys.modules)))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        return set(done.stdout.split())

    extra = loaded("notify") - loaded("fanout")
    assert extra == {"notify", "imagestreams.notifications"}, extra
