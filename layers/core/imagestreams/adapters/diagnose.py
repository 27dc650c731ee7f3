"""The AWS reads of ``check`` (boto3), without CloudFormation: the stack's resources are named by the admin
function's environment (see :class:`imagestreams.check.Stack`).

Calls, one per resource: Lambda ``GetFunctionConfiguration``; EventBridge ``DescribeRule``; Scheduler
``GetSchedule``; SQS ``GetQueueAttributes`` (``ApproximateNumberOfMessages`` + ``…NotVisible``) and, for a queue that
is not empty, one CloudWatch ``GetMetricStatistics`` of ``AWS/SQS ApproximateAgeOfOldestMessage`` over the last hour
(the age is a metric, not a queue attribute; when the metric is not readable the age is reported as unknown); IAM
``SimulatePrincipalPolicy``; EKS ``DescribeAccessEntry``; ECR ``GetRepositoryPolicy``, ``StartLifecyclePolicyPreview``
for every repository first, then ``GetLifecyclePolicyPreview`` polled within :data:`PREVIEW_WAIT_SECONDS` shared
by all of them (a preview still running after that is reported, not waited for). For gates and notifications: Lambda
``ListEventSourceMappings`` per function, SNS ``GetTopicAttributes``, ECR ``GetRegistryScanningConfiguration``,
``BatchGetRepositoryScanningConfiguration`` and ``GetSigningConfiguration`` (each once per diagnosis and key).

Where verified: Lambda, EventBridge, Scheduler, SQS, CloudWatch and ECR repository policies against the embedded AWS
(moto) in tests/integration/test_check.py; lifecycle policy previews against the embedded AWS's test double of
them (local/imagestreams_local/lifecycle.py: tests/unit/test_lifecycle_double.py, tests/integration/
test_expiry_local.py). Moto implements neither ``SimulatePrincipalPolicy`` nor EKS access entries: those calls are
tested with botocore's Stubber and answers shaped as the AWS API reference documents them
(tests/unit/test_check.py), so their request shapes are validated by botocore but the answers are recorded, not
live. The same holds for the registry's scanning and signing configurations
(tests/unit/test_check_gates.py); event source mappings and topic attributes are also read from the embedded AWS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from ..check import Unreadable
from ..expiry import PreviewHit

PREVIEW_WAIT_SECONDS = 15.0  # in total: the admin function has 60 s
PREVIEW_POLL_SECONDS = 1.0
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}
MISSING = {"ResourceNotFoundException", "ResourceNotFound", "AWS.SimpleQueueService.NonExistentQueue",
           "QueueDoesNotExist", "RepositoryNotFoundException", "NoSuchEntity"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unreadable(doing: str, exc: Exception) -> Unreadable:
    """``doing`` is ``<iam action> <resource>``: a denial names the action the admin function's role lacks."""
    if isinstance(exc, ClientError):
        code = _code(exc)
        if code in DENIED:
            return Unreadable(f"{doing}: access denied ({code})", denied=doing.split(" ", 1)[0])
        return Unreadable(f"{doing}: {code}: {exc.response.get('Error', {}).get('Message', '')}")
    if isinstance(exc, ResponseParserError):
        return Unreadable(f"{doing}: the endpoint's answer could not be read (does it implement this call?)")
    return Unreadable(f"{doing}: {type(exc).__name__}: {exc}")


class AwsDiagnosis:
    def __init__(self, client: Callable[[str], Any], *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, preview_wait: float = PREVIEW_WAIT_SECONDS) -> None:
        self._client = client
        self._sleep = sleep
        self._clock = clock
        self._preview_wait = preview_wait  # for all repositories together
        self._deadline: float | None = None
        self._started: dict[str, bool | Unreadable] = {}

    def _call(self, service: str, operation: str, doing: str, *, missing: set[str] = MISSING, **kwargs: Any) -> Any:
        """One call; None when the resource does not exist; :class:`Unreadable` for any other fault."""
        try:
            return getattr(self._client(service), operation)(**kwargs)
        except ClientError as exc:
            if _code(exc) in missing:
                return None
            raise _unreadable(doing, exc) from exc
        except (BotoCoreError, ResponseParserError) as exc:  # a garbled answer (e.g. an endpoint's 500 page)
            raise _unreadable(doing, exc) from exc

    def function(self, name: str) -> dict[str, str] | None:
        out = self._call("lambda", "get_function_configuration", f"lambda:GetFunctionConfiguration {name}",
                         FunctionName=name)
        if out is None:
            return None
        return {"state": out.get("State") or "Active", "lastUpdateStatus": out.get("LastUpdateStatus") or "Successful"}

    def rule(self, name: str) -> str | None:
        out = self._call("events", "describe_rule", f"events:DescribeRule {name}", Name=name)
        return None if out is None else str(out.get("State"))

    def schedule(self, name: str) -> dict[str, str] | None:
        out = self._call("scheduler", "get_schedule", f"scheduler:GetSchedule {name}", Name=name)
        if out is None:
            return None
        return {"state": str(out.get("State")), "expression": str(out.get("ScheduleExpression") or "")}

    def queue(self, url: str) -> tuple[int, float | None] | None:
        out = self._call("sqs", "get_queue_attributes", f"sqs:GetQueueAttributes {url}", QueueUrl=url,
                         AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        if out is None:
            return None
        attrs = out.get("Attributes", {})
        count = int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
        return count, (self._oldest(url.rstrip("/").rsplit("/", 1)[-1]) if count else None)

    def _oldest(self, queue_name: str) -> float | None:
        """The age of the oldest message from CloudWatch (best effort: None when the metric is not readable)."""
        end = datetime.now(timezone.utc)
        try:
            out = self._client("cloudwatch").get_metric_statistics(
                Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage",
                Dimensions=[{"Name": "QueueName", "Value": queue_name}], StartTime=end - timedelta(hours=1),
                EndTime=end, Period=300, Statistics=["Maximum"])
        except (ClientError, BotoCoreError):
            return None
        points = out.get("Datapoints") or []
        if not points:
            return None
        return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])

    def simulate(self, role_arn: str, actions: list[str], resource: str,
                 context: Mapping[str, str] | None = None) -> dict[str, str]:
        kwargs: dict[str, Any] = {"PolicySourceArn": role_arn, "ActionNames": actions, "ResourceArns": [resource]}
        if context:
            kwargs["ContextEntries"] = [{"ContextKeyName": k, "ContextKeyValues": [v], "ContextKeyType": "string"}
                                        for k, v in context.items()]
        decisions: dict[str, str] = {}
        doing = f"iam:SimulatePrincipalPolicy {role_arn}"
        while True:
            out = self._call("iam", "simulate_principal_policy", doing, missing=set(), **kwargs)
            for result in out.get("EvaluationResults", []):
                decisions[result["EvalActionName"]] = result["EvalDecision"]
            if not out.get("IsTruncated"):
                return decisions
            kwargs["Marker"] = out["Marker"]

    def access_entry(self, cluster: str, principal_arn: str) -> bool:
        out = self._call("eks", "describe_access_entry", f"eks:DescribeAccessEntry {cluster}", clusterName=cluster,
                         principalArn=principal_arn)
        return out is not None

    def repository_policy(self, repository: str) -> str | None:
        out = self._call("ecr", "get_repository_policy", f"ecr:GetRepositoryPolicy {repository}",
                         missing={"RepositoryPolicyNotFoundException"}, repositoryName=repository)
        return None if out is None else out.get("policyText")

    def event_sources(self, function: str) -> list[dict[str, str]]:
        doing = f"lambda:ListEventSourceMappings {function}"
        kwargs: dict[str, Any] = {"FunctionName": function}
        found: list[dict[str, str]] = []
        while True:
            out = self._call("lambda", "list_event_source_mappings", doing, **kwargs)
            if out is None:
                return found
            for m in out.get("EventSourceMappings", []):
                found.append({"uuid": str(m.get("UUID", "")), "source": str(m.get("EventSourceArn", "")),
                              "state": str(m.get("State", "")), "lastResult": str(m.get("LastProcessingResult", "")),
                              "reason": str(m.get("StateTransitionReason", ""))})
            if not out.get("NextMarker"):
                return found
            kwargs["Marker"] = out["NextMarker"]

    def topic_attributes(self, topic_arn: str) -> dict[str, str] | None:
        out = self._call("sns", "get_topic_attributes", f"sns:GetTopicAttributes {topic_arn}",
                         missing={"NotFound", "NotFoundException"}, TopicArn=topic_arn)
        return None if out is None else dict(out.get("Attributes") or {})

    def registry_scan_type(self) -> str:
        out = self._call("ecr", "get_registry_scanning_configuration", "ecr:GetRegistryScanningConfiguration registry",
                         missing=set())
        return str((out.get("scanningConfiguration") or {}).get("scanType") or "BASIC")

    def repository_scanning(self, repository: str) -> dict[str, Any] | None:
        out = self._call("ecr", "batch_get_repository_scanning_configuration",
                         f"ecr:BatchGetRepositoryScanningConfiguration {repository}", repositoryNames=[repository])
        if out is None:
            return None
        for config in out.get("scanningConfigurations", []):
            if config.get("repositoryName") == repository:
                return {"scanOnPush": bool(config.get("scanOnPush")),
                        "frequency": str(config.get("scanFrequency") or "MANUAL")}
        for failure in out.get("failures", []):
            if failure.get("failureCode") == "REPOSITORY_NOT_FOUND":
                return None
            raise Unreadable(f"ecr:BatchGetRepositoryScanningConfiguration {repository}: "
                             f"{failure.get('failureCode')}: {failure.get('failureReason', '')}")
        return None

    def signing_configuration(self) -> list[dict[str, Any]] | None:
        out = self._call("ecr", "get_signing_configuration", "ecr:GetSigningConfiguration registry",
                         missing={"SigningConfigurationNotFoundException"})
        if out is None:
            return None
        return list((out.get("signingConfiguration") or {}).get("rules") or [])

    def start_lifecycle_previews(self, repositories: list[str]) -> None:
        """Start every repository's preview first, so they run side by side while the other checks read."""
        for repository in repositories:
            self._start(repository)

    def _start(self, repository: str) -> bool | Unreadable:
        """True: a preview runs (ours, or one already running); False: no lifecycle policy."""
        if repository not in self._started:
            try:
                self._started[repository] = self.start_preview(repository)
            except Unreadable as exc:
                self._started[repository] = exc
        return self._started[repository]

    def start_preview(self, repository: str) -> bool:
        """Start the repository's lifecycle policy preview (or join the one running): True; False when the
        repository has no lifecycle policy. Raises :class:`Unreadable`."""
        doing = f"ecr:StartLifecyclePolicyPreview {repository}"
        try:
            self._client("ecr").start_lifecycle_policy_preview(repositoryName=repository)
        except ClientError as exc:
            if _code(exc) == "LifecyclePolicyNotFoundException":
                return False
            if _code(exc) != "LifecyclePolicyPreviewInProgressException":  # one already runs: read that one
                raise _unreadable(doing, exc) from exc
        except (BotoCoreError, ResponseParserError) as exc:
            raise _unreadable(doing, exc) from exc
        return True

    def lifecycle_preview(self, repository: str) -> dict[str, str] | None:
        """Waits for the preview within one budget shared by every repository of this diagnosis."""
        started = self._start(repository)
        if isinstance(started, Unreadable):
            raise started
        if not started:
            return None
        if self._deadline is None:
            self._deadline = self._clock() + self._preview_wait
        while True:
            hits = self.preview_result(repository)
            if hits is not None:
                return {digest: hit.action for digest, hit in hits.items()}
            if self._clock() >= self._deadline:
                raise Unreadable(f"ecr:GetLifecyclePolicyPreview {repository}: the preview is still running after "
                                 f"{self._preview_wait:.0f} s of waiting; run check again in a minute")
            self._sleep(PREVIEW_POLL_SECONDS)

    def preview_result(self, repository: str) -> dict[str, PreviewHit] | None:
        """The repository's finished preview, every page (digest -> action, rule, tags); None while it runs. No
        waiting. Raises :class:`Unreadable` when it failed, expired or was never started."""
        doing = f"ecr:GetLifecyclePolicyPreview {repository}"
        kwargs: dict[str, Any] = {"repositoryName": repository}
        out = self._call("ecr", "get_lifecycle_policy_preview", doing,
                         missing={"LifecyclePolicyPreviewNotFoundException"}, **kwargs)
        if out is None:
            raise Unreadable(f"{doing}: the preview was not found")
        status = out.get("status")
        if status in ("FAILED", "EXPIRED"):
            raise Unreadable(f"{doing}: the preview {status}")
        if status != "COMPLETE":
            return None
        rules = _rule_texts(out.get("lifecyclePolicyText"))
        hits: dict[str, PreviewHit] = {}
        while True:
            for result in out.get("previewResults", []):
                action = str((result.get("action") or {}).get("type", "EXPIRE"))
                priority = result.get("appliedRulePriority")
                rule = rules.get(priority) or (f"rule {priority}" if priority is not None else "a lifecycle rule")
                hits[result["imageDigest"]] = PreviewHit(action, rule, tuple(result.get("imageTags") or ()))
            if not out.get("nextToken"):
                return hits
            kwargs["nextToken"] = out["nextToken"]
            out = self._call("ecr", "get_lifecycle_policy_preview", doing, **kwargs)


def _rule_texts(policy_text: Any) -> dict[int, str]:
    """Rule priority -> ``rule N: <description>`` from the lifecycle policy text (best effort)."""
    try:
        rules = json.loads(policy_text or "{}").get("rules") or []
    except (ValueError, AttributeError):
        return {}
    out: dict[int, str] = {}
    for rule in rules if isinstance(rules, list) else []:
        if isinstance(rule, dict) and isinstance(rule.get("rulePriority"), int):
            description = str(rule.get("description") or "").strip()[:200]
            out[rule["rulePriority"]] = f"rule {rule['rulePriority']}" + (f": {description}" if description else "")
    return out
