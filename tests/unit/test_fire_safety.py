"""One writer per target resource: fires that write one ECS service, Kubernetes workload or Lambda function are
serialized and re-check the trigger once they hold the target; a target rollback or pause wins over a fire already
queued; one reconciler run at a time without reserved concurrency; admin commands that would fire many targets
queue them and answer at once. In-memory ports, with drivers that write the way the real ones do."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imagestreams.adapters.ecs import EcsDriver, classify
from imagestreams.adapters.eks import EksDriver, KubeError
from imagestreams.adapters.memory import ListQueue, MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.adapters.sqs import SqsFireQueue
from imagestreams.admin import dispatch
from imagestreams.errors import TargetError, TransientTargetError
from imagestreams.model import EcsTarget, EksTarget, StreamTag, pinned_ref, target_key
from imagestreams.ports import DriverResult
from imagestreams.services import ImageStreams
from tests.conftest import FakeContext, digest

REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
APP, WORKER = StreamTag("team/app", "latest"), StreamTag("team/worker", "latest")


class CloningEcs(MemoryEcs):
    """ECS as the real driver writes it: a fire reads the service's whole task definition and registers a clone of
    it with one image replaced, then points the service at the clone. ``between`` runs once, between the read and
    the write (another fire getting in there)."""

    def __init__(self) -> None:
        super().__init__()
        self.between: Any = None

    def apply(self, target: EcsTarget, image: str, **_: Any) -> DriverResult:
        self.calls += 1
        key = (target.cluster, target.service)
        clone = dict(self.images[key])  # DescribeServices + DescribeTaskDefinition
        previous = clone[target.container]
        if previous == image:
            return DriverResult(changed=False, previous_image=previous)
        clone[target.container] = image
        hook, self.between = self.between, None
        if hook is not None:
            hook()
        self.images[key] = clone  # RegisterTaskDefinition + UpdateService
        self.revisions[key] = self.revisions.get(key, 1) + 1
        return DriverResult(changed=True, previous_image=previous, rollout_state="IN_PROGRESS",
                            deployment=f"ecs-svc/{self.revisions[key]}")


def pinned(stream_tag: StreamTag, n: int) -> str:
    return pinned_ref(REG, stream_tag.stream, digest(n))


class Deliveries:
    """The FIFO queue → deployer, with SQS's retry of a failed (transient) message."""

    def __init__(self, streams: ImageStreams, queue: ListQueue) -> None:
        self.streams, self.queue = streams, queue
        self.retried: list[str] = []

    def deliver(self, stream_tag: StreamTag, trigger_id: str) -> None:
        try:
            self.streams.fire_by_id(stream_tag, trigger_id)
        except TransientTargetError:
            self.retried.append(trigger_id)
            self.queue.items.append((stream_tag, trigger_id, ""))  # visible again later

    def drain(self) -> None:
        for _ in range(20):
            if not self.queue.items:
                return
            stream_tag, trigger_id, _ = self.queue.items.pop(0)
            self.deliver(stream_tag, trigger_id)
        raise AssertionError("queue never drained")


@pytest.fixture
def shared():
    """Two triggers on two containers of ONE ECS service, each following its own stream."""
    store, registry, ecs, queue = MemoryStore(), MemoryRegistry(REG), CloningEcs(), ListQueue()
    streams = ImageStreams(store, registry, {"ecs": ecs}, queue, sleep=lambda s: None)
    ecs.images[("prod", "web")] = {"app": "app:old", "worker": "worker:old", "sidecar": "envoy:1"}
    app = streams.add_trigger(APP, EcsTarget("prod", "web", "app"))
    worker = streams.add_trigger(WORKER, EcsTarget("prod", "web", "worker"))
    return streams, store, registry, ecs, queue, app, worker


def push(streams: ImageStreams, registry: MemoryRegistry, stream_tag: StreamTag, n: int) -> None:
    registry.set(stream_tag.stream, stream_tag.tag, digest(n))
    streams.sync(stream_tag)
    streams.head_moved(streams.store.get_head(stream_tag))


# ------------------------------------------------------------------------------- one writer per resource


def test_concurrent_fires_on_two_containers_of_one_service_keep_both_pins(shared):
    streams, store, registry, ecs, queue, app, worker = shared
    push(streams, registry, APP, 1)
    push(streams, registry, WORKER, 2)
    assert [i[1] for i in queue.items] == [app.id, worker.id]
    deliveries = Deliveries(streams, queue)
    queue.items.clear()
    # the worker's fire starts while the app's fire has read the task definition but not yet written its clone
    ecs.between = lambda: deliveries.deliver(WORKER, worker.id)
    deliveries.deliver(APP, app.id)
    deliveries.drain()
    images = ecs.images[("prod", "web")]
    assert images == {"app": pinned(APP, 1), "worker": pinned(WORKER, 2), "sidecar": "envoy:1"}
    assert deliveries.retried == [worker.id]  # it waited for the target instead of writing over it
    assert {t.id: t.last_triggered_digest for t in streams.list_triggers()} == {app.id: digest(1),
                                                                                worker.id: digest(2)}
    assert store.leases == {}  # every lease given back


def test_a_queued_fire_arriving_after_a_target_rollback_leaves_the_rolled_back_image(shared):
    streams, store, registry, ecs, queue, app, _ = shared
    push(streams, registry, APP, 1)
    push(streams, registry, APP, 2)
    Deliveries(streams, queue).drain()
    assert ecs.images[("prod", "web")]["app"] == pinned(APP, 2)
    push(streams, registry, APP, 3)  # a fire of digest 3 is queued...
    stream_tag, trigger_id, _ = queue.items.pop()

    # ...and the deployer has read the (still unpaused) trigger when a human rolls the target back
    original = store.head_and_triggers
    rolled: list[Any] = []

    def read_then_rollback(st):
        answer = original(st)
        if not rolled:
            rolled.append(None)
            rolled[0] = dispatch(streams, {"action": "rollback", "trigger": app.id, "actor": "human"})
        return answer

    store.head_and_triggers = read_then_rollback
    try:
        streams.fire_by_id(stream_tag, trigger_id)
    finally:
        store.head_and_triggers = original
    assert rolled[0]["ok"], rolled
    assert ecs.images[("prod", "web")]["app"] == pinned(APP, 1)  # the rollback, not the head
    trigger = store.get_trigger(app.id)
    assert trigger.paused and trigger.last_triggered_digest == digest(1)


def test_a_busy_target_is_retried_by_the_queue_and_a_conflict_for_a_person(shared):
    streams, store, registry, ecs, queue, app, _ = shared
    push(streams, registry, APP, 1)
    queue.items.clear()
    waits: list[float] = []
    streams.sleep = waits.append
    assert store.acquire_lease("target:" + target_key(app.target), "someone-else", 90)
    before = store.get_trigger(app.id)
    with pytest.raises(TransientTargetError, match="busy"):
        streams.fire_by_id(APP, app.id)
    assert store.get_trigger(app.id) == before and ecs.calls == 0  # nothing written, nothing recorded
    answer = dispatch(streams, {"action": "deploy", "id": app.id})
    assert answer["error"]["type"] == "Conflict" and "target busy" in answer["error"]["message"]
    assert 0 < sum(waits) <= 5 and len(waits) > 1  # waited briefly, with backoff
    assert ecs.calls == 0 and store.get_trigger(app.id) == before
    store.release_lease("target:" + target_key(app.target), "someone-else")
    answer = dispatch(streams, {"action": "deploy", "id": app.id})
    assert answer["ok"] and ecs.images[("prod", "web")]["app"] == pinned(APP, 1)


# ------------------------------------------------------------------------------------------- leases


def test_lease_is_exclusive_until_released_or_expired():
    store = MemoryStore()
    now = [1000.0]
    store.lease_clock = lambda: now[0]
    assert store.acquire_lease("target:x", "a", 30)
    assert not store.acquire_lease("target:x", "b", 30)
    assert store.acquire_lease("target:y", "b", 30)  # another resource is independent
    assert store.acquire_lease("target:x", "a", 30)  # its holder may extend it
    store.release_lease("target:x", "b")  # not b's: stays
    assert not store.acquire_lease("target:x", "b", 30)
    store.release_lease("target:x", "a")
    assert store.acquire_lease("target:x", "b", 30)
    now[0] += 31  # b crashed without releasing: the lease runs out
    assert store.acquire_lease("target:x", "c", 30)


# ----------------------------------------------------------------------------- ECS concurrent revisions


def test_too_many_concurrent_revisions_is_transient_and_retried():
    client = boto3.client("ecs", region_name="us-east-1")
    driver = EcsDriver(client)
    store, registry = MemoryStore(), MemoryRegistry(REG)
    streams = ImageStreams(store, registry, {"ecs": driver})
    registry.set(APP.stream, APP.tag, digest(1))
    streams.sync(APP)
    task_def = {"taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1", "family": "web",
                "containerDefinitions": [{"name": "app", "image": "app:old"}]}
    with Stubber(client) as stub:
        for _read in ("what trigger.add records it may clone", "the fire's own read"):
            stub.add_response("describe_services", {"services": [
                {"serviceName": "web", "status": "ACTIVE", "taskDefinition": task_def["taskDefinitionArn"]}],
                "failures": []})
            stub.add_response("describe_task_definition", {"taskDefinition": task_def, "tags": []})
        stub.add_client_error("register_task_definition", service_error_code="ClientException",
                              service_message="Too many concurrent attempts to create a new revision of the "
                                              "specified family.", http_status_code=400)
        with pytest.raises(TransientTargetError, match="Too many concurrent attempts"):
            streams.add_trigger(APP, EcsTarget("prod", "web", "app"))  # raised: the queue retries it
    trigger = streams.list_triggers()[0]
    assert trigger.last_error.startswith("will retry:") and trigger.last_triggered_digest is None


def test_other_client_exceptions_stay_permanent():
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "ClientException", "Message": "Container.image should not be blank"},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}, "RegisterTaskDefinition")
    assert isinstance(classify(error, "RegisterTaskDefinition"), TargetError)


# --------------------------------------------------------------------------------------------- EKS 409


class FakeKube:
    """A Kubernetes API for one workload: GET, and PATCH with the resourceVersion precondition (409 otherwise).
    ``on_patch`` runs before a PATCH is judged (someone else writing the workload at that moment)."""

    def __init__(self, containers: list[dict[str, Any]]) -> None:
        self.obj = {"metadata": {"name": "web", "namespace": "apps", "resourceVersion": "1", "generation": 1},
                    "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}, "status": {}}
        self.on_patch: list[Any] = []
        self.patches = 0

    def request(self, cluster: str, method: str, path: str, body: Any = None, content_type: str | None = None):
        if method == "GET":
            return json.loads(json.dumps(self.obj))
        if self.on_patch:
            self.on_patch.pop(0)()
        if body["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified; please apply your changes again")
        self.patches += 1
        for change in body["spec"]["template"]["spec"]["containers"]:
            self.set_image(change["name"], change["image"])
        return json.loads(json.dumps(self.obj))

    def set_image(self, name: str, image: str) -> None:
        for container in self.obj["spec"]["template"]["spec"]["containers"]:
            if container["name"] == name:
                container["image"] = image
        meta = self.obj["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        meta["generation"] += 1

    def image(self, name: str) -> str:
        return next(c["image"] for c in self.obj["spec"]["template"]["spec"]["containers"] if c["name"] == name)


@pytest.fixture
def eks():
    kube = FakeKube([{"name": "web", "image": "web:old"}, {"name": "envoy", "image": "envoy:1"}])
    store, registry = MemoryStore(), MemoryRegistry(REG)
    streams = ImageStreams(store, registry, {"eks": EksDriver(kube)})
    registry.set(APP.stream, APP.tag, digest(1))
    streams.sync(APP)
    trigger = streams.add_trigger(APP, EksTarget("prod", "apps", "Deployment", "web", "web"))
    assert kube.image("web") == pinned(APP, 1)
    registry.set(APP.stream, APP.tag, digest(2))
    streams.sync(APP)
    kube.patches = 0
    return streams, store, kube, trigger


def test_eks_conflict_does_not_overwrite_a_pause_made_meanwhile(eks):
    streams, store, kube, trigger = eks

    def rolled_back_by_someone():  # between our GET and our PATCH: the workload rolled back, the trigger paused
        kube.set_image("web", "web:hotfix")
        store.set_paused(trigger, True)

    kube.on_patch.append(rolled_back_by_someone)
    after = streams.fire_by_id(APP, trigger.id)
    assert kube.image("web") == "web:hotfix" and kube.patches == 0
    assert after.paused and after.last_triggered_digest == digest(1)


def test_eks_conflict_from_an_unrelated_write_is_retried_from_a_fresh_read(eks):
    streams, store, kube, trigger = eks
    kube.on_patch.append(lambda: kube.set_image("envoy", "envoy:2"))  # e.g. someone bumps the sidecar
    after = streams.fire_by_id(APP, trigger.id)
    assert kube.image("web") == pinned(APP, 2) and kube.image("envoy") == "envoy:2"
    assert after.status in ("Deployed", "Deploying") and after.last_triggered_digest == digest(2)
    kube.on_patch.extend([lambda n=n: kube.set_image("envoy", f"envoy:{n}") for n in range(3, 9)])
    registry = streams.registry
    registry.set(APP.stream, APP.tag, digest(3))
    streams.sync(APP)
    with pytest.raises(TransientTargetError, match="kept changing"):
        streams.fire_by_id(APP, trigger.id)
    assert store.get_trigger(trigger.id).last_error.startswith("will retry:")


# ----------------------------------------------------------------------------------------- SQS groups


class RecordingSqs:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.batches.append(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_fires_on_one_target_share_a_message_group_and_distinct_targets_do_not():
    from imagestreams.model import Head, Trigger, trigger_id, utcnow

    head = Head(APP, digest(1), 7, utcnow(), "push", "ecr", REG)
    targets = [EcsTarget("prod", "web", "app"), EcsTarget("prod", "web", "worker"),
               EcsTarget("arn:aws:ecs:us-east-1:123456789012:cluster/prod", "web", "sidecar"),
               EcsTarget("prod", "api", "app"),
               EksTarget("prod", "apps", "Deployment", "web", "web"),
               EksTarget("prod", "apps", "Deployment", "web", "envoy")]
    targets += [EcsTarget("prod", f"svc{n}", "app") for n in range(8)]
    triggers = [Trigger(trigger_id(APP, t), APP, t) for t in targets]
    sqs = RecordingSqs()
    SqsFireQueue(sqs, "https://queue").enqueue(triggers, head)
    assert [len(b) for b in sqs.batches] == [10, 4]
    entries = [e for b in sqs.batches for e in b]
    groups = [e["MessageGroupId"] for e in entries]
    assert groups[0] == groups[1] == groups[2]  # three containers of prod/web, however the cluster is spelled
    assert groups[4] == groups[5] != groups[0]
    assert len(set(groups)) == 1 + 1 + 1 + 8 and all(len(g) <= 128 for g in groups)
    assert len({e["MessageDeduplicationId"] for e in entries}) == len(entries)  # still one per trigger
    assert json.loads(entries[0]["MessageBody"]) == {"trigger": triggers[0].id, "from": str(APP),
                                                     "digest": digest(1), "generation": 7}


# ------------------------------------------------------------------------------- admin bulk operations


@pytest.fixture
def bulk():
    store, registry, ecs, queue = MemoryStore(), MemoryRegistry(REG), MemoryEcs(), ListQueue()
    streams = ImageStreams(store, registry, {"ecs": ecs}, queue)
    for service in ("a", "b", "c"):
        ecs.images[("prod", service)] = {"app": "app:old"}
    registry.set(APP.stream, APP.tag, digest(1))
    streams.sync(APP)
    ids = [dispatch(streams, {"action": "trigger.add", "from": str(APP), "paused": True, "target": {
        "type": "ecs", "cluster": "prod", "service": s, "container": "app"}})["result"]["id"] for s in "abc"]
    return streams, store, ecs, queue, ids


def drain_messages(streams: ImageStreams, queue: ListQueue) -> None:
    from datetime import datetime

    while queue.messages:
        body = queue.messages.pop(0)
        at = datetime.fromisoformat(body["at"].replace("Z", "+00:00")) if body.get("at") else None
        streams.fire_by_id(StreamTag.parse(body["from"]), body["trigger"], force=body.get("force") is True,
                           queued_at=at, was_paused=body.get("paused") is True)
    queue.items.clear()


def test_bulk_deploy_with_a_queue_answers_at_once_with_what_was_queued(bulk):
    streams, store, ecs, queue, ids = bulk
    answer = dispatch(streams, {"action": "deploy", "from": str(APP)})
    assert answer["ok"], answer
    result = answer["result"]
    assert sorted(result["queued"]) == sorted(ids) and ecs.calls == 0  # no target touched in the admin call
    assert sorted(t["id"] for t in result["triggers"]) == sorted(ids)
    assert all(t["paused"] and t["lastTriggeredDigest"] is None for t in result["triggers"])
    assert all(m["force"] for m in queue.messages)
    drain_messages(streams, queue)  # the deployer: deploy applies even to paused triggers
    assert all(ecs.images[("prod", s)]["app"] == pinned(APP, 1) for s in "abc")


def test_a_target_rollback_wins_over_a_deploy_queued_before_it(bulk):
    streams, store, ecs, queue, ids = bulk
    registry = streams.registry
    assert dispatch(streams, {"action": "deploy", "id": ids[0]})["ok"]  # single: synchronous
    registry.set(APP.stream, APP.tag, digest(2))
    streams.sync(APP)
    assert dispatch(streams, {"action": "deploy", "id": ids[0]})["result"]["triggers"][0][
        "lastTriggeredDigest"] == digest(2)
    registry.set(APP.stream, APP.tag, digest(3))
    streams.sync(APP)
    assert dispatch(streams, {"action": "deploy", "from": str(APP)})["result"]["queued"]
    rolled = dispatch(streams, {"action": "rollback", "trigger": ids[0], "actor": "human"})
    assert rolled["ok"] and ecs.images[("prod", "a")]["app"] == pinned(APP, 1)
    drain_messages(streams, queue)
    assert ecs.images[("prod", "a")]["app"] == pinned(APP, 1)  # the later rollback stands
    assert ecs.images[("prod", "b")]["app"] == pinned(APP, 3)  # the others got the deploy


def test_bulk_resume_queues_and_single_resume_fires_at_once(bulk):
    streams, store, ecs, queue, ids = bulk
    single = dispatch(streams, {"action": "trigger.resume", "id": ids[0]})["result"]
    assert single["queued"] == [] and single["triggers"][0]["lastTriggeredDigest"] == digest(1)
    calls = ecs.calls
    result = dispatch(streams, {"action": "trigger.resume", "from": str(APP)})["result"]
    assert sorted(result["queued"]) == sorted(ids) and ecs.calls == calls
    assert all(not t["paused"] for t in result["triggers"])
    assert not any(m.get("force") for m in queue.messages)
    drain_messages(streams, queue)
    assert all(ecs.images[("prod", s)]["app"] == pinned(APP, 1) for s in "abc")


def test_a_transient_failure_of_a_single_deploy_is_queued_not_a_function_error(bulk):
    streams, store, ecs, queue, ids = bulk

    def throttled(target, image):
        raise TransientTargetError("UpdateService: ThrottlingException: Rate exceeded")

    ecs.apply = throttled
    answer = dispatch(streams, {"action": "deploy", "id": ids[0]})
    assert answer["ok"] and answer["result"]["queued"] == [ids[0]]
    assert answer["result"]["triggers"][0]["lastError"].startswith("will retry:")


def test_without_a_queue_bulk_commands_fire_in_process(bulk):
    streams, store, ecs, queue, ids = bulk
    streams.fire_queue = None
    result = dispatch(streams, {"action": "deploy", "from": str(APP)})["result"]
    assert "queued" not in result and all(t["lastTriggeredDigest"] == digest(1) for t in result["triggers"])


# ---------------------------------------------------------------------------------- reconciler lease


class Context(FakeContext):
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


@pytest.fixture
def handler(monkeypatch):
    import reconciler as module

    store = MemoryStore()
    now = [1000.0]
    store.lease_clock = lambda: now[0]
    runs: list[str] = []
    during: list[Any] = []

    class Run:
        def run(self, out_of_time):
            runs.append("ran")
            if during:
                return during.pop(0)()
            return {"moves": [], "fired": [], "drift": [], "retried": [], "errors": [], "complete": True}

    monkeypatch.setattr(module, "services", lambda: type("S", (), {"store": store})())
    monkeypatch.setattr(module, "reconciler", lambda: Run())
    return module.lambda_handler, store, now, runs, during


def test_a_second_concurrent_reconciler_run_skips_without_error(handler):
    run, store, now, runs, during = handler
    seen: list[dict] = []

    def second_run_meanwhile():
        seen.append(run({"action": "reconcile"}, Context("run-2")))
        return {"moves": [], "fired": [], "drift": [], "retried": [], "errors": [], "complete": True}

    during.append(second_run_meanwhile)
    first = run({"action": "reconcile"}, Context("run-1"))
    assert "skipped" not in first and first["complete"] is True
    assert seen == [{"skipped": "another reconciler run is in progress"}] and runs == ["ran"]
    assert store.leases == {}  # released at the end: the next run goes ahead
    assert "skipped" not in run({"action": "reconcile"}, Context("run-3")) and len(runs) == 2


def test_a_crashed_reconciler_runs_lease_expires_and_an_exception_releases_it(handler):
    run, store, now, runs, during = handler
    assert store.acquire_lease("reconciler", "killed-at-its-timeout", 330)
    assert "skipped" in run({"action": "reconcile"}, Context("run-2")) and runs == []
    now[0] += 331
    assert "skipped" not in run({"action": "reconcile"}, Context("run-3")) and runs == ["ran"]

    def boom():
        raise RuntimeError("DescribeRepositories: 500")

    during.append(boom)
    with pytest.raises(RuntimeError):
        run({"action": "reconcile"}, Context("run-4"))
    assert store.leases == {}


def test_a_single_fire_late_in_the_call_is_queued_instead(bulk, monkeypatch):
    import imagestreams.admin as admin_module

    streams, store, ecs, queue, ids = bulk
    monkeypatch.setattr(admin_module, "SYNC_FIRE_WINDOW_SECONDS", -1.0)  # the call has used up its window
    result = dispatch(streams, {"action": "deploy", "id": ids[0]})["result"]
    assert result["queued"] == [ids[0]] and ecs.calls == 0


class DiscoveringEks(MemoryEcs):
    """Discovery finds ``n`` annotated workloads; firing one is slow (counted in ``calls``)."""

    current_pins = None  # an EKS driver: no task-definition family or roles to record

    def __init__(self, n: int) -> None:
        super().__init__()
        self.found = [(APP, EksTarget("prod", "apps", "Deployment", f"w{i}", "web"), False) for i in range(n)]

    def discover(self, cluster: str):
        return list(self.found), []

    def apply(self, target, image):
        self.calls += 1
        return DriverResult(changed=True, rollout_state="COMPLETED")


def test_discovery_with_a_queue_queues_its_fires_and_answers_at_once():
    store, registry, queue = MemoryStore(), MemoryRegistry(REG), ListQueue()
    eks = DiscoveringEks(5)
    streams = ImageStreams(store, registry, {"eks": eks}, queue)
    registry.set(APP.stream, APP.tag, digest(1))
    streams.sync(APP)
    result = dispatch(streams, {"action": "trigger.add", "from": "*",
                                "target": {"type": "eks", "cluster": "prod", "discover": True}})["result"]
    assert len(result["triggers"]) == 5 and sorted(result["queued"]) == sorted(t["id"] for t in result["triggers"])
    assert eks.calls == 0
    drain_messages(streams, queue)
    assert eks.calls == 5 and all(t.last_triggered_digest == digest(1) for t in streams.list_triggers())
