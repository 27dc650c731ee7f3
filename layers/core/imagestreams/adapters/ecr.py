"""Registry port on ECR: where a tag points right now, and byte-exact retags (aws-facts.md §2.1)."""

from __future__ import annotations

import fnmatch
from typing import Any

from botocore.exceptions import ClientError

from ..errors import Conflict, NotFound
from ..model import Observation, registry_host

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


def pick_platform(manifest: str, digest: str, architecture: str) -> str:
    """Child digest for ``linux/<architecture>`` in an index manifest; ``digest`` itself for a plain manifest."""
    import json

    doc = json.loads(manifest)
    if doc.get("mediaType") not in INDEX_MEDIA_TYPES and "manifests" not in doc:
        return digest
    for child in doc.get("manifests") or []:
        platform = child.get("platform") or {}
        if platform.get("os") == "unknown" or platform.get("architecture") == "unknown":
            continue  # attestation manifests (buildx provenance/SBOM)
        if platform.get("os") == "linux" and platform.get("architecture") == architecture:
            return child["digest"]
    available = sorted({f"{(c.get('platform') or {}).get('os')}/{(c.get('platform') or {}).get('architecture')}"
                        for c in doc.get("manifests") or []})
    raise NotFound(f"index {digest} has no linux/{architecture} image (it has: {', '.join(available) or 'none'})")


def _code(exc: ClientError) -> str:
    return exc.response["Error"].get("Code", "")


class EcrRegistry:
    page_size = 1000  # images per DescribeImages page of the reconciler's listing (ECR's maximum)

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def region(self) -> str:
        return self.client.meta.region_name

    def resolve(self, stream: str, tag: str) -> Observation | None:
        """One ``DescribeImages`` by tag. For a multi-arch image this is the index digest the tag points to."""
        try:
            out = self.client.describe_images(repositoryName=stream, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if _code(exc) in _GONE:
                return None
            raise
        details = out.get("imageDetails") or []
        if not details:
            return None
        detail = details[0]
        return Observation(
            detail["imageDigest"], detail.get("imageManifestMediaType"),
            registry_host(detail["registryId"], self.region),
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
        try:
            detail = self.client.describe_images(repositoryName=stream,
                                                 imageIds=[{"imageDigest": digest}])["imageDetails"][0]
            immutable = self._immutable(stream)
        except ClientError as exc:
            if _code(exc) in _GONE:
                raise NotFound(f"{stream}@{digest} is not in ECR") from exc
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
        try:
            out = self.client.batch_get_image(repositoryName=stream, imageIds=[{"imageDigest": digest}],
                                              acceptedMediaTypes=ACCEPTED_MEDIA_TYPES)
        except ClientError as exc:
            if _code(exc) in _GONE:
                raise NotFound(f"{stream}@{digest} is not in ECR") from exc
            raise
        if out.get("failures") or not out.get("images"):
            reasons = ", ".join(f.get("failureCode", "?") for f in out.get("failures", []))
            raise NotFound(f"{stream}@{digest} is not in ECR ({reasons or 'no image'})")
        return out["images"][0]

    def untag(self, stream: str, tag: str) -> None:
        try:
            out = self.client.batch_delete_image(repositoryName=stream, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if _code(exc) in _GONE:
                return
            raise
        failures = [f for f in out.get("failures", []) if f.get("failureCode") != "ImageNotFound"]
        if failures:
            raise RuntimeError(f"BatchDeleteImage failed for {stream}:{tag}: {failures}")
