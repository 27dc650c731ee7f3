"""Target driver for EKS workloads, over a small Kubernetes client built on the standard library.

Why not the official ``kubernetes`` package: importing it costs ~210 ms (as much as boto3), it
drags aiohttp and a python-dateutil that conflicts with botocore's pin, and we need exactly two calls (GET and
PATCH) plus a list for discovery. ``urllib`` with an ``ssl`` context built from the cluster CA does that.

* Cluster data: ``eks:DescribeCluster`` (endpoint, CA), cached per warm container.
* Token: ``k8s-aws-v1.`` + base64url(presigned STS GetCallerIdentity URL signed with the ``x-k8s-aws-id`` header),
  exactly as ``aws eks get-token`` does (awscli ``customizations/eks/get_token.py``); signing is local. Valid 15 min
  after signing: cached for 13 min, refreshed once on a 401.
* Firing: GET the workload; no-op when the container already has the pinned ref; else a strategic-merge PATCH that
  names only that container (containers are merged by ``name``, so sidecars are untouched) with a
  ``metadata.resourceVersion`` precondition. A 409 (someone wrote the workload since our read) writes nothing and
  raises ``TargetChanged``: the whole fire starts over, re-reading the trigger too, so a pause or a target rollback
  made meanwhile wins instead of being overwritten. Two HTTP calls per fire.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import TargetChanged, TargetError, TransientTargetError
from ..model import DNS_LABEL_RE, WORKLOAD_KINDS, EksTarget, Problems, StreamTag, show
from ..ports import DriverResult, TargetState

TOKEN_PREFIX = "k8s-aws-v1."
TOKEN_REUSE_SECONDS = 13 * 60  # presigned URLs are honoured for 15 minutes after X-Amz-Date
FIELD_MANAGER = "imagestreams"
TRIGGERS_ANNOTATION = "image.openshift.io/triggers"
LIST_PAGE_SIZE = 500  # objects per list call (kubectl's default chunk size)
MAX_LIST_PAGES = 1000  # per kind: 500,000 workloads, far beyond any cluster; stops a server that never ends a list
MAX_DISCOVERY_ERRORS = 100  # problem lines listed in a discovery answer; more are counted ("and N more")
# An OpenShift triggers annotation names one entry per container: a few hundred bytes. Anything much larger is
# refused whole (one problem), before parsing, so one 255 KiB annotation is not thousands of problems.
MAX_ANNOTATION_BYTES = 32 * 1024
MAX_ANNOTATION_ENTRIES = 100
KIND_PATHS = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
}


def eks_token(session: Any, cluster: str, region: str) -> str:
    """The bearer token ``aws eks get-token`` would print, signed locally with the session's credentials."""
    from botocore.signers import RequestSigner

    sts = session.client("sts", region_name=region)
    signer = RequestSigner(sts.meta.service_model.service_id, region, "sts", "v4", session.get_credentials(),
                           session.events)
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    url = signer.generate_presigned_url(
        {"method": "GET", "url": f"https://sts.{region}{suffix}/?Action=GetCallerIdentity&Version=2011-06-15",
         "body": {}, "headers": {"x-k8s-aws-id": cluster}, "context": {}},
        region_name=region, expires_in=60, operation_name="",
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class EksClusters:
    """Endpoint, TLS context and token per cluster, cached for the life of the container."""

    def __init__(self, eks: Any, session: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.eks = eks
        self.session = session
        self.region = eks.meta.region_name
        self.clock = clock
        self._connections: dict[str, tuple[str, ssl.SSLContext]] = {}
        self._tokens: dict[str, tuple[str, float]] = {}

    def connection(self, cluster: str) -> tuple[str, ssl.SSLContext]:
        if cluster not in self._connections:
            try:
                info = self.eks.describe_cluster(name=cluster)["cluster"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    raise TargetError(f"EKS cluster {cluster} not found") from exc
                raise TransientTargetError(f"DescribeCluster {cluster}: {exc}") from exc
            except BotoCoreError as exc:
                raise TransientTargetError(f"DescribeCluster {cluster}: {exc}") from exc
            try:
                pem = base64.b64decode(info["certificateAuthority"]["data"]).decode()
                context = ssl.create_default_context(cadata=pem)
            except (KeyError, ValueError, ssl.SSLError) as exc:
                raise TargetError(f"EKS cluster {cluster} has no usable certificate authority: {exc}") from exc
            self._connections[cluster] = (info["endpoint"].rstrip("/"), context)
        return self._connections[cluster]

    def token(self, cluster: str) -> str:
        cached = self._tokens.get(cluster)
        if cached and self.clock() < cached[1]:
            return cached[0]
        token = eks_token(self.session, cluster, self.region)
        self._tokens[cluster] = (token, self.clock() + TOKEN_REUSE_SECONDS)
        return token

    def forget_token(self, cluster: str) -> None:
        self._tokens.pop(cluster, None)


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class KubeApi:
    """Just enough Kubernetes API: JSON requests with the cluster's token over TLS verified against its CA."""

    def __init__(self, clusters: EksClusters, *, timeout: float = 10.0) -> None:
        self.clusters = clusters
        self.timeout = timeout
        self.calls = 0

    def request(self, cluster: str, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Any:
        endpoint, context = self.clusters.connection(cluster)
        for attempt in (1, 2):
            request = urllib.request.Request(
                endpoint + path, method=method, data=None if body is None else json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {self.clusters.token(cluster)}", "Accept": "application/json",
                         "Content-Type": content_type, "User-Agent": "imagestreams/0.1"},
            )
            self.calls += 1
            try:
                with urllib.request.urlopen(request, context=context, timeout=self.timeout) as response:  # noqa: S310
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                error = _kube_error(exc)
                if error.status == 401 and attempt == 1:
                    self.clusters.forget_token(cluster)  # expired or rotated credentials: sign a fresh one
                    continue
                raise error from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
                raise TransientTargetError(f"{method} {path} on cluster {cluster}: {exc}") from exc
        raise AssertionError("unreachable")


def _kube_error(exc: urllib.error.HTTPError) -> KubeError:
    try:
        status = json.loads(exc.read() or b"{}")
    except ValueError:
        status = {}
    return KubeError(exc.code, status.get("reason") or exc.reason or "", status.get("message") or str(exc))


def workload_path(target: EksTarget) -> str:
    group, plural = KIND_PATHS[target.kind]
    return f"{group}/namespaces/{target.namespace}/{plural}/{urllib.parse.quote(target.name)}"


def pod_spec_path(kind: str) -> tuple[str, ...]:
    if kind == "CronJob":
        return ("spec", "jobTemplate", "spec", "template", "spec")
    return ("spec", "template", "spec")


def _dig(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        obj = obj.get(key) or {}
    return obj


def find_container(obj: dict[str, Any], kind: str, name: str) -> tuple[str, dict[str, Any]] | None:
    """('containers' | 'initContainers', container) for the named container of a workload, if any."""
    pod_spec = _dig(obj, pod_spec_path(kind))
    for list_key in ("containers", "initContainers"):
        for container in pod_spec.get(list_key) or []:
            if container.get("name") == name:
                return list_key, container
    return None


def rollout_state(obj: dict[str, Any], kind: str) -> str:
    """IN_PROGRESS / COMPLETED / FAILED, as ``kubectl rollout status`` reads it (rollout_status.go)."""
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    if kind == "CronJob":
        return "COMPLETED"  # nothing rolls out: the next Job created uses the new image
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return "IN_PROGRESS"
    if kind == "Deployment":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
                return "FAILED"
        replicas = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        if updated < replicas or status.get("replicas", 0) > updated or status.get("availableReplicas", 0) < updated:
            return "IN_PROGRESS"
        return "COMPLETED"
    if kind == "StatefulSet":
        if status.get("updatedReplicas", 0) < spec.get("replicas", 1):
            return "IN_PROGRESS"
        if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
            return "IN_PROGRESS"
        return "COMPLETED"
    desired = status.get("desiredNumberScheduled", 0)  # DaemonSet
    if status.get("updatedNumberScheduled", 0) < desired or status.get("numberAvailable", 0) < desired:
        return "IN_PROGRESS"
    return "COMPLETED"


def _nest(path: tuple[str, ...], leaf: dict[str, Any]) -> dict[str, Any]:
    for key in reversed(path):
        leaf = {key: leaf}
    return leaf


class EksDriver:
    def __init__(self, api: KubeApi, *, page_size: int = LIST_PAGE_SIZE, registry: str | None = None) -> None:
        self.api = api
        self.page_size = page_size
        self.registry = registry  # the stack's registry host: the only one an annotation's from.name may name

    def platform(self, target: EksTarget) -> str | None:
        return None  # Kubernetes takes the index and picks the node's platform

    def _get(self, target: EksTarget) -> dict[str, Any]:
        try:
            return self.api.request(target.cluster, "GET", workload_path(target))
        except KubeError as exc:
            raise _target_error(exc, target) from exc

    def inspect(self, target: EksTarget, deployment: str | None) -> TargetState:
        obj = self._get(target)
        found = find_container(obj, target.kind, target.container)
        if found is None:
            raise TargetError(f"container {target.container} not found in {target.describe()}")
        return TargetState(found[1].get("image", ""), rollout_state(obj, target.kind))

    def apply(self, target: EksTarget, image: str) -> DriverResult:
        obj = self._get(target)
        found = find_container(obj, target.kind, target.container)
        if found is None:
            names = [c.get("name") for k in ("containers", "initContainers")
                     for c in _dig(obj, pod_spec_path(target.kind)).get(k) or []]
            raise TargetError(f"container {target.container} not found in {target.describe()} "
                              f"(containers: {', '.join(map(str, names))})")
        list_key, container = found
        previous = container.get("image")
        if previous == image:
            return DriverResult(False, previous, rollout_state(obj, target.kind))
        patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}}
        patch.update(_nest(pod_spec_path(target.kind), {list_key: [{"name": target.container, "image": image}]}))
        try:
            patched = self.api.request(target.cluster, "PATCH",
                                       f"{workload_path(target)}?fieldManager={FIELD_MANAGER}", patch,
                                       "application/strategic-merge-patch+json")
        except KubeError as exc:
            if exc.status == 409:  # not re-applied here: the caller re-checks the trigger before trying again
                raise TargetChanged(f"{target.describe()} was changed by someone else since our read") from exc
            raise _target_error(exc, target) from exc
        generation = str(patched.get("metadata", {}).get("generation"))
        return DriverResult(True, previous, rollout_state(patched, target.kind), generation, generation)

    # ------------------------------------------------------------------------------- OpenShift triggers

    def discover(self, cluster: str) -> tuple[list[tuple[StreamTag, EksTarget, bool]], Problems]:
        """Workloads carrying ``image.openshift.io/triggers``: their triggers, and the problems found (a bad
        annotation is reported, never silently skipped — OpenShift's own quiet failure mode).

        Lists page by page (``limit`` + ``continue``, as kubectl does), so a large cluster is never one answer of
        hundreds of megabytes; problems are bounded (:class:`~imagestreams.model.Problems`: the first 100 kept,
        each at most 1 KB, the rest counted)."""
        found: list[tuple[StreamTag, EksTarget, bool]] = []
        errors = Problems(MAX_DISCOVERY_ERRORS)
        for kind in WORKLOAD_KINDS:
            group, plural = KIND_PATHS[kind]
            token = ""
            for _ in range(MAX_LIST_PAGES):
                query = {"limit": str(self.page_size)}
                if token:
                    query["continue"] = token
                try:
                    listing = self.api.request(cluster, "GET", f"{group}/{plural}?{urllib.parse.urlencode(query)}")
                except KubeError as exc:
                    errors.append(f"listing {plural} in {cluster}: {exc}")
                    break
                for obj in listing.get("items") or []:
                    annotations = obj.get("metadata", {}).get("annotations") or {}
                    if TRIGGERS_ANNOTATION in annotations:
                        entries, problems = parse_triggers_annotation(cluster, kind, obj,
                                                                      annotations[TRIGGERS_ANNOTATION],
                                                                      registry=self.registry)
                        found += entries
                        errors += problems
                token = (listing.get("metadata") or {}).get("continue") or ""
                if not token:
                    break
            else:
                errors.append(f"listing {plural} in {cluster}: more than {MAX_LIST_PAGES} pages of "
                              f"{self.page_size}; the rest was not read")
        return found, errors


FIELD_PATH_RE = re.compile(
    r"(?P<spec>spec\.template\.spec|spec\.jobTemplate\.spec\.template\.spec)\."
    r"(?P<list>containers|initContainers)\[\?\(@\.name==[\"'](?P<name>[^\"']+)[\"']\)\]\.image"
)


def parse_triggers_annotation(cluster: str, kind: str, obj: dict[str, Any], text: str, *,
                              registry: str | None = None) -> tuple[list[tuple[StreamTag, EksTarget, bool]], list[str]]:
    """OpenShift's annotation: ``[{"from": {"kind": "ImageStreamTag", "name": "repo:tag"}, "fieldPath":
    "spec.template.spec.containers[?(@.name==\\"web\\")].image", "paused": false}]``.

    ``from.name`` may be a full ECR URI only if it names ``registry`` (the stack's own registry host); another
    account's or region's registry is reported as a problem, never read as the local repository of the same name.
    With ``registry`` None (unknown), every ``from.name`` that names a registry is refused."""
    meta = obj.get("metadata", {})
    where = f"{meta.get('namespace')}/{kind}/{meta.get('name')}"
    if not isinstance(text, str):
        return [], [f"{where}: {TRIGGERS_ANNOTATION} must be a string"]
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_ANNOTATION_BYTES:
        return [], [f"{where}: {TRIGGERS_ANNOTATION} is {size} bytes, more than the {MAX_ANNOTATION_BYTES} read; "
                    "not parsed"]
    try:
        entries = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        return [], [f"{where}: {TRIGGERS_ANNOTATION} is not valid JSON ({exc})"]
    if not isinstance(entries, list):
        return [], [f"{where}: {TRIGGERS_ANNOTATION} must be a JSON array"]
    if len(entries) > MAX_ANNOTATION_ENTRIES:
        return [], [f"{where}: {TRIGGERS_ANNOTATION} has {len(entries)} entries, more than the "
                    f"{MAX_ANNOTATION_ENTRIES} read; not parsed"]
    found, errors = [], []
    for i, entry in enumerate(entries):
        problem = _entry_problem(entry, kind)
        if problem is None:
            try:
                stream_tag = StreamTag.parse(entry["from"]["name"], "from.name", registry=registry)
                match = FIELD_PATH_RE.fullmatch(entry["fieldPath"])
                container = match["name"] if match else ""
                if not DNS_LABEL_RE.fullmatch(container):
                    raise ValueError(f"container name {show(container)} is not a DNS-1123 label")
                if find_container(obj, kind, container) is None:
                    raise ValueError(f"no container named {container}")
                target = EksTarget(cluster, meta["namespace"], kind, meta["name"], container)
                found.append((stream_tag, target, bool(entry.get("paused", False))))
                continue
            except Exception as exc:  # noqa: BLE001 - every problem is reported with its place
                problem = str(getattr(exc, "message", exc))
        errors.append(f"{where}: {TRIGGERS_ANNOTATION}[{i}]: {problem}")
    return found, errors


def _entry_problem(entry: Any, kind: str) -> str | None:
    if not isinstance(entry, dict):
        return "each trigger must be an object"
    source = entry.get("from")
    if not isinstance(source, dict) or source.get("kind") != "ImageStreamTag" or not isinstance(source.get("name"),
                                                                                                   str):
        return 'from must be {"kind": "ImageStreamTag", "name": "repo:tag"}'
    if "paused" in entry and not isinstance(entry["paused"], bool):
        return (f"paused must be a JSON boolean, got {show(entry['paused'])} (OpenShift silently ignores the whole "
                "annotation in this case)")
    path = entry.get("fieldPath")
    match = FIELD_PATH_RE.fullmatch(path) if isinstance(path, str) else None
    if match is None:
        return ('fieldPath must look like spec.template.spec.containers[?(@.name=="web")].image, got '
                f"{show(path)}")
    expected = "spec.jobTemplate.spec.template.spec" if kind == "CronJob" else "spec.template.spec"
    if match["spec"] != expected:
        return f"fieldPath of a {kind} starts with {expected}"
    return None


def _target_error(exc: KubeError, target: EksTarget) -> Exception:
    if exc.status == 404:
        return TargetError(f"{target.kind} {target.namespace}/{target.name} not found in EKS cluster {target.cluster}")
    if exc.status in (401, 403):
        return TargetError(
            f"{'unauthorized' if exc.status == 401 else 'forbidden'} on {target.describe()}: {exc.message} — the "
            "function's role needs an EKS access entry and get/patch on the workload (see docs/eks-access.md)")
    if exc.status == 429 or exc.status >= 500:
        return TransientTargetError(f"{target.describe()}: {exc}")
    return TargetError(f"{target.describe()}: {exc}")
