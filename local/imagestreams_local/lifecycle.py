"""Test double: ECR lifecycle policy previews on the embedded AWS.

moto 5.2.5 stores lifecycle policies (``PutLifecyclePolicy`` / ``GetLifecyclePolicy``) but has no
``StartLifecyclePolicyPreview`` or ``GetLifecyclePolicyPreview``: its server answers them with a 500 and a traceback.
This module answers both *inside the moto server* (this process), so the real boto3 adapter code runs against it:

* ``StartLifecyclePolicyPreview(repositoryName, lifecyclePolicyText?)`` — previews the given text, else the
  repository's stored lifecycle policy (read from moto's backend). No repository → ``RepositoryNotFoundException``; no
  text and no stored policy → ``LifecyclePolicyNotFoundException``; a preview of the repository still
  ``IN_PROGRESS`` → ``LifecyclePolicyPreviewInProgressException``; text that is not a valid policy →
  ``InvalidParameterException``. Answers ``{registryId, repositoryName, lifecyclePolicyText, status: IN_PROGRESS}``.
  The preview is ``COMPLETE`` ``preview_delay`` seconds later on the doubles' clock (``scanning.CLOCK``, moved by
  ``EmbeddedAws.advance``); :func:`configure` sets the delay (default :data:`PREVIEW_DELAY`). A new preview of a
  repository replaces its finished one.
* ``GetLifecyclePolicyPreview(repositoryName, imageIds?, nextToken?, maxResults?, filter?)`` — no preview started →
  ``LifecyclePolicyPreviewNotFoundException``; ``IN_PROGRESS`` → the status and the policy text, no results;
  ``COMPLETE`` → ``previewResults`` (``imageTags``, ``imageDigest``, ``imagePushedAt``, ``action: {type: EXPIRE}``,
  ``appliedRulePriority``, ``storageClass: STANDARD``; oldest push first), ``summary: {expiringImageTotalCount}``
  (every image the preview expires) and ``lifecyclePolicyText``. Pages of ``maxResults`` (1-100, default 100, as
  the ECR API reference gives them) with an opaque ``nextToken``; ``filter.tagStatus`` (``TAGGED``, ``UNTAGGED``,
  ``ANY``) and ``imageIds`` narrow the results (``imageIds`` with ``nextToken`` → ``InvalidParameterException``).

The evaluation follows the ECR user guide ("Lifecycle policy evaluation rules" and the multi-rule examples):

* rules apply by ascending ``rulePriority``; ``tagStatus`` ``tagged`` (with ``tagPrefixList`` — every prefix
  matches some tag of the image — or ``tagPatternList`` — every pattern, ``*`` a wildcard, matches some tag),
  ``untagged`` or ``any``;
* ``countType`` ``imageCountMoreThan``: the images a rule selects are sorted newest push first and all beyond
  ``countNumber`` are expired; ``sinceImagePushed`` (``countUnit`` ``days``): every selected image pushed more than
  ``countNumber`` days ago (on the doubles' clock) is expired;
* an image is expired by exactly one or zero rules: an image that matches the tagging requirements of a rule cannot
  be expired by a rule with a lower priority, but it is still counted by the lower rules' ``imageCountMoreThan``
  ("rules can never mark images that are marked by higher priority rules, but can still identify them as if they
  haven't been expired"; the user guide's examples A and B of "Filtering on multiple rules" come out as written);
* validation (``InvalidParameterException``): unique integer ``rulePriority`` >= 1; the ``any`` rule has the highest
  priority; ``tagged`` needs exactly one of ``tagPrefixList`` / ``tagPatternList``, ``untagged`` and ``any`` take
  neither; at most four ``*`` per pattern; only one rule selects untagged images; no two tagged rules with the same
  prefix (or pattern) set; ``countUnit`` ``days`` with ``sinceImagePushed`` and only there; ``countNumber`` a
  positive integer; no properties beyond the documented ones.

Limits (a test double, not AWS): only the ``expire`` action is served. ECR also documents archive rules (action
``transition`` with ``targetStorageClass: archive``, ``selection.storageClass``, the count types
``sinceImagePulled`` and ``sinceImageTransitioned``); moto has no storage classes and its own ``PutLifecyclePolicy``
refuses those rules, so the double refuses them too (``InvalidParameterException`` naming the double), and
``storageClass`` is accepted only as ``standard``. The result is computed when the preview starts (images pushed
while it runs are not in it); a finished preview never turns ``EXPIRED``; images that an image index references
are treated like any other untagged image; the order of ``previewResults`` is the double's (oldest push first);
nothing is ever expired (ECR applies a policy within 24 hours; moto does not); one account.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from moto.core.exceptions import ServiceException

from .scanning import ACCOUNT, CLOCK, backend_state
from .scanning import ecr_backend as _backend

PREVIEW_DELAY = 1.0  # seconds on the doubles' clock until a started preview is COMPLETE
MAX_RESULTS = 100  # GetLifecyclePolicyPreview: default and maximum page size (ECR API reference)
MAX_WILDCARDS = 4  # per tagPatternList entry (ECR user guide)
DAY = 86_400.0

_RULE_KEYS = {"rulePriority", "description", "selection", "action"}
_SELECTION_KEYS = {"tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit", "countNumber",
                   "storageClass"}
_ARCHIVE = "archive rules (action transition, storage class archive, sinceImagePulled, sinceImageTransitioned) " \
           "are not served by the embedded AWS's lifecycle double"


class LifecyclePolicyPreviewNotFound(ServiceException):
    code = "LifecyclePolicyPreviewNotFoundException"


class LifecyclePolicyPreviewInProgress(ServiceException):
    code = "LifecyclePolicyPreviewInProgressException"


@dataclass(frozen=True)
class Rule:
    priority: int
    tag_status: str  # tagged | untagged | any
    prefixes: tuple[str, ...]
    patterns: tuple[str, ...]
    count_type: str  # imageCountMoreThan | sinceImagePushed
    count: int

    def selects(self, tags: list[str]) -> bool:
        if self.tag_status == "any":
            return True
        if self.tag_status == "untagged":
            return not tags
        if not tags:
            return False
        if self.prefixes:
            return all(any(tag.startswith(prefix) for tag in tags) for prefix in self.prefixes)
        return all(any(_wildcard(pattern).fullmatch(tag) for tag in tags) for pattern in self.patterns)


def _wildcard(pattern: str) -> re.Pattern[str]:
    """An ECR tag pattern: ``*`` matches any run of characters, everything else only itself."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


@dataclass
class Preview:
    policy_text: str
    done_at: float  # on CLOCK
    results: list[dict[str, Any]]  # the images it expires, oldest push first
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # tells this preview's page tokens apart

    @property
    def status(self) -> str:
        return "COMPLETE" if CLOCK.time() >= self.done_at else "IN_PROGRESS"


@dataclass
class Previews:
    """The double's state for one region (kept on moto's ECR backend, so a moto reset clears it)."""

    region: str
    previews: dict[str, Preview] = field(default_factory=dict)
    preview_delay: float = PREVIEW_DELAY
    lock: threading.RLock = field(default_factory=threading.RLock)


def previews(region: str = "us-east-1") -> Previews:
    return backend_state(region, "_imagestreams_lifecycle", Previews)


def configure(region: str = "us-east-1", *, preview_delay: float | None = None) -> Previews:
    """How long a preview runs before it is COMPLETE (seconds on the doubles' clock; 0: complete at once)."""
    state = previews(region)
    if preview_delay is not None:
        if preview_delay < 0:
            raise ValueError("preview_delay must not be negative")
        state.preview_delay = preview_delay
    return state


# ------------------------------------------------------------------------------------------ policy text


def _invalid(reason: str) -> Exception:
    from moto.ecr.exceptions import InvalidParameterException

    return InvalidParameterException("Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                                     f"'Lifecycle policy validation failure: {reason}'")


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"{what} must be a positive integer, found: {json.dumps(value)}")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _invalid(f"{what} must be a non-empty list of non-empty strings")
    return tuple(value)


def parse_policy(text: str) -> list[Rule]:
    """The rules of a lifecycle policy text, by ascending priority; ``InvalidParameterException`` as ECR refuses it."""
    try:
        policy = json.loads(text)
    except (TypeError, ValueError):
        raise _invalid("Could not map policyString into LifecyclePolicy.") from None
    if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list) or not policy["rules"]:
        raise _invalid('object has missing required properties (["rules"])')
    rules = [_rule(raw) for raw in policy["rules"]]
    priorities = [r.priority for r in rules]
    if len(set(priorities)) != len(priorities):
        raise _invalid("rulePriority must be unique across the rules")
    rules.sort(key=lambda r: r.priority)
    if any(r.tag_status == "any" for r in rules[:-1]):
        raise _invalid("the rule with tagStatus 'any' must have the highest rulePriority")
    if sum(r.tag_status == "untagged" for r in rules) > 1:
        raise _invalid("only one rule may select untagged images")
    sets = [(frozenset(r.prefixes), frozenset(r.patterns)) for r in rules if r.tag_status == "tagged"]
    if len(set(sets)) != len(sets):
        raise _invalid("the rules must contain a unique set of tag prefixes (and patterns)")
    return rules


def _rule(raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise _invalid("a rule must be an object")
    missing = {"rulePriority", "selection", "action"} - set(raw)
    if missing:
        raise _invalid(f"object has missing required properties ({json.dumps(sorted(missing))})")
    extra = set(raw) - _RULE_KEYS
    if extra:
        raise _invalid(f"object instance has properties which are not allowed by the schema: "
                       f"({json.dumps(sorted(extra))})")
    priority = _positive_int(raw["rulePriority"], "rulePriority")
    action, selection = raw["action"], raw["selection"]
    if not isinstance(action, dict) or "type" not in action:
        raise _invalid('object has missing required properties (["type"])')
    if action["type"] == "transition" or "targetStorageClass" in action:
        raise _invalid(_ARCHIVE)
    if action["type"] != "expire" or set(action) != {"type"}:
        raise _invalid(f"instance value ({json.dumps(action['type'])}) not found in enum (possible values: "
                       '["expire"])')
    if not isinstance(selection, dict):
        raise _invalid("selection must be an object")
    extra = set(selection) - _SELECTION_KEYS
    if extra:
        raise _invalid(f"object instance has properties which are not allowed by the schema: "
                       f"({json.dumps(sorted(extra))})")
    missing = {"tagStatus", "countType", "countNumber"} - set(selection)
    if missing:
        raise _invalid(f"object has missing required properties ({json.dumps(sorted(missing))})")
    if selection.get("storageClass", "standard") != "standard":
        raise _invalid(_ARCHIVE)
    status = selection["tagStatus"]
    if status not in ("tagged", "untagged", "any"):
        raise _invalid(f'instance value ({json.dumps(status)}) not found in enum (possible values: '
                       '["any","tagged","untagged"])')
    prefixes = _strings(selection["tagPrefixList"], "tagPrefixList") if "tagPrefixList" in selection else ()
    patterns = _strings(selection["tagPatternList"], "tagPatternList") if "tagPatternList" in selection else ()
    if status == "tagged" and bool(prefixes) == bool(patterns):
        raise _invalid("tagStatus 'tagged' requires exactly one of tagPrefixList and tagPatternList")
    if status != "tagged" and (prefixes or patterns):
        raise _invalid(f"tagPrefixList and tagPatternList must be omitted with tagStatus '{status}'")
    for pattern in patterns:
        if pattern.count("*") > MAX_WILDCARDS:
            raise _invalid(f"tagPatternList entry {json.dumps(pattern)} has more than {MAX_WILDCARDS} wildcards")
    count_type = selection["countType"]
    if count_type in ("sinceImagePulled", "sinceImageTransitioned"):
        raise _invalid(_ARCHIVE)
    if count_type not in ("imageCountMoreThan", "sinceImagePushed"):
        raise _invalid(f'instance value ({json.dumps(count_type)}) not found in enum (possible values: '
                       '["imageCountMoreThan","sinceImagePushed"])')
    unit = selection.get("countUnit")
    if count_type == "sinceImagePushed" and unit != "days":
        raise _invalid("countType sinceImagePushed requires countUnit 'days'")
    if count_type == "imageCountMoreThan" and unit is not None:
        raise _invalid("countUnit is only allowed with countType sinceImagePushed")
    count = _positive_int(selection["countNumber"], "countNumber")
    return Rule(priority, status, prefixes, patterns, count_type, count)


# ------------------------------------------------------------------------------------------ evaluation


def evaluate(rules: list[Rule], images: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """What the rules expire among ``images`` (``{digest, tags, pushed}``, ``pushed`` in epoch seconds, in push
    order): preview results, oldest push first."""
    order = {image["digest"]: n for n, image in enumerate(images)}
    seen: set[str] = set()  # matched the tagging requirements of a higher-priority rule
    expired: dict[str, tuple[dict[str, Any], int]] = {}
    for rule in rules:
        selected = [image for image in images if rule.selects(list(image["tags"]))]
        if rule.count_type == "imageCountMoreThan":
            newest_first = sorted(selected, key=lambda i: (i["pushed"], order[i["digest"]]), reverse=True)
            candidates = newest_first[rule.count:]
        else:
            candidates = [image for image in selected if now - image["pushed"] > rule.count * DAY]
        for image in candidates:
            if image["digest"] not in seen and image["digest"] not in expired:
                expired[image["digest"]] = (image, rule.priority)
        seen.update(image["digest"] for image in selected)
    ordered = sorted(expired.values(), key=lambda e: (e[0]["pushed"], order[e[0]["digest"]]))
    return [{"imageTags": list(image["tags"]), "imageDigest": image["digest"],
             "imagePushedAt": datetime.fromtimestamp(image["pushed"], timezone.utc),
             "action": {"type": "EXPIRE"}, "appliedRulePriority": priority, "storageClass": "STANDARD"}
            for image, priority in ordered]


def _images(repo: Any) -> list[dict[str, Any]]:
    return [{"digest": image.image_digest, "tags": list(image.image_tags), "pushed": float(image.image_pushed_at)}
            for image in repo.images]


# ------------------------------------------------------------------------------------------ answers (in moto)


def start_preview(region: str, repository: str, policy_text: str | None) -> dict[str, Any]:
    from moto.ecr.exceptions import LifecyclePolicyNotFoundException

    repo = _backend(region)._get_repository(repository, None)  # RepositoryNotFoundException as ECR raises
    text = policy_text or repo.lifecycle_policy
    if not text:
        raise LifecyclePolicyNotFoundException(repository, ACCOUNT)
    rules = parse_policy(text)
    state = previews(region)
    with state.lock:
        running = state.previews.get(repository)
        if running is not None and running.status == "IN_PROGRESS":
            raise LifecyclePolicyPreviewInProgress(
                f"The previous lifecycle policy preview request has not completed for the repository with name "
                f"'{repository}' in the registry with id '{ACCOUNT}'")
        now = CLOCK.time()
        state.previews[repository] = Preview(text, now + state.preview_delay, evaluate(rules, _images(repo), now))
    return {"registryId": ACCOUNT, "repositoryName": repository, "lifecyclePolicyText": text,
            "status": "IN_PROGRESS"}


def get_preview(region: str, repository: str, *, image_ids: list[dict[str, Any]] | None = None,
                next_token: str | None = None, max_results: int | None = None,
                tag_status: str | None = None) -> dict[str, Any]:
    from moto.ecr.exceptions import InvalidParameterException

    repo = _backend(region)._get_repository(repository, None)
    preview = previews(region).previews.get(repository)
    if preview is None:
        raise LifecyclePolicyPreviewNotFound(
            f"There is no lifecycle policy preview request for the repository with name '{repository}' in the "
            f"registry with id '{ACCOUNT}'")
    answer: dict[str, Any] = {"registryId": ACCOUNT, "repositoryName": repository,
                              "lifecyclePolicyText": preview.policy_text, "status": preview.status}
    if preview.status != "COMPLETE":
        return answer
    if image_ids and next_token:
        raise InvalidParameterException("nextToken cannot be used together with imageIds")
    size = MAX_RESULTS if max_results is None else max_results
    if not 1 <= size <= MAX_RESULTS:
        raise InvalidParameterException(f"maxResults must be between 1 and {MAX_RESULTS}, found: {size}")
    results = preview.results
    if tag_status in ("TAGGED", "UNTAGGED"):
        results = [r for r in results if bool(r["imageTags"]) == (tag_status == "TAGGED")]
    if image_ids:
        wanted = set()
        for image_id in image_ids:
            if image_id.get("imageDigest"):
                wanted.add(image_id["imageDigest"])
            elif image_id.get("imageTag"):
                found = next((i for i in repo.images if image_id["imageTag"] in i.image_tags), None)
                if found is not None:
                    wanted.add(found.image_digest)
        results = [r for r in results if r["imageDigest"] in wanted]
    start = _offset(next_token, preview) if next_token else 0
    page = results[start:start + size]
    answer["previewResults"] = [dict(r) for r in page]
    if start + size < len(results):
        answer["nextToken"] = _token(preview, start + size)
    answer["summary"] = {"expiringImageTotalCount": len(preview.results)}
    return answer


def _token(preview: Preview, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": preview.token, "o": offset}).encode()).decode()


def _offset(token: str, preview: Preview) -> int:
    from moto.ecr.exceptions import InvalidParameterException

    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode()))
        if body["p"] == preview.token and isinstance(body["o"], int) and body["o"] >= 0:
            return int(body["o"])
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidParameterException("Invalid parameter at 'nextToken': the token is not valid for this preview")


# ------------------------------------------------------------------------------------------ installation


def _result(value: Any) -> Any:
    from moto.core.responses import ActionResult

    return ActionResult(value)


def _start_lifecycle_policy_preview(self: Any) -> Any:
    return _result(start_preview(self.region, self._get_param("repositoryName"),
                                 self._get_param("lifecyclePolicyText")))


def _get_lifecycle_policy_preview(self: Any) -> Any:
    return _result(get_preview(
        self.region, self._get_param("repositoryName"), image_ids=self._get_param("imageIds"),
        next_token=self._get_param("nextToken"), max_results=self._get_param("maxResults"),
        tag_status=(self._get_param("filter") or {}).get("tagStatus")))


_RESPONSES = {
    "start_lifecycle_policy_preview": _start_lifecycle_policy_preview,
    "get_lifecycle_policy_preview": _get_lifecycle_policy_preview,
}


def install() -> None:
    """Patch moto's ECR (class-wide, in this process; idempotent) so the moto server answers lifecycle policy
    previews with this double, and stamps a newly pushed image's ``imagePushedAt`` on the doubles' clock (moto uses
    the wall clock: after ``EmbeddedAws.advance`` a new image would look older than it is)."""
    from moto.ecr.models import ECRBackend
    from moto.ecr.responses import ECRResponse

    if getattr(ECRResponse, "_imagestreams_lifecycle", False):
        return
    original_put = ECRBackend.put_image

    def put_image(self: Any, repository_name: str, *args: Any, **kwargs: Any) -> Any:
        repo = self.repositories.get(repository_name)
        before = {id(image) for image in repo.images} if repo is not None else set()
        image = original_put(self, repository_name, *args, **kwargs)
        if id(image) not in before:  # a new image (a known one under another tag keeps its push time)
            image.image_pushed_at = int(CLOCK.time())
        return image

    ECRBackend.put_image = put_image  # type: ignore[method-assign]
    for name, handler in _RESPONSES.items():
        setattr(ECRResponse, name, handler)
    ECRResponse._imagestreams_lifecycle = True  # type: ignore[attr-defined]
