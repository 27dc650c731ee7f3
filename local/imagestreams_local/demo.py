"""The local demo: an ECR push becomes a digest-pinned ECS rollout, on the embedded AWS.

Every step goes through the real handlers, wired the way template.yaml wires them: the ECR event is put on
EventBridge, the rule delivers it to the ingest function, the table's change stream feeds the fan-out function,
the FIFO queue feeds the deployer. The story checks its own outcome and exits non-zero if anything is off.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, TextIO

from imagestreams.cli import main, short, table

from .embedded import EmbeddedAws, Invocation
from .kube import FakeKubeApi
from .scanning import CLOCK

REPO = "team/web"
CLUSTER = "demo"
SERVICE = "web"
PROD_SERVICE = "web-prod"
STAGING_SERVICE = "web-staging"
SCANNED_REPO = "team/api"
SCANNED_SERVICE = "api"
EKS_CLUSTER = "demo-eks"
FUNCTION = "web-thumbnailer"
SIDECAR_IMAGE = "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable"
ACTOR = "arn:aws:iam::123456789012:user/demo"
# Lambda targets are off unless the stack names the functions it may update (sam deploy --parameter-overrides)
PARAMETERS = {"LambdaFunctionPattern": FUNCTION}


@dataclass
class Story:
    out: TextIO
    started: float = field(default_factory=time.monotonic)
    failures: list[str] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.say(f"\n[{time.monotonic() - self.started:5.1f}s] {text}")

    def check(self, ok: bool, text: str) -> None:
        self.say(f"        {'ok ' if ok else 'FAIL'} {text}")
        if not ok:
            self.failures.append(text)

    def on_invoke(self, inv: Invocation) -> None:
        if inv.error is not None:
            self.say(f"        -> {inv.function}: error {type(inv.error).__name__}: {inv.error}")
            return
        summary = _summarise(inv)
        if summary:
            self.say(f"        -> {inv.function}: {summary}")


def _summarise(inv: Invocation) -> str | None:
    result = inv.result or {}
    if inv.function == "IngestFunction":
        if result.get("status") == "moved":
            return "; ".join(f"{m['tag']} {short(m['from'])} => {short(m['to'])} (gen {m['generation']}, "
                             f"{m['cause']})" for m in result["moves"])
        return f"{result.get('status')}: {result.get('reason')}"
    if inv.function == "FanoutFunction":
        return f"head change from the table stream, {len(inv.event['Records'])} record(s) -> fires queued"
    if inv.function == "RolloutFunction" and "state" in result:
        return f"ECS deployment {result['state']}: trigger(s) {', '.join(result['triggers']) or 'none'}"
    if inv.function == "GatesFunction":
        if "Records" in inv.event:
            return f"{len(inv.event['Records'])} wake-up(s) from the gate clock (SQS, delayed)"
        if "kind" in result:
            again = ", ".join(result.get("triggers") or []) or "none"
            return (f"{inv.event.get('detail-type')} for {short(result.get('digest'))}: trigger(s) {again} judged "
                    f"again{', policy tags evaluated' if result.get('policies') else ''}")
    if inv.function == "DeployerFunction":
        failed = len(result.get("batchItemFailures", []))
        return f"{len(inv.event['Records'])} fire(s) from the FIFO queue, {failed} failed"
    return None


def _service_state(aws: EmbeddedAws, service: str = SERVICE) -> tuple[str, dict[str, str]]:
    ecs = aws.client("ecs")
    arn = ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]["taskDefinition"]
    containers = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"]
    return arn.rsplit("/", 1)[-1], {c["name"]: c["image"] for c in containers}


def _check_eks_and_lambda(aws: EmbeddedAws, kube: FakeKubeApi, story: Story, pinned: str) -> None:
    containers = kube.get("Deployment", "apps", "web")["spec"]["template"]["spec"]["containers"]
    images = {c["name"]: c["image"] for c in containers}
    story.check(images == {"web": pinned, "envoy": "envoyproxy/envoy:v1.31"},
                f"EKS Deployment apps/web: web = {REPO}@{short(pinned.rsplit('@', 1)[1])}, envoy untouched")
    function_image = aws.client("lambda").get_function(FunctionName=FUNCTION)["Code"]["ImageUri"]
    story.check(function_image == pinned, f"Lambda {FUNCTION} runs {REPO}@{short(pinned.rsplit('@', 1)[1])}")


def _cli(aws: EmbeddedAws, story: Story, argv: list[str]) -> None:
    """Run the real CLI in-process against the embedded AWS, as a user would on their laptop."""
    aws.use_function_env("AdminFunction")
    story.say(f"        $ imagestreams {' '.join(argv)}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(["--actor", ACTOR, *argv])
    story.say(_indent(buffer.getvalue().rstrip()))
    if code != 0:
        story.failures.append(f"imagestreams {' '.join(argv)} exited {code}")


def _admin(aws: EmbeddedAws, command: dict[str, Any]) -> dict[str, Any]:
    answer = aws.invoke("AdminFunction", {**command, "actor": ACTOR} if command["action"] != "history" else command)
    if not answer["ok"]:
        raise RuntimeError(f"admin {command['action']} failed: {answer['error']}")
    return answer["result"]


def run(out: TextIO = sys.stdout, *, use_dynamodb_local: bool | None = None) -> int:
    story = Story(out)
    with EmbeddedAws(use_dynamodb_local=use_dynamodb_local, on_invoke=story.on_invoke) as aws, \
            FakeKubeApi() as kube, warnings.catch_warnings():
        # a function run in this process that had nothing to count says so on stderr: Lambda logs it, not a demo
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        story.say("ImageStreams for AWS - local demo")
        story.step(f"embedded AWS up: moto server ({aws.moto_url}) for ECR/ECS/SQS/EventBridge, "
                   f"{aws.dynamodb_backend} for DynamoDB")
        outputs = aws.deploy(parameters=PARAMETERS)
        story.say(f"        stack created from template.yaml: {len(aws.functions)} functions, "
                  f"table {outputs['StreamsTableName']}, FIFO fire queue, DLQs, EventBridge rule")
        story.say("        parameters: " + ", ".join(f"{k}={v}" for k, v in PARAMETERS.items())
                  + " (Lambda targets are off by default)")

        ecr, ecs = aws.client("ecr"), aws.client("ecs")
        registry = ecr.create_repository(repositoryName=REPO)["repository"]["repositoryUri"].split("/")[0]
        ecs.create_cluster(clusterName=CLUSTER)
        task_def = ecs.register_task_definition(family=SERVICE, containerDefinitions=[
            {"name": "web", "image": f"{registry}/{REPO}:latest", "memory": 256, "essential": True},
            {"name": "log-router", "image": SIDECAR_IMAGE, "memory": 64, "essential": False},
        ])["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=task_def, desiredCount=2)
        story.step(f"ECR repository {REPO}; ECS service {CLUSTER}/{SERVICE} runs web = {REPO}:latest "
                   "(a moving tag) next to a log-router sidecar")

        aws.add_eks_cluster(EKS_CLUSTER, kube)
        kube.add("Deployment", "apps", "web", [{"name": "web", "image": f"{registry}/{REPO}:latest"},
                                               {"name": "envoy", "image": "envoyproxy/envoy:v1.31"}])
        aws.create_image_function(FUNCTION, f"{registry}/{REPO}:latest", architecture="arm64")
        story.step(f"EKS cluster {EKS_CLUSTER} (fake API server {kube.endpoint}, TLS + IAM token) runs Deployment "
                   f"apps/web with an envoy sidecar; Lambda function {FUNCTION} (container image, arm64)")

        story.step(f"trigger.add: keep {CLUSTER}/{SERVICE}:web, the EKS Deployment and the Lambda function on the "
                   f"head of {REPO}:latest")
        added = _admin(aws, {"action": "trigger.add", "from": f"{REPO}:latest",
                             "target": {"type": "ecs", "cluster": CLUSTER, "service": SERVICE, "container": "web"}})
        trigger_id = added["id"]
        others = [_admin(aws, {"action": "trigger.add", "from": f"{REPO}:latest", "target": target})["trigger"]
                  for target in ({"type": "eks", "cluster": EKS_CLUSTER, "namespace": "apps", "kind": "Deployment",
                                  "name": "web", "container": "web"},
                                 {"type": "lambda", "function": FUNCTION})]
        story.check(added["trigger"]["status"] == "WaitingForImage" and
                    all(t["status"] == "WaitingForImage" for t in others),
                    f"triggers {trigger_id}, {others[0]['id']}, {others[1]['id']} are WaitingForImage (no head yet)")

        story.step(f"docker push {REPO}:1 and {REPO}:latest (v1) -> ECR emits one 'ECR Image Action' PUSH per tag")
        v1 = aws.push_image(REPO, "latest", seed="v1", also=("1",))
        aws.pump()
        d1 = v1["detail"]["image-digest"]
        revision, images = _service_state(aws)
        story.check(images["web"] == f"{registry}/{REPO}@{d1}",
                    f"service now on task definition {revision} (a new revision), web = {REPO}@{short(d1)}")
        story.check(images["log-router"] == SIDECAR_IMAGE, "sidecar image untouched")
        _check_eks_and_lambda(aws, kube, story, f"{registry}/{REPO}@{d1}")

        story.step(f"docker push {REPO}:2 and {REPO}:latest (v2): a rebuild under the same moving tag")
        v2 = aws.push_image(REPO, "latest", seed="v2", also=("2",))
        aws.pump()
        d2 = v2["detail"]["image-digest"]
        revision2, images = _service_state(aws)
        story.check(images["web"] == f"{registry}/{REPO}@{d2}",
                    f"service now on task definition {revision2}, web = {REPO}@{short(d2)}")

        story.step("EventBridge redelivers v1's old PUSH event late (out of order)")
        aws.emit(v1)
        aws.pump()
        story.step("...and v2's event a second time (duplicate)")
        aws.emit(v2)
        aws.pump()
        revision3, images = _service_state(aws)
        story.check(revision3 == revision2 and images["web"].endswith(d2),
                    f"nothing moved: service still on task definition {revision3} with v2")

        story.step(f"push by digest (no tag) to {REPO}: moves no tag")
        aws.push_image(REPO, None, seed="scratch")
        aws.pump()

        history = _admin(aws, {"action": "history", "target": f"{REPO}:latest"})
        story.check([e["digest"] for e in history["entries"]] == [d2, d1], "history has exactly two entries: v2, v1")

        # ---------------------------------------------------------------- promotion and rollbacks (CLI)
        prod_def = ecs.register_task_definition(family=PROD_SERVICE, containerDefinitions=[
            {"name": "web", "image": f"{registry}/{REPO}:prod", "memory": 256, "essential": True}],
        )["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(cluster=CLUSTER, serviceName=PROD_SERVICE, desiredCount=2, taskDefinition=prod_def)
        prod_trigger = _admin(aws, {"action": "trigger.add", "from": f"{REPO}:prod", "target": {
            "type": "ecs", "cluster": CLUSTER, "service": PROD_SERVICE, "container": "web"}})["id"]
        story.step(f"second service {CLUSTER}/{PROD_SERVICE} follows {REPO}:prod (trigger {prod_trigger}); "
                   f"prod got release 1 last week, today latest (v2) is promoted:")
        _cli(aws, story, ["tag", f"{REPO}:1", f"{REPO}:prod"])
        aws.pump()
        _cli(aws, story, ["tag", f"{REPO}:latest", f"{REPO}:prod"])
        aws.pump()
        _, images = _service_state(aws, PROD_SERVICE)
        story.check(images["web"].endswith(d2), f"{PROD_SERVICE} runs {REPO}@{short(d2)}; prod in ECR is latest's "
                                                "manifest, byte for byte")

        story.step("v2 misbehaves in prod: roll the tag back (a new head, cause rollback; ECR moves too)")
        _cli(aws, story, ["rollback", f"{REPO}:prod"])
        aws.pump()
        _, images = _service_state(aws, PROD_SERVICE)
        story.check(images["web"].endswith(d1), f"{PROD_SERVICE} followed prod back to {short(d1)}")

        story.step(f"roll only the {SERVICE} service back (target rollback): its trigger is paused")
        _cli(aws, story, ["rollback", "--trigger", trigger_id])
        _, images = _service_state(aws, SERVICE)
        story.check(images["web"].endswith(d1), f"{SERVICE} runs {short(d1)} again")

        story.step(f"docker push {REPO}:3 and {REPO}:latest (v3) while {SERVICE}'s trigger is paused")
        v3 = aws.push_image(REPO, "latest", seed="v3", also=("3",))
        aws.pump()
        d3 = v3["detail"]["image-digest"]
        _, images = _service_state(aws, SERVICE)
        story.check(images["web"].endswith(d1), f"{SERVICE} stayed on {short(d1)}: a human rolled it back")

        story.step(f"resume the trigger: {SERVICE} is behind, so it fires")
        _cli(aws, story, ["trigger", "resume", trigger_id])
        _, images = _service_state(aws, SERVICE)
        story.check(images["web"].endswith(d3), f"{SERVICE} now runs {short(d3)}")
        _check_eks_and_lambda(aws, kube, story, f"{registry}/{REPO}@{d3}")

        story.step(f"docker push {REPO}:4 and {REPO}:latest (v4), and EventBridge loses both events (best effort)")
        v4 = aws.push_image(REPO, "latest", seed="v4", also=("4",), emit=False)
        aws.pump()
        d4 = v4["detail"]["image-digest"]
        story.check(_service_state(aws)[1]["web"].endswith(d3), f"nothing happened: {SERVICE} still on {short(d3)}")
        story.step("the scheduled reconciler runs (every 15 minutes in AWS)")
        report = aws.run_schedule("ReconcilerFunction")
        aws.pump()
        story.say(f"        -> ReconcilerFunction: {report['moves']} missed move(s) imported, "
                  f"{report['fired']} fire(s), "
                  f"{report['drift']} drift, complete={report['complete']}")
        story.check(_service_state(aws)[1]["web"].endswith(d4), f"{SERVICE} caught up: {short(d4)}")
        _check_eks_and_lambda(aws, kube, story, f"{registry}/{REPO}@{d4}")

        _promotion_act(aws, story, registry, prod_trigger, d1)
        _scan_act(aws, story, registry)

        story.step("history (imagestreams history team/web:prod)")
        _cli(aws, story, ["history", f"{REPO}:prod"])
        story.step("stream (imagestreams describe team/web)")
        _cli(aws, story, ["describe", REPO])
        story.step("triggers (imagestreams trigger list)")
        _cli(aws, story, ["trigger", "list"])
        story.say("        (the local ECS never finishes a deployment: its triggers stay Deploying/IN_PROGRESS")
        story.say("        unless the demo sends the ECS deployment event, as it did for staging; on AWS, ECS")
        story.say("        sends them: Deployed/COMPLETED, or Failed if it fails)")
        story.step("what ran, per function")
        counts: dict[str, int] = {}
        for inv in aws.invocations:
            counts[inv.function] = counts.get(inv.function, 0) + 1
        story.say(_indent(table(["FUNCTION", "INVOCATIONS"], sorted(counts.items()))))

    if story.failures:
        story.say(f"\nDEMO FAILED: {len(story.failures)} check(s) failed")
        return 1
    story.say(f"\ndone in {time.monotonic() - story.started:.1f}s - every check passed")
    return 0


# ------------------------------------------------------------------------------------- promotion with gates


def _ecs_service(aws: EmbeddedAws, registry: str, service: str, image: str, container: str = "web") -> None:
    """A sample ECS service in the demo cluster whose one container runs ``image`` (by tag)."""
    ecs = aws.client("ecs")
    task_def = ecs.register_task_definition(family=service, containerDefinitions=[
        {"name": container, "image": f"{registry}/{image}", "memory": 256, "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=CLUSTER, serviceName=service, desiredCount=2, taskDefinition=task_def)


def _ecs_finishes(aws: EmbeddedAws, service: str) -> None:
    """What ECS sends when a deployment reaches steady state (the local ECS never gets there by itself)."""
    described = aws.client("ecs").describe_services(cluster=CLUSTER, services=[service])["services"][0]
    deployment = next(d["id"] for d in described["deployments"] if d["status"] == "PRIMARY")
    aws.emit({"source": "aws.ecs", "detail-type": "ECS Deployment State Change",
              "resources": [described["serviceArn"]],
              "detail": {"eventType": "INFO", "eventName": "SERVICE_DEPLOYMENT_COMPLETED", "deploymentId": deployment,
                         "updatedAt": CLOCK.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "reason": "ECS deployment completed."}})


def _trigger(aws: EmbeddedAws, trigger_id: str) -> dict[str, Any]:
    return next(t for t in _admin(aws, {"action": "trigger.list"})["triggers"] if t["id"] == trigger_id)


def _policy(aws: EmbeddedAws, target: str) -> dict[str, Any]:
    return next(p for p in _admin(aws, {"action": "policy.list", "stream": target.split(":")[0]})["policies"]
                if p["target"] == target)


def _promotion_act(aws: EmbeddedAws, story: Story, registry: str, prod_trigger: str, d1: str) -> None:
    """staging follows the newest 1.x release; prod follows staging once staging ran it for 30 minutes and a person
    approved it."""
    staging, prod = f"{REPO}:staging", f"{REPO}:prod"
    _ecs_service(aws, registry, STAGING_SERVICE, staging)
    staging_trigger = _admin(aws, {"action": "trigger.add", "from": staging, "target": {
        "type": "ecs", "cluster": CLUSTER, "service": STAGING_SERVICE, "container": "web"}})["id"]
    story.step(f"promotion pipeline: service {CLUSTER}/{STAGING_SERVICE} follows {staging} (trigger "
               f"{staging_trigger}), {CLUSTER}/{PROD_SERVICE} follows {prod} (trigger {prod_trigger}); "
               "staging takes the newest 1.x release, prod takes staging's after a 30-minute soak and an approval")
    _cli(aws, story, ["policy", "set", staging, "--semver", "^1"])
    _cli(aws, story, ["policy", "set", prod, "--follow", "staging", "--gate", f"verified:{staging_trigger}:30",
                      "--gate", "approval"])
    aws.pump()

    story.step(f"docker push {REPO}:1.4.0 (v5): the staging policy selects it")
    pushed = aws.push_image(REPO, "1.4.0", seed="v5")
    aws.pump()
    d5 = pushed["detail"]["image-digest"]
    moved = _admin(aws, {"action": "history", "target": staging})["entries"][0]
    story.check((moved["digest"], moved["cause"], moved["actor"]) == (d5, "policy", "policy:semver"),
                f"{staging} moved to {short(d5)} (cause policy, actor policy:semver), in ECR too")
    story.check(_service_state(aws, STAGING_SERVICE)[1]["web"] == f"{registry}/{REPO}@{d5}",
                f"{STAGING_SERVICE} rolls out {REPO}@{short(d5)}")
    gated = _policy(aws, prod)
    story.check(gated["status"] == "Gated" and (gated["gate"] or {}).get("type") == "verified"
                and _service_state(aws, PROD_SERVICE)[1]["web"].endswith(d1),
                f"{prod} is Gated ({(gated['gate'] or {}).get('reason')}); {PROD_SERVICE} stays on {short(d1)}")

    story.step(f"ECS finishes the {STAGING_SERVICE} deployment (SERVICE_DEPLOYMENT_COMPLETED)")
    _ecs_finishes(aws, STAGING_SERVICE)
    aws.pump()
    done = _trigger(aws, staging_trigger)
    story.check((done["status"], done["rolloutState"]) == ("Deployed", "COMPLETED"),
                f"trigger {staging_trigger}: {done['status']}/{done['rolloutState']}; the soak starts now")
    aws.notifications()  # what reached the bus so far (printed by the playground's log, not here)

    story.step("30 minutes pass (the runner's clock moves; the gate clock's delayed SQS message comes due)")
    aws.advance(30)
    aws.pump()
    waiting = _policy(aws, prod)
    story.check(waiting["status"] == "Gated" and waiting["gate"] == {
        "type": "approval", "state": "waiting", "reason": waiting["gate"]["reason"], "digest": d5},
        f"verified gate passed; {prod} waits for an approval of {short(d5)}")
    asked = [n for n in aws.notifications() if n["detail-type"] == "Gate Waiting"
             and n["detail"].get("target") == prod and n["detail"]["gate"]["type"] == "approval"]
    shown = {k: short(v) if k == "digest" else v for k, v in (asked[0]["detail"] if asked else {}).items()
             if k != "gate"}
    story.check(len(asked) == 1 and asked[0]["detail"]["digest"] == d5,
                f"notification on the bus: 'Gate Waiting' {json.dumps(shown)}")

    story.step("a person approves the digest")
    _cli(aws, story, ["approve", prod, d5])
    aws.pump()
    moved = _admin(aws, {"action": "history", "target": prod})["entries"][0]
    story.check((moved["digest"], moved["cause"], moved["actor"]) == (d5, "policy", ACTOR),
                f"{prod} moved to {short(d5)} (cause policy, actor = the approver)")
    story.check(_service_state(aws, PROD_SERVICE)[1]["web"] == f"{registry}/{REPO}@{d5}",
                f"{PROD_SERVICE} runs {REPO}@{short(d5)}")
    _cli(aws, story, ["policy", "list"])


def _scan_act(aws: EmbeddedAws, story: Story, registry: str) -> None:
    """A trigger gated on the scan: a CRITICAL finding blocks the new image and the service keeps the old one."""
    from . import scanning

    aws.client("ecr").create_repository(repositoryName=SCANNED_REPO,
                                        imageScanningConfiguration={"scanOnPush": True})
    scanning.configure(scan_delay=60)  # a basic scan on push completes a minute later on the runner's clock
    _ecs_service(aws, registry, SCANNED_SERVICE, f"{SCANNED_REPO}:latest", container="api")
    story.step(f"scan gate: ECR repository {SCANNED_REPO} scans on push; {CLUSTER}/{SCANNED_SERVICE} follows "
               f"{SCANNED_REPO}:latest only when no CRITICAL finding is reported")
    _cli(aws, story, ["trigger", "add", f"{SCANNED_REPO}:latest", "--ecs", f"{CLUSTER}/{SCANNED_SERVICE}:api",
                      "--gate", "scan:CRITICAL"])
    trigger_id = _admin(aws, {"action": "trigger.list", "from": f"{SCANNED_REPO}:latest"})["triggers"][0]["id"]

    story.step(f"docker push {SCANNED_REPO}:latest (a1); its scan completes a minute later, clean")
    a1 = aws.push_image(SCANNED_REPO, "latest", seed="a1", also=("a1",))["detail"]["image-digest"]
    aws.pump()
    gated = _trigger(aws, trigger_id)
    story.check(gated["status"] == "Gated", f"trigger {trigger_id} is {gated['status']}: "
                                            f"{(gated['gate'] or {}).get('reason')}")
    aws.advance(1)
    aws.pump()
    story.check(_service_state(aws, SCANNED_SERVICE)[1]["api"] == f"{registry}/{SCANNED_REPO}@{a1}",
                f"{SCANNED_SERVICE} runs {SCANNED_REPO}@{short(a1)} (scan passed)")

    story.step(f"docker push {SCANNED_REPO}:latest (a2); the scan finds 1 CRITICAL vulnerability")
    a2 = aws.push_image(SCANNED_REPO, "latest", seed="a2", also=("a2",))["detail"]["image-digest"]
    aws.pump()
    story.check(_trigger(aws, trigger_id)["status"] == "Gated", f"trigger {trigger_id} waits for a2's scan")
    scanning.set_scan(SCANNED_REPO, a2, counts={"CRITICAL": 1, "HIGH": 2})  # and ECR sends 'ECR Image Scan'
    aws.pump()
    blocked = _trigger(aws, trigger_id)
    story.check(blocked["status"] == "Blocked" and (blocked["gate"] or {}).get("digest") == a2
                and "1 CRITICAL finding" in (blocked["gate"] or {}).get("reason", ""),
                f"trigger {trigger_id} is {blocked['status']}: {(blocked['gate'] or {}).get('reason')}")
    story.check(_service_state(aws, SCANNED_SERVICE)[1]["api"] == f"{registry}/{SCANNED_REPO}@{a1}",
                f"{SCANNED_SERVICE} keeps {SCANNED_REPO}@{short(a1)}")
    scanning.configure(scan_delay=2)


def _indent(text: str) -> str:
    return "\n".join("        " + line for line in text.splitlines())
