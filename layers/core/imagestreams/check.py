"""``check``: a read-only diagnosis of a deployed stack, like ``flux check``.

Every check is listed, the passing ones included. A finding is ``{"check", "subject", "status", "message", "fix"}``
with ``status`` one of ``ok`` | ``warn`` | ``error``:

- ``config``      the settings the checks need (function, rule, schedule, queue and role names) are present;
- ``function``    each of the stack's functions exists and is Active with its last update Successful;
- ``rule``        the EventBridge rules (ECR image events, ECS deployment events, scan and signing events) exist
  and are ENABLED;
- ``mapping``, ``notify-topic``, and per trigger or policy tag ``scan-gate`` and ``signature-gate``: see
  :mod:`imagestreams.check_gates`;
- ``schedule``    the reconciler's schedule exists and is ENABLED;
- ``dlq``         every dead-letter queue is empty (else how many messages, and since when when that is known);
- ``reconciler``  the reconciler finished a run within two schedule periods, and how many errors it reported;
- per trigger: ``permissions`` (the deployer's role may make the target's calls on that resource, and may assume
  a cross-account role), ``eks-access`` (an EKS access entry exists for each of our roles), ``lambda-pull`` (the
  repository policy lets Lambda pull), ``target`` (the target still exists and can be read);
- ``lifecycle``   per repository with a lifecycle policy: whether it would expire (or archive) a digest a target
  runs, or one of a tag's newest ``keepTagRevisions`` history entries.

The AWS reads go through the small :class:`Diagnosis` port; nothing here writes to the table or to a target.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from .check_common import ERROR, OK, WARN, Unreadable, finding, service_allows
from .check_gates import GateChecks
from .errors import ImageStreamsError, NotFound, TargetError, TransientTargetError
from .model import (
    EcsTarget,
    EksTarget,
    LambdaTarget,
    StreamTag,
    Trigger,
    cap_text,
    function_name,
    short_name,
    utcnow,
)

DEFAULT_KEEP_TAG_REVISIONS = 3  # the newest history entries per tag a lifecycle rule must not expire
DEFAULT_PERIOD = timedelta(minutes=15)
MAX_LISTED = 5  # digests named in one finding (the rest are counted)
MAX_MESSAGE = 300  # characters of an outside error message kept in a finding

# Environment variables naming the stack's resources, by what they are.
FUNCTIONS = {"Ingest": "INGEST_FUNCTION_NAME", "Fanout": "FANOUT_FUNCTION_NAME",
             "Deployer": "DEPLOYER_FUNCTION_NAME", "Reconciler": "RECONCILER_FUNCTION_NAME",
             "Rollout": "ROLLOUT_FUNCTION_NAME", "Gates": "GATES_FUNCTION_NAME", "Notify": "NOTIFY_FUNCTION_NAME"}
RULES = {"EcrImageEvents": "INGEST_RULE_NAME", "EcsDeploymentEvents": "ROLLOUT_RULE_NAME",
         "EcrImageScan": "SCAN_RULE_NAME", "Inspector2Scan": "ENHANCED_SCAN_RULE_NAME",
         "SignerJobStatusChange": "SIGNING_RULE_NAME"}
QUEUES = {"IngestDLQ": "INGEST_DLQ_URL", "FanoutDLQ": "FANOUT_DLQ_URL", "FireDLQ": "FIRE_DLQ_URL",
          "OpsDLQ": "OPS_DLQ_URL", "ScheduleDLQ": "SCHEDULE_DLQ_URL", "GateClockDLQ": "GATE_CLOCK_DLQ_URL",
          "NotifyDLQ": "NOTIFY_DLQ_URL"}
ROLES = {"Deployer": "DEPLOYER_ROLE_ARN", "Reconciler": "RECONCILER_ROLE_ARN", "Admin": "ADMIN_ROLE_ARN"}
SCHEDULE = "RECONCILE_SCHEDULE_NAME"
SCHEDULE_EXPRESSION = "RECONCILE_SCHEDULE"
TOPIC = "NOTIFICATION_TOPIC_ARN"  # optional: empty when the stack publishes to no SNS topic


class Diagnosis(Protocol):
    """The AWS reads ``check`` needs. Every method raises :class:`Unreadable` when it may not or cannot read."""

    def function(self, name: str) -> dict[str, str] | None:
        """``{"state", "lastUpdateStatus"}`` of a function; None when it does not exist."""

    def rule(self, name: str) -> str | None:
        """``ENABLED`` / ``DISABLED`` (or another state) of an EventBridge rule; None when it does not exist."""

    def schedule(self, name: str) -> dict[str, str] | None:
        """``{"state", "expression"}`` of an EventBridge Scheduler schedule; None when it does not exist."""

    def queue(self, url: str) -> tuple[int, float | None] | None:
        """Messages in a queue (visible + in flight) and the age of the oldest in seconds when known; None when the
        queue does not exist."""

    def simulate(self, role_arn: str, actions: list[str], resource: str,
                 context: Mapping[str, str] | None = None) -> dict[str, str]:
        """IAM's decision per action for this role on this resource (``allowed``, ``implicitDeny``,
        ``explicitDeny``)."""

    def access_entry(self, cluster: str, principal_arn: str) -> bool:
        """Whether the EKS cluster has an access entry for this principal."""

    def repository_policy(self, repository: str) -> str | None:
        """The repository policy text; None when the repository has none."""

    def start_lifecycle_previews(self, repositories: list[str]) -> None:
        """Start the previews of these repositories (optional: lets them run while the other checks read)."""

    def lifecycle_preview(self, repository: str) -> dict[str, str] | None:
        """Digest -> action (``EXPIRE`` or ``TRANSITION``) the repository's lifecycle policy would take now; None
        when it has no lifecycle policy."""

    def event_sources(self, function: str) -> list[dict[str, str]]:
        """The function's event source mappings: ``{"uuid", "source" (ARN), "state", "lastResult", "reason"}``."""

    def topic_attributes(self, topic_arn: str) -> dict[str, str] | None:
        """The SNS topic's attributes (``Policy``, ``KmsMasterKeyId``); None when it does not exist."""

    def registry_scan_type(self) -> str:
        """``BASIC`` or ``ENHANCED``: the registry's scanning."""

    def repository_scanning(self, repository: str) -> dict[str, Any] | None:
        """The repository's effective scanning: ``{"scanOnPush": bool, "frequency": "SCAN_ON_PUSH" |
        "CONTINUOUS_SCAN" | "MANUAL"}``; None when the repository does not exist."""

    def signing_configuration(self) -> list[dict[str, Any]] | None:
        """The rules of the registry's signing configuration (``signingProfileArn``, ``repositoryFilters``); None
        when it has none."""


class Stack(NamedTuple):
    """The stack's resources, as the admin function's environment names them."""

    functions: dict[str, str]
    rules: dict[str, str]
    schedule: str | None
    schedule_expression: str | None
    queues: dict[str, str]
    roles: dict[str, str]
    account_id: str | None
    region: str | None
    missing: tuple[str, ...] = ()
    topic: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Stack:
        env = os.environ if environ is None else environ
        missing: list[str] = []

        def pick(names: dict[str, str]) -> dict[str, str]:
            out = {}
            for label, var in names.items():
                value = (env.get(var) or "").strip()
                if value:
                    out[label] = value
                else:
                    missing.append(var)
            return out

        functions, rules, queues, roles = pick(FUNCTIONS), pick(RULES), pick(QUEUES), pick(ROLES)
        schedule = (env.get(SCHEDULE) or "").strip() or None
        if schedule is None:
            missing.append(SCHEDULE)
        return cls(functions, rules, schedule, (env.get(SCHEDULE_EXPRESSION) or "").strip() or None, queues, roles,
                   env.get("ACCOUNT_ID") or None, env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
                   tuple(missing), (env.get(TOPIC) or "").strip() or None)


def worst(findings: Iterable[dict[str, str]]) -> str:
    statuses = {f["status"] for f in findings}
    return ERROR if ERROR in statuses else WARN if WARN in statuses else OK


def period(expression: str | None) -> timedelta:
    """The period of ``rate(N unit)``; cron expressions and unknown ones count as the default 15 minutes."""
    match = re.fullmatch(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)", (expression or "").strip())
    if not match:
        return DEFAULT_PERIOD
    unit = match.group(2).rstrip("s")
    return timedelta(**{f"{unit}s": int(match.group(1))})


def age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def _listed(items: Iterable[str]) -> str:
    items = sorted(items)
    more = len(items) - MAX_LISTED
    return ", ".join(items[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


class Checker(GateChecks):
    def __init__(self, streams: Any, diagnosis: Diagnosis, stack: Stack, *,
                 keep_tag_revisions: int = DEFAULT_KEEP_TAG_REVISIONS, now: datetime | None = None) -> None:
        self.streams = streams
        self.aws = diagnosis
        self.stack = stack
        self.keep = keep_tag_revisions
        self.now = now or utcnow()
        self.running: dict[str, set[str]] = {}  # stream -> digests its targets run now (read live)
        self.simulated: dict[tuple[Any, ...], dict[str, str]] = {}

    # ------------------------------------------------------------------------------------------ entry

    def run(self, trigger_id: str | None = None) -> list[dict[str, str]]:
        """Every check of the stack, or only those of one trigger (and its repository's lifecycle)."""
        if trigger_id is not None:
            trigger = self.streams.store.get_trigger(trigger_id)
            if trigger is None:
                raise NotFound(f"no trigger {trigger_id}")
            triggers, streams = [trigger], [trigger.stream_tag.stream]
            out: list[dict[str, str]] = []
            policies: list[dict[str, str]] = []
        else:
            triggers = sorted(self.streams.store.all_triggers(), key=lambda t: t.id)
            out = self.stack_checks()
            policies = self.policy_gate_checks()
            streams = sorted(set(self.streams.store.live_streams()) | {t.stream_tag.stream for t in triggers})
        start = getattr(self.aws, "start_lifecycle_previews", None)
        if start is not None and streams:
            start(streams)  # previews run while the triggers are checked
        for trigger in triggers:
            out += self.trigger_checks(trigger)
        out += policies
        for stream in streams:
            out.append(self.lifecycle(stream, [t for t in triggers if t.stream_tag.stream == stream]))
        return out

    def _read(self, check: str, subject: str, fn: Any, *args: Any) -> tuple[Any, dict[str, str] | None]:
        try:
            return fn(*args), None
        except Unreadable as exc:
            fix = (f"allow {exc.denied} to the admin function's role" if exc.denied else
                   "run check again; if it stays, the message says what failed")
            return None, finding(check, subject, WARN, f"could not check: {cap_text(str(exc), MAX_MESSAGE)}", fix)

    # ------------------------------------------------------------------------------------------ stack

    def stack_checks(self) -> list[dict[str, str]]:
        out = [self.config()]
        for label, name in self.stack.functions.items():
            out.append(self.function(label, name))
        for label, name in self.stack.rules.items():
            out.append(self.rule(label, name))
        schedule_expression = self.stack.schedule_expression
        if self.stack.schedule:
            found, expression = self.schedule(self.stack.schedule)
            out.append(found)
            schedule_expression = expression or schedule_expression
        for label, url in self.stack.queues.items():
            out.append(self.dlq(label, url))
        out += self.notify_checks()
        out.append(self.reconciler(period(schedule_expression)))
        return out

    def config(self) -> dict[str, str]:
        if not self.stack.missing:
            return finding("config", "environment", OK, "every stack resource the checks read is named")
        return finding("config", "environment", WARN,
                       f"not set on the admin function: {', '.join(self.stack.missing)}; those checks are skipped",
                       "deploy the admin function with these environment variables (template.yaml)")

    def function(self, label: str, name: str) -> dict[str, str]:
        state, problem = self._read("function", label, self.aws.function, name)
        if problem:
            return problem
        if state is None:
            return finding("function", label, ERROR, f"function {name} does not exist",
                           "redeploy the stack (sam deploy)")
        if state.get("state") != "Active" or state.get("lastUpdateStatus", "Successful") != "Successful":
            return finding("function", label, ERROR,
                           f"function {name} is {state.get('state')}, last update {state.get('lastUpdateStatus')}",
                           f"aws lambda get-function-configuration --function-name {name} shows the reason; "
                           "redeploy the stack")
        return finding("function", label, OK, f"function {name} is Active")

    def rule(self, label: str, name: str) -> dict[str, str]:
        state, problem = self._read("rule", label, self.aws.rule, name)
        if problem:
            return problem
        if state is None:
            return finding("rule", label, ERROR, f"EventBridge rule {name} does not exist",
                           "redeploy the stack (sam deploy)")
        if state != "ENABLED":
            return finding("rule", label, ERROR, f"EventBridge rule {name} is {state}: its events are not delivered",
                           f"aws events enable-rule --name {name}")
        return finding("rule", label, OK, f"EventBridge rule {name} is ENABLED")

    def schedule(self, name: str) -> tuple[dict[str, str], str | None]:
        state, problem = self._read("schedule", "Reconcile", self.aws.schedule, name)
        if problem:
            return problem, None
        if state is None:
            return finding("schedule", "Reconcile", ERROR, f"schedule {name} does not exist",
                           "redeploy the stack (sam deploy)"), None
        if state.get("state") != "ENABLED":
            return finding("schedule", "Reconcile", ERROR,
                           f"schedule {name} is {state.get('state')}: the reconciler does not run",
                           f"enable it: aws scheduler update-schedule --name {name} --state ENABLED "
                           "(with its current target and expression), or redeploy the stack"), state.get("expression")
        return finding("schedule", "Reconcile", OK,
                       f"schedule {name} is ENABLED ({state.get('expression')})"), state.get("expression")

    def dlq(self, label: str, url: str) -> dict[str, str]:
        depth, problem = self._read("dlq", label, self.aws.queue, url)
        if problem:
            return problem
        if depth is None:
            return finding("dlq", label, ERROR, f"queue {url} does not exist", "redeploy the stack (sam deploy)")
        count, oldest = depth
        if count == 0:
            return finding("dlq", label, OK, "empty")
        since = f", oldest {age_text(oldest)}" if oldest is not None else ", age of the oldest unknown"
        return finding("dlq", label, ERROR, f"{count} message{'s' if count != 1 else ''}{since}",
                       f"read them (aws sqs receive-message --queue-url {url}), fix the cause named in the function's "
                       "logs, then redrive or purge the queue; the reconciler repairs missed moves and fires")

    def reconciler(self, every: timedelta) -> dict[str, str]:
        last_run = getattr(self.streams.store, "last_run", None)
        run = last_run() if last_run is not None else None
        if not run or not run.get("at"):
            return finding("reconciler", "last run", WARN, "no finished reconciler run recorded yet",
                           "wait one schedule period after deploying; if it stays, check the schedule and the "
                           "reconciler's logs")
        at = datetime.fromisoformat(str(run["at"]).replace("Z", "+00:00"))
        errors = int(run.get("errors") or 0)
        ago = self.now - at
        when = f"last run {age_text(max(ago.total_seconds(), 0))} ago"
        if ago > 2 * every:
            return finding("reconciler", "last run", ERROR,
                           f"{when}, more than two periods ({age_text(every.total_seconds())} each)",
                           "check the schedule and the ScheduleDLQ, and the reconciler's logs for timeouts")
        if errors:
            return finding("reconciler", "last run", WARN, f"{when}, {errors} error{'s' if errors != 1 else ''}",
                           "the reconciler's logs name each failed repository, tag or trigger")
        return finding("reconciler", "last run", OK, f"{when}, no errors")

    # ---------------------------------------------------------------------------------------- triggers

    def trigger_checks(self, trigger: Trigger) -> list[dict[str, str]]:
        out = [self.permissions(trigger)]
        if isinstance(trigger.target, EksTarget):
            out += self.eks_access(trigger)
        if isinstance(trigger.target, LambdaTarget):
            out.append(self.lambda_pull(trigger))
        out.append(self.target(trigger))
        out += self.gate_checks(trigger.id, trigger.stream_tag.stream, trigger.gates)
        return out

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.stack.region or '*'}:{self.stack.account_id or '*'}:{resource}"

    def calls(self, trigger: Trigger) -> list[tuple[list[str], str, dict[str, str] | None]]:
        """The calls a fire of this trigger makes: (actions, resource, IAM context)."""
        target = trigger.target
        calls: list[tuple[list[str], str, dict[str, str] | None]] = []
        role_arn = getattr(target, "role_arn", None)
        if role_arn:  # the target's own calls are made with that role's credentials, in its account
            return [(["sts:AssumeRole"], role_arn, None)]
        if isinstance(target, EcsTarget):
            service = target.service if target.service.startswith("arn:") else self._arn(
                "ecs", f"service/{short_name(target.cluster)}/{target.service}")
            calls.append((["ecs:DescribeServices", "ecs:UpdateService"], service, None))
            calls.append((["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"], "*", None))
            pins = trigger.pins
            for role in sorted({r for r in (pins.task_role, pins.execution_role) if r} if pins else set()):
                calls.append((["iam:PassRole"], role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}))
        elif isinstance(target, EksTarget):
            calls.append((["eks:DescribeCluster"], self._arn("eks", f"cluster/{target.cluster}"), None))
        elif isinstance(target, LambdaTarget):
            fn = target.function if target.function.startswith("arn:") else self._arn(
                "lambda", f"function:{target.function}")
            actions = ["lambda:GetFunction", "lambda:UpdateFunctionCode"]
            if target.alias:
                actions += ["lambda:PublishVersion", "lambda:GetAlias", "lambda:UpdateAlias"]
            calls.append((actions, fn, None))
            calls.append((["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                          self._arn("ecr", f"repository/{trigger.stream_tag.stream}"), None))
        return calls

    def permissions(self, trigger: Trigger) -> dict[str, str]:
        subject = trigger.id
        role = self.stack.roles.get("Deployer")
        if not role:
            return finding("permissions", subject, WARN, "the deployer's role is not named (DEPLOYER_ROLE_ARN)",
                           "deploy the admin function with DEPLOYER_ROLE_ARN set")
        denied: list[str] = []
        for actions, resource, context in self.calls(trigger):
            key = (role, tuple(actions), resource, tuple(sorted((context or {}).items())))
            if key not in self.simulated:  # triggers on one resource share their answers
                decisions, problem = self._read("permissions", subject, self.aws.simulate, role, actions,
                                                resource, context)
                if problem:
                    return problem
                self.simulated[key] = decisions
            decisions = self.simulated[key]
            denied += [f"{a} on {resource}" for a in actions if decisions.get(a) != "allowed"]
        if denied:
            return finding("permissions", subject, ERROR,
                           f"the deployer's role may not: {'; '.join(denied)}",
                           "widen the stack parameters that scope the deployer's policy (EcsClusterPattern, "
                           "TaskRolePattern, EksClusterPattern, LambdaFunctionPattern, RepositoryPattern) to this "
                           "target, or let the target role trust the deployer's role")
        role_arn = getattr(trigger.target, "role_arn", None)
        if role_arn:
            return finding("permissions", subject, OK,
                           f"the deployer's role may assume {role_arn}; that role's own permissions are granted in "
                           "its account and are not simulated from here")
        return finding("permissions", subject, OK, f"the deployer's role may fire {trigger.target.describe()}")

    def eks_access(self, trigger: Trigger) -> list[dict[str, str]]:
        cluster = trigger.target.cluster  # type: ignore[union-attr]
        out = []
        for label, role in sorted(self.stack.roles.items()):
            subject = f"{trigger.id} {label}"
            exists, problem = self._read("eks-access", subject, self.aws.access_entry, cluster, role)
            if problem:
                out.append(problem)
            elif not exists:
                out.append(finding(
                    "eks-access", subject, ERROR, f"EKS cluster {cluster} has no access entry for {role}",
                    f"aws eks create-access-entry --cluster-name {cluster} --principal-arn {role}, then "
                    f"associate a policy (or RBAC group) that may patch {trigger.target.kind} in "  # type: ignore[union-attr]
                    f"{trigger.target.namespace}"))  # type: ignore[union-attr]
            else:
                out.append(finding("eks-access", subject, OK, f"EKS cluster {cluster} admits {role}"))
        return out

    def lambda_pull(self, trigger: Trigger) -> dict[str, str]:
        stream = trigger.stream_tag.stream
        fn = trigger.target.function  # type: ignore[union-attr]
        text, problem = self._read("lambda-pull", trigger.id, self.aws.repository_policy, stream)
        if problem:
            return problem
        account = fn.split(":")[4] if fn.startswith("arn:") else self.stack.account_id
        if lambda_may_pull(text, account if account != self.stack.account_id else None):
            return finding("lambda-pull", trigger.id, OK, f"the policy of {stream} lets Lambda pull")
        statement = {"Sid": "LambdaPull", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                     "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}
        if account and account != self.stack.account_id:
            statement["Condition"] = {"StringLike": {"aws:sourceArn": f"arn:aws:lambda:*:{account}:function:*"}}
        return finding("lambda-pull", trigger.id, ERROR,
                       f"the repository policy of {stream} does not let Lambda pull for function {function_name(fn)}",
                       f"add this statement to the repository policy of {stream}: "
                       f"{json.dumps(statement, sort_keys=True)}")

    def target(self, trigger: Trigger) -> dict[str, str]:
        driver = self.streams.drivers[trigger.target.type]
        try:
            state = driver.inspect(trigger.target, None)
        except (TargetError, ImageStreamsError) as exc:
            return finding("target", trigger.id, ERROR, f"{trigger.target.describe()}: {exc}",
                           f"recreate the target, or remove the trigger (imagestreams trigger remove {trigger.id})")
        except TransientTargetError as exc:
            return finding("target", trigger.id, WARN, f"could not read {trigger.target.describe()}: {exc}",
                           "run check again; if it stays, look at the target's API")
        digest = running_digest(state.image, trigger.stream_tag.stream)
        if digest:
            self.running.setdefault(trigger.stream_tag.stream, set()).add(digest)
        return finding("target", trigger.id, OK, f"{trigger.target.describe()} runs {state.image}")

    # --------------------------------------------------------------------------------------- lifecycle

    def lifecycle(self, stream: str, triggers: list[Trigger]) -> dict[str, str]:
        actions, problem = self._read("lifecycle", stream, self.aws.lifecycle_preview, stream)
        if problem:
            return problem
        if actions is None:
            return finding("lifecycle", stream, OK, "no lifecycle policy")
        running = set(self.running.get(stream, set()))
        running |= {t.last_triggered_digest for t in triggers if t.last_triggered_digest}
        kept: dict[str, list[str]] = {}
        for head in self.streams.store.heads(stream):
            if head.deleted:
                continue
            for entry in self.streams.store.history(StreamTag(stream, head.stream_tag.tag), self.keep):
                kept.setdefault(entry.digest, []).append(f"{head.stream_tag.tag}@g{entry.generation}")
        hit_running = {d for d in running if d in actions}
        hit_kept = {d for d in kept if d in actions and d not in hit_running}
        fix = ("lifecycle rules select by tag and age, never by digest: give the images you keep a tag prefix the "
               "expiring rule does not select (tagPrefixList / tagPatternList), or raise its countNumber; "
               "`imagestreams prune` keeps what targets run and the newest history entries")
        if hit_running:
            return finding("lifecycle", stream, ERROR,
                           f"its lifecycle policy would {_verb(actions, hit_running)} digests targets run: "
                           f"{_listed(hit_running)}", fix)
        if hit_kept:
            return finding("lifecycle", stream, WARN,
                           f"its lifecycle policy would {_verb(actions, hit_kept)} the newest {self.keep} history "
                           f"entries of tags: {_listed(d + ' (' + ', '.join(kept[d]) + ')' for d in hit_kept)}", fix)
        return finding("lifecycle", stream, OK,
                       f"its lifecycle policy would touch {len(actions)} image(s), none a target runs or a tag's "
                       f"newest {self.keep} history entries")


def _verb(actions: Mapping[str, str], digests: Iterable[str]) -> str:
    kinds = {actions[d] for d in digests}
    return "expire" if kinds == {"EXPIRE"} else "archive" if "EXPIRE" not in kinds else "expire or archive"


def running_digest(image: str, stream: str) -> str | None:
    """The digest of an image string naming this repository by digest (``…/<stream>@sha256:…``)."""
    name, at, digest = image.partition("@")
    if not at or not (name == stream or name.endswith("/" + stream)):
        return None
    return digest


def lambda_may_pull(policy_text: str | None, other_account: str | None = None) -> bool:
    """Whether a repository policy has an Allow for the Lambda service with both pull actions (for a function in
    ``other_account``, one whose condition names that account, or none at all)."""
    needed = {"ecr:batchgetimage", "ecr:getdownloadurlforlayer"}
    for statement, actions in service_allows(policy_text, "lambda.amazonaws.com"):
        if not ("*" in actions or "ecr:*" in actions or needed <= actions):
            continue
        if other_account and "Condition" in statement and other_account not in json.dumps(statement["Condition"]):
            continue
        return True
    return False


def check(streams: Any, diagnosis: Diagnosis, stack: Stack, trigger_id: str | None = None, *,
          now: datetime | None = None) -> dict[str, Any]:
    findings = Checker(streams, diagnosis, stack, now=now).run(trigger_id)
    return {"findings": findings, "status": worst(findings)}
