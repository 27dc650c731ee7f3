"""The manual-invoke contract (docs/concepts.md): one JSON command in, ``{"ok": …}`` out.

Caller errors become ``{"ok": false, "error": {"type", "message"}}`` and change nothing; anything else is an
unexpected fault and raises, so the invoke reports ``FunctionError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import Forbidden, ImageStreamsError, Invalid, NotFound, NotOurs, TargetError, TransientTargetError
from .gates import parse_gates
from .model import (
    HOST_RE,
    ImageRef,
    Problems,
    StreamTag,
    Trigger,
    check_registry,
    fields,
    is_discovery,
    parse_discovery,
    parse_target,
    show,
    validate_digest,
    validate_repository,
    validate_trigger_id,
)
from .services import ImageStreams

LEASE_WAIT_SECONDS = 5.0  # a target another fire is writing: wait this long for it, then answer Conflict
# One fire may take ~47 s (5 s waiting for the lease, up to 40 s waiting for a Lambda update): in a 60 s admin call,
# fire synchronously only if it starts this early; later, or for several triggers, use the fire queue.
SYNC_FIRE_WINDOW_SECONDS = 5.0


class Action(NamedTuple):
    run: Callable[[ImageStreams, dict[str, Any]], dict[str, Any]]
    required: frozenset[str]
    optional: frozenset[str]


MAX_ACTOR = 1024  # stored on every head and history entry it writes: outside text, held to the 1 KB rule


def _actor(params: dict[str, Any]) -> str:
    actor = params.get("actor", "unknown")
    if not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR or not actor.isprintable():
        raise Invalid(f"actor must be a non-empty string of at most {MAX_ACTOR} printable characters")
    return actor


def _bool(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false, got {show(value)}")
    return value


def _host(streams: ImageStreams) -> str | None:
    """The stack's own registry host, which full ECR URIs must name (None: unknown, so none is accepted)."""
    return getattr(streams.registry, "host", None)


def _ours(streams: ImageStreams, stream: str) -> str:
    """Refuse a repository outside RepositoryPattern up front (the registry adapter knows the pattern)."""
    owns = getattr(streams.registry, "owns", None)
    if owns is not None and not owns(stream):
        raise NotOurs(stream)
    return stream


def _ref(streams: ImageStreams, value: Any, what: str) -> ImageRef:
    ref = ImageRef.parse(value, what, registry=_host(streams))
    _ours(streams, ref.stream)
    return ref


def _tag_ref(streams: ImageStreams, value: Any, what: str) -> StreamTag:
    stream_tag = StreamTag.parse(value, what, registry=_host(streams))
    _ours(streams, stream_tag.stream)
    return stream_tag


def _stream(streams: ImageStreams, value: Any) -> str:
    """``repo`` or ``<registry>/repo``, the registry being this stack's own."""
    if isinstance(value, str) and "/" in value:
        first, _, rest = value.partition("/")
        if ("." in first or ":" in first) and HOST_RE.fullmatch(first):  # '..' is a path, not a host
            check_registry(first, _host(streams), value, "stream")
            value = rest
    return _ours(streams, validate_repository(value))


def _triggers(streams: ImageStreams, params: dict[str, Any]) -> list[Trigger]:
    """Select triggers by ``id`` or by ``from`` (all on a tag); exactly one of them."""
    if ("id" in params) == ("from" in params):
        raise Invalid("give exactly one of id or from")
    if "id" in params:
        return [streams.get_trigger(validate_trigger_id(params["id"]))]
    stream_tag = _tag_ref(streams, params["from"], "from")
    triggers = streams.list_triggers(stream_tag)
    if not triggers:
        raise NotFound(f"no triggers on {stream_tag}")
    return triggers


def _result_triggers(triggers: list[Trigger], queued: list[str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"triggers": [t.as_dict() for t in triggers]}
    if queued is not None:
        result["queued"] = queued
    return result


class _Firing:
    """How an admin command fires, so that it never times out half-done: with a fire queue, several triggers (or
    one, once the command has used up its synchronous window) are queued and the answer comes at once with what
    was queued; a single trigger is fired here (its answer shows the outcome), and if its target API fails
    transiently the retry is queued too. Without a queue (in-process local use) everything fires here."""

    def __init__(self, streams: ImageStreams, action: str) -> None:
        self.streams = streams
        self.action = action
        self.started = time.monotonic()
        self.queued: list[str] = []

    def _reason(self) -> str:
        return f"{self.action}-{int(self.streams.clock().timestamp() * 1000)}"

    def _queue(self, triggers: list[Trigger], force: bool) -> None:
        self.queued += self.streams.queue_fires(triggers, reason=self._reason(), force=force)

    def one(self, trigger: Trigger, head: Any = None, *, force: bool = False) -> Trigger:
        """Fire one trigger (the ``fire`` of ``trigger.add`` too)."""
        streams = self.streams
        if streams.fire_queue is not None and time.monotonic() - self.started > SYNC_FIRE_WINDOW_SECONDS:
            self._queue([trigger], force)
            return trigger
        try:
            return streams.fire(trigger, head, force=force, wait=LEASE_WAIT_SECONDS)
        except TransientTargetError:
            if streams.fire_queue is None:
                raise
            self._queue([trigger], force)  # recorded as Failed "will retry"; the deployer retries it
            return streams.store.get_trigger(trigger.id) or trigger

    def all(self, triggers: list[Trigger], *, force: bool = False) -> list[Trigger]:
        if self.streams.fire_queue is None:
            return [self.one(t, force=force) for t in triggers]
        if len(triggers) == 1:
            return [self.one(triggers[0], force=force)]
        self._queue(triggers, force)
        return triggers

    def result(self, triggers: list[Trigger]) -> dict[str, Any]:
        return _result_triggers(triggers, self.queued if self.streams.fire_queue is not None else None)


# ------------------------------------------------------------------------------------------ actions


def _describe(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    return streams.describe(_stream(streams, p["stream"]))


def _history(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    stream_tag = _tag_ref(streams, p["target"], "target")
    limit = _positive_int(p, "limit") if "limit" in p else None
    entries = streams.history(stream_tag, limit)
    return {"target": str(stream_tag), "entries": [e.as_dict() for e in entries]}


def _import(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    actor = _actor(p)
    if ("target" in p) == ("stream" in p):
        raise Invalid("give exactly one of target or stream")
    if "target" in p:
        tags = [_tag_ref(streams, p["target"], "target")]
    else:
        stream = _stream(streams, p["stream"])
        tags = [h.stream_tag for h in streams.store.heads(stream)]
        if not tags:
            raise NotFound(f"stream {stream} has no tags to import; import a tag with target=repo:tag")
    moves = [m for st in tags for m in streams.sync(st, cause="import", actor=actor)]
    return {"moves": [m.as_dict() for m in moves]}


def _trigger_add(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    if is_discovery(p["target"]):
        return _discover(streams, p)
    if "from" not in p:
        raise Invalid("missing field(s) for trigger.add: from")
    stream_tag = _tag_ref(streams, p["from"], "from")
    target = parse_target(p["target"])
    gates = parse_gates(p.get("gates"))
    firing = _Firing(streams, "add")
    trigger = streams.add_trigger(stream_tag, target, paused=_bool(p, "paused", False), fire=firing.one,
                                  gates=gates)
    answer = {"id": trigger.id, "trigger": trigger.as_dict()}
    if firing.queued:
        answer["queued"] = firing.queued
    return answer


def _discover(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    """Adopt every workload of a cluster that carries OpenShift's ``image.openshift.io/triggers`` annotation.
    ``from`` is not used (each annotation names its own tag); bad annotations are listed in ``errors``."""
    discovery = parse_discovery(p["target"])
    cluster = discovery.cluster
    if "gates" in p:
        raise Invalid("gates cannot be given with a discovery target; set them per trigger with trigger.gates")
    if p.get("from") not in (None, "*"):
        raise Invalid('with a discovery target, from must be "*" (each annotation names its own tag)')
    paused = _bool(p, "paused", False)
    streams.policy.check_role(discovery)  # a role outside the allow-lists is never assumed, not even to list
    firing = _Firing(streams, "add")  # its clock starts before the listing, which may take a while
    try:
        found, found_errors = _discovery_driver(streams, discovery).discover(cluster)
    except TargetError as exc:  # no such cluster (in the role's account), or no usable certificate authority
        raise NotFound(f"{discovery.describe()}: {exc}") from exc
    found = [(stream_tag, discovery.adopt(target), entry_paused) for stream_tag, target, entry_paused in found]
    errors = Problems(MAX_DISCOVERY_ERRORS)  # bounded whatever the driver hands back: ≤ 100 lines of ≤ 1 KB
    errors += found_errors
    errors.more += getattr(found_errors, "more", 0)
    if not found and not errors:
        raise NotFound(f"no workload in EKS cluster {cluster} carries image.openshift.io/triggers")
    triggers: list[Trigger] = []
    due: list[Trigger] = []

    def later(trigger: Trigger, _head: Any) -> Trigger:  # fired together below (through the queue if any)
        due.append(trigger)
        return trigger

    for stream_tag, target, entry_paused in found:
        try:
            triggers.append(streams.add_trigger(stream_tag, target, paused=paused or entry_paused, fire=later))
        except ImageStreamsError as exc:  # e.g. Forbidden by the allow-list: reported, the others still adopted
            errors.append(f"{target.describe()}: {exc.type}: {exc.message}")
    fired = {t.id: t for t in firing.all(due)}
    triggers = [fired.get(t.id, t) for t in triggers]
    first = triggers[0] if triggers else None
    answer = {"id": first.id if first else None, "trigger": first.as_dict() if first else None,
              "triggers": [t.as_dict() for t in triggers], "errors": errors.lines()}
    if firing.queued:
        answer["queued"] = firing.queued
    return answer


def _discovery_driver(streams: ImageStreams, discovery: Any) -> Any:
    """The EKS driver that lists as the discovery's role (the stack's own without ``roleArn``)."""
    drivers = streams.drivers["eks"]
    for_role = getattr(drivers, "for_role", None)
    if for_role is None:  # one driver for every account (in-process use): it cannot act as another role
        if discovery.role_arn:
            raise Invalid("this deployment cannot assume target roles, so it cannot discover with roleArn")
        return drivers
    return for_role(discovery.role_arn, discovery.external_id)


def _trigger_list(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    stream_tag = _tag_ref(streams, p["from"], "from") if "from" in p else None
    return _result_triggers(streams.list_triggers(stream_tag))


def _trigger_remove(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    triggers = _triggers(streams, p)
    for trigger in triggers:
        streams.store.remove_trigger(trigger)
    return _result_triggers(triggers)


def _set_paused(paused: bool) -> Callable[[ImageStreams, dict[str, Any]], dict[str, Any]]:
    def run(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
        out = []
        for trigger in _triggers(streams, p):
            streams.store.set_paused(trigger, paused)
            out.append(trigger.with_outcome(paused=paused))
        if paused:
            return _result_triggers(out)
        firing = _Firing(streams, "resume")  # resume fires if behind
        return firing.result(firing.all(out))

    return run


def _deploy(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    force = _bool(p, "force", False)
    actor = _actor(p)
    triggers = _triggers(streams, p)
    if force:  # past the gates, recorded with who did it
        triggers = streams.force_past_gates(triggers, actor, wait=LEASE_WAIT_SECONDS)
    firing = _Firing(streams, "deploy")
    return firing.result(firing.all(triggers, force=True))


def _trigger_gates(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    """Replace a trigger's gates, then judge its head again (it may fire now, or be held)."""
    gates = parse_gates(p["gates"])
    trigger = streams.get_trigger(validate_trigger_id(p["id"]))
    streams.set_trigger_gates(trigger, gates)
    fresh = streams.get_trigger(trigger.id)
    if fresh.paused:
        return _result_triggers([fresh])
    firing = _Firing(streams, "gates")
    return firing.result(firing.all([fresh]))


def _decide(approve: bool) -> Callable[[ImageStreams, dict[str, Any]], dict[str, Any]]:
    def run(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
        actor = _actor(p)
        if ("id" in p) == ("target" in p):
            raise Invalid("give exactly one of id (a trigger) or target (a policy tag)")
        digest = validate_digest(p["digest"])
        reason = None
        if "reason" in p:
            if approve:
                raise Invalid("reason applies to reject")
            reason = p["reason"]
            if not isinstance(reason, str) or len(reason) > MAX_ACTOR or not reason.isprintable():
                raise Invalid(f"reason must be a string of at most {MAX_ACTOR} printable characters")
        if "target" in p:
            stream_tag = _tag_ref(streams, p["target"], "target")
            policy = streams.approve_policy(stream_tag, digest, actor, approve=approve, reason=reason)
            return {"policies": [policy.as_dict()]}
        trigger = streams.get_trigger(validate_trigger_id(p["id"]))
        streams.decide_trigger(trigger, digest, actor, approve=approve, reason=reason, wait=LEASE_WAIT_SECONDS)
        fresh = streams.get_trigger(trigger.id)
        firing = _Firing(streams, "approve" if approve else "reject")
        return firing.result(firing.all([fresh]) if not fresh.paused else [fresh])

    return run


MAX_TARGETS = 50
MAX_DISCOVERY_ERRORS = 100  # problem lines in a discovery answer; the rest are counted ("and N more")


def _moves(moves: list[Any]) -> dict[str, Any]:
    return {"moves": [m.as_dict() for m in moves]}


def _tag(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    actor = _actor(p)
    source = _ref(streams, p["source"], "source")
    raw = p["target"]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or len(raw) > MAX_TARGETS:
        raise Invalid(f"target must be a tag reference or a non-empty list of at most {MAX_TARGETS}")
    targets = [_tag_ref(streams, t, "target") for t in raw]
    return _moves(streams.tag(source, targets, alias=_bool(p, "alias", False), actor=actor))


def _untag(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    actor = _actor(p)
    target = _tag_ref(streams, p["target"], "target")
    return _moves(streams.untag(target, keep_in_registry=_bool(p, "keep_in_registry", False), actor=actor))


def _positive_int(p: dict[str, Any], name: str) -> int | None:
    if name not in p:
        return None
    value = p[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid(f"{name} must be a positive integer, got {show(value)}")
    return value


def _rollback(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    actor = _actor(p)
    if ("target" in p) == ("trigger" in p):
        raise Invalid("give exactly one of target (roll a tag back) or trigger (roll one target back)")
    to = validate_digest(p["to"]) if "to" in p else None
    if "trigger" in p:
        if "steps" in p:
            raise Invalid("steps applies to a tag rollback; for a trigger give to (a digest) or nothing")
        trigger = streams.rollback_target(validate_trigger_id(p["trigger"]), to=to, actor=actor,
                                          wait=LEASE_WAIT_SECONDS)
        return _result_triggers([trigger])
    if "to" in p and "steps" in p:
        raise Invalid("give one of to or steps, not both")
    target = _tag_ref(streams, p["target"], "target")
    return _moves(streams.rollback_tag(target, to=to, steps=_positive_int(p, "steps"), actor=actor))


def _bounded_int(p: dict[str, Any], name: str, default: int, most: int) -> int:
    value = p.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise Invalid(f"{name} must be an integer from 0 to {most}, got {show(value)}")
    return value


def _prune(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    from datetime import timedelta

    from . import prune

    options = prune.Options(
        stream=_stream(streams, p["stream"]) if "stream" in p else None,
        keep_tag_revisions=_bounded_int(p, "keepTagRevisions", prune.DEFAULT_KEEP_TAG_REVISIONS,
                                        prune.MAX_KEEP_TAG_REVISIONS),
        keep_younger_than=timedelta(minutes=_bounded_int(p, "keepYoungerThanMinutes",
                                                         prune.DEFAULT_KEEP_YOUNGER_THAN_MINUTES,
                                                         prune.MAX_KEEP_YOUNGER_THAN_MINUTES)),
        confirm=_bool(p, "confirm", False), actor=_actor(p), cursor=p.get("cursor"))
    if options.cursor is not None:
        prune.decode_cursor(options.cursor)  # refused before anything is read
    return prune.prune(streams, options)


def _check(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    """A read-only diagnosis of the deployed stack (or of one trigger). The AWS reads come from the composition
    root's ``diagnosis`` factory, built only when this action runs."""
    from . import check

    trigger_id = validate_trigger_id(p["trigger"]) if "trigger" in p else None
    factory = getattr(streams, "diagnosis", None)
    if factory is None:
        raise Invalid("check needs the AWS reads of a deployed stack; this instance has none")
    return check.check(streams, factory(), check.Stack.from_env(), trigger_id, now=streams.clock())


def _spec(run: Callable, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> Action:
    return Action(run, frozenset(required), frozenset(optional) | {"actor"})


ACTIONS: dict[str, Action] = {
    "tag": _spec(_tag, ("source", "target"), ("alias",)),
    "untag": _spec(_untag, ("target",), ("keep_in_registry",)),
    "rollback": _spec(_rollback, (), ("target", "trigger", "to", "steps")),
    "import": _spec(_import, (), ("target", "stream")),
    "describe": _spec(_describe, ("stream",)),
    "history": _spec(_history, ("target",), ("limit",)),
    "trigger.add": _spec(_trigger_add, ("target",), ("from", "paused", "gates")),
    "trigger.gates": _spec(_trigger_gates, ("id", "gates")),
    "approve": _spec(_decide(True), ("digest",), ("id", "target")),
    "reject": _spec(_decide(False), ("digest",), ("id", "target", "reason")),
    "trigger.remove": _spec(_trigger_remove, (), ("id", "from")),
    "trigger.pause": _spec(_set_paused(True), (), ("id", "from")),
    "trigger.resume": _spec(_set_paused(False), (), ("id", "from")),
    "trigger.list": _spec(_trigger_list, (), ("from",)),
    "deploy": _spec(_deploy, (), ("id", "from", "force")),
    "prune": _spec(_prune, (), ("stream", "keepTagRevisions", "keepYoungerThanMinutes", "confirm", "cursor")),
    "check": _spec(_check, (), ("trigger",)),
}


def dispatch(streams: ImageStreams | Callable[[], ImageStreams], command: Any) -> dict[str, Any]:
    """Validate and run one command. ``streams`` may be a factory, so bad input is refused before any client
    is built."""
    try:
        if not isinstance(command, dict):
            raise Invalid(f"command must be a JSON object, got {type(command).__name__}")
        name = command.get("action")
        if not isinstance(name, str) or name not in ACTIONS:
            raise Invalid(f"unknown action {show(name)}; expected one of {', '.join(ACTIONS)}")
        action = ACTIONS[name]
        params = {k: v for k, v in command.items() if k != "action"}
        unknown = set(params) - action.required - action.optional
        if unknown:
            accepted = ", ".join(sorted(action.required | action.optional))
            raise Invalid(f"unknown {fields(unknown)} for {name}; accepted: {accepted}")
        missing = action.required - set(params)
        if missing:
            raise Invalid(f"missing {fields(missing)} for {name}")
        if "actor" in params:
            _actor(params)
        service = streams() if callable(streams) else streams
        return {"ok": True, "result": action.run(service, params)}
    except ImageStreamsError as exc:
        return {"ok": False, "error": exc.as_dict()}
    except NotOurs as exc:  # outside RepositoryPattern, or IAM denies it: the caller may not act on it here
        return {"ok": False, "error": Forbidden(exc.message).as_dict()}


# ------------------------------------------------------------------------------------------- policy tags


def _policy_set(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    actor = _actor(p)
    target = _tag_ref(streams, p["target"], "target")
    policy = streams.set_policy(target, p["policy"], p.get("gates"), actor=actor)
    return {"policies": [policy.as_dict()]}


def _policy_remove(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    _actor(p)
    streams.remove_policy(_tag_ref(streams, p["target"], "target"))
    return {"policies": []}


def _policy_resume(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    actor = _actor(p)
    return {"policies": [streams.resume_policy(_tag_ref(streams, p["target"], "target"), actor=actor).as_dict()]}


def _policy_list(streams: ImageStreams, p: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(streams, p["stream"]) if "stream" in p else None
    return {"policies": [policy.as_dict() for policy in streams.list_policies(stream)]}


ACTIONS.update({
    "policy.set": _spec(_policy_set, ("target", "policy"), ("gates",)),
    "policy.remove": _spec(_policy_remove, ("target",)),
    "policy.resume": _spec(_policy_resume, ("target",)),
    "policy.list": _spec(_policy_list, (), ("stream",)),
})
