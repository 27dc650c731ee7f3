"""Registry port on ECR: where a tag points right now, and byte-exact retags."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from botocore.exceptions import ClientError

from ..errors import Conflict, NotFound, NotOurs
from ..model import DIGEST_RE, Observation, registry_host
from ..ports import ScanResult, SigningStatus

_GONE = {"ImageNotFoundException", "RepositoryNotFoundException"}
# Pass all four so ECR hands back the manifest or index exactly as stored, never converted.
ACCEPTED_MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
]


INDEX_MEDIA_TYPES = {"application/vnd.docker.distribution.manifest.list.v2+json",
                     "application/vnd.oci.image.index.v1+json"}
_DENIED = {"AccessDeniedException", "AccessDenied"}
MAX_LISTED_PLATFORMS = 8
MAX_REFERRER_PAGES = 5
# no evidence (yet) rather than a fault: no scan of this image; an endpoint without the operation (older regions,
# the embedded AWS), where the gate then waits for its timeout
_NO_EVIDENCE = {"ScanNotFoundException", "UnknownOperationException", "InvalidAction", "NotImplemented",
                "UnsupportedImageTypeException"}


def _word(value: Any) -> str:
    """A platform field from an index, for a message: printable, at most 32 characters (indexes are outside text)."""
    text = "".join(c if c.isprintable() else "?" for c in str(value)[:40])
    return text if len(text) <= 32 else text[:29] + "..."


def pick_platform(manifest: Any, digest: str, architecture: str) -> str:
    """Child digest for ``linux/<architecture>`` in an index manifest; ``digest`` itself for a plain manifest.

    The manifest is outside input: anything malformed (not JSON, ``manifests`` not a list, entries without a
    ``platform`` object, a child digest that is no digest) is :class:`NotFound` with a short reason, never another
    exception, so the fire records ``Failed`` instead of crashing.
    """
    import json

    try:
        doc = json.loads(manifest)
    except (TypeError, ValueError, RecursionError):
        raise NotFound(f"{digest} is not a readable image manifest (not JSON)") from None
    if not isinstance(doc, dict):
        raise NotFound(f"{digest} is not a readable image manifest (not a JSON object)")
    media_type = doc.get("mediaType")
    if "manifests" not in doc and not (isinstance(media_type, str) and media_type in INDEX_MEDIA_TYPES):
        return digest
    children = doc.get("manifests")
    if not isinstance(children, list):
        raise NotFound(f"index {digest} is malformed: its manifests field is not a list")
    available: list[str] = []
    for child in children:
        platform = child.get("platform") if isinstance(child, dict) else None
        if not isinstance(platform, dict):
            continue  # no platform: nothing a target of one architecture can run
        os_name, arch = platform.get("os"), platform.get("architecture")
        if os_name == "unknown" or arch == "unknown":
            continue  # attestation manifests (buildx provenance/SBOM)
        if os_name == "linux" and arch == architecture:
            child_digest = child.get("digest")
            if isinstance(child_digest, str) and DIGEST_RE.fullmatch(child_digest):
                return child_digest
            raise NotFound(f"index {digest} is malformed: its linux/{architecture} entry has no valid digest")
        available.append(f"{_word(os_name)}/{_word(arch)}")
    listed = sorted(set(available))
    shown = ", ".join(listed[:MAX_LISTED_PLATFORMS]) or "none"
    if len(listed) > MAX_LISTED_PLATFORMS:
        shown += f" and {len(listed) - MAX_LISTED_PLATFORMS} more"
    raise NotFound(f"index {digest} has no linux/{architecture} image (it has: {shown})")


def _code(exc: ClientError) -> str:
    return exc.response["Error"].get("Code", "")


def _message(exc: ClientError) -> str:
    return str(exc.response["Error"].get("Message", ""))


def iam_pattern(pattern: str) -> re.Pattern[str]:
    """An IAM resource pattern (the part after ``repository/``) as a regex: ``*`` any run of characters (``/``
    included), ``?`` any one character, everything else literal."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts))


class EcrRegistry:
    """ECR in the stack's account and region.

    ``host`` is the stack's registry host (``<account>.dkr.ecr.<region>.amazonaws.com``), or None when the account
    is not known; references naming another registry are refused against it. ``repository_pattern`` is the IAM
    resource pattern of ``RepositoryPattern``: a repository outside it is :class:`NotOurs` without asking ECR, and
    so is one where ECR answers AccessDenied.
    """

    page_size = 1000  # images per DescribeImages page of the reconciler's listing (ECR's maximum)

    def __init__(self, client: Any, *, host: str | None = None, repository_pattern: str = "*") -> None:
        self.client = client
        self.host = host
        self.repository_pattern = repository_pattern or "*"
        self._ours = iam_pattern(self.repository_pattern)

    def owns(self, stream: str) -> bool:
        """Whether ``stream`` lies inside ``RepositoryPattern`` (IAM may still deny it: then calls raise NotOurs)."""
        return self._ours.fullmatch(stream) is not None

    def _check(self, stream: str) -> None:
        if not self.owns(stream):
            raise NotOurs(stream, f"RepositoryPattern is {self.repository_pattern!r}")

    def _denied(self, stream: str, exc: ClientError) -> None:
        if _code(exc) in _DENIED:
            raise NotOurs(stream, _message(exc)) from exc

    @property
    def region(self) -> str:
        return self.client.meta.region_name

    def _describe_one(self, stream: str, image_id: dict[str, str]) -> dict[str, Any] | None:
        """One ``DescribeImages`` of one image (by tag or digest); None when ECR has no such image or repository."""
        self._check(stream)
        try:
            out = self.client.describe_images(repositoryName=stream, imageIds=[image_id])
        except ClientError as exc:
            if _code(exc) in _GONE:
                return None
            self._denied(stream, exc)
            raise
        details = out.get("imageDetails") or []
        return details[0] if details else None

    def resolve(self, stream: str, tag: str) -> Observation | None:
        """One ``DescribeImages`` by tag. For a multi-arch image this is the index digest the tag points to."""
        detail = self._describe_one(stream, {"imageTag": tag})
        if detail is None:
            return None
        return Observation(
            detail["imageDigest"], detail.get("imageManifestMediaType"),
            registry_host(detail["registryId"], self.region), detail.get("imagePushedAt"),
        )

    # ------------------------------------------------------------------------- bulk (the reconciler)

    def repositories(self) -> list[str]:
        names: list[str] = []
        for page in self.client.get_paginator("describe_repositories").paginate():
            names += [r["repositoryName"] for r in page["repositories"]]
        return names

    def tags(self, stream: str, token: str | None = None) -> tuple[dict[str, str], str | None] | None:
        """One page of a repository's tags, tag → digest: one ``DescribeImages`` of up to ``page_size`` tagged
        images, and the token of the next page (None after the last). None when IAM does not let us read it."""
        kwargs: dict[str, Any] = {"repositoryName": stream, "filter": {"tagStatus": "TAGGED"},
                                  "maxResults": self.page_size}
        if token:
            kwargs["nextToken"] = token
        try:
            out = self.client.describe_images(**kwargs)
        except ClientError as exc:
            if _code(exc) in _GONE:
                return {}, None
            if _code(exc) in ("AccessDeniedException", "AccessDenied"):
                return None
            raise
        page = {tag: detail["imageDigest"] for detail in out.get("imageDetails") or []
                for tag in detail.get("imageTags") or []}
        return page, out.get("nextToken") or None

    def present(self, stream: str, tags: list[str]) -> set[str]:
        """Which of these tags (at most 100) the repository has now: one ``DescribeImages`` by tag. ECR refuses
        the whole call when one tag is missing, so a refused batch is split in halves until the missing tags are
        found (about two calls per level for each missing tag)."""
        if not tags:
            return set()
        try:
            out = self.client.describe_images(repositoryName=stream, imageIds=[{"imageTag": t} for t in tags])
        except ClientError as exc:
            if _code(exc) == "RepositoryNotFoundException":
                return set()
            if _code(exc) != "ImageNotFoundException":
                raise
            if len(tags) == 1:
                return set()
            half = len(tags) // 2
            return self.present(stream, tags[:half]) | self.present(stream, tags[half:])
        found = {tag for detail in out.get("imageDetails") or [] for tag in detail.get("imageTags") or []}
        return found & set(tags)

    def _immutable(self, stream: str) -> Any:
        """A predicate: is this tag immutable in the repository (exclusion filters honoured)?"""
        repo = self.client.describe_repositories(repositoryNames=[stream])["repositories"][0]
        mode = repo.get("imageTagMutability", "MUTABLE")
        patterns = [f["filter"] for f in repo.get("imageTagMutabilityExclusionFilters") or []]

        def immutable(tag: str) -> bool:
            excluded = any(fnmatch.fnmatchcase(tag, p) for p in patterns)
            if mode == "IMMUTABLE_WITH_EXCLUSION":
                return not excluded
            if mode == "MUTABLE_WITH_EXCLUSION":
                return excluded
            return mode == "IMMUTABLE"

        return immutable

    def check_can_tag(self, stream: str, digest: str, tags: list[str]) -> None:
        self._check(stream)
        try:
            detail = self.client.describe_images(repositoryName=stream,
                                                 imageIds=[{"imageDigest": digest}])["imageDetails"][0]
            immutable = self._immutable(stream)
        except ClientError as exc:
            if _code(exc) in _GONE:
                raise NotFound(f"{stream}@{digest} is not in ECR") from exc
            self._denied(stream, exc)
            raise
        for tag in tags:
            if tag in (detail.get("imageTags") or []) or not immutable(tag):
                continue
            current = self.resolve(stream, tag)
            if current is not None and current.digest != digest:
                raise Conflict(f"{stream}:{tag} is an immutable tag and already points to {current.digest}")

    def retag(self, stream: str, digest: str, tag: str) -> None:
        """BatchGetImage then PutImage with the exact manifest string and media type (never re-serialised)."""
        image = self._image(stream, digest)
        kwargs = {"repositoryName": stream, "imageManifest": image["imageManifest"], "imageTag": tag,
                  "imageDigest": digest}
        if image.get("imageManifestMediaType"):
            kwargs["imageManifestMediaType"] = image["imageManifestMediaType"]
        try:
            self.client.put_image(**kwargs)
        except ClientError as exc:
            self._denied(stream, exc)
            code = _code(exc)
            if code == "ImageTagAlreadyExistsException":
                raise Conflict(f"{stream}:{tag} is an immutable tag: {exc.response['Error'].get('Message')}") from exc
            if code != "ImageAlreadyExistsException":
                raise
            # "already exists" is success only if the tag is on this digest (moto also says this for immutable
            # tags pointing elsewhere, where AWS says ImageTagAlreadyExists).
            current = self.resolve(stream, tag)
            if current is None or current.digest != digest:
                raise Conflict(f"{stream}:{tag} cannot be moved to {digest}: "
                               f"{exc.response['Error'].get('Message')}") from exc

    def platform_digest(self, stream: str, digest: str, architecture: str) -> str:
        """The child manifest of an index for ``linux/<architecture>`` (attestations skipped); a single-platform
        image is returned as is. For targets that take no index (Lambda)."""
        return pick_platform(self._image(stream, digest)["imageManifest"], digest, architecture)

    def _image(self, stream: str, digest: str) -> dict[str, Any]:
        """BatchGetImage by digest, every manifest and index media type accepted (so nothing is converted)."""
        self._check(stream)
        try:
            out = self.client.batch_get_image(repositoryName=stream, imageIds=[{"imageDigest": digest}],
                                              acceptedMediaTypes=ACCEPTED_MEDIA_TYPES)
        except ClientError as exc:
            if _code(exc) in _GONE:
                raise NotFound(f"{stream}@{digest} is not in ECR") from exc
            self._denied(stream, exc)
            raise
        if out.get("failures") or not out.get("images"):
            reasons = ", ".join(f.get("failureCode", "?") for f in out.get("failures", []))
            raise NotFound(f"{stream}@{digest} is not in ECR ({reasons or 'no image'})")
        return out["images"][0]

    def untag(self, stream: str, tag: str) -> None:
        self._check(stream)
        try:
            out = self.client.batch_delete_image(repositoryName=stream, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if _code(exc) in _GONE:
                return
            self._denied(stream, exc)
            raise
        failures = [f for f in out.get("failures", []) if f.get("failureCode") != "ImageNotFound"]
        if failures:
            raise RuntimeError(f"BatchDeleteImage failed for {stream}:{tag}: {failures}")

    # ------------------------------------------------------------------------------------------- prune

    def list_images(self, stream: str, token: str | None = None) -> tuple[list[Any], str | None]:
        """One DescribeImages page of up to ``page_size`` images, tagged or not (ECR lists ACTIVE ones unless a
        status filter asks otherwise): digest, tags, push time, size, media type and status. An unknown
        repository has none; one IAM does not let us read is :class:`NotOurs`."""
        from ..prune import RegistryImage

        self._check(stream)
        kwargs: dict[str, Any] = {"repositoryName": stream, "maxResults": self.page_size}
        if token:
            kwargs["nextToken"] = token
        try:
            out = self.client.describe_images(**kwargs)
        except ClientError as exc:
            if _code(exc) == "RepositoryNotFoundException":
                return [], None
            self._denied(stream, exc)
            raise
        page = [RegistryImage(d["imageDigest"], tuple(d.get("imageTags") or ()), d.get("imagePushedAt"),
                              int(d.get("imageSizeInBytes") or 0),
                              d.get("imageManifestMediaType") or d.get("artifactMediaType"),
                              d.get("imageStatus") or "ACTIVE")
                for d in out.get("imageDetails") or []]
        return page, out.get("nextToken") or None

    def index_children(self, stream: str, digests: list[str]) -> dict[str, list[str]]:
        """BatchGetImage (100 ids a call, every media type accepted): the manifests each index refers to. An image
        that is no index, or is gone, has no entry."""
        import json

        self._check(stream)
        children: dict[str, list[str]] = {}
        for start in range(0, len(digests), 100):
            ids = [{"imageDigest": d} for d in digests[start : start + 100]]
            try:
                out = self.client.batch_get_image(repositoryName=stream, imageIds=ids,
                                                  acceptedMediaTypes=ACCEPTED_MEDIA_TYPES)
            except ClientError as exc:
                if _code(exc) in _GONE:
                    return children
                self._denied(stream, exc)
                raise
            for image in out.get("images") or []:
                try:
                    doc = json.loads(image.get("imageManifest") or "null")
                except ValueError:
                    continue
                entries = doc.get("manifests") if isinstance(doc, dict) else None
                if isinstance(entries, list):
                    kids = [e.get("digest") for e in entries if isinstance(e, dict)]
                    children[image["imageId"]["imageDigest"]] = sorted(
                        {k for k in kids if isinstance(k, str) and DIGEST_RE.fullmatch(k)})
        return children

    def delete_images(self, stream: str, digests: list[str]) -> tuple[list[str], dict[str, str]]:
        """BatchDeleteImage by digest (at most 100): the digests deleted, and the others with ECR's failure code
        (e.g. ``ImageReferencedByManifestList``)."""
        if len(digests) > 100:
            raise ValueError("BatchDeleteImage takes at most 100 image ids")
        self._check(stream)
        try:
            out = self.client.batch_delete_image(repositoryName=stream,
                                                 imageIds=[{"imageDigest": d} for d in digests])
        except ClientError as exc:
            if _code(exc) == "RepositoryNotFoundException":
                return [], {d: "RepositoryNotFound" for d in digests}
            self._denied(stream, exc)
            raise
        failures = {f["imageId"].get("imageDigest", "?"): f.get("failureCode", "?")
                    for f in out.get("failures") or []}
        # every id is answered in imageIds or in failures; one not failed was deleted (moto leaves untagged
        # deletions out of imageIds)
        deleted = sorted(d for d in dict.fromkeys(digests) if d not in failures)
        return deleted, failures

    def image_status(self, stream: str, digest: str) -> str | None:
        """ACTIVE, ARCHIVED or ACTIVATING (DescribeImages ``imageStatus``); None when ECR has no such image."""
        detail = self._describe_one(stream, {"imageDigest": digest})
        return (detail.get("imageStatus") or "ACTIVE") if detail is not None else None

    # ------------------------------------------------------------------------------------- gate evidence

    def _gate_read(self, stream: str, call: Any, **kwargs: Any) -> dict[str, Any] | None:
        """One read for a gate; None when ECR has no such image, repository or scan, or (an older endpoint, the
        embedded AWS) does not know the operation. AccessDenied → NotOurs; anything else is raised (throttling
        is retried by botocore's retry mode first)."""
        self._check(stream)
        try:
            return call(repositoryName=stream, **kwargs)
        except ClientError as exc:
            if _code(exc) in _GONE | _NO_EVIDENCE:
                return None
            self._denied(stream, exc)
            raise

    def scan_result(self, stream: str, digest: str) -> ScanResult | None:
        """``DescribeImageScanFindings``: status and severity counts (basic and enhanced scanning alike)."""
        out = self._gate_read(stream, self.client.describe_image_scan_findings, imageId={"imageDigest": digest},
                              maxResults=1)
        if out is None:
            return None
        status = (out.get("imageScanStatus") or {}).get("status") or ""
        counts = (out.get("imageScanFindings") or {}).get("findingSeverityCounts") or {}
        return ScanResult(str(status), {str(k): int(v) for k, v in counts.items()})

    def signing_status(self, stream: str, digest: str) -> SigningStatus | None:
        """``DescribeImageSigningStatus`` (ECR managed signing; one status per signing profile whose rule matched):
        FAILED when any profile failed (with its reason), else IN_PROGRESS while any still runs, else COMPLETE —
        every profile the registry's signing rules name must have signed; None when there is none."""
        out = self._gate_read(stream, self.client.describe_image_signing_status, imageId={"imageDigest": digest})
        statuses = (out or {}).get("signingStatuses") or []
        if not statuses:
            return None
        failed = next((s for s in statuses if s.get("status") not in ("COMPLETE", "IN_PROGRESS")), None)
        if failed is not None:
            reason = failed.get("failureReason") or failed.get("failureCode")
            profile = str(failed.get("signingProfileArn") or "")[:256]
            text = f"{profile}: {reason}" if profile and reason else (reason or profile or None)
            return SigningStatus("FAILED", str(text)[:512] if text else None)
        if any(s.get("status") == "IN_PROGRESS" for s in statuses):
            return SigningStatus("IN_PROGRESS")
        return SigningStatus("COMPLETE")

    def signature_referrers(self, stream: str, digest: str) -> list[str]:
        """``ListImageReferrers``: the artifact types of the image's active referrers (at most 5 pages)."""
        found: list[str] = []
        token: str | None = None
        for _ in range(MAX_REFERRER_PAGES):
            extra = {"nextToken": token} if token else {}
            out = self._gate_read(stream, self.client.list_image_referrers, subjectId={"imageDigest": digest},
                                  filter={"artifactStatus": "ACTIVE"}, **extra)
            if out is None:
                break
            found += [str(r.get("artifactType") or "") for r in out.get("referrers") or []]
            token = out.get("nextToken")
            if not token:
                break
        return found
