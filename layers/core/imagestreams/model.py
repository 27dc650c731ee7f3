"""Domain vocabulary (docs/concepts.md): streams, stream tags, heads, history, triggers, targets.

Standard library only. Value types are ``NamedTuple``s: immutable, hashable, and about six times cheaper to
define than dataclasses, which matters at Lambda cold start (bench/run.py measures handler imports).
Everything that crosses a boundary (admin JSON, ECR events, DynamoDB items) is
validated here, so adapters and handlers never see a malformed name.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import Forbidden, Invalid

if TYPE_CHECKING:  # gates.py imports this module
    from .gates import Gate, GateState

DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# ECR repository names: lowercase path components separated by '/', each made of [a-z0-9] runs joined by
# single '.', '_' or '-'; 2-256 characters in all (CreateRepository API reference).
REPO_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                     r"(?::[0-9]{1,5})?")
ECR_HOST_RE = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]{1,32})\.amazonaws\.com(?:\.cn)?")
# ECS cluster/service and container names: letters, digits, hyphens, underscores, 1-255 characters.
ECS_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
ECS_ARN_RE = re.compile(r"arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:(?:cluster|service)/[A-Za-z0-9_/-]{1,512}")

CAUSES = ("push", "tag", "alias", "rollback", "import", "delete")
STATUSES = ("WaitingForImage", "Deploying", "Deployed", "Failed", "Gated", "Blocked")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with millisecond precision, e.g. ``2026-11-26T12:00:00.123Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def show(value: Any) -> str:
    """A value for an error message: its repr, cut short (never echo a 10 kB input back)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


MAX_OUTSIDE_TEXT = 1024  # bytes of UTF-8: the most of any outside text (API errors, image strings, reasons) we keep


def cap_text(text: str | None, limit: int = MAX_OUTSIDE_TEXT) -> str | None:
    """Outside text as we store it: at most ``limit`` bytes of UTF-8, marked when cut (``… [cut, N more bytes]``).

    A 450 kB platform string or API message must not make a trigger item exceed DynamoDB's 400 KB, nor an answer
    Lambda's 6 MB. Lone surrogates (which UTF-8 cannot carry) become visible ``\\udXXX`` escapes.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = max(limit - len(f" … [cut, {len(data)} more bytes]".encode()), 0)
    kept = data[:room].decode("utf-8", "ignore")
    return f"{kept} … [cut, {len(data) - len(kept.encode())} more bytes]"


class Problems:
    """A bounded list of problem lines: the first ``limit`` kept (each capped by :func:`cap_text`), the rest only
    counted, so a thousand bad inputs cannot make an answer of megabytes."""

    def __init__(self, limit: int = 100, each: int = MAX_OUTSIDE_TEXT) -> None:
        self.limit, self.each = limit, each
        self.items: list[str] = []
        self.more = 0

    def append(self, text: str) -> None:
        if len(self.items) < self.limit:
            self.items.append(cap_text(text, self.each) or "")
        else:
            self.more += 1

    def extend(self, texts: Any) -> None:
        for text in texts:
            self.append(text)

    def __iadd__(self, texts: Any) -> Problems:
        self.extend(texts)
        return self

    def __len__(self) -> int:
        return len(self.items) + self.more

    def __iter__(self) -> Any:
        return iter(self.items)

    def lines(self) -> list[str]:
        """The kept lines, plus ``and N more`` when some were only counted."""
        return self.items + ([f"and {self.more} more"] if self.more else [])


def _require_str(value: Any, what: str, max_len: int = 1024) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise Invalid(f"{what} must not be empty")
    if len(value) > max_len:
        raise Invalid(f"{what} is too long ({len(value)} characters, at most {max_len})")
    return value


def fields(names: Any) -> str:
    """``field a`` or ``fields a, b`` (sorted, each shown cut short): error texts name what the user typed."""
    listed = sorted(show(n) if not isinstance(n, str) else show(n)[1:-1] for n in names)
    return ("field " if len(listed) == 1 else "fields ") + ", ".join(listed)


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


def check_registry(host: str, registry: str | None, text: Any, what: str) -> str:
    """The registry a reference names must be this stack's own ECR registry (``registry``); a reference to another
    account or region is refused, never rewritten to a local repository of the same name. When the stack's registry
    is not known (``registry`` None, e.g. no ACCOUNT_ID), no registry can be verified, so every reference that names
    one is refused: give ``repo:tag`` instead."""
    if not ECR_HOST_RE.fullmatch(host):
        raise Invalid(f"{what} {show(text)} names registry {show(host)}, which is not an ECR registry host")
    if registry is None:
        raise Invalid(f"{what} {show(text)} names registry {host}, and this stack's own registry is not known here; "
                      "give the repository without a registry (repo:tag)")
    if host != registry:
        raise Invalid(f"{what} {show(text)} names registry {host}, not this stack's registry {registry}: "
                      "only repositories of this account and region can be referenced")
    return host


class StreamTag(NamedTuple):
    """``team/web:prod`` — one tag of one stream (an ECR repository)."""

    stream: str
    tag: str

    def __str__(self) -> str:
        return f"{self.stream}:{self.tag}"

    @classmethod
    def parse(cls, text: Any, what: str = "reference", *,  # type: ignore[override]
              registry: str | None = None) -> StreamTag:
        """``repo:tag``, or ``<registry>/repo:tag`` where the registry must be ``registry`` (see ImageRef.parse)."""
        ref = ImageRef.parse(text, what, registry=registry)
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
    def parse(cls, text: Any, what: str = "reference", *, registry: str | None = None) -> ImageRef:
        """Parse a reference. A full ECR URI is accepted only when it names ``registry``, the stack's own registry
        host; any other registry is :class:`Invalid`, and with ``registry`` None (unknown) every registry is."""
        text = _require_str(text, what, 512)
        named = None
        rest = text
        first, sep, remainder = text.partition("/")
        if sep and ("." in first or ":" in first) and HOST_RE.fullmatch(first):  # '..' is a path, not a host
            named, rest = check_registry(first, registry, text, what), remainder
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
        return cls(validate_repository(rest), tag, digest, named)

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
    """The digest a target runs, if its image string is this registry/repository pinned by digest.

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
    pushed_at: datetime | None = None  # ECR's imagePushedAt (orders pattern policies by push time)


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
    pushed_at: datetime | None = None  # when ECR got the image (imagePushedAt), if it said

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
    pruned: bool = False  # the image was deleted from ECR by prune; the entry stays for audit

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "digest": self.digest,
            "generation": self.generation,
            "at": rfc3339(self.at),
            "cause": self.cause,
            "actor": self.actor,
        }
        if self.pruned:
            out["pruned"] = True
        return out


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
    role_arn: str | None = None  # another account's role every call on this target assumes
    external_id: str | None = None

    @property
    def type(self) -> str:
        return "ecs"

    def as_dict(self) -> dict[str, Any]:
        return _with_role(self, {"type": "ecs", "cluster": self.cluster, "service": self.service,
                                 "container": self.container})

    def describe(self) -> str:
        return f"ecs:{short_name(self.cluster)}/{short_name(self.service)}/{self.container}{_in_account(self)}"


def short_name(name_or_arn: str) -> str:
    """An ECS cluster or service name from its name or ARN (``…:cluster/prod`` → ``prod``)."""
    return name_or_arn.rsplit("/", 1)[-1]


def function_name(name_or_arn: str) -> str:
    """A Lambda function name from its name, partial ARN (``123456789012:function:f``) or ARN, each with or
    without a qualifier (``f:live``, ``…:function:f:live``)."""
    match = LAMBDA_REF_RE.fullmatch(name_or_arn)
    return match["name"] if match else name_or_arn.rsplit(":", 1)[-1]


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
    role_arn: str | None = None
    external_id: str | None = None

    @property
    def type(self) -> str:
        return "eks"

    def as_dict(self) -> dict[str, Any]:
        return _with_role(self, {"type": "eks", "cluster": self.cluster, "namespace": self.namespace,
                                 "kind": self.kind, "name": self.name, "container": self.container})

    def describe(self) -> str:
        return (f"eks:{self.cluster}/{self.namespace}/{self.kind.lower()}/{self.name}/{self.container}"
                f"{_in_account(self)}")


class LambdaTarget(NamedTuple):
    """A container-image Lambda function; with ``alias``, a version is published and the alias pointed at it."""

    function: str
    alias: str | None = None
    role_arn: str | None = None
    external_id: str | None = None

    @property
    def type(self) -> str:
        return "lambda"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "lambda", "function": self.function}
        if self.alias:
            out["alias"] = self.alias
        return _with_role(self, out)

    def describe(self) -> str:
        return (f"lambda:{function_name(self.function)}" + (f":{self.alias}" if self.alias else "")
                + _in_account(self))


Target = EcsTarget | EksTarget | LambdaTarget

ROLE_FIELDS = {"roleArn", "externalId"}
TARGET_FIELDS = {
    "ecs": {"type", "cluster", "service", "container"} | ROLE_FIELDS,
    "eks": {"type", "cluster", "namespace", "kind", "name", "container", "discover"} | ROLE_FIELDS,
    "lambda": {"type", "function", "alias"} | ROLE_FIELDS,
}
# An IAM role ARN (optionally with a path); the role name is the last component.
ROLE_ARN_RE = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):iam::(?P<account>[0-9]{12}):role/(?:[\w+=,.@-]{1,512}/)*(?P<name>[\w+=,.@-]{1,64})",
    re.ASCII)
# What STS accepts as an ExternalId: 2-1224 characters of letters, digits and +=,.@:/-
EXTERNAL_ID_RE = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)


def _in_account(target: Any) -> str:
    account = role_account(target.role_arn)
    return f" in account {account}" if account else ""


def _with_role(target: Any, out: dict[str, Any]) -> dict[str, Any]:
    if target.role_arn:
        out["roleArn"] = target.role_arn
    if target.external_id:
        out["externalId"] = target.external_id
    return out


def role_account(role_arn: str | None) -> str | None:
    """The account of a target's ``roleArn`` (None: no role, the stack's own account)."""
    match = ROLE_ARN_RE.fullmatch(role_arn) if role_arn else None
    return match["account"] if match else None


def target_account(target: Target) -> str | None:
    """The account a target lives in when it names a role in another account; None for the stack's own."""
    return role_account(getattr(target, "role_arn", None))


def _parse_role(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    role = raw.get("roleArn")
    external = raw.get("externalId")
    if role is not None:
        role = _require_str(role, "target.roleArn", 2048)
        if not ROLE_ARN_RE.fullmatch(role):
            raise Invalid(f"invalid target.roleArn {show(role)}: expected an IAM role ARN "
                          "(arn:aws:iam::ACCOUNT:role/NAME)")
    if external is not None:
        if role is None:
            raise Invalid("target.externalId comes with target.roleArn only")
        external = _require_str(external, "target.externalId", 1224)
        if not EXTERNAL_ID_RE.fullmatch(external):
            raise Invalid(f"invalid target.externalId {show(external)}: 2 to 1224 letters, digits or +=,.@:/- "
                          "(what sts:AssumeRole accepts)")
    return role, external
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")
EKS_CLUSTER_RE = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# A Lambda function as its API takes it: name, partial ARN or ARN, each optionally ``:qualifier`` (alias or version).
LAMBDA_REF_RE = re.compile(
    r"(?:(?:arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]+):)?(?P<account>[0-9]{12}):function:)?"
    r"(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>[A-Za-z0-9_$-]{1,128}))?")
LAMBDA_FUNCTION_RE = LAMBDA_REF_RE
ECS_CLUSTER_ARN_RE = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):ecs:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):cluster/(?P<name>[A-Za-z0-9_-]{1,255})")
# New format ``service/CLUSTER/NAME``; the old format ``service/NAME`` names no cluster.
ECS_SERVICE_ARN_RE = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):ecs:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):service/"
    r"(?:(?P<cluster>[A-Za-z0-9_-]{1,255})/)?(?P<name>[A-Za-z0-9_-]{1,255})")
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
        accepted = ", ".join(sorted(TARGET_FIELDS[kind]))
        raise Invalid(f"unknown {fields(unknown)} in the {kind} target; accepted: {accepted}")
    role = _parse_role(raw)
    if kind == "ecs":
        _missing(raw, "ecs", ("cluster", "service", "container"))
        container = _match(raw, "container", ECS_NAME_RE, 255, "letters, digits, '-' and '_' only")
        return EcsTarget(_ecs_name(raw["cluster"], "cluster"), _ecs_name(raw["service"], "service"), container,
                         *role)
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
            *role,
        )
    _missing(raw, "lambda", ("function",))
    function = _match(raw, "function", LAMBDA_FUNCTION_RE, 256, "a Lambda function name or ARN")
    alias = None
    if raw.get("alias") is not None:
        alias = _match(raw, "alias", LAMBDA_ALIAS_RE, 128, "a Lambda alias name")
    return LambdaTarget(function, alias, *role)


def canonical_target(target: Target, account: str | None, region: str | None) -> Target:
    """The one spelling of a target that ``trigger.add`` stores and every check uses: names, never ARNs.

    * ECS: cluster and service names. An ARN must be in this stack's ``account`` and ``region`` (else
      ``Forbidden``); a service ARN of the new format (``service/CLUSTER/NAME``) must name the cluster given.
    * Lambda: the function name, plus ``alias``: a qualified name or ARN (``f:live``, ``…:function:f:live``)
      means alias ``live``; a version qualifier is ``Invalid`` (a trigger moves a function or an alias, never a
      published version). A partial ARN (``ACCOUNT:function:f``) must be this account.
    * EKS: as parsed (names only; nothing to resolve).

    When the stack's account or region is unknown (``None``: no settings, e.g. a bare library use), a target
    given by ARN cannot be checked and is refused (``Invalid``, asking for the name): silently dropping an
    account we cannot compare would rewrite another account's resource into one of ours.

    A target with ``roleArn`` lives in the role's account: its ARNs must name that account (and this region).
    """
    account = target_account(target) or account
    if isinstance(target, EcsTarget):
        cluster = target.cluster
        if not ECS_NAME_RE.fullmatch(cluster):
            match = ECS_CLUSTER_ARN_RE.fullmatch(cluster)
            if match is None:
                raise Invalid(f"invalid target.cluster {show(cluster)}: expected a cluster name or an ECS cluster "
                              "ARN (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME)")
            _check_home(match, "target.cluster", account, region)
            cluster = match["name"]
        service = target.service
        if not ECS_NAME_RE.fullmatch(service):
            match = ECS_SERVICE_ARN_RE.fullmatch(service)
            if match is None:
                raise Invalid(f"invalid target.service {show(service)}: expected a service name or an ECS service "
                              "ARN (arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME)")
            _check_home(match, "target.service", account, region)
            if match["cluster"] is not None and match["cluster"] != cluster:
                raise Invalid(f"target.service {show(service)} is a service of cluster {match['cluster']}, "
                              f"not of target.cluster {cluster}")
            service = match["name"]
        return EcsTarget(cluster, service, target.container, target.role_arn, target.external_id)
    if isinstance(target, LambdaTarget):
        match = LAMBDA_REF_RE.fullmatch(target.function)
        if match is None:
            raise Invalid(f"invalid target.function {show(target.function)}: expected a Lambda function name or ARN")
        if match["account"] is not None:
            _check_home(match, "target.function", account, region)
        alias = target.alias
        qualifier = match["qualifier"]
        if qualifier is not None:
            if not LAMBDA_ALIAS_RE.fullmatch(qualifier):
                raise Invalid(f"target.function {show(target.function)} names version {show(qualifier)}: a trigger "
                              "updates a function (or an alias), never a published version; give the function "
                              "without a version")
            if alias is not None and alias != qualifier:
                raise Invalid(f"target.function {show(target.function)} names alias {qualifier}, but target.alias "
                              f"is {alias}")
            alias = qualifier
        return LambdaTarget(match["name"], alias, target.role_arn, target.external_id)
    return target


def _check_home(match: re.Match[str], what: str, account: str | None, region: str | None) -> None:
    """An ARN (or partial ARN) names this stack's account (and region, when it names one), or is refused."""
    named_region = match.groupdict().get("region")
    if account is None or (named_region is not None and region is None):
        raise Invalid(f"{what} is given as an ARN, but this stack's account/region is not configured, so it cannot "
                      "be checked: give the name instead")
    if match["account"] != account:
        raise Forbidden(f"{what} is in account {match['account']}; this stack only updates targets in account "
                        f"{account}")
    if named_region is not None and named_region != region:
        raise Forbidden(f"{what} is in region {named_region}; this stack only updates targets in region {region}")


def target_identity(target: Target) -> tuple[str, ...]:
    """What a target points at, whatever its spelling (a stored trigger may predate canonical names)."""
    if isinstance(target, EcsTarget):
        return ("ecs", short_name(target.cluster), short_name(target.service), target.container,
                target_account(target) or "")
    if isinstance(target, LambdaTarget):
        match = LAMBDA_REF_RE.fullmatch(target.function)
        alias = target.alias or (match["qualifier"] if match else None)
        return ("lambda", function_name(target.function), alias or "", target_account(target) or "")
    return ("eks", *target[:5], target_account(target) or "")


def same_slot(a: Target, b: Target) -> bool:
    """Whether two targets write the same image slot (one container; for Lambda, the function's code — an alias
    target writes it too, so only two *different* aliases of one function can follow different tags)."""
    ia, ib = target_identity(a), target_identity(b)
    if ia[0] == "lambda" and ib[0] == "lambda":
        return ia[1] == ib[1] and ia[3] == ib[3] and (ia[2] == ib[2] or not ia[2] or not ib[2])
    return ia == ib


class Discovery(NamedTuple):
    """``{"type": "eks", "cluster": …, "discover": true}`` (with ``roleArn``/``externalId`` for a cluster in
    another account): the workloads are listed, and their triggers fire, as that role."""

    cluster: str
    role_arn: str | None = None
    external_id: str | None = None

    def describe(self) -> str:
        return f"eks:{self.cluster} (discovery){_in_account(self)}"

    def adopt(self, target: EksTarget) -> EksTarget:
        """A discovered workload's target, acting as the discovery's role."""
        return target._replace(role_arn=self.role_arn, external_id=self.external_id)


def parse_discovery(raw: dict[str, Any]) -> Discovery:
    accepted = {"type", "cluster", "discover"} | ROLE_FIELDS
    unknown = set(raw) - accepted
    if unknown:
        raise Invalid(f"unknown {fields(unknown)} in an eks discovery target; accepted: {', '.join(sorted(accepted))}")
    _missing(raw, "eks", ("cluster",))
    return Discovery(_match(raw, "cluster", EKS_CLUSTER_RE, 100, "an EKS cluster name"), *_parse_role(raw))


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
    gates: tuple[Gate, ...] = ()  # conditions a digest must meet before this trigger fires it
    gate: dict[str, Any] | None = None  # the gate holding the head back: {"type", "state", "reason", "digest"}
    gate_state: GateState | None = None  # what the gates remember for that digest (decisions, since when)
    rollout_at: datetime | None = None  # when ``rollout_state`` last changed (the verified gate's soak time)

    def with_outcome(self, **changes: Any) -> Trigger:
        """A copy with new state. Outside text (``last_error``, ``drift``) is capped by :func:`cap_text` here,
        and again where a store writes a trigger, so no path keeps a 450 kB API message."""
        trigger = self._replace(**changes)
        error, drift = cap_text(trigger.last_error), cap_text(trigger.drift)
        if error is not trigger.last_error or drift is not trigger.drift:
            trigger = trigger._replace(last_error=error, drift=drift)
        return trigger

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
            "gates": [g.as_dict() for g in self.gates],
            "gate": self.gate,
        }


def trigger_id(stream_tag: StreamTag, target: Target) -> str:
    """Deterministic id: adding the same trigger twice is idempotent."""
    key = f"{stream_tag}|{sorted(target.as_dict().items())}"
    return "tr-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def target_key(target: Target) -> str:
    """One key per real-world target (names, not ARNs), to find its triggers from an event about it."""
    account = target_account(target)
    suffix = f"@{account}" if account else ""  # another account's prod/web is another resource
    if isinstance(target, EcsTarget):
        return f"ecs:{short_name(target.cluster)}/{short_name(target.service)}{suffix}"
    if isinstance(target, EksTarget):
        return f"eks:{target.cluster}/{target.namespace}/{target.kind}/{target.name}{suffix}"
    return f"lambda:{function_name(target.function)}{suffix}"


TRIGGER_ID_RE = re.compile(r"tr-[a-f0-9]{12}")


def validate_trigger_id(value: Any) -> str:
    value = _require_str(value, "id", 64)
    if not TRIGGER_ID_RE.fullmatch(value):
        raise Invalid(f"invalid trigger id {show(value)}: expected tr- followed by 12 hex characters")
    return value
