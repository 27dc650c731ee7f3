"""Test double: ECR image scanning, ECR managed signing and OCI referrers on the embedded AWS.

moto 5.2.5 answers ``DescribeImageScanFindings`` with ``ScanNotFoundException`` until ``StartImageScan`` was
called, then with one fixed fake ``HIGH`` finding (whatever the image); it never scans on push, emits no scan events,
and has no ``DescribeImageSigningStatus``, ``ListImageReferrers`` or signing configuration at all. This module
replaces those answers *inside the moto server* (this process), so clients talk plain botocore to the endpoint and
the real ECR adapter code runs:

* ``DescribeImageScanFindings`` / ``StartImageScan`` — a scan result per (repository, digest): ``IN_PROGRESS``, then
  ``COMPLETE`` (basic scanning; ``ACTIVE`` for enhanced continuous scanning) with ``findingSeverityCounts`` (zero
  counts left out, as ECR does) and one synthetic finding per count, or ``FAILED``. No scan →
  ``ScanNotFoundException``. A push to a repository with ``scanOnPush`` (or, with the registry's scan type
  ``ENHANCED``, matching a ``SCAN_ON_PUSH``/``CONTINUOUS_SCAN`` rule) starts a scan that completes with no findings
  ``scan_delay`` seconds later; then the event AWS sends follows: ``ECR Image Scan`` (source ``aws.ecr``,
  ``repository-name`` a name) for basic scanning, ``Inspector2 Scan`` (source ``aws.inspector2``,
  ``repository-name`` the repository ARN, ``scan-status: INITIAL_SCAN_COMPLETE``) for enhanced.
* ``PutSigningConfiguration`` / ``GetSigningConfiguration`` / ``DeleteSigningConfiguration`` and
  ``DescribeImageSigningStatus`` — a push to a repository a signing rule matches is ``IN_PROGRESS``, then
  ``COMPLETE`` ``sign_delay`` seconds later, followed by a ``Signer Job Status Change`` event (``Succeeded``); a
  completed signature is also listed as a Notation signature referrer, as ECR stores it.
* ``ListImageReferrers`` — the referrers recorded for a subject digest (``artifactTypes`` filter honoured).

Controls (tests: :func:`set_scan`, :func:`set_signing`, :func:`add_referrer`; another terminal:
``imagestreams-local scan|sign|advance``, which post to :data:`CONTROL_PATH` on the moto endpoint) set a result
for a digest and queue the event AWS would send. The events are emitted by the runner's delivery loop
(``EmbeddedAws.pump``) once due on the runner's clock (:data:`CLOCK`, moved by ``EmbeddedAws.advance``).

Limits (a test double, not AWS): no image is analysed (findings are what you set: synthetic names, no packages);
signature manifests are not stored as images (``DescribeImages`` does not list them, no ``ECR Image Action`` event
for them); a ``Signer Job Status Change`` event carries the documented Signer fields (job id, platform, status),
which name neither repository nor digest — read the status with ``DescribeImageSigningStatus``; ``StartImageScan``
is not limited to once a day; scans are not re-run when the vulnerability database changes; one account.
"""

from __future__ import annotations

import fnmatch
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from moto.core.exceptions import ServiceException

ACCOUNT = "123456789012"
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
COSIGN_SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIGNER_PLATFORM = "Notation-OCI-SHA384-ECDSA"
CONTROL_PATH = "/_imagestreams-local/doubles"


class Clock:
    """The embedded AWS's clock: real time plus an offset that ``EmbeddedAws.advance`` moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)


CLOCK = Clock()


def profile_arn(region: str, name: str = "imagestreams_local") -> str:
    return f"arn:aws:signer:{region}:{ACCOUNT}:/signing-profiles/{name}"


@dataclass
class Scan:
    status: str  # IN_PROGRESS | COMPLETE | ACTIVE | FAILED
    counts: dict[str, int]
    enhanced: bool
    at: float  # when it completes (or completed), on CLOCK
    tags: list[str] = field(default_factory=list)
    automatic: bool = False  # started by a push or StartImageScan: completes by itself at ``at``


@dataclass
class Signing:
    status: str  # IN_PROGRESS | COMPLETE | FAILED
    profile: str
    at: float
    failure_code: str | None = None
    failure_reason: str | None = None
    automatic: bool = False  # started by a push: completes by itself at ``at``


@dataclass
class Doubles:
    """The double's state for one region (kept on moto's ECR backend, so a moto reset clears it)."""

    region: str
    scans: dict[tuple[str, str], Scan] = field(default_factory=dict)
    signing: dict[tuple[str, str], Signing] = field(default_factory=dict)
    referrers: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    signing_configuration: dict[str, Any] | None = None
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (due on CLOCK, event)
    scan_delay: float = 2.0
    sign_delay: float = 2.0
    lock: threading.RLock = field(default_factory=threading.RLock)


def _backend(region: str) -> Any:
    from moto.ecr.models import ecr_backends

    return ecr_backends[ACCOUNT][region]


def ecr_backend(region: str) -> Any:
    """moto's ECR backend of our account in ``region`` (where the doubles keep their state)."""
    return _backend(region)


def backend_state(region: str, name: str, make: Any) -> Any:
    """A double's state kept on moto's ECR backend under ``name`` (so a moto reset clears it), made on first use."""
    backend = _backend(region)
    state = backend.__dict__.get(name)
    if state is None:
        state = backend.__dict__[name] = make(region)
    return state


def doubles(region: str = "us-east-1") -> Doubles:
    return backend_state(region, "_imagestreams_doubles", Doubles)


def _image(region: str, repository: str, image_id: dict[str, Any]) -> Any:
    """moto's image for a tag or digest (RepositoryNotFoundException / ImageNotFoundException as ECR raises)."""
    backend = _backend(region)
    repo = backend._get_repository(repository, None)
    return repo._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _repository_arn(region: str, repository: str) -> str:
    return f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{repository}"


def _envelope(region: str, source: str, detail_type: str, resources: list[str], detail: dict[str, Any],
              at: float) -> dict[str, Any]:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source,
            "account": ACCOUNT, "time": _stamp(at), "region": region, "resources": resources, "detail": detail}


def scan_event(region: str, repository: str, digest: str, scan: Scan) -> dict[str, Any]:
    """The event AWS sends when a scan finishes: ``ECR Image Scan`` (basic) or ``Inspector2 Scan`` (enhanced)."""
    counts = {k: v for k, v in scan.counts.items() if v}
    if scan.enhanced:
        arn = _repository_arn(region, repository)
        detail = {"scan-status": "INITIAL_SCAN_COMPLETE", "repository-name": arn,
                  "finding-severity-counts": {**counts, "TOTAL": sum(counts.values())},
                  "image-digest": digest, "image-tags": list(scan.tags)}
        return _envelope(region, "aws.inspector2", "Inspector2 Scan", [arn], detail, scan.at)
    detail = {"scan-status": "FAILED" if scan.status == "FAILED" else "COMPLETE", "repository-name": repository,
              "finding-severity-counts": counts, "image-digest": digest, "image-tags": list(scan.tags)}
    return _envelope(region, "aws.ecr", "ECR Image Scan", [_repository_arn(region, repository)], detail, scan.at)


def signer_event(region: str, signing: Signing) -> dict[str, Any]:
    """``Signer Job Status Change`` with the fields AWS Signer documents (no repository, no digest)."""
    job = str(uuid.uuid4())
    status = {"COMPLETE": "Succeeded", "FAILED": "Failed"}.get(signing.status, "InProgress")
    detail = {"job_id": job, "platform": SIGNER_PLATFORM, "status": status}
    return _envelope(region, "aws.signer", "Signer Job Status Change",
                     [f"arn:aws:signer:{region}:{ACCOUNT}:/signing-jobs/{job}"], detail, signing.at)


# ------------------------------------------------------------------------------------------- controls


def set_scan(repository: str, image: str, *, counts: dict[str, int] | None = None, status: str = "COMPLETE",
             enhanced: bool | None = None, region: str = "us-east-1", emit: bool = True) -> dict[str, Any]:
    """Give (repository, image) — image a tag or ``sha256:`` digest — this scan result, now; queue its event.
    ``enhanced`` defaults to the registry's scan type. Returns the scan as ``describe_image_scan_findings`` would."""
    counts = {k.upper(): int(v) for k, v in (counts or {}).items()}
    bad = [k for k, v in counts.items() if k not in SEVERITIES or v < 0]
    if bad:
        raise ValueError(f"unknown severity or negative count: {', '.join(bad)} (one of {', '.join(SEVERITIES)})")
    if status not in ("COMPLETE", "FAILED", "IN_PROGRESS"):
        raise ValueError(f"scan status must be COMPLETE, FAILED or IN_PROGRESS, got {status!r}")
    state = doubles(region)
    found = _image(region, repository, _image_id(image))
    if enhanced is None:
        enhanced = _backend(region).registry_scanning_configuration.get("scanType") == "ENHANCED"
    with state.lock:
        scan = Scan(status, counts, enhanced, CLOCK.time(), list(found.image_tags))
        if enhanced and status == "COMPLETE" and _frequency(region, repository) == "CONTINUOUS_SCAN":
            scan.status = "ACTIVE"
        state.scans[(repository, found.image_digest)] = scan
        if emit and status != "IN_PROGRESS":
            state.events.append((scan.at, scan_event(region, repository, found.image_digest, scan)))
    return describe_findings(region, repository, {"imageDigest": found.image_digest})


def set_signing(repository: str, image: str, *, status: str = "COMPLETE", region: str = "us-east-1",
                reason: str | None = None, emit: bool = True) -> dict[str, Any]:
    """Give (repository, image) this managed-signing status now (COMPLETE also lists a Notation signature
    referrer); queue the ``Signer Job Status Change`` event. Returns ``describe_image_signing_status``'s answer."""
    if status not in ("COMPLETE", "FAILED", "IN_PROGRESS"):
        raise ValueError(f"signing status must be COMPLETE, FAILED or IN_PROGRESS, got {status!r}")
    state = doubles(region)
    found = _image(region, repository, _image_id(image))
    key = (repository, found.image_digest)
    with state.lock:
        current = state.signing.get(key)
        signing = Signing(status, current.profile if current else _profile_for(state, repository) or
                          profile_arn(region), CLOCK.time())
        if status == "FAILED":
            signing.failure_code = "SIGNING_FAILED"
            signing.failure_reason = reason or "The signing job failed (set by imagestreams-local)."
        state.signing[key] = signing
        if status == "COMPLETE":
            _add_signature(state, key, NOTATION_SIGNATURE)
        if emit:
            state.events.append((signing.at, signer_event(region, signing)))
    return describe_signing(region, repository, {"imageDigest": found.image_digest})


def add_referrer(repository: str, image: str, artifact_type: str = COSIGN_SIGNATURE, *,
                 region: str = "us-east-1") -> dict[str, Any]:
    """Attach an OCI referrer (by default a cosign signature) to (repository, image); returns it."""
    state = doubles(region)
    found = _image(region, repository, _image_id(image))
    with state.lock:
        return _add_signature(state, (repository, found.image_digest), artifact_type)


def _add_signature(state: Doubles, key: tuple[str, str], artifact_type: str) -> dict[str, Any]:
    import hashlib

    body = json.dumps({"subject": key[1], "artifactType": artifact_type, "n": len(state.referrers.get(key, []))})
    referrer = {"digest": "sha256:" + hashlib.sha256(body.encode()).hexdigest(), "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type, "size": len(body), "artifactStatus": "ACTIVE",
                "annotations": {"io.cncf.notary.x509chain.thumbprint#S256" if artifact_type == NOTATION_SIGNATURE
                                else "dev.sigstore.cosign/bundle": "imagestreams-local"}}
    state.referrers.setdefault(key, []).append(referrer)
    return referrer


def _image_id(image: str) -> dict[str, str]:
    return {"imageDigest": image} if image.startswith("sha256:") else {"imageTag": image}


def configure(region: str = "us-east-1", *, scan_delay: float | None = None,
              sign_delay: float | None = None) -> Doubles:
    """How long an automatic scan or signing takes (seconds on the runner's clock)."""
    state = doubles(region)
    if scan_delay is not None:
        state.scan_delay = scan_delay
    if sign_delay is not None:
        state.sign_delay = sign_delay
    return state


def due_events(region: str = "us-east-1") -> list[dict[str, Any]]:
    """Take the events due on the runner's clock (completing the automatic scans and signings that are due)."""
    from moto.ecr.models import ecr_backends

    if region not in ecr_backends[ACCOUNT]:
        return []
    state = doubles(region)
    now = CLOCK.time()
    with state.lock:
        for (repository, digest), scan in state.scans.items():
            if scan.automatic and scan.status == "IN_PROGRESS" and scan.at <= now:
                scan.status = "ACTIVE" if scan.enhanced and _frequency(region, repository) == "CONTINUOUS_SCAN" \
                    else "COMPLETE"
                state.events.append((scan.at, scan_event(region, repository, digest, scan)))
        for key, signing in state.signing.items():
            if signing.automatic and signing.status == "IN_PROGRESS" and signing.at <= now:
                signing.status = "COMPLETE"
                _add_signature(state, key, NOTATION_SIGNATURE)
                state.events.append((signing.at, signer_event(region, signing)))
        ready = [event for due, event in state.events if due <= now]
        state.events = [(due, event) for due, event in state.events if due > now]
    return ready


# --------------------------------------------------------------------------------- answers (in moto)


def describe_findings(region: str, repository: str, image_id: dict[str, Any]) -> dict[str, Any]:
    from moto.ecr.exceptions import ScanNotFoundException

    state = doubles(region)
    image = _image(region, repository, image_id)
    scan = state.scans.get((repository, image.image_digest))
    answer: dict[str, Any] = {"registryId": ACCOUNT, "repositoryName": repository,
                              "imageId": {"imageDigest": image.image_digest,
                                          **({"imageTag": image_id["imageTag"]} if image_id.get("imageTag") else {})}}
    if scan is None:
        digest, tag = image_id.get("imageDigest") or "null", image_id.get("imageTag") or "null"
        raise ScanNotFoundException(image_id=f"{{imageDigest:'{digest}', imageTag:'{tag}'}}",
                                    repository_name=repository, registry_id=ACCOUNT)
    if scan.status == "IN_PROGRESS":
        answer["imageScanStatus"] = {"status": "PENDING" if scan.enhanced else "IN_PROGRESS",
                                     "description": "The scan is in progress."}
        return answer
    if scan.status == "FAILED":
        answer["imageScanStatus"] = {"status": "FAILED", "description": "The scan failed (set by imagestreams-local)."}
        return answer
    completed = datetime.fromtimestamp(scan.at, timezone.utc)
    counts = {k: v for k, v in scan.counts.items() if v}
    findings = [_finding(severity, n, scan.enhanced, image, repository) for severity, count in counts.items()
                for n in range(count)]
    answer["imageScanStatus"] = {"status": scan.status, "description": (
        "Continuous scan is selected for image." if scan.status == "ACTIVE"
        else "The scan was completed successfully.")}
    answer["imageScanFindings"] = {"imageScanCompletedAt": completed,
                                   "vulnerabilitySourceUpdatedAt": completed - timedelta(hours=1),
                                   "findingSeverityCounts": counts,
                                   ("enhancedFindings" if scan.enhanced else "findings"): findings}
    return answer


def _finding(severity: str, n: int, enhanced: bool, image: Any, repository: str) -> dict[str, Any]:
    name = f"CVE-2026-{90000 + SEVERITIES.index(severity) * 1000 + n}"
    if not enhanced:
        return {"name": name, "severity": severity, "uri": f"https://nvd.nist.gov/vuln/detail/{name}",
                "description": f"synthetic {severity} finding set by imagestreams-local",
                "attributes": [{"key": "package_name", "value": "imagestreams-local-fake"},
                               {"key": "package_version", "value": "0.0.1"}]}
    return {"awsAccountId": ACCOUNT, "severity": severity, "status": "ACTIVE", "type": "PACKAGE_VULNERABILITY",
            "title": f"{name} - imagestreams-local-fake", "description": "synthetic finding set by imagestreams-local",
            "findingArn": f"arn:aws:inspector2:{image.registry_id}:finding/{uuid.uuid4().hex}",
            "packageVulnerabilityDetails": {"vulnerabilityId": name, "source": "NVD",
                                            "vulnerablePackages": [{"name": "imagestreams-local-fake",
                                                                    "version": "0.0.1"}]},
            "resources": [{"type": "AWS_ECR_CONTAINER_IMAGE", "id": f"{repository}/{image.image_digest}",
                           "details": {"awsEcrContainerImage": {"imageHash": image.image_digest,
                                                                "repositoryName": repository,
                                                                "registry": ACCOUNT}}}]}


def describe_signing(region: str, repository: str, image_id: dict[str, Any]) -> dict[str, Any]:
    state = doubles(region)
    image = _image(region, repository, image_id)
    signing = state.signing.get((repository, image.image_digest))
    statuses = []
    if signing is not None:
        status: dict[str, Any] = {"signingProfileArn": signing.profile, "status": signing.status}
        if signing.failure_code:
            status.update(failureCode=signing.failure_code, failureReason=signing.failure_reason)
        statuses.append(status)
    return {"registryId": ACCOUNT, "repositoryName": repository,
            "imageId": {"imageDigest": image.image_digest,
                        **({"imageTag": image_id["imageTag"]} if image_id.get("imageTag") else {})},
            "signingStatuses": statuses}


def list_referrers(region: str, repository: str, subject: str, artifact_types: list[str] | None) -> dict[str, Any]:
    _backend(region)._get_repository(repository, None)  # RepositoryNotFoundException as ECR raises
    referrers = doubles(region).referrers.get((repository, subject), [])
    if artifact_types:
        referrers = [r for r in referrers if r.get("artifactType") in artifact_types]
    return {"referrers": [dict(r) for r in referrers]}


def _frequency(region: str, repository: str) -> str | None:
    """The enhanced-scanning frequency a registry rule gives this repository (None: no rule)."""
    config = _backend(region).registry_scanning_configuration
    for rule in config.get("rules") or []:
        for flt in rule.get("repositoryFilters") or []:
            if fnmatch.fnmatchcase(repository, flt["filter"]):
                return rule["scanFrequency"]
    return None


def _profile_for(state: Doubles, repository: str) -> str | None:
    for rule in (state.signing_configuration or {}).get("rules", []):
        filters = rule.get("repositoryFilters") or [{"filter": "*"}]
        if any(fnmatch.fnmatchcase(repository, f["filter"]) for f in filters):
            return rule["signingProfileArn"]
    return None


def on_push(region: str, repository: str, image: Any) -> None:
    """Called after moto stored a pushed image: start the scan and signing ECR would start for it."""
    state = doubles(region)
    backend = _backend(region)
    repo = backend.repositories.get(repository)
    if repo is None:
        return
    key = (repository, image.image_digest)
    with state.lock:
        if key in state.scans:  # the same image under another tag: ECR does not scan it again
            state.scans[key].tags = list(image.image_tags)
        else:
            enhanced = backend.registry_scanning_configuration.get("scanType") == "ENHANCED"
            wants = (_frequency(region, repository) in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN") if enhanced
                     else bool((repo.image_scanning_configuration or {}).get("scanOnPush")))
            if wants:
                state.scans[key] = Scan("IN_PROGRESS", {}, enhanced, CLOCK.time() + state.scan_delay,
                                        list(image.image_tags), automatic=True)
        profile = _profile_for(state, repository)
        if profile and key not in state.signing:
            state.signing[key] = Signing("IN_PROGRESS", profile, CLOCK.time() + state.sign_delay, automatic=True)


# ------------------------------------------------------------------------------------- installation


def install() -> None:
    """Patch moto's ECR (class-wide, in this process; idempotent) so the moto server answers with this double."""
    from moto.ecr.models import ECRBackend
    from moto.ecr.responses import ECRResponse

    if getattr(ECRResponse, "_imagestreams_doubles", False):
        return
    original_put = ECRBackend.put_image

    def put_image(self: Any, repository_name: str, *args: Any, **kwargs: Any) -> Any:
        image = original_put(self, repository_name, *args, **kwargs)
        on_push(self.region_name, repository_name, image)
        return image

    ECRBackend.put_image = put_image  # type: ignore[method-assign]
    for name, handler in _RESPONSES.items():
        setattr(ECRResponse, name, handler)
    ECRResponse._imagestreams_doubles = True  # type: ignore[attr-defined]


class SigningConfigurationNotFound(ServiceException):
    code = "SigningConfigurationNotFoundException"


def _result(value: Any) -> Any:
    from moto.core.responses import ActionResult

    return ActionResult(value)


def _describe_image_scan_findings(self: Any) -> Any:
    return _result(describe_findings(self.region, self._get_param("repositoryName"), self._get_param("imageId")))


def _start_image_scan(self: Any) -> Any:
    region, repository, image_id = self.region, self._get_param("repositoryName"), self._get_param("imageId")
    image = _image(region, repository, image_id)
    state = doubles(region)
    with state.lock:
        key = (repository, image.image_digest)
        previous = state.scans.get(key)  # a rescan finds what the last scan found (nothing changed)
        state.scans[key] = Scan("IN_PROGRESS", dict(previous.counts) if previous else {}, False,
                                CLOCK.time() + state.scan_delay, list(image.image_tags), automatic=True)
    return _result({"registryId": ACCOUNT, "repositoryName": repository,
                    "imageId": {"imageDigest": image.image_digest, **({"imageTag": image_id["imageTag"]}
                                                                      if image_id.get("imageTag") else {})},
                    "imageScanStatus": {"status": "IN_PROGRESS"}})


def _describe_image_signing_status(self: Any) -> Any:
    return _result(describe_signing(self.region, self._get_param("repositoryName"), self._get_param("imageId")))


def _list_image_referrers(self: Any) -> Any:
    subject = self._get_param("subjectId") or {}
    types = (self._get_param("filter") or {}).get("artifactTypes")
    return _result(list_referrers(self.region, self._get_param("repositoryName"), subject.get("imageDigest"), types))


def _put_signing_configuration(self: Any) -> Any:
    config = self._get_param("signingConfiguration")
    doubles(self.region).signing_configuration = config
    return _result({"signingConfiguration": config})


def _get_signing_configuration(self: Any) -> Any:
    config = doubles(self.region).signing_configuration
    if config is None:
        raise SigningConfigurationNotFound("No signing configuration exists for the registry.")
    return _result({"registryId": ACCOUNT, "signingConfiguration": config})


def _delete_signing_configuration(self: Any) -> Any:
    state = doubles(self.region)
    config, state.signing_configuration = state.signing_configuration, None
    return _result({"registryId": ACCOUNT, "signingConfiguration": config or {"rules": []}})


_RESPONSES = {
    "describe_image_scan_findings": _describe_image_scan_findings,
    "start_image_scan": _start_image_scan,
    "describe_image_signing_status": _describe_image_signing_status,
    "list_image_referrers": _list_image_referrers,
    "put_signing_configuration": _put_signing_configuration,
    "get_signing_configuration": _get_signing_configuration,
    "delete_signing_configuration": _delete_signing_configuration,
}


# --------------------------------------------------------------------------------- clock and control


def advance(seconds: float) -> float:
    """Move the embedded AWS's clock forward: the doubles' due events, and SQS delays and visibility timeouts
    (e.g. a message sent with ``DelaySeconds=900`` is deliverable after ``advance(900)``). Returns the offset."""
    from moto.sqs.models import sqs_backends

    if seconds < 0:
        raise ValueError("the clock only moves forward")
    CLOCK.offset += seconds
    shift = seconds * 1000
    for account in sqs_backends.values():
        for backend in account.values():
            for queue in backend.queues.values():
                for message in list(queue._messages):
                    if message.delayed_until:
                        message.delayed_until -= shift
                    if message.visible_at:
                        message.visible_at -= shift
    return CLOCK.offset


def control(body: dict[str, Any]) -> dict[str, Any]:
    """One command of ``imagestreams-local scan|sign|advance`` (posted to CONTROL_PATH)."""
    region = body.get("region") or "us-east-1"
    op = body.get("op")
    if op == "scan":
        return set_scan(body["repository"], body["image"], counts=body.get("counts"),
                        status=body.get("status") or "COMPLETE", enhanced=body.get("enhanced"), region=region)
    if op == "sign":
        if body.get("cosign"):
            return {"referrer": add_referrer(body["repository"], body["image"], COSIGN_SIGNATURE, region=region)}
        return set_signing(body["repository"], body["image"], status=body.get("status") or "COMPLETE",
                           reason=body.get("reason"), region=region)
    if op == "advance":
        return {"offset": advance(float(body["seconds"])), "now": CLOCK.now().isoformat()}
    raise ValueError(f"unknown op {op!r}")


def serve_control(server: Any) -> None:
    """Answer CONTROL_PATH on the moto server (a WSGI wrapper around its app; everything else goes to moto)."""
    app = server.app
    if getattr(app, "_imagestreams_control", False):
        return

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != CONTROL_PATH or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            status, answer = "200 OK", control(json.loads(environ["wsgi.input"].read(length) or b"{}"))
        except ServiceException as exc:
            status, answer = "404 Not Found", {"error": f"{exc.code}: {exc.message}"}
        except (ValueError, KeyError, TypeError) as exc:
            status, answer = "400 Bad Request", {"error": f"{type(exc).__name__}: {exc}"}
        payload = json.dumps(answer, default=str).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    wrapped._imagestreams_control = True  # type: ignore[attr-defined]
    server.app = wrapped
