"""In-memory implementations of every port: unit tests and dry runs. They honour the same contracts
(conditional commit, consistent reads) as the real adapters, so domain tests exercise the real logic."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, ClassVar

from ..errors import ConcurrentUpdate, Conflict, NotFound, PinsChanged, TargetError
from ..model import EcsTarget, Head, HistoryEntry, Observation, StreamTag, TaskPins, Trigger, target_key
from ..policytags import Policy
from ..ports import DriverResult, TargetState


def _seen(trigger: Trigger) -> tuple:
    """What a conditional trigger write compares (as the DynamoDB store's condition does)."""
    gate = trigger.gate_state
    return (trigger.deployment, trigger.last_triggered_at, trigger.status,
            (gate.digest, gate.approved_by, gate.rejected_by, gate.forced_by) if gate else None)


class MemoryStore:
    def __init__(self) -> None:
        self.heads_by_tag: dict[StreamTag, Head] = {}
        self.entries: dict[StreamTag, dict[int, HistoryEntry]] = {}
        self.triggers: dict[str, Trigger] = {}
        self.policy_items: dict[StreamTag, Policy] = {}
        self.listed_heads: set[StreamTag] = set()  # heads ByStream lists (policy streams: policy_view)
        self.cursor: dict = {}
        self.writes = 0
        self._lock = threading.Lock()
        self.leases: dict[str, tuple[str, float]] = {}  # name -> (owner, expires at)
        self.lease_clock: Callable[[], float] = time.time

    def get_head(self, stream_tag: StreamTag) -> Head | None:
        return self.heads_by_tag.get(stream_tag)

    def commit(self, expected: Head | None, new: Head, drop_generation: int | None) -> None:
        with self._lock:
            current = self.heads_by_tag.get(new.stream_tag)
            if (current is None) != (expected is None) or (
                current is not None and expected is not None and current.rev != expected.rev
            ):
                raise ConcurrentUpdate(str(new.stream_tag))
            entries = self.entries.setdefault(new.stream_tag, {})
            if new.generation in entries:
                raise ConcurrentUpdate(str(new.stream_tag))
            self.heads_by_tag[new.stream_tag] = new
            if expected is None:  # a new head item is listed at once in a stream with a policy tag
                if any(st.stream == new.stream_tag.stream for st in self.policy_items):
                    self.listed_heads.add(new.stream_tag)
                else:
                    self.listed_heads.discard(new.stream_tag)
            entries[new.generation] = new.entry()
            if drop_generation is not None:
                entries.pop(drop_generation, None)
            self.writes += 1

    def purge_history(self, stream_tag: StreamTag, up_to_generation: int, written_by: datetime) -> int:
        entries = self.entries.get(stream_tag, {})
        gone = [g for g, e in entries.items() if g <= up_to_generation and e.at <= written_by]
        for g in gone:
            del entries[g]
        return len(gone)

    def relink(self, expected: Head, new: Head) -> None:
        with self._lock:
            current = self.heads_by_tag.get(new.stream_tag)
            if current is None or current.rev != expected.rev:
                raise ConcurrentUpdate(str(new.stream_tag))
            self.heads_by_tag[new.stream_tag] = current._replace(alias_of=new.alias_of, aliases=new.aliases,
                                                                 rev=new.rev)
            self.writes += 1

    def heads(self, stream: str) -> list[Head]:
        return [h for st, h in self.heads_by_tag.items() if st.stream == stream]

    def history(self, stream_tag: StreamTag, limit: int) -> list[HistoryEntry]:
        entries = self.entries.get(stream_tag, {})
        return [entries[g] for g in sorted(entries, reverse=True)[:limit]]

    def head_and_triggers(self, stream_tag: StreamTag) -> tuple[Head | None, list[Trigger]]:
        return self.heads_by_tag.get(stream_tag), [t for t in self.triggers.values() if t.stream_tag == stream_tag]

    def stream_state(self, stream: str) -> tuple[list[Head], list[Trigger]]:
        return self.heads(stream), [t for t in self.triggers.values() if t.stream_tag.stream == stream]

    def all_triggers(self) -> list[Trigger]:
        return list(self.triggers.values())

    def stream_view(self, stream: str) -> tuple[list[Head], list[Trigger], list[Policy]]:
        heads, triggers = self.stream_state(stream)
        policies = [p for st, p in self.policy_items.items() if st.stream == stream]
        if policies:  # a consistent view of a policy stream lists its heads, as the DynamoDB store does
            self.listed_heads.update(h.stream_tag for h in heads)
        return heads, triggers, policies

    def policy_view(self, stream: str, moved: Head | None = None) -> tuple[list[Head], list[Policy]]:
        """Heads and policy tags of a stream, or nothing when it has no policy tag: like the ``ByStream`` index,
        only the heads listed (a new tag's head is listed by the first view that names it ``moved``, or by a
        consistent ``stream_view``)."""
        policies = self.policies(stream)
        if not policies:
            return [], []
        if moved is not None:
            self.listed_heads.add(moved.stream_tag)
        return [h for h in self.heads(stream) if h.stream_tag in self.listed_heads], policies

    def gate_view(self, stream: str) -> tuple[list[Head], list[Trigger], list[Policy]]:
        """Gate-held triggers and policy tags of a stream (no heads, like the ``ByStream`` read)."""
        held = [t for t in self.triggers.values() if t.stream_tag.stream == stream
                and t.status in ("Gated", "Blocked") and t.gates]
        return [], held, self.policies(stream)

    def get_policy(self, stream_tag: StreamTag) -> Policy | None:
        return self.policy_items.get(stream_tag)

    def put_policy(self, policy: Policy, expect: Policy | None) -> Policy:
        with self._lock:
            current = self.policy_items.get(policy.stream_tag)
            if (current is None) != (expect is None) or (
                    current is not None and expect is not None and current.rev != expect.rev):
                raise ConcurrentUpdate(str(policy.stream_tag))
            policy = policy._replace(rev=(expect.rev if expect else 0) + 1)
            self.policy_items[policy.stream_tag] = policy
            self.writes += 1
            return policy

    def delete_policy(self, stream_tag: StreamTag) -> None:
        with self._lock:
            if self.policy_items.pop(stream_tag, None) is not None:
                self.writes += 1

    def policies(self, stream: str) -> list[Policy]:
        return [p for st, p in self.policy_items.items() if st.stream == stream]

    def all_policies(self) -> list[Policy]:
        return list(self.policy_items.values())

    def get_trigger(self, trigger_id: str) -> Trigger | None:
        return self.triggers.get(trigger_id)

    def triggers_for_target(self, key: str) -> list[Trigger]:
        return [t for t in self.triggers.values() if target_key(t.target) == key]

    def add_trigger(self, trigger: Trigger) -> bool:
        with self._lock:
            if trigger.id in self.triggers:
                return False
            self.triggers[trigger.id] = trigger
            self.writes += 1
            return True

    def save_trigger(self, trigger: Trigger, *, expect: Trigger | None = None) -> bool:
        with self._lock:
            current = self.triggers.get(trigger.id)
            if current is None:
                return False
            if expect is not None and _seen(current) != _seen(expect):
                return False
            # paused is set_paused's, gates set_gates'
            self.triggers[trigger.id] = trigger.with_outcome(paused=current.paused, gates=current.gates)
            self.writes += 1
            return True

    def refresh_trigger(self, trigger: Trigger) -> Trigger | None:
        return self.triggers.get(trigger.id)

    def set_paused(self, trigger: Trigger, paused: bool) -> bool:
        with self._lock:
            current = self.triggers.get(trigger.id)
            if current is None:
                return False
            self.triggers[trigger.id] = current.with_outcome(paused=paused)
            self.writes += 1
            return True

    def set_gates(self, trigger: Trigger, gates: tuple) -> bool:
        return self._set_field(trigger, gates=tuple(gates))

    def set_gate_state(self, trigger: Trigger, state: Any) -> bool:
        return self._set_field(trigger, gate_state=state)

    def _set_field(self, trigger: Trigger, **change: Any) -> bool:
        with self._lock:
            current = self.triggers.get(trigger.id)
            if current is None:
                return False
            self.triggers[trigger.id] = current.with_outcome(**change)
            self.writes += 1
            return True

    def remove_trigger(self, trigger: Trigger) -> None:
        self.triggers.pop(trigger.id, None)

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        with self._lock:
            now = self.lease_clock()
            holder = self.leases.get(name)
            if holder is not None and holder[0] != owner and holder[1] > now:
                return False
            self.leases[name] = (owner, now + seconds)
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._lock:
            if self.leases.get(name, ("", 0.0))[0] == owner:
                del self.leases[name]

    def load_cursor(self) -> dict:
        return dict(self.cursor)

    def save_cursor(self, cursor: dict) -> None:
        self.cursor = dict(cursor)

    def record_run(self, at: datetime, errors: int, complete: bool) -> None:
        self.last_run_record = {"at": at.isoformat(), "errors": errors, "complete": complete}

    def last_run(self) -> dict | None:
        return getattr(self, "last_run_record", None)

    def live_streams(self) -> list[str]:
        return sorted({st.stream for st, h in self.heads_by_tag.items() if not h.deleted})

    def heads_after(self, stream: str, after: str, limit: int) -> list[Head]:
        """A page of heads in tag order; never copies the stream (like a paged Query)."""
        return heapq.nsmallest(limit, (h for st, h in self.heads_by_tag.items()
                                       if st.stream == stream and st.tag > after), key=lambda h: h.stream_tag.tag)

    def live_head_keys(self, stream: str, after: str, limit: int) -> list[str]:
        """The live heads after ``after`` as the DynamoDB store lists them (tag, ``#A`` appended for an alias)."""
        keys = (h.stream_tag.tag + ("#A" if h.alias_of else "") for st, h in self.heads_by_tag.items()
                if st.stream == stream and not h.deleted)
        return heapq.nsmallest(limit, (k for k in keys if k > after))

    def heads_of(self, stream: str, tags: list[str], *, consistent: bool = True) -> list[Head]:
        found = (self.heads_by_tag.get(StreamTag(stream, tag)) for tag in tags)
        return [h for h in found if h is not None]

    def histories(self, stream: str) -> dict[str, list[HistoryEntry]]:
        return {st.tag: [entries[g] for g in sorted(entries, reverse=True)]
                for st, entries in self.entries.items() if st.stream == stream and entries}

    def mark_pruned(self, stream: str, marks: list[tuple[str, int]]) -> None:
        with self._lock:
            for tag, generation in marks:
                entries = self.entries.get(StreamTag(stream, tag), {})
                if generation in entries:
                    entries[generation] = entries[generation]._replace(pruned=True)
                    self.writes += 1


class MemoryRegistry:
    """Tags → digests, as ECR would answer ``describe_images``."""

    def __init__(self, registry: str = "123456789012.dkr.ecr.us-east-1.amazonaws.com") -> None:
        self.registry = registry
        self.tag_map: dict[tuple[str, str], str] = {}
        self.media_types: dict[str, str] = {}
        self.images: dict[str, set[str]] = {}
        self.empty_repositories: set[str] = set()
        self.immutable: dict[str, set[str]] = {}
        self.indexes: dict[str, dict[str, str]] = {}  # index digest -> {architecture: child digest}
        self.resolves = 0
        self.retags = 0
        self.page_size = 1000  # tags per page of `tags` (ECR: images per DescribeImages page)
        self.image_details: dict[tuple[str, str], Any] = {}  # (stream, digest) -> RegistryImage (prune)
        self.describe_pages = 0  # DescribeImages pages of `images`
        self.delete_calls = 0  # BatchDeleteImage calls of `delete_images`
        # gate evidence, set by tests: (stream, digest) -> ScanResult / SigningStatus / [artifact types]
        self.scans: dict[tuple[str, str], Any] = {}
        self.signing: dict[tuple[str, str], Any] = {}
        self.referrers: dict[tuple[str, str], list[str]] = {}
        self.evidence_reads = 0
        self.pushed: dict[tuple[str, str], datetime] = {}  # (stream, digest) -> imagePushedAt

    def scan_result(self, stream: str, digest: str) -> Any:
        self.evidence_reads += 1
        return self.scans.get((stream, digest))

    def signing_status(self, stream: str, digest: str) -> Any:
        self.evidence_reads += 1
        return self.signing.get((stream, digest))

    def signature_referrers(self, stream: str, digest: str) -> list[str]:
        self.evidence_reads += 1
        return list(self.referrers.get((stream, digest), ()))

    def set(self, stream: str, tag: str, digest: str, media_type: str | None = None,
            pushed_at: datetime | None = None) -> None:
        if pushed_at is not None:
            self.pushed[(stream, digest)] = pushed_at
        self.tag_map[(stream, tag)] = digest
        self.images.setdefault(stream, set()).add(digest)
        if media_type:
            self.media_types[digest] = media_type

    def remove(self, stream: str, tag: str) -> None:
        self.tag_map.pop((stream, tag), None)

    def check_can_tag(self, stream: str, digest: str, tags: list[str]) -> None:
        if digest not in self.images.get(stream, set()) and digest not in self.tag_map.values():
            raise NotFound(f"{stream}@{digest} is not in ECR")
        for tag in tags:
            current = self.tag_map.get((stream, tag))
            if tag in self.immutable.get(stream, set()) and current not in (None, digest):
                raise Conflict(f"{stream}:{tag} is immutable and points to {current}")

    def retag(self, stream: str, digest: str, tag: str) -> None:
        self.check_can_tag(stream, digest, [tag])
        self.tag_map[(stream, tag)] = digest
        self.retags += 1

    def untag(self, stream: str, tag: str) -> None:
        self.remove(stream, tag)

    def platform_digest(self, stream: str, digest: str, architecture: str) -> str:
        children = self.indexes.get(digest)
        if children is None:
            return digest
        if architecture not in children:
            raise NotFound(f"index {digest} has no linux/{architecture} image")
        return children[architecture]

    def repositories(self) -> list[str]:
        return sorted({stream for stream, _ in self.tag_map} | set(self.images) | self.empty_repositories)

    def tags(self, stream: str, token: str | None = None) -> tuple[dict[str, str], str | None]:
        """One page of ``page_size`` tags, in no particular order (like ECR); the token is an offset."""
        start = int(token or 0)
        mine = ((tag, digest) for (s, tag), digest in self.tag_map.items() if s == stream)
        page = dict(itertools.islice(mine, start, start + self.page_size + 1))
        more = len(page) > self.page_size
        if more:
            page.popitem()
        return page, str(start + self.page_size) if more else None

    def present(self, stream: str, tags: list[str]) -> set[str]:
        return {tag for tag in tags if (stream, tag) in self.tag_map}

    def resolve(self, stream: str, tag: str) -> Observation | None:
        self.resolves += 1
        digest = self.tag_map.get((stream, tag))
        if digest is None:
            return None
        known = self.image_details.get((stream, digest))
        pushed = self.pushed.get((stream, digest)) or (known.pushed_at if known is not None else None)
        return Observation(digest, self.media_types.get(digest), self.registry, pushed)

    # ------------------------------------------------------------------ images (prune), like DescribeImages

    def push(self, stream: str, digest: str, *, tags: tuple[str, ...] = (), pushed_at: datetime | None = None,
             size: int = 1000, media_type: str | None = None, children: dict[str, str] | None = None,
             status: str = "ACTIVE") -> None:
        """An image (tags optional) with what DescribeImages says about it; ``children`` makes it an index."""
        from ..prune import RegistryImage

        self.images.setdefault(stream, set()).add(digest)
        for tag in tags:
            self.set(stream, tag, digest)
        if children is not None:
            self.indexes[digest] = dict(children)
            media_type = media_type or "application/vnd.oci.image.index.v1+json"
        self.image_details[(stream, digest)] = RegistryImage(
            digest, (), pushed_at, size, media_type or "application/vnd.oci.image.manifest.v1+json", status)
        if media_type:
            self.media_types[digest] = media_type

    def _detail(self, stream: str, digest: str, tags: tuple[str, ...] | None = None):  # noqa: ANN202 - RegistryImage
        from ..prune import RegistryImage

        if tags is None:
            tags = tuple(sorted(t for (s, t), d in self.tag_map.items() if s == stream and d == digest))
        known = self.image_details.get((stream, digest))
        if known is None:
            kind = "application/vnd.oci.image.index.v1+json" if digest in self.indexes else None
            known = RegistryImage(digest, (), None, 0, self.media_types.get(digest, kind))
        return known._replace(tags=tags)

    def list_images(self, stream: str, token: str | None = None) -> tuple[list, str | None]:
        """One page of ``page_size`` ACTIVE images (DescribeImages lists only those unless asked otherwise)."""
        self.describe_pages += 1
        digests = sorted(d for d in self.images.get(stream, set())
                         if self.image_details.get((stream, d)) is None or self.image_details[(stream, d)].status
                         == "ACTIVE")
        start = int(token or 0)
        tags: dict[str, list[str]] = {}
        for (s, tag), d in self.tag_map.items():
            if s == stream:
                tags.setdefault(d, []).append(tag)
        page = [self._detail(stream, d, tuple(sorted(tags.get(d, ()))))
                for d in digests[start : start + self.page_size]]
        more = start + self.page_size < len(digests)
        return page, str(start + self.page_size) if more else None

    def index_children(self, stream: str, digests: list[str]) -> dict[str, list[str]]:
        return {d: sorted(set(self.indexes[d].values())) for d in digests
                if d in self.indexes and d in self.images.get(stream, set())}

    def delete_images(self, stream: str, digests: list[str]) -> tuple[list[str], dict[str, str]]:
        """BatchDeleteImage by digest: the image and every tag on it go; a child an index still refers to stays."""
        self.delete_calls += 1
        if len(digests) > 100:
            raise ValueError("BatchDeleteImage takes at most 100 image ids")
        present = self.images.get(stream, set())
        deleted, failures = [], {}
        parents = [d for d in present if d in self.indexes]
        for digest in digests:
            if digest not in present:
                failures[digest] = "ImageNotFound"
                continue
            if any(digest in self.indexes[p].values() for p in parents if p != digest and p in present):
                failures[digest] = "ImageReferencedByManifestList"
                continue
            present.discard(digest)
            for key in [k for k, d in self.tag_map.items() if k[0] == stream and d == digest]:
                del self.tag_map[key]
            deleted.append(digest)
        return deleted, failures

    def image_status(self, stream: str, digest: str) -> str | None:
        if digest not in self.images.get(stream, set()):
            return None
        return self._detail(stream, digest).status


@dataclass
class MemoryEcs:
    """Services → {container: image}. ``missing`` services raise like ECS's MISSING failure.

    Set ``pins[(cluster, service)]`` to model the service's task-definition family and roles (then fires report and
    check them, and ``task_role_pattern`` limits the roles a fire may pass); ``circuit_breaker`` fails the current
    deployment and restores the images before it, like ECS's rollback."""

    images: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    revisions: dict[tuple[str, str], int] = field(default_factory=dict)
    rollouts: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: int = 0
    pins: dict[tuple[str, str], TaskPins] = field(default_factory=dict)
    task_role_pattern: str = "*"
    registered: int = 0  # task-definition revisions registered by fires
    deployments: dict[tuple[str, str], str] = field(default_factory=dict)  # the deployment running now
    past: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # deployment history, oldest first
    finds_past_rollouts: ClassVar[bool] = True

    def platform(self, target: EcsTarget) -> str | None:
        return None

    def _pins(self, key: tuple[str, str]) -> TaskPins | None:
        """Like ECS: a service always runs a revision of some family (by default one named like the service,
        passing no role)."""
        return self.pins.get(key) or (TaskPins(key[1]) if key in self.images else None)

    def current_pins(self, target: EcsTarget) -> TaskPins:  # (``calls`` counts fires and inspections)
        key = (target.cluster, target.service)
        if key not in self.images:
            raise TargetError(f"ECS service {target.service} not found in cluster {target.cluster}")
        return self._pins(key)  # type: ignore[return-value]

    def inspect(self, target: EcsTarget, deployment: str | None, *, image: str | None = None) -> TargetState:
        self.calls += 1
        key = (target.cluster, target.service)
        if key not in self.images or target.container not in self.images[key]:
            raise TargetError(f"ECS service {target.service} or container {target.container} not found")
        now = self.deployments.get(key)
        if now is None or deployment == now:
            return TargetState(self.images[key][target.container], self.rollouts.get(key))
        for entry in reversed(self.past.get(key, []) if image else []):  # dropped: read the history
            if entry["images"].get(target.container) == image:
                return TargetState(self.images[key][target.container], entry["state"], entry["reason"])
        return TargetState(self.images[key][target.container], None)

    def apply(self, target: EcsTarget, image: str, *, pins: TaskPins | None = None) -> DriverResult:
        self.calls += 1
        key = (target.cluster, target.service)
        if key not in self.images:
            raise TargetError(f"ECS service {target.service} not found in cluster {target.cluster}")
        containers = self.images[key]
        if target.container not in containers:
            raise TargetError(f"container {target.container} not found in the service's task definition")
        seen = self._pins(key)
        changes = pins.changes(seen) if pins is not None and seen is not None else []
        if changes:
            raise PinsChanged(f"ECS service {target.service}: {'; '.join(changes)}", seen)
        previous = containers[target.container]
        if previous == image:
            return DriverResult(changed=False, previous_image=previous, rollout_state=self.rollouts.get(key),
                                deployment=self.deployments.get(key), pins=seen)
        pattern = self.task_role_pattern.strip()  # one IAM pattern, matched like the PassRole resource
        for role in (seen.task_role, seen.execution_role) if seen else ():
            if role and not (pattern and fnmatchcase(role.split(":role/", 1)[-1], pattern)):
                raise TargetError(f"role {role} is not allowed by the TaskRolePattern parameter "
                                  f"({self.task_role_pattern or 'empty'})")
        before = dict(containers)
        containers[target.container] = image
        self.revisions[key] = self.revisions.get(key, 1) + 1
        self.registered += 1
        self.rollouts[key] = "IN_PROGRESS"
        deployment = f"ecs-svc/{self.revisions[key]}"
        self.deployments[key] = deployment
        self.past.setdefault(key, []).append({"id": deployment, "images": dict(containers), "before": before,
                                              "state": "IN_PROGRESS", "reason": None})
        return DriverResult(changed=True, previous_image=previous, rollout_state="IN_PROGRESS",
                            deployment=deployment, pins=seen)

    def circuit_breaker(self, cluster: str, service: str, reason: str = "tasks failed to start") -> str:
        """The current deployment fails; ECS rolls back to the images before it in a new deployment. Returns the
        id of the deployment that failed."""
        key = (cluster, service)
        failed = self.past[key][-1]
        failed.update(state="FAILED", reason=f"ECS deployment circuit breaker: {reason}")
        self.images[key] = dict(failed["before"])
        self.revisions[key] = self.revisions.get(key, 1) + 1
        self.deployments[key] = f"ecs-svc/{self.revisions[key]}"
        self.rollouts[key] = "COMPLETED"
        return failed["id"]


class ListClock:
    """The gate clock in memory: what would be sent, with when it is due."""

    def __init__(self) -> None:
        self.messages: list[tuple[dict, datetime]] = []

    def schedule(self, message: dict, due: datetime) -> None:
        self.messages.append((message, due))


class ListQueue:
    """Collects fires; ``drain`` hands them to a callback (the deployer) like SQS would. ``messages`` keeps what
    the SQS queue would carry (message bodies, with ``force``/``at``/``paused`` for a queued ``deploy``)."""

    def __init__(self) -> None:
        self.items: list[tuple[StreamTag, str, str]] = []
        self.messages: list[dict] = []

    def enqueue(self, triggers: list[Trigger], head: Head, *, reason: str | None = None, force: bool = False,
                at: datetime | None = None) -> None:
        from .sqs import message_body

        self.items.extend((t.stream_tag, t.id, head.digest) for t in triggers)
        self.messages.extend(message_body(t, head, force=force, at=at) for t in triggers)
