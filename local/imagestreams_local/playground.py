"""The playground: the stack from template.yaml on the embedded AWS, running until Ctrl-C, for exploring by hand.

``up`` starts it and prints ``export`` lines; in another terminal, with those exports, ``imagestreams`` (the CLI),
``aws`` and boto3 talk to it, ``push`` pushes images and ``invoke`` runs one function of the template with a JSON
event. ``up`` keeps delivering events the way AWS would (EventBridge rules, the table's change stream, the fire
queue) and runs the reconciler on its schedule (``--fast``: every 10 seconds).

Sample targets are created at start so triggers have something to aim at: the ECS service ``prod/web`` (container
``web`` next to a ``log-router`` sidecar), the EKS Deployment ``prod-eks/apps/deployment/web`` (a fake Kubernetes API
server) and the container-image Lambda function ``web-fn``. The stack is deployed with the parameters that allow
them (``LambdaFunctionPattern=web-*``, ``TaskRolePattern=web-*``); by default the stack refuses Lambda targets and
task roles.

``scan`` and ``sign`` set an image's ECR scan result or signing status (a test double, see scanning.py; the events
AWS sends follow) and ``advance`` moves the playground's clock forward (delayed queue messages come due).

``--state DIR`` keeps streams, images, triggers and the sample targets in DIR across restarts (saved at exit);
scan results and signing statuses are not kept.
Limits: it is a test double, not AWS; see docs/concepts.md and the README's "Local runner" section.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from .embedded import (
    ACCOUNT,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ROOT,
    EmbeddedAws,
    FakeContext,
    Function,
    _image_manifest,
    ecr_event,
    put_manifest,
)

REPO = "team/web"
CLUSTER, SERVICE = "prod", "web"
EKS_CLUSTER = "prod-eks"
FUNCTION = "web-fn"
SIDECAR_IMAGE = "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable"
EXEC_ROLE = f"arn:aws:iam::{ACCOUNT}:role/web-task-execution"
PARAMETERS = {"LambdaFunctionPattern": "web-*", "TaskRolePattern": "web-*"}
STACK_VAR = "IMAGESTREAMS_LOCAL_STACK"
STATE_FILE = "playground.json"


class PlaygroundError(Exception):
    """A setup problem with a one-line fix (exit 1)."""


# ------------------------------------------------------------------------------------------------ up


def _keep_untagged_images() -> None:
    """moto drops an image when its last tag moves to another image; ECR keeps it untagged (so a rollback to it
    works). Patch the embedded ECR (in this process) to keep it."""
    from moto.ecr.models import ECRBackend

    if getattr(ECRBackend.put_image, "_keeps_untagged", False):
        return
    original = ECRBackend.put_image

    def put_image(self: Any, repository_name: str, image_manifest: str, image_tag: str, *args: Any,
                  **kwargs: Any) -> Any:
        repo = self.repositories.get(repository_name)
        previous = [i for i in repo.images if image_tag in i.image_tags] if repo is not None and image_tag else []
        image = original(self, repository_name, image_manifest, image_tag, *args, **kwargs)
        for old in previous:
            if old is not image and old not in repo.images:
                old.image_tags = []
                old.image_tag = None
                repo.images.append(old)
        return image

    put_image._keeps_untagged = True  # type: ignore[attr-defined]
    ECRBackend.put_image = put_image  # type: ignore[method-assign]


def _registry(aws: EmbeddedAws) -> str:
    return f"{ACCOUNT}.dkr.ecr.{aws.region}.amazonaws.com"


def _create_samples(aws: EmbeddedAws, kube: Any) -> None:
    registry = _registry(aws)
    ecr, ecs = aws.client("ecr"), aws.client("ecs")
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):  # scanned on push, like most repos
        ecr.create_repository(repositoryName=REPO, imageScanningConfiguration={"scanOnPush": True})
    ecs.create_cluster(clusterName=CLUSTER)
    task_def = ecs.register_task_definition(family=SERVICE, executionRoleArn=EXEC_ROLE, containerDefinitions=[
        {"name": "web", "image": f"{registry}/{REPO}:latest", "memory": 256, "essential": True},
        {"name": "log-router", "image": SIDECAR_IMAGE, "memory": 64, "essential": False},
    ])["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=task_def, desiredCount=2)
    aws.add_eks_cluster(EKS_CLUSTER, kube)
    kube.add("Deployment", "apps", "web", [{"name": "web", "image": f"{registry}/{REPO}:latest"},
                                           {"name": "envoy", "image": "envoyproxy/envoy:v1.31"}])
    aws.create_image_function(FUNCTION, f"{registry}/{REPO}:latest", architecture="arm64")


# ---- state: saved at exit, restored at start (moto keeps everything in memory)


def _save_state(aws: EmbeddedAws, kube: Any, path: Path) -> None:
    ecr, ecs, ddb, lam = aws.client("ecr"), aws.client("ecs"), aws.client("dynamodb"), aws.client("lambda")
    state: dict[str, Any] = {"repositories": {}, "families": {}, "services": [], "functions": [], "tables": {},
                             "kube": [], "eks": []}
    for repo in ecr.describe_repositories()["repositories"]:
        name = repo["repositoryName"]
        images = []
        for page in ecr.get_paginator("describe_images").paginate(repositoryName=name):
            for detail in page["imageDetails"]:
                got = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageDigest": detail["imageDigest"]}])
                for image in got["images"][:1]:
                    images.append({"manifest": image["imageManifest"],
                                   "mediaType": image.get("imageManifestMediaType", DOCKER_MANIFEST),
                                   "tags": detail.get("imageTags", [])})
        state["repositories"][name] = images
    for arn in ecs.list_task_definitions()["taskDefinitionArns"]:
        td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        keep = {k: td[k] for k in ("family", "containerDefinitions", "taskRoleArn", "executionRoleArn", "cpu",
                                   "memory", "networkMode", "requiresCompatibilities") if k in td}
        state["families"].setdefault(td["family"], []).append((td["revision"], keep))
    for cluster_arn in ecs.list_clusters()["clusterArns"]:
        cluster = cluster_arn.rsplit("/", 1)[-1]
        services = ecs.list_services(cluster=cluster)["serviceArns"]
        for svc in ecs.describe_services(cluster=cluster, services=services)["services"] if services else []:
            state["services"].append({"cluster": cluster, "service": svc["serviceName"],
                                      "taskDefinition": svc["taskDefinition"].rsplit("/", 1)[-1],
                                      "desiredCount": svc.get("desiredCount", 1)})
        if not services:
            state["services"].append({"cluster": cluster})
    for fn in lam.list_functions()["Functions"]:
        if fn.get("PackageType") == "Image":
            code = lam.get_function(FunctionName=fn["FunctionName"])["Code"]
            state["functions"].append({"name": fn["FunctionName"], "image": code.get("ImageUri"),
                                       "architecture": (fn.get("Architectures") or ["x86_64"])[0]})
    for logical, res in (aws.resolver.template["Resources"] if aws.resolver else {}).items():
        if res["Type"] == "AWS::DynamoDB::Table":
            table = aws.resolver.refs[logical]
            items = []
            for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
                items += page["Items"]
            state["tables"][logical] = items
    state["kube"] = [[list(key), obj] for key, obj in kube.objects.items()]
    state["eks"] = aws.client("eks").list_clusters()["clusters"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def _restore_state(aws: EmbeddedAws, kube: Any, path: Path) -> None:
    state = json.loads(path.read_text())
    ecr, ecs, ddb = aws.client("ecr"), aws.client("ecs"), aws.client("dynamodb")
    for name, images in state["repositories"].items():
        ecr.create_repository(repositoryName=name)
        for image in images:
            digest = "sha256:" + hashlib.sha256(image["manifest"].encode()).hexdigest()
            for tag in image["tags"] or [None]:
                kwargs = {"repositoryName": name, "imageManifest": image["manifest"], "imageDigest": digest,
                          "imageManifestMediaType": image["mediaType"], **({"imageTag": tag} if tag else {})}
                with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
                    ecr.put_image(**kwargs)
    for _family, revisions in state["families"].items():
        for _revision, td in sorted(revisions, key=lambda r: r[0]):
            ecs.register_task_definition(**td)
    for svc in state["services"]:
        ecs.create_cluster(clusterName=svc["cluster"])
        if "service" in svc:
            ecs.create_service(cluster=svc["cluster"], serviceName=svc["service"],
                               taskDefinition=svc["taskDefinition"], desiredCount=svc["desiredCount"])
    for fn in state["functions"]:
        aws.create_image_function(fn["name"], fn["image"], architecture=fn["architecture"])
    for key, obj in state["kube"]:
        kube.objects[tuple(key)] = obj
    for name in state["eks"]:
        aws.add_eks_cluster(name, kube)
    for logical, items in state["tables"].items():
        for item in items:
            ddb.put_item(TableName=aws.resolver.refs[logical], Item=item)
    _skip_stream_history(aws)


def _skip_stream_history(aws: EmbeddedAws) -> None:
    """Restored items are not news: start the table's change stream consumers after them."""
    streams = aws.client("dynamodbstreams")
    for source in aws.sources:
        if source.kind != "dynamodb":
            continue
        for shard in streams.describe_stream(StreamArn=source.stream_arn)["StreamDescription"]["Shards"]:
            source.iterators[shard["ShardId"]] = streams.get_shard_iterator(
                StreamArn=source.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST")["ShardIterator"]


def _exports(aws: EmbeddedAws, stack_file: Path) -> dict[str, str]:
    env = {key: os.environ[key] for key in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE") if os.environ.get(key)}
    admin = aws.functions["AdminFunction"].environment
    env.update({k: v for k, v in admin.items() if not k.startswith("POWERTOOLS_") and v != ""})
    env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    env[STACK_VAR] = str(stack_file)
    return env


def _parse_rate(expression: str) -> float:
    """``rate(15 minutes)`` -> seconds (the template's schedule)."""
    inner = expression.strip()[len("rate("):-1] if expression.startswith("rate(") else "15 minutes"
    amount, unit = inner.split()
    return int(amount) * {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400,
                          "days": 86400}.get(unit, 60)


def up(out: TextIO = sys.stdout, *, state: Path | None = None, fast: bool = False,
       use_dynamodb_local: bool | None = None, parameters: dict[str, str] | None = None,
       stop: threading.Event | None = None) -> int:
    from .kube import FakeKubeApi

    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread (tests): the caller sets ``stop``
            signal.signal(sig, lambda *_: stop.set())
    params = {**PARAMETERS, **(parameters or {})}
    state_file = state / STATE_FILE if state else None
    work = state if state is not None else Path(tempfile.mkdtemp(prefix="imagestreams-local-"))
    stack_file = work / "stack.json"

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    def log(inv: Any) -> None:
        if inv.function == "AdminFunction":
            return
        if inv.function == "NotifyFunction" and inv.error is None:  # what reached the bus, one line each
            for event in aws.notifications():
                say(f"{time.strftime('%H:%M:%S')} notification {event['detail-type']}: "
                    + json.dumps(event["detail"], sort_keys=True)[:200])
            return
        what = f"error {type(inv.error).__name__}: {inv.error}" if inv.error is not None else _summary(inv)
        if what:
            say(f"{time.strftime('%H:%M:%S')} {inv.function}: {what}")

    _keep_untagged_images()
    with EmbeddedAws(use_dynamodb_local=use_dynamodb_local, on_invoke=log) as aws, FakeKubeApi() as kube:
        outputs = aws.deploy(parameters=params)
        restored = state_file is not None and state_file.exists()
        if restored:
            _restore_state(aws, kube, state_file)
        else:
            _create_samples(aws, kube)
        aws.use_function_env("AdminFunction")
        exports = _exports(aws, stack_file)
        stack_file.parent.mkdir(parents=True, exist_ok=True)
        stack_file.write_text(json.dumps({
            "region": aws.region, "outputs": outputs, "parameters": params,
            "functions": {name: {"module": fn.module, "code_dir": str(fn.code_dir.relative_to(ROOT)),
                                 "handler": fn.handler_name, "environment": fn.environment}
                          for name, fn in aws.functions.items()},
            "schedules": aws.schedules, "exports": exports,
        }, indent=1))
        period = 10.0 if fast else _parse_rate(str(aws.resolver.refs.get("ReconcileSchedule")))
        lines = [f"export {key}={shlex.quote(value)}" for key, value in exports.items()]
        env_file = stack_file.with_name("env.sh")
        env_file.write_text("\n".join(lines) + "\n")
        say("# imagestreams-local up: the stack from template.yaml on an embedded AWS")
        say(f"#   moto {aws.moto_url} (ECR, ECS, EKS, Lambda, SQS, EventBridge), "
            + (f"DynamoDB Local {aws.dynamodb_url}" if aws.dynamodb_url else "moto for DynamoDB"))
        say(f"#   {len(aws.functions)} functions, table {outputs.get('StreamsTableName', '?')}, reconciler every "
            f"{period:g} s")
        say("#   parameters " + ", ".join(f"{k}={v}" for k, v in params.items()))
        say("#   (the stack's defaults refuse Lambda targets and task roles; these let triggers use the samples)")
        if restored:
            say(f"# state restored from {state}")
        else:
            say(f"# sample targets, all on {REPO}:latest: ECS service {CLUSTER}/{SERVICE} (container web),")
            say(f"#   EKS Deployment {EKS_CLUSTER}/apps/deployment/web, Lambda function {FUNCTION} (arm64)")
        say("# gate evidence (test doubles, docs/test-doubles.md): `imagestreams-local scan|sign REF`, "
            "`imagestreams-local advance MINUTES`")
        say(f"# in another terminal: source {env_file}")
        say("#   (or paste the export lines below); Ctrl-C here stops everything")
        for line in lines:
            say(line)
        say("# ready")
        next_reconcile = time.monotonic() + period
        while not stop.is_set():
            try:
                worked = aws.pump()
                if "ReconcilerFunction" in aws.schedules and time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + period
                    with contextlib.suppress(Exception):  # reported by ``log``; the schedule goes on
                        aws.run_schedule("ReconcilerFunction")
            except Exception as exc:  # noqa: BLE001 - a delivery problem is shown, the playground keeps running
                say(f"{time.strftime('%H:%M:%S')} delivery error {type(exc).__name__}: {exc}")
                worked = 0
            aws.invocations.clear()
            if not worked:
                stop.wait(0.2)
        if state_file is not None:
            _save_state(aws, kube, state_file)
            say(f"# state saved to {state}")
    with contextlib.suppress(OSError):  # the other terminal's commands now say the playground is not running
        for name in ("stack.json", "env.sh"):
            (work / name).unlink(missing_ok=True)
        if state is None:
            work.rmdir()
    say("# stopped")
    return 0


def _summary(inv: Any) -> str | None:
    result = inv.result or {}
    if inv.function == "IngestFunction":
        if result.get("status") == "moved":
            return "; ".join(f"{m['tag']} -> {m['to'][:19]} (generation {m['generation']}, {m['cause']})"
                             for m in result["moves"])
        return f"{result.get('status')}: {result.get('reason')}"
    if inv.function == "FanoutFunction":
        return f"{len(inv.event['Records'])} head change(s) -> fires queued"
    if inv.function == "DeployerFunction":
        failed = len(result.get("batchItemFailures", []))
        return f"{len(inv.event['Records'])} fire(s), {failed} failed"
    if inv.function == "ReconcilerFunction":
        return None if not (result.get("moves") or result.get("fired") or result.get("drift")) else (
            f"{result.get('moves')} missed move(s), {result.get('fired')} fire(s), {result.get('drift')} drift")
    return json.dumps(result, default=str)[:200]


# ------------------------------------------------------------------------------------ the other terminal


def _stack() -> dict[str, Any]:
    path = os.environ.get(STACK_VAR)
    if not path or not os.environ.get("AWS_ENDPOINT_URL"):
        raise PlaygroundError("no playground: run `imagestreams-local up` in another terminal and paste the "
                              "export lines it prints")
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise PlaygroundError(f"the playground is not running ({path} is gone): run `imagestreams-local up` "
                              "and paste its export lines again") from exc


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)


def parse_ref(ref: str, verb: str = "push") -> tuple[str, str]:
    repo, sep, tag = ref.rpartition(":")
    if not sep or not repo or not tag or "/" in tag or "@" in ref:
        raise PlaygroundError(f"{verb} takes REPOSITORY:TAG (like team/web:latest), got {ref!r}")
    return repo, tag


def push(ref: str, *, platforms: list[str] | None = None, emit: bool = True, wait: float = 10.0,
         out: TextIO = sys.stdout) -> int:
    """Build a small image (random config: real manifest bytes, digest = sha256 of them), put it in the running
    ECR and send the ECR event AWS would send; then wait until the stream tag's head moved."""
    repo, tag = parse_ref(ref)
    stack = _stack()
    ecr, events = _client("ecr"), _client("events")
    try:
        ecr.create_repository(repositoryName=repo)
        print(f"created ECR repository {repo}", file=out)
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    seed = uuid.uuid4().hex
    sent = []

    def put(manifest: str, media_type: str, image_tag: str | None) -> str:
        event = put_manifest(ecr, repo, image_tag, manifest, media_type)
        event["region"] = stack["region"]
        sent.append(event)
        return event["detail"]["image-digest"]

    if platforms:
        children = []
        for platform in platforms:
            os_name, _, arch = platform.partition("/")
            child = _image_manifest(f"{seed}-{arch}", arch, media_type=OCI_MANIFEST)
            children.append({"mediaType": OCI_MANIFEST, "digest": put(child, OCI_MANIFEST, None), "size": len(child),
                             "platform": {"architecture": arch, "os": os_name or "linux"}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, indent=3)
        digest = put(index, OCI_INDEX, tag)
    else:
        digest = put(_image_manifest(seed, "amd64"), DOCKER_MANIFEST, tag)
    if emit:
        for event in sent:
            events.put_events(Entries=[{"Source": event["source"], "DetailType": event["detail-type"],
                                        "Detail": json.dumps(event["detail"]), "Resources": []}])
    print(f"pushed {repo}:{tag} {digest}" + (f" (index of {', '.join(platforms)})" if platforms else "")
          + ("" if emit else " - no ECR event sent"), file=out)
    if emit and wait > 0:
        _wait_for_head(repo, tag, digest, wait, out)
    return 0


def _wait_for_head(repo: str, tag: str, digest: str, wait: float, out: TextIO) -> None:
    from imagestreams import bootstrap
    from imagestreams.admin import dispatch

    bootstrap.reset()
    deadline = time.monotonic() + wait
    head = None
    while time.monotonic() < deadline:
        answer = dispatch(bootstrap.services(), {"action": "describe", "stream": repo})
        tags = {t["tag"]: t for t in answer.get("result", {}).get("tags", [])} if answer.get("ok") else {}
        head = tags.get(tag)
        if head and head["digest"] == digest:
            break
        time.sleep(0.1)
    else:
        print(f"the head of {repo}:{tag} has not moved within {wait:g} s: is `imagestreams-local up` running?",
              file=out)
        return
    print(f"{repo}:{tag} is now generation {head['generation']}", file=out)
    ref = f"{repo}:{tag}"
    while time.monotonic() < deadline:  # let the fires it caused land, so the next command sees them
        triggers = dispatch(bootstrap.services(), {"action": "trigger.list", "from": ref})["result"]["triggers"]
        waiting = [t for t in triggers if not t["paused"] and t["lastTriggeredDigest"] != digest
                   and t["status"] not in ("Failed", "Blocked", "Gated")]
        if not waiting:
            for t in triggers:
                print(f"trigger {t['id']}: {t['status']}" + (f" ({t['lastError']})" if t.get("lastError") else ""),
                      file=out)
            return
        time.sleep(0.1)


def delete(ref: str, *, emit: bool = True, out: TextIO = sys.stdout) -> int:
    """Delete a tag from the running ECR (like ``aws ecr batch-delete-image``) and send the ECR DELETE event."""
    repo, tag = parse_ref(ref, "delete")
    stack = _stack()
    got = _client("ecr").batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": tag}])
    if not got.get("imageIds"):
        raise PlaygroundError(f"{repo}:{tag} is not in ECR")
    digest = got["imageIds"][0]["imageDigest"]
    if emit:
        event = ecr_event("DELETE", repo, digest, tag, None)
        event["region"] = stack["region"]
        _client("events").put_events(Entries=[{"Source": "aws.ecr", "DetailType": "ECR Image Action",
                                               "Detail": json.dumps(event["detail"]), "Resources": []}])
    print(f"deleted {repo}:{tag} ({digest})" + ("" if emit else " - no ECR event sent"), file=out)
    return 0


def function_names(stack: dict[str, Any]) -> dict[str, str]:
    """Accepted spellings of each function: ``IngestFunction``, ``ingest``, ``imagestreams-IngestFunction``."""
    names: dict[str, str] = {}
    for logical in stack["functions"]:
        for alias in (logical, logical.removesuffix("Function"), f"imagestreams-{logical}"):
            names[alias.lower()] = logical
    return names


def invoke(name: str, event_file: str, *, out: TextIO = sys.stdout) -> int:
    """Run one function of the template with a JSON event against the running playground; print its answer."""
    stack = _stack()
    logical = function_names(stack).get(name.lower())
    if logical is None:
        raise PlaygroundError(f"no function {name!r} in template.yaml; one of: {', '.join(sorted(stack['functions']))}")
    try:
        event = json.loads(Path(event_file).read_text() if event_file != "-" else sys.stdin.read())
    except OSError as exc:
        raise PlaygroundError(f"cannot read the event file {event_file!r}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise PlaygroundError(f"the event file {event_file!r} is not JSON: {exc}") from exc
    spec = stack["functions"][logical]
    fn = Function(logical, spec["module"], ROOT / spec["code_dir"], spec["handler"], spec["environment"])
    os.environ.update({**spec["environment"], "POWERTOOLS_LOG_LEVEL": "WARNING"})
    from imagestreams import bootstrap

    bootstrap.reset()
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # EMF metric lines, as Lambda prints them
        result = fn.handler()(event, FakeContext(f"imagestreams-{logical}"))
    print(json.dumps(result, indent=2, sort_keys=True, default=str), file=out)
    return 0


# ------------------------------------------------------------------------ scan findings, signing, clock


def parse_image_ref(ref: str, verb: str) -> tuple[str, str]:
    """``REPO:TAG`` or ``REPO@sha256:…`` -> (repository, tag or digest)."""
    repo, at, digest = ref.partition("@")
    hexes = digest.removeprefix("sha256:")
    if at and repo and digest.startswith("sha256:") and len(hexes) == 64 and set(hexes) <= set("0123456789abcdef"):
        return repo, digest
    try:
        if not at:
            return parse_ref(ref, verb)
    except PlaygroundError:
        pass
    raise PlaygroundError(f"{verb} takes REPOSITORY:TAG or REPOSITORY@sha256:<64 hex digits> (like team/web:latest), "
                          f"got {ref!r}")


def _control(body: dict[str, Any]) -> dict[str, Any]:
    """Post one command to the doubles' control endpoint inside the running playground."""
    import urllib.error
    import urllib.request

    from .scanning import CONTROL_PATH

    stack = _stack()
    body = {"region": stack["region"], **body}
    request = urllib.request.Request(os.environ["AWS_ENDPOINT_URL"].rstrip("/") + CONTROL_PATH,
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise PlaygroundError(json.loads(exc.read() or b"{}").get("error") or str(exc)) from exc
    except urllib.error.URLError as exc:
        raise PlaygroundError(f"the playground does not answer ({exc.reason}): is `imagestreams-local up` "
                              "running?") from exc


def scan(ref: str, *, counts: dict[str, int] | None = None, failed: bool = False, enhanced: bool | None = None,
         out: TextIO = sys.stdout) -> int:
    """Give an image this scan result (the ECR scan test double) and send the scan event AWS would send."""
    repo, image = parse_image_ref(ref, "scan")
    answer = _control({"op": "scan", "repository": repo, "image": image, "counts": counts or {},
                       "status": "FAILED" if failed else "COMPLETE", "enhanced": enhanced})
    status = answer["imageScanStatus"]["status"]
    found = (answer.get("imageScanFindings") or {}).get("findingSeverityCounts") or {}
    summary = ", ".join(f"{n} {severity}" for severity, n in found.items()) or "no findings"
    print(f"scan of {repo}@{answer['imageId']['imageDigest']}: {status}"
          + ("" if status == "FAILED" else f", {summary}"), file=out)
    return 0


def sign(ref: str, *, failed: bool = False, cosign: bool = False, out: TextIO = sys.stdout) -> int:
    """Set an image's managed-signing status (or attach a cosign signature referrer) and send the Signer event."""
    repo, image = parse_image_ref(ref, "sign")
    answer = _control({"op": "sign", "repository": repo, "image": image, "cosign": cosign,
                       "status": "FAILED" if failed else "COMPLETE"})
    if cosign:
        print(f"cosign signature {answer['referrer']['digest']} attached to {ref}", file=out)
        return 0
    status = answer["signingStatuses"][0]
    print(f"signing of {repo}@{answer['imageId']['imageDigest']}: {status['status']}"
          + (f" ({status['failureReason']})" if status.get("failureReason") else ""), file=out)
    return 0


def advance(minutes: float, *, out: TextIO = sys.stdout) -> int:
    """Move the playground's clock forward (delayed queue messages, scans and the functions' clock)."""
    if minutes <= 0:
        raise PlaygroundError(f"advance takes a positive number of minutes, got {minutes:g}")
    answer = _control({"op": "advance", "seconds": minutes * 60})
    print(f"the playground's clock is now {answer['now'][:19]}Z ({answer['offset'] / 60:g} min ahead)", file=out)
    return 0
