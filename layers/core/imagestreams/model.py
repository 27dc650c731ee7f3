"""Domain vocabulary (DESIGN.md §2): streams, stream tags, heads, history, triggers, targets.

Standard library only. Value types are ``NamedTuple``s: immutable, hashable, and about six times cheaper to
define than dataclasses, which matters at Lambda cold start (bench/run.py measures handler imports).
Everything that crosses a boundary (admin JSON, ECR events, DynamoDB items) is
validated here, so adapters and handlers never see a malformed name.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any, NamedTuple

from .errors import Invalid

DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# ECR repository names: lowercase path components separated by '/', each made of [a-z0-9] runs joined by
# single '.', '_' or '-'; 2-256 characters in all (CreateRepository API reference).
REPO_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
ECR_HOST_RE = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]{1,32})\.amazonaws\.com(?:\.cn)?")
# ECS cluster/service and container names: letters, digits, hyphens, underscores, 1-255 characters.
ECS_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
ECS_ARN_RE = re.compile(r"arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:(?:cluster|service)/[A-Za-z0-9_/-]{1,512}")

CAUSES = ("push", "tag", "alias", "rollback", "import", "delete")
STATUSES = ("WaitingForImage", "Deploying", "Deployed", "Failed")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with millisecond precision, e.g. ``2026-11-26T12:00:00.123Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def show(value: Any) -> str:
    """A value for an error message: its repr, cut short (never echo a 10 kB input back)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _require_str(value: Any, what: str, max_len: int = 1024) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise Invalid(f"{what} must not be empty")
    if len(value) > max_len:
        raise Invalid(f"{what} is too long ({len(value)} characters, at most {max_len})")
    return value


def validate_repository(name: Any) -> str:
    name = _require_str(name, "repository", 256)
    if len(name) < 2 or not REPO_RE.fullmatch(name):
        raise Invalid(
            f"invalid repository name {show(name)}: ECR names are 2-256 lowercase characters, path components "
            "of [a-z0-9] separated by '.', '_' or '-', joined by '/'"
        )
    return name


def validate_tag(tag: Any) -> str:
    tag = _require_str(tag, "tag", 128)
    if not TAG_RE.fullmatch(tag):
        raise Invalid(f"invalid tag {show(tag)}: tags match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")
    return tag


def validate_digest(digest: Any) -> str:
    digest = _require_str(digest, "digest", 128)
    if not DIGEST_RE.fullmatch(digest):
        raise Invalid(f"invalid digest {show(digest)}: expected sha256: followed by 64 lowercase hex characters")
    return digest


class StreamTag(NamedTuple):
    """``team/web:prod`` — one tag of one stream (an ECR repository)."""

    stream: str
    tag: str

    def __str__(self) -> str:
        return f"{self.stream}:{self.tag}"

    @classmethod
    def parse(cls, text: Any, what: str = "reference") -> StreamTag:  # type: ignore[override]
        ref = ImageRef.parse(text, what)
        if ref.tag is None or ref.digest is not None:
            raise Invalid(f"{what} must be a tag reference like repo:tag, got {show(text)}")
        return cls(ref.stream, ref.tag)


class ImageRef(NamedTuple):
    """A parsed reference: ``repo:tag``, ``repo@sha256:…`` or the full ECR URI form of either."""

    stream: str
    tag: str | None = None
    digest: str | None = None
    registry: str | None = None  # "<acct>.dkr.ecr.<region>.amazonaws.com" when given

    @classmethod
    def parse(cls, text: Any, what: str = "reference") -> ImageRef:
        text = _require_str(text, what, 512)
        registry = None
        rest = text
        first, sep, remainder = text.partition("/")
        if sep and ("." in first or ":" in first):
            if not ECR_HOST_RE.fullmatch(first):
                raise Invalid(f"{what} {show(text)} names registry {show(first)}, which is not an ECR registry host")
            registry, rest = first, remainder
        digest = tag = None
        if "@" in rest:
            rest, _, digest = rest.partition("@")
            validate_digest(digest)
        else:
            slash = rest.rfind("/")
            colon = rest.rfind(":")
            if colon > slash:
                rest, tag = rest[:colon], rest[colon + 1 :]
                validate_tag(tag)
        if tag is None and digest is None:
            raise Invalid(f"{what} {show(text)} has neither a tag (repo:tag) nor a digest (repo@sha256:...)")
        return cls(validate_repository(rest), tag, digest, registry)

    def __str__(self) -> str:
        base = f"{self.registry}/{self.stream}" if self.registry else self.stream
        return f"{base}@{self.digest}" if self.digest else f"{base}:{self.tag}"


def registry_host(registry_id: str, region: str) -> str:
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"{registry_id}.dkr.ecr.{region}{suffix}"


def pinned_ref(registry: str, stream: str, digest: str) -> str:
    """What targets receive: ``<registry>/<repo>@sha256:<hex>``. Never a tag."""
    return f"{registry}/{stream}@{digest}"


def runs_digest(image: str, registry: str, stream: str) -> str | None:
    """The digest a target runs, if its image string is this registry/repository pinned by digest (DESIGN §3.5).

    An image given by tag, or from another repository, runs no known digest: it always counts as behind.
    """
    prefix = f"{registry}/{stream}@"
    if image.startswith(prefix) and DIGEST_RE.fullmatch(image[len(prefix) :]):
        return image[len(prefix) :]
    return None


class Observation(NamedTuple):
    """What ECR says a tag points to right now."""

    digest: str
    media_type: str | None
    registry: str


class Head(NamedTuple):
    """The digest a stream tag points to now, with its generation. ``deleted`` marks a tombstone.

    ``rev`` counts every write of the head item (moves and alias links) and guards them all (optimistic lock);
    ``alias_of`` names the tag this one tracks, ``aliases`` the tags tracking this one (same stream);
    ``kept_in_registry`` marks a tag untagged from the stream but left in ECR: ECR still showing it is no move.
    """

    stream_tag: StreamTag
    digest: str
    generation: int
    at: datetime
    cause: str
    actor: str
    registry: str
    media_type: str | None = None
    alias_of: str | None = None
    deleted: bool = False
    rev: int = 0
    aliases: tuple[str, ...] = ()
    kept_in_registry: bool = False

    def entry(self) -> HistoryEntry:
        return HistoryEntry(self.digest, self.generation, self.at, self.cause, self.actor)

    @property
    def pinned(self) -> str:
        return pinned_ref(self.registry, self.stream_tag.stream, self.digest)


class HistoryEntry(NamedTuple):
    digest: str
    generation: int
    at: datetime
    cause: str
    actor: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "generation": self.generation,
            "at": rfc3339(self.at),
            "cause": self.cause,
            "actor": self.actor,
        }


class Move(NamedTuple):
    """One head change, as reported by ``tag``/``untag``/``rollback``/``import`` answers."""

    stream_tag: StreamTag
    from_digest: str | None
    to_digest: str | None
    generation: int
    cause: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": str(self.stream_tag),
            "from": self.from_digest,
            "to": self.to_digest,
            "generation": self.generation,
            "cause": self.cause,
        }


# --------------------------------------------------------------------------------------------- targets


class EcsTarget(NamedTuple):
    cluster: str
    service: str
    container: str

    @property
    def type(self) -> str:
        return "ecs"

    def as_dict(self) -> dict[str, Any]:
        return {"type": "ecs", "cluster": self.cluster, "service": self.service, "container": self.container}

    def describe(self) -> str:
        return f"ecs:{short_name(self.cluster)}/{short_name(self.service)}/{self.container}"


def short_name(name_or_arn: str) -> str:
    """An ECS cluster or service name from its name or ARN (``…:cluster/prod`` → ``prod``)."""
    return name_or_arn.rsplit("/", 1)[-1]


def function_name(name_or_arn: str) -> str:
    """A Lambda function name from its name, partial ARN (``123456789012:function:f``) or ARN."""
    return name_or_arn.rsplit(":", 1)[-1]


def _ecs_name(value: Any, what: str) -> str:
    value = _require_str(value, f"target.{what}", 1600)
    if not (ECS_NAME_RE.fullmatch(value) or ECS_ARN_RE.fullmatch(value)):
        raise Invalid(f"invalid target.{what} {show(value)}: expected a name of letters, digits, '-' or '_', "
                      "or an ECS ARN")
    return value


class EksTarget(NamedTuple):
    """A container (or initContainer) of a Deployment, StatefulSet, DaemonSet or CronJob in an EKS cluster."""

    cluster: str
    namespace: str
    kind: str
    name: str
    container: str

    @property
    def type(self) -> str:
        return "eks"

    def as_dict(self) -> dict[str, Any]:
        return {"type": "eks", "cluster": self.cluster, "namespace": self.namespace, "kind": self.kind,
                "name": self.name, "container": self.container}

    def describe(self) -> str:
        return f"eks:{self.cluster}/{self.namespace}/{self.kind.lower()}/{self.name}/{self.container}"


class LambdaTarget(NamedTuple):
    """A container-image Lambda function; with ``alias``, a version is published and the alias pointed at it."""

    function: str
    alias: str | None = None

    @property
    def type(self) -> str:
        return "lambda"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "lambda", "function": self.function}
        if self.alias:
            out["alias"] = self.alias
        return out

    def describe(self) -> str:
        return f"lambda:{function_name(self.function)}" + (f":{self.alias}" if self.alias else "")


Target = EcsTarget | EksTarget | LambdaTarget

TARGET_FIELDS = {
    "ecs": {"type", "cluster", "service", "container"},
    "eks": {"type", "cluster", "namespace", "kind", "name", "container", "discover"},
    "lambda": {"type", "function", "alias"},
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")
EKS_CLUSTER_RE = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LAMBDA_FUNCTION_RE = re.compile(
    r"(arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:)?[A-Za-z0-9_-]{1,64}|[0-9]{12}:function:[A-Za-z0-9_-]{1,64}")
LAMBDA_ALIAS_RE = re.compile(r"(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}")


def _missing(raw: dict[str, Any], kind: str, names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in raw]
    if missing:
        raise Invalid(f"{kind} target is missing {', '.join(missing)}")


def _match(raw: dict[str, Any], name: str, pattern: re.Pattern[str], max_len: int, rule: str) -> str:
    value = _require_str(raw[name], f"target.{name}", max_len)
    if not pattern.fullmatch(value):
        raise Invalid(f"invalid target.{name} {show(value)}: {rule}")
    return value


def is_discovery(raw: Any) -> bool:
    """``{"type": "eks", "cluster": …, "discover": true}``: adopt annotated workloads instead of one target."""
    return isinstance(raw, dict) and raw.get("type") == "eks" and raw.get("discover") is True


def parse_target(raw: Any) -> Target:
    if not isinstance(raw, dict):
        raise Invalid(f"target must be an object, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind not in TARGET_FIELDS:
        raise Invalid(f"target.type must be one of {sorted(TARGET_FIELDS)}, got {show(kind)}")
    unknown = set(raw) - TARGET_FIELDS[kind]
    if unknown:
        raise Invalid(f"unknown field(s) in {kind} target: {', '.join(sorted(map(str, unknown)))}")
    if kind == "ecs":
        _missing(raw, "ecs", ("cluster", "service", "container"))
        container = _match(raw, "container", ECS_NAME_RE, 255, "letters, digits, '-' and '_' only")
        return EcsTarget(_ecs_name(raw["cluster"], "cluster"), _ecs_name(raw["service"], "service"), container)
    if kind == "eks":
        if "discover" in raw:
            raise Invalid("discover must be true and comes with cluster only (and then adopts annotated workloads)")
        _missing(raw, "eks", ("cluster", "namespace", "kind", "name", "container"))
        if raw["kind"] not in WORKLOAD_KINDS:
            raise Invalid(f"target.kind must be one of {', '.join(WORKLOAD_KINDS)}, got {show(raw['kind'])}")
        return EksTarget(
            _match(raw, "cluster", EKS_CLUSTER_RE, 100, "an EKS cluster name"),
            _match(raw, "namespace", DNS_LABEL_RE, 63, "a Kubernetes namespace (DNS-1123 label)"),
            raw["kind"],
            _match(raw, "name", DNS_SUBDOMAIN_RE, 253, "a Kubernetes object name (DNS-1123 subdomain)"),
            _match(raw, "container", DNS_LABEL_RE, 63, "a Kubernetes container name (DNS-1123 label)"),
        )
    _missing(raw, "lambda", ("function",))
    function = _match(raw, "function", LAMBDA_FUNCTION_RE, 170, "a Lambda function name or ARN")
    alias = None
    if raw.get("alias") is not None:
        alias = _match(raw, "alias", LAMBDA_ALIAS_RE, 128, "a Lambda alias name")
    return LambdaTarget(function, alias)


def parse_discovery(raw: dict[str, Any]) -> str:
    unknown = set(raw) - {"type", "cluster", "discover"}
    if unknown:
        raise Invalid(f"unknown field(s) in an eks discovery target: {', '.join(sorted(map(str, unknown)))}")
    _missing(raw, "eks", ("cluster",))
    return _match(raw, "cluster", EKS_CLUSTER_RE, 100, "an EKS cluster name")


# -------------------------------------------------------------------------------------------- triggers


class TaskPins(NamedTuple):
    """What an ECS fire may clone: a revision of this task-definition family whose tasks get exactly these roles
    (None: no role). Recorded when a person adds or deploys the trigger; a fire that finds anything else fails."""

    family: str
    task_role: str | None = None
    execution_role: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, "taskRoleArn": self.task_role, "executionRoleArn": self.execution_role}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TaskPins:
        return cls(raw["family"], raw.get("taskRoleArn") or None, raw.get("executionRoleArn") or None)

    def changes(self, seen: TaskPins) -> list[str]:
        """What differs in ``seen`` from these pins, in words (empty when nothing does)."""
        out = []
        for what, mine, theirs in (("task-definition family", self.family, seen.family),
                                   ("task role", self.task_role, seen.task_role),
                                   ("execution role", self.execution_role, seen.execution_role)):
            if mine != theirs:
                out.append(f"{what} changed from {mine or 'none'} to {theirs or 'none'}")
        return out


class Trigger(NamedTuple):
    """Keep ``target`` on the head of ``stream_tag``."""

    id: str
    stream_tag: StreamTag
    target: Target
    paused: bool = False
    status: str = "WaitingForImage"
    last_triggered_digest: str | None = None
    last_triggered_at: datetime | None = None
    last_error: str | None = None
    rollout_state: str | None = None
    drift: str | None = None
    deployed_image: str | None = None  # the exact image string we last put into the target
    deployment: str | None = None  # ECS deployment id (or EKS generation) of our last change
    failures: int = 0  # consecutive failed fires
    retry_at: datetime | None = None  # when the reconciler may retry a failed fire (backoff)
    pins: TaskPins | None = None  # ECS: the family and roles a fire may clone (None: not recorded yet)

    def with_outcome(self, **changes: Any) -> Trigger:
        return self._replace(**changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": str(self.stream_tag),
            "target": self.target.as_dict(),
            "paused": self.paused,
            "status": self.status,
            "lastTriggeredDigest": self.last_triggered_digest,
            "lastTriggeredAt": rfc3339(self.last_triggered_at) if self.last_triggered_at else None,
            "lastError": self.last_error,
            "rolloutState": self.rollout_state,
            "drift": self.drift,
            "pins": self.pins.as_dict() if self.pins else None,
        }


def trigger_id(stream_tag: StreamTag, target: Target) -> str:
    """Deterministic id: adding the same trigger twice is idempotent."""
    key = f"{stream_tag}|{sorted(target.as_dict().items())}"
    return "tr-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def target_key(target: Target) -> str:
    """One key per real-world target (names, not ARNs), to find its triggers from an event about it."""
    if isinstance(target, EcsTarget):
        return f"ecs:{short_name(target.cluster)}/{short_name(target.service)}"
    if isinstance(target, EksTarget):
        return f"eks:{target.cluster}/{target.namespace}/{target.kind}/{target.name}"
    return f"lambda:{function_name(target.function)}"


TRIGGER_ID_RE = re.compile(r"tr-[a-f0-9]{12}")


def validate_trigger_id(value: Any) -> str:
    value = _require_str(value, "id", 64)
    if not TRIGGER_ID_RE.fullmatch(value):
        raise Invalid(f"invalid trigger id {show(value)}: expected tr- followed by 12 hex characters")
    return value
