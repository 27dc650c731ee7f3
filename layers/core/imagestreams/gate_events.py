"""Gate evidence as it arrives, validated before use: EventBridge ``ECR Image Scan`` (basic scanning; the repository
is a name), ``Inspector2 Scan`` (enhanced scanning; the repository is an ARN), ``Signer Job Status Change`` (managed
signing; best effort, its detail may name no image) and the gate clock's SQS messages."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

from .errors import Invalid
from .events import ForeignEvent
from .model import DIGEST_RE, TRIGGER_ID_RE, show, validate_digest, validate_repository

SCAN_EVENTS = {("aws.ecr", "ECR Image Scan"), ("aws.inspector2", "Inspector2 Scan")}
SIGNER_EVENT = ("aws.signer", "Signer Job Status Change")
_REPO_ARN = re.compile(r"arn:aws[a-z-]*:ecr:([a-z0-9-]+):([0-9]{12}):repository/(.+)")
# a repository ARN with an image after it (Inspector finding resources), or an image URI pinned by digest
_IMAGE_ARN = re.compile(r"arn:aws[a-z-]*:ecr:([a-z0-9-]+):([0-9]{12}):repository/(.+?)/(sha256:[a-f0-9]{64})")
_IMAGE_URI = re.compile(r"([0-9]{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^@:\s]+)"
                        r"@(sha256:[a-f0-9]{64})")
MAX_WALKED = 200  # values looked at in one signing event (it is outside input)


class GateEvent(NamedTuple):
    kind: str  # scan | signing
    stream: str | None  # None: a signing event that names no image (re-check every waiting signature gate)
    digest: str | None
    status: str | None = None


def _check_origin(event: dict[str, Any], arn_account: str | None, arn_region: str | None, account: str | None,
                  region: str | None, what: str) -> None:
    for name, expected, seen in (("account", account, (event.get("account"), arn_account)),
                                 ("region", region, (event.get("region"), arn_region))):
        if expected is None:
            continue
        if any(value is not None and value != expected for value in seen):
            raise ForeignEvent(f"event from {name} {show(seen[0])} about {show(what)}; this stack's {name} is "
                               f"{expected}")


def repository_from(value: Any) -> tuple[str, str | None, str | None]:
    """``repository-name`` as a name (ECR) or an ARN (Inspector): (name, ARN region, ARN account)."""
    if isinstance(value, str) and value.startswith("arn:"):
        match = _REPO_ARN.fullmatch(value)
        if match is None:
            raise Invalid(f"detail.repository-name {show(value)} is not an ECR repository ARN")
        region, account, name = match.groups()
        return validate_repository(name), region, account
    return validate_repository(value), None, None


def parse_gate_event(event: Any, *, account: str | None = None, region: str | None = None) -> GateEvent:
    """:class:`Invalid` for anything that is not one of the three events; :class:`ForeignEvent` for one about
    another account or region than the stack's."""
    if not isinstance(event, dict):
        raise Invalid(f"event must be a JSON object, got {type(event).__name__}")
    kind = (event.get("source"), event.get("detail-type"))
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise Invalid("event detail must be an object")
    if kind in SCAN_EVENTS:
        stream, arn_region, arn_account = repository_from(detail.get("repository-name"))
        digest = validate_digest(detail.get("image-digest"))
        _check_origin(event, arn_account, arn_region, account, region, detail.get("repository-name"))
        status = detail.get("scan-status")
        return GateEvent("scan", stream, digest, status if isinstance(status, str) else None)
    if kind == SIGNER_EVENT:
        found = _find_image(detail, event.get("resources"))
        status = detail.get("status")
        status = status if isinstance(status, str) else None
        if found is None:
            _check_origin(event, None, None, account, region, "a signing job")
            return GateEvent("signing", None, None, status)
        stream, digest, arn_region, arn_account = found
        _check_origin(event, arn_account, arn_region, account, region, f"{stream}@{digest}")
        return GateEvent("signing", stream, digest, status)
    raise Invalid(f"unexpected event {show(kind[0])} / {show(kind[1])}; expected ECR Image Scan, Inspector2 Scan "
                  "or Signer Job Status Change")


def _find_image(detail: dict[str, Any], resources: Any) -> tuple[str, str, str | None, str | None] | None:
    """The image a signing event is about, wherever its detail names it: an image ARN or URI pinned by digest, or
    a repository (name or ARN) next to a digest. None when it names none (bounded walk: outside input)."""
    strings: list[tuple[str, str]] = []
    stack: list[tuple[str, Any, int]] = [("", detail, 0), ("", resources, 0)]
    while stack and len(strings) < MAX_WALKED:
        key, value, depth = stack.pop()
        if isinstance(value, str):
            strings.append((key.lower().replace("-", "").replace("_", ""), value[:2048]))
        elif isinstance(value, dict) and depth < 5:
            stack += [(str(k), v, depth + 1) for k, v in list(value.items())[:MAX_WALKED]]
        elif isinstance(value, list) and depth < 5:
            stack += [(key, v, depth + 1) for v in value[:MAX_WALKED]]
    for _, text in strings:
        for pattern, order in ((_IMAGE_ARN, (2, 3, 0, 1)), (_IMAGE_URI, (2, 3, 1, 0))):
            match = pattern.search(text)
            if match:
                groups = match.groups()
                try:
                    stream = validate_repository(groups[order[0]])
                except Invalid:
                    continue
                return stream, groups[order[1]], groups[order[2]], groups[order[3]]
    digest = next((m.group(0) for _, text in strings for m in [DIGEST_RE.search(text)] if m), None)
    repository = next((text for key, text in strings if key in ("repositoryname", "repository", "repositoryarn")),
                      None)
    if digest is None or repository is None:
        return None
    try:
        stream, arn_region, arn_account = repository_from(repository)
    except Invalid:
        return None
    return stream, digest, arn_region, arn_account


class ClockMessage(NamedTuple):
    kind: str  # trigger | policy
    key: str  # the trigger id, or the policy tag (``stream:tag``, or the stream alone)
    digest: str
    due: datetime


def parse_clock_message(body: Any) -> ClockMessage:
    """``{"kind": "trigger", "id", "digest", "due"}`` or ``{"kind": "policy", "target", "digest", "due"}``."""
    if not isinstance(body, dict):
        raise Invalid(f"gate clock message must be a JSON object, got {type(body).__name__}")
    kind = body.get("kind")
    if kind == "trigger":
        key = body.get("id")
        if not isinstance(key, str) or not TRIGGER_ID_RE.fullmatch(key):
            raise Invalid(f"gate clock message: invalid trigger id {show(key)}")
    elif kind == "policy":
        key = body.get("target")
        if not isinstance(key, str) or not key:
            raise Invalid(f"gate clock message: invalid target {show(key)}")
        validate_repository(key.partition(":")[0])
    else:
        raise Invalid(f"gate clock message: unknown kind {show(kind)}; expected trigger or policy")
    digest = validate_digest(body.get("digest"))
    due = body.get("due")
    try:
        when = datetime.fromisoformat(due.replace("Z", "+00:00")) if isinstance(due, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise Invalid(f"gate clock message: due must be an RFC 3339 time, got {show(due)}")
    return ClockMessage(kind, key, digest, when)
