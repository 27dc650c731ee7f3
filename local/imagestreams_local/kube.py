"""A small fake Kubernetes API server — a **test double**, not Kubernetes.

There is no kube-apiserver to be had on these machines, so the EKS driver is exercised against
this: real HTTP over TLS (a CA generated per instance; clients verify it exactly as they verify an EKS cluster CA),
real bearer-token shape checks, and the wire protocol of the calls ImageStreams makes.

What it implements:

* ``GET /version``; ``GET`` of Deployments, StatefulSets, DaemonSets (``apps/v1``) and CronJobs (``batch/v1``):
  one object, a namespace's list, or the cluster-wide list; lists honour ``limit`` and ``continue`` (chunked
  lists: an opaque token, ``metadata.remainingItemCount``; without ``limit``, everything in one answer);
* ``PATCH`` with ``application/strategic-merge-patch+json`` (``containers``/``initContainers`` merged by ``name``,
  other lists replaced, ``null`` deletes), ``application/merge-patch+json`` (RFC 7386) and
  ``application/json-patch+json`` (add/replace/remove/test); anything else is ``415``;
* optimistic concurrency: a patch carrying ``metadata.resourceVersion`` that is not current gets ``409 Conflict``;
  ``interfere(n)`` makes another writer bump the object between the next ``n`` GETs and PATCHes;
* bookkeeping: ``resourceVersion`` +1 per write, ``generation`` +1 when ``spec`` changes, and a status that shows the
  rollout done at once (``rollout = "complete"``) or never observed (``"stuck"``);
* errors as ``Status`` objects: 401 (token not shaped like ``aws eks get-token``'s), 403 (namespaces listed in
  ``forbidden``), 404, 409, 415, 422;
* a log of ``(method, path, content-type)`` for assertions.

Limits: no watch, no create/delete/update (PUT), no admission, no RBAC beyond ``forbidden``, no controllers (pods
never exist; status is synthesised), no field-manager bookkeeping, no server-side apply, the token's signature is
not verified (only its shape: prefix, base64url, an STS ``GetCallerIdentity`` URL with ``x-k8s-aws-id`` signed).
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KINDS = {  # plural -> (api prefix, kind)
    "deployments": ("/apis/apps/v1", "Deployment"),
    "statefulsets": ("/apis/apps/v1", "StatefulSet"),
    "daemonsets": ("/apis/apps/v1", "DaemonSet"),
    "cronjobs": ("/apis/batch/v1", "CronJob"),
}
PLURALS = {kind: plural for plural, (_, kind) in KINDS.items()}
MERGE_KEYS = {"containers": "name", "initContainers": "name"}


def _generate_tls(directory: Path) -> tuple[Path, Path, str]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it. Returns (cert, key, CA PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubernetes-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, ca.public_bytes(serialization.Encoding.PEM).decode()


def token_problem(header: str | None) -> str | None:
    """Why a bearer token is not shaped like ``aws eks get-token``'s, or None (aws-iam-authenticator's rules)."""
    if not header or not header.startswith("Bearer "):
        return "no bearer token"
    token = header[len("Bearer "):]
    if not token.startswith("k8s-aws-v1.") or len(token) > 4096:
        return "token does not start with k8s-aws-v1."
    try:
        raw = token[len("k8s-aws-v1."):]
        url = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return "token is not base64url"
    parsed = urllib.parse.urlparse(url)
    query = {k.lower(): v for k, v in urllib.parse.parse_qsl(parsed.query)}
    if parsed.scheme != "https" or not parsed.hostname or not parsed.hostname.startswith("sts."):
        return "token URL is not an https STS endpoint"
    if query.get("action") != "GetCallerIdentity":
        return "token URL is not GetCallerIdentity"
    if "x-k8s-aws-id" not in query.get("x-amz-signedheaders", "").split(";"):
        return "x-k8s-aws-id is not a signed header"
    if not query.get("x-amz-signature") or not query.get("x-amz-credential"):
        return "token URL is not signed"
    if not 0 <= int(query.get("x-amz-expires", "-1")) <= 900:
        return "X-Amz-Expires out of range"
    return None


def strategic_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(out.get(key), list):
            merge_key = MERGE_KEYS[key]
            items = out[key]
            for item in value:
                existing = next((i for i, x in enumerate(items) if x.get(merge_key) == item.get(merge_key)), None)
                if existing is None:
                    items.append(copy.deepcopy(item))
                else:
                    items[existing] = strategic_merge(items[existing], item)
        elif isinstance(value, dict):
            out[key] = strategic_merge(out.get(key, {}), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class PatchError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def json_patch(doc: Any, operations: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op["op"] == "test" and parent[index] != op["value"]:
                raise PatchError(422, "Invalid", f"test failed at {op['path']}")
            if op["op"] == "replace":
                parent[index] = op["value"]
            elif op["op"] == "add":
                parent.insert(index, op["value"])
            elif op["op"] == "remove":
                parent.pop(index)
        else:
            if op["op"] == "test" and parent.get(last) != op["value"]:
                raise PatchError(422, "Invalid", f"test failed at {op['path']}")
            if op["op"] in ("replace", "add"):
                parent[last] = op["value"]
            elif op["op"] == "remove":
                parent.pop(last)
    return doc


def _continue_offset(token: str | None) -> int:
    """Where a ``continue`` token says the previous page ended (opaque to clients, like the real one)."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"continue token {token[:40]!r} is not valid") from exc
    if not isinstance(offset, int) or offset < 0:
        raise ValueError("continue token is not valid")
    return offset


class FakeKubeApi:
    def __init__(self, *, forbidden: tuple[str, ...] = (), rollout: str = "complete") -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name) -> object
        self.requests: list[tuple[str, str, str | None]] = []
        self.list_pages: list[int] = []  # items in each list answer, in order
        self.forbidden = set(forbidden)
        self.rollout = rollout
        self._interfere = 0
        self._version = 100
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-kube-")
        self._server: ThreadingHTTPServer | None = None
        self.endpoint = ""
        self.ca_pem = ""

    # ----------------------------------------------------------------------------------- lifecycle

    def start(self) -> FakeKubeApi:
        cert, key, self.ca_pem = _generate_tls(Path(self._tmp.name))
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                api._handle(self, "GET")

            def do_PATCH(self) -> None:  # noqa: N802
                api._handle(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.endpoint = f"https://127.0.0.1:{self._server.server_address[1]}"
        return self

    @property
    def ca_data(self) -> str:
        """What ``eks:DescribeCluster`` returns as ``certificateAuthority.data``: base64 of the CA PEM."""
        return base64.b64encode(self.ca_pem.encode()).decode()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._tmp.cleanup()

    def __enter__(self) -> FakeKubeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------------------------- state

    def add(self, kind: str, namespace: str, name: str, containers: list[dict[str, Any]], *,
            init_containers: list[dict[str, Any]] | None = None, annotations: dict[str, str] | None = None,
            replicas: int = 2) -> dict[str, Any]:
        pod_spec: dict[str, Any] = {"containers": copy.deepcopy(containers)}
        if init_containers:
            pod_spec["initContainers"] = copy.deepcopy(init_containers)
        template = {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
        if kind == "CronJob":
            spec: dict[str, Any] = {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}
        else:
            spec = {"selector": {"matchLabels": {"app": name}}, "template": template}
            if kind != "DaemonSet":
                spec["replicas"] = replicas
        api, _ = KINDS[PLURALS[kind]]
        obj = {"apiVersion": api.split("/apis/")[1], "kind": kind,
               "metadata": {"name": name, "namespace": namespace, "generation": 1, "resourceVersion": "0",
                            "annotations": dict(annotations or {})}, "spec": spec}
        with self._lock:
            self._bump(obj)
            self.objects[(PLURALS[kind], namespace, name)] = obj
        return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[(PLURALS[kind], namespace, name)])

    def interfere(self, times: int = 1) -> None:
        """Another writer changes the object between each of our next ``times`` reads and patches."""
        self._interfere = times

    def _bump(self, obj: dict[str, Any]) -> None:
        """A write: new resourceVersion, and the status the (absent) controller would report."""
        self._version += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._version)
        if self.rollout != "complete":
            obj.setdefault("status", {"observedGeneration": 1})
            return
        replicas = obj["spec"].get("replicas", 2)
        generation = meta["generation"]
        obj["status"] = {
            "Deployment": {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                           "readyReplicas": replicas, "availableReplicas": replicas},
            "StatefulSet": {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                            "currentRevision": f"r{generation}", "updateRevision": f"r{generation}"},
            "DaemonSet": {"observedGeneration": generation, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2,
                          "numberAvailable": 2},
            "CronJob": {},
        }[obj["kind"]]

    # ------------------------------------------------------------------------------------- serving

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        content_type = request.headers.get("Content-Type")
        self.requests.append((method, request.path, content_type if method == "PATCH" else None))
        problem = token_problem(request.headers.get("Authorization"))
        if problem:
            return self._status(request, 401, "Unauthorized", problem)
        path = urllib.parse.urlparse(request.path).path
        if path == "/version":
            return self._send(request, 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake"})
        parts = path.strip("/").split("/")
        # /apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>]
        if len(parts) < 4 or parts[0] != "apis":
            return self._status(request, 404, "NotFound", f"the server could not find the requested resource {path}")
        prefix = "/" + "/".join(parts[:3])
        rest = parts[3:]
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        if plural not in KINDS or KINDS[plural][0] != prefix or len(rest) > 2:
            return self._status(request, 404, "NotFound", f"the server could not find the requested resource {path}")
        if namespace in self.forbidden:
            return self._status(request, 403, "Forbidden",
                                f'{plural} is forbidden: User cannot {method.lower()} resource "{plural}" '
                                f'in API group "{prefix.split("/")[2]}" in the namespace "{namespace}"')
        if len(rest) == 1:
            if method != "GET":
                return self._status(request, 405, "MethodNotAllowed", "only GET on collections")
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(request.path).query))
            try:
                limit = int(query.get("limit") or 0)
                start = _continue_offset(query.get("continue"))
            except ValueError as exc:
                return self._status(request, 400, "BadRequest", str(exc))
            with self._lock:
                keys = [k for k in sorted(self.objects)
                        if k[0] == plural and (namespace is None or k[1] == namespace) and k[1] not in self.forbidden]
                page = keys[start:start + limit] if limit > 0 else keys[start:]
                items = [copy.deepcopy(self.objects[k]) for k in page]
            metadata: dict[str, Any] = {"resourceVersion": str(self._version)}
            if start + len(page) < len(keys):
                metadata["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"offset": start + len(page)}).encode()).decode()
                metadata["remainingItemCount"] = len(keys) - start - len(page)
            self.list_pages.append(len(items))
            return self._send(request, 200, {"kind": f"{KINDS[plural][1]}List", "apiVersion": prefix[6:],
                                             "metadata": metadata, "items": items})
        key = (plural, namespace or "", rest[1])
        with self._lock:
            obj = self.objects.get(key)
            if obj is None:
                return self._status(request, 404, "NotFound", f'{plural} "{rest[1]}" not found')
            if method == "GET":
                answer = copy.deepcopy(obj)
                if self._interfere:
                    self._interfere -= 1
                    self._bump(obj)
                return self._send(request, 200, answer)
            length = int(request.headers.get("Content-Length") or 0)
            try:
                patch = json.loads(request.rfile.read(length) or b"null")
            except ValueError:
                return self._status(request, 400, "BadRequest", "body is not JSON")
            try:
                patched = self._patch(obj, patch, content_type or "")
            except PatchError as exc:
                return self._status(request, exc.code, exc.reason, exc.message)
            self.objects[key] = patched
            return self._send(request, 200, copy.deepcopy(patched))

    def _patch(self, obj: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
        media = content_type.split(";")[0].strip()
        if media == "application/strategic-merge-patch+json":
            new = strategic_merge(obj, patch)
        elif media == "application/merge-patch+json":
            new = merge_patch(obj, patch)
        elif media == "application/json-patch+json":
            if not isinstance(patch, list):
                raise PatchError(400, "BadRequest", "a JSON patch is a list of operations")
            new = json_patch(obj, patch)
        else:
            raise PatchError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {media}")
        wanted = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            raise PatchError(409, "Conflict", "Operation cannot be fulfilled: the object has been modified; "
                                              "please apply your changes to the latest version and try again")
        new["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
        new["metadata"]["generation"] = obj["metadata"]["generation"]
        if new.get("spec") != obj.get("spec"):
            new["metadata"]["generation"] += 1
        if new != obj:
            self._bump(new)
        return new

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _status(self, request: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        self._send(request, code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                   "message": message, "reason": reason, "code": code})
