"""Use cases, composed: :class:`ImageStreams` holds the ports and mixes in one class per group of use cases —
:mod:`.tags` (ingest and aliases), :mod:`.manual` (retag, untag, rollbacks), :mod:`.firing` (fan-out, fire, rollout
tracking), :mod:`.policies` (policy tags) — and keeps triggers and reads here.

Orchestrates ports only; no boto3, no Lambda event shapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from .errors import (
    Conflict,
    Invalid,
    NotFound,
    TargetError,
)
from .firing import FIRE_LEASE_SECONDS, MAX_RETRY_DELAY, MAX_TARGET_CHANGES, ROLLOUT_DONE, Firing, advance_rollout
from .gateflow import GateFlow
from .gates import Gate, Gating
from .manual import ManualActions
from .model import (
    Head,
    HistoryEntry,
    StreamTag,
    Target,
    Trigger,
    rfc3339,
    same_slot,
    target_identity,
    target_key,
    trigger_id,
    utcnow,
)
from .policies import PolicyTags
from .policy import TargetPolicy
from .ports import FireQueue, GateClock, Registry, StreamStore, TargetDriver
from .tags import DEFAULT_HISTORY_LIMIT, MAX_ALIAS_DEPTH, MAX_ALIASES, TagFlow

__all__ = ["DEFAULT_HISTORY_LIMIT", "FIRE_LEASE_SECONDS", "MAX_ALIAS_DEPTH", "MAX_ALIASES", "MAX_RETRY_DELAY",
           "MAX_TARGET_CHANGES", "ROLLOUT_DONE", "ImageStreams", "advance_rollout"]

log = logging.getLogger(__name__)


class ImageStreams(TagFlow, ManualActions, Firing, Gating, GateFlow, PolicyTags):
    """The use cases, over the ports they are given (see :mod:`imagestreams.bootstrap`)."""

    def __init__(self, store: StreamStore, registry: Registry, drivers: Mapping[str, TargetDriver],
                 fire_queue: FireQueue | None = None, *, history_limit: int = DEFAULT_HISTORY_LIMIT,
                 clock: Callable[[], datetime] = utcnow, max_attempts: int = 8,
                 policy: TargetPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 gate_clock: GateClock | None = None) -> None:
        self.store = store
        self.registry = registry
        self.drivers = drivers
        self.fire_queue = fire_queue
        self.history_limit = history_limit
        self.clock = clock
        self.max_attempts = max_attempts
        self.policy = policy or TargetPolicy()
        self.sleep = sleep
        self.gate_clock = gate_clock

    # --------------------------------------------------------------------------------------- triggers

    def add_trigger(self, stream_tag: StreamTag, target: Target, *, paused: bool = False,
                    fire: Callable[[Trigger, Head | None], Trigger] | None = None,
                    gates: tuple[Gate, ...] = ()) -> Trigger:
        """Register; fire at once when the tag already has a head (like OpenShift). Idempotent per target.
        ``fire`` replaces :meth:`fire` for that first fire (e.g. the admin's: queue it, or fire within a budget).

        The target is canonicalised first (names, ARNs checked against this account and region), and only that
        form is used afterwards: the id, the allow-list, the one-writer check and what is stored. So the name and
        the ARN of one service (or a Lambda function with its alias given either way) are one trigger.
        """
        target = self.policy.canonical(target)
        self.policy.check(target)
        if gates:
            self.check_gate_triggers(gates)
        trigger = Trigger(trigger_id(stream_tag, target), stream_tag, target, paused=paused, gates=tuple(gates))
        driver = self.drivers.get(target.type)
        validate = getattr(driver, "validate", None)
        if validate is not None:
            validate(target)  # e.g. a zip-packaged Lambda function is refused before anything is written
        for other in self.store.triggers_for_target(target_key(target)):
            if other.id == trigger.id or not same_slot(other.target, target):
                continue
            if other.stream_tag == stream_tag and target_identity(other.target) == target_identity(target):
                return other  # the same trigger, stored before targets were canonical (an ARN spelling)
            # one writer per container, or two tags would fight over it
            raise Conflict(f"{target.describe()} already follows {other.stream_tag} (trigger {other.id}, target "
                           f"{other.target.describe()}); remove that trigger first")
        trigger = trigger.with_outcome(pins=self._current_pins(driver, target))
        if not self.store.add_trigger(trigger):
            existing = self.store.get_trigger(trigger.id)
            if existing is not None:
                return existing
        head = self.store.get_head(stream_tag)
        if paused:
            return trigger
        return fire(trigger, head) if fire is not None else self.fire(trigger, head)

    @staticmethod
    def _current_pins(driver: TargetDriver | None, target: Target) -> Any:
        """What fires of a new trigger may clone (ECS: the family and roles the service runs now), recorded at
        ``trigger.add``; None when the driver has none, or the target cannot be read yet (then its first fire
        records them)."""
        read = getattr(driver, "current_pins", None)
        if read is None:
            return None
        try:
            return read(target)
        except TargetError as exc:  # e.g. not created yet; a transient fault fails the add (nothing written)
            log.info("cannot read %s now (%s); its first fire asks for a `deploy` to record what it may clone",
                     target.describe(), exc)
            return None

    def list_triggers(self, stream_tag: StreamTag | None = None) -> list[Trigger]:
        if stream_tag is None:
            triggers = self.store.all_triggers()
        else:
            _, triggers = self.store.head_and_triggers(stream_tag)
        return sorted(triggers, key=lambda t: (str(t.stream_tag), t.id))

    def get_trigger(self, trigger_id_: str) -> Trigger:
        trigger = self.store.get_trigger(trigger_id_)
        if trigger is None:
            raise NotFound(f"no trigger with id {trigger_id_}")
        return trigger

    # ----------------------------------------------------------------------------------------- reads

    def describe(self, stream: str) -> dict:
        all_heads, triggers, policies = self.store.stream_view(stream)
        heads = [h for h in all_heads if not h.deleted]
        if not heads and not triggers and not policies:
            raise NotFound(f"stream {stream} has no tags and no triggers")
        policy_of = {p.stream_tag.tag: p.as_dict() for p in policies}
        by_tag: dict[str, list[str]] = {}
        for trigger in triggers:
            by_tag.setdefault(trigger.stream_tag.tag, []).append(trigger.id)
        tags = []
        for head in sorted(heads, key=lambda h: h.stream_tag.tag):
            tags.append({
                "tag": head.stream_tag.tag,
                "digest": head.digest,
                "generation": head.generation,
                "at": rfc3339(head.at),
                "cause": head.cause,
                "alias_of": head.alias_of,
                "pinned": head.pinned,
                "triggers": sorted(by_tag.pop(head.stream_tag.tag, [])),
                "policy": policy_of.pop(head.stream_tag.tag, None),
            })
        # triggers waiting for a tag that has no head yet, and policy tags that have selected nothing yet
        for tag in sorted(set(by_tag) | set(policy_of)):
            tags.append({"tag": tag, "digest": None, "generation": 0, "at": None, "cause": None,
                         "alias_of": None, "pinned": None, "triggers": sorted(by_tag.get(tag, [])),
                         "policy": policy_of.get(tag)})
        return {"stream": stream, "tags": tags}

    def history(self, stream_tag: StreamTag, limit: int | None = None) -> list[HistoryEntry]:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise Invalid("limit must be a positive integer")
        entries = self.store.history(stream_tag, min(limit or self.history_limit, self.history_limit))
        if not entries:
            raise NotFound(f"{stream_tag} has no history")
        return entries
