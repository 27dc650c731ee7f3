"""Registry port on ECR: where does a tag point right now?"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ..model import Observation, registry_host

_GONE = {"ImageNotFoundException", "RepositoryNotFoundException"}


class EcrRegistry:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.region = client.meta.region_name

    def resolve(self, stream: str, tag: str) -> Observation | None:
        """One ``DescribeImages`` by tag. For a multi-arch image this is the index digest the tag points to."""
        try:
            out = self.client.describe_images(repositoryName=stream, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _GONE:
                return None
            raise
        details = out.get("imageDetails") or []
        if not details:
            return None
        detail = details[0]
        return Observation(
            detail["imageDigest"], detail.get("imageManifestMediaType"), registry_host(detail["registryId"], self.region)
        )
