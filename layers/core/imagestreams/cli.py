"""``imagestreams``: image streams, their history and triggers, from a terminal.

Two transports: ``--function NAME`` invokes the deployed admin function; without it the same operation runs
in-process against the configured endpoints (``TABLE_NAME`` and the standard ``AWS_ENDPOINT_URL*`` variables, as
``imagestreams-local up`` prints them). The concepts are explained in docs/concepts.md.
Exit codes: 0 ok; 1 the operation failed, or a fire it started failed (the reason is printed); 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ImageStreamsError
from .model import function_name, short_name

MUTATING = {"tag", "untag", "rollback", "import", "trigger.add", "trigger.remove", "trigger.pause",
            "trigger.resume", "deploy", "trigger.gates", "approve", "reject", "policy.set", "policy.remove",
            "policy.resume"}


# ------------------------------------------------------------------------------------------- rendering


def short(digest: str | None) -> str:
    if not digest:
        return "-"
    return digest[:19] if digest.startswith("sha256:") else digest


def when(at: str | None) -> str:
    return at.replace("T", " ")[:19] if at else "-"


def clean(value: Any) -> str:
    """A value as one line of terminal text: every control or invisible formatting character (C0, DEL, C1,
    bidi overrides, line separators…) shown as an escape like ``\\x1b``, so outside text (an image string, an
    API message) can neither move the cursor, erase a line, start a fake row nor reorder what is shown."""
    text = "-" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[clean(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def target_text(target: dict[str, Any]) -> str:
    kind = target.get("type")
    if kind == "ecs":
        return f"ecs {short_name(target['cluster'])}/{short_name(target['service'])}:{target['container']}"
    if kind == "eks" and "name" in target:
        return (f"eks {target['cluster']}/{target['namespace']}/{target['kind'].lower()}/{target['name']}:"
                f"{target['container']}")
    if kind == "lambda":
        return f"lambda {function_name(target['function'])}" + (f":{target['alias']}" if target.get("alias") else "")
    return json.dumps(target, sort_keys=True)


def render_triggers(triggers: list[dict[str, Any]]) -> str:
    if not triggers:
        return "no triggers"
    return table(
        ["ID", "FROM", "TARGET", "STATUS", "PAUSED", "DIGEST", "ROLLOUT", "ERROR"],
        [[t["id"], t["from"], target_text(t["target"]), t["status"], "yes" if t["paused"] else "no",
          short(t["lastTriggeredDigest"]), t.get("rolloutState"),
          t.get("lastError") or t.get("drift") or _gate_text(t.get("gate"))]
         for t in triggers],
    )


def _gate_text(gate: dict[str, Any] | None) -> str | None:
    """``scan blocked: 3 CRITICAL findings (sha256:0123456789ab)`` for a trigger held by a gate."""
    if not gate or gate.get("state") == "passed" and gate.get("type") != "forced":
        return None
    return f"{gate.get('type')} {gate.get('state')}: {gate.get('reason')} ({short(gate.get('digest'))})"


def render_history(result: dict[str, Any]) -> str:
    rows = [[e["generation"], short(e["digest"]), when(e["at"]), e["cause"], e["actor"]] for e in result["entries"]]
    return f"{clean(result['target'])}\n" + table(["GEN", "DIGEST", "WHEN (UTC)", "CAUSE", "ACTOR"], rows)


def render_describe(result: dict[str, Any]) -> str:
    rows = [[t["tag"], short(t["digest"]), t["generation"], when(t["at"]), t.get("alias_of"),
             policy_text(t.get("policy")), ",".join(t["triggers"]) or "-"] for t in result["tags"]]
    headers = ["TAG", "DIGEST", "GEN", "UPDATED (UTC)", "ALIAS OF", "POLICY", "TRIGGERS"]
    return f"stream {clean(result['stream'])}\n" + table(headers, rows)


def render_moves(result: dict[str, Any]) -> str:
    if not result["moves"]:
        return "no change: every tag already matches ECR"
    return table(["TAG", "FROM", "TO", "GEN", "CAUSE"],
                 [[m["tag"], short(m["from"]), short(m["to"]), m["generation"], m["cause"]] for m in result["moves"]])


def render(action: str, result: dict[str, Any]) -> str:
    if action == "describe":
        return render_describe(result)
    if action == "history":
        return render_history(result)
    if action == "prune":
        return render_prune(result)
    if action == "check":
        return render_check(result)
    if "policies" in result:
        return render_policies(result["policies"])
    if "moves" in result:
        return render_moves(result)
    if "policies" in result and "triggers" not in result:
        policies = globals().get("render_policies")
        return policies(result["policies"]) if policies else json.dumps(result["policies"], indent=2)
    if action == "trigger.add":
        if "errors" in result or result.get("trigger") is None:  # discovery: every adopted trigger, every problem
            return render_discovery(result)
        return render_triggers([result["trigger"]])
    return render_triggers(result.get("triggers", []))


def render_discovery(result: dict[str, Any]) -> str:
    triggers = result.get("triggers") or []
    errors = result.get("errors") or []
    out = [render_triggers(triggers) if triggers else "no workload adopted"]
    if errors:
        out.append("\nproblems:")
        out += [f"  - {clean(line)}" for line in errors]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- parser


class UsageError(Exception):
    """An argument the parser could not check by itself (exit 2, before any configuration is read)."""

EXAMPLES = {
    "describe": "imagestreams describe team/web",
    "history": "imagestreams history team/web:prod --limit 10",
    "import": "imagestreams import team/web:latest    |    imagestreams import --stream team/web",
    "tag": "imagestreams tag team/web:latest team/web:prod",
    "untag": "imagestreams untag team/web:old",
    "rollback": "imagestreams rollback team/web:prod --steps 1    |    imagestreams rollback --trigger tr-0123456789ab",
    "deploy": "imagestreams deploy tr-0123456789ab    |    imagestreams deploy --from team/web:prod    |    "
              "imagestreams deploy tr-0123456789ab --force  (past its gates)",
    "approve": "imagestreams approve tr-0123456789ab sha256:…    |    imagestreams approve team/web:prod sha256:…",
    "reject": "imagestreams reject tr-0123456789ab sha256:… --reason 'fails the smoke test'",
    "trigger gates": "imagestreams trigger gates tr-0123456789ab --gate scan:CRITICAL --gate approval    |    "
                     "--clear",
    "trigger add": "imagestreams trigger add team/web:prod --ecs prod/web:web    |    "
                   "--eks prod/apps/deployment/web:web    |    --lambda resize:live",
    "trigger list": "imagestreams trigger list --from team/web:prod",
    "trigger pause": "imagestreams trigger pause tr-0123456789ab",
    "trigger resume": "imagestreams trigger resume --from team/web:prod",
    "trigger remove": "imagestreams trigger remove tr-0123456789ab",
}


def _sub(subparsers: Any, name: str, help_text: str, key: str | None = None) -> argparse.ArgumentParser:
    return subparsers.add_parser(name, help=help_text, description=help_text,
                                 epilog=f"example: {EXAMPLES[key or name]}",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def _selector(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", nargs="?", help="trigger id (tr-…)")
    parser.add_argument("--from", dest="from_", metavar="REF", help="every trigger on this stream tag instead")


def _common(parser: argparse.ArgumentParser, default: Any) -> None:
    """The options every verb takes, accepted before or after the verb (``imagestreams history X --output json``)."""
    parser.add_argument("--function", default=default,
                        help="deployed admin function name or ARN (default: run in-process)")
    parser.add_argument("--output", choices=("table", "json"), default="table" if default is None else default)
    parser.add_argument("--actor", default=default,
                        help="recorded in history (default: your ARN from sts:GetCallerIdentity)")
    parser.add_argument("--region", default=default, help="AWS region (default: from the environment/profile)")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("imagestreams")
    except Exception:  # noqa: BLE001 - running from a checkout without an install
        from . import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagestreams", description=__doc__.split("\n\n")[0],
                                     epilog="Concepts: docs/concepts.md. Example: imagestreams describe team/web")
    parser.add_argument("--version", action="version", version=f"imagestreams {_version()}")
    _common(parser, None)
    verbs = _Verbs(parser.add_subparsers(dest="verb", required=True, metavar="VERB"))

    p = _sub(verbs, "describe", "tags of a stream with head digest, generation and triggers")
    p.add_argument("stream")
    p = _sub(verbs, "history", "a stream tag's history, newest first")
    p.add_argument("target", metavar="REF")
    p.add_argument("--limit", type=int)
    p = _sub(verbs, "import", "re-resolve tags from ECR now")
    p.add_argument("target", nargs="?", metavar="REF")
    p.add_argument("--stream")
    p = _sub(verbs, "tag", "copy a tag or digest to other tags, byte-exact (permanent, or --alias to track)")
    p.add_argument("source")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--alias", action="store_true")
    p = _sub(verbs, "untag", "remove a tag from its stream (and from ECR unless --keep-in-registry)")
    p.add_argument("target", metavar="REF")
    p.add_argument("--keep-in-registry", action="store_true")
    p = _sub(verbs, "rollback", "move a tag back in its history, or roll one trigger's target back (pauses it)")
    p.add_argument("target", nargs="?", metavar="REF")
    p.add_argument("--trigger")
    p.add_argument("--to", metavar="DIGEST")
    p.add_argument("--steps", type=int)
    p = _sub(verbs, "deploy", "apply the current head now, even if paused (gates still apply unless --force)")
    _selector(p)
    p.add_argument("--force", action="store_true", help="deploy past the trigger's gates (recorded with the actor)")
    for verb, text in (("approve", "approve the digest a trigger's or policy tag's approval gate waits on"),
                       ("reject", "reject the digest a trigger's or policy tag's approval gate waits on")):
        p = _sub(verbs, verb, text)
        p.add_argument("subject", metavar="ID|REF", help="a trigger id (tr-…) or a policy tag (team/web:prod)")
        p.add_argument("digest", metavar="DIGEST")
        if verb == "reject":
            p.add_argument("--reason", metavar="TEXT")

    trig = verbs.add_parser("trigger", help="add, remove, pause, resume or list triggers")
    tverbs = _Verbs(trig.add_subparsers(dest="tverb", required=True, metavar="ACTION"))
    p = _sub(tverbs, "add", "keep a target on the head of a stream tag", "trigger add")
    p.add_argument("from_", metavar="FROM")
    p.add_argument("--ecs", metavar="CLUSTER/SERVICE:CONTAINER", help="an ECS service container")
    p.add_argument("--eks", metavar="CLUSTER/NAMESPACE/KIND/NAME:CONTAINER",
                   help="an EKS workload container, KIND one of deployment, statefulset, daemonset, cronjob")
    p.add_argument("--lambda", dest="lambda_", metavar="FUNCTION[:ALIAS]",
                   help="a container-image Lambda function: name, name:alias, or its ARN (stored by name)")
    p.add_argument("--target", metavar="JSON", help='a target object as JSON, e.g. {"type": "ecs", "cluster": '
                   '"prod", "service": "web", "container": "web"} (docs/concepts.md lists every field)')
    p.add_argument("--paused", action="store_true")
    p.add_argument("--gate", action="append", type=_gate_flag, metavar="GATE", help=GATE_HELP)
    p = _sub(tverbs, "gates", "replace a trigger's gates (it is judged again at once)", "trigger gates")
    p.add_argument("id", metavar="ID")
    p.add_argument("--gate", action="append", type=_gate_flag, metavar="GATE", help=GATE_HELP)
    p.add_argument("--clear", action="store_true", help="remove every gate")
    for name in ("remove", "pause", "resume"):
        _selector(_sub(tverbs, name, f"{name} triggers", f"trigger {name}"))
    p = _sub(tverbs, "list", "triggers with their status", "trigger list")
    p.add_argument("--from", dest="from_", metavar="REF")
    add_prune_verb(verbs)
    add_check_verb(verbs)
    add_policy_verb(verbs)
    return parser


class _Verbs:
    """Sub-parsers that also take the common options after the verb."""

    def __init__(self, action: Any) -> None:
        self._action = action

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = self._action.add_parser(name, **kwargs)
        _common(parser, argparse.SUPPRESS)
        return parser


def _ecs_target(spec: str) -> dict[str, Any]:
    cluster, _, rest = spec.partition("/")
    service, _, container = rest.partition(":")
    if not (cluster and service and container):
        raise UsageError(f"--ecs takes CLUSTER/SERVICE:CONTAINER (like prod/web:web), got {spec!r}")
    return {"type": "ecs", "cluster": cluster, "service": service, "container": container}


KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet", "cronjob": "CronJob"}


def _eks_target(spec: str) -> dict[str, Any]:
    path, _, container = spec.partition(":")
    parts = path.split("/")
    if len(parts) != 4 or not container or parts[2].lower() not in KINDS:
        raise UsageError("--eks takes CLUSTER/NAMESPACE/KIND/NAME:CONTAINER (KIND: deployment, statefulset, "
                         f"daemonset, cronjob), got {spec!r}")
    cluster, namespace, kind, name = parts
    return {"type": "eks", "cluster": cluster, "namespace": namespace, "kind": KINDS[kind.lower()], "name": name,
            "container": container}


GATE_HELP = ("a gate (repeatable): approval | scan:SEVERITY[:TIMEOUT_MINUTES] (SEVERITY: CRITICAL, HIGH, MEDIUM, "
             "LOW) | signature[:TIMEOUT_MINUTES] | verified:TRIGGER_ID[,TRIGGER_ID…]:MINUTES")


def _gate_flag(spec: str) -> dict[str, Any]:
    """``--gate``: ``approval``, ``scan:CRITICAL[:60]``, ``signature[:30]``, ``verified:tr-…[,tr-…]:30`` → the
    gate object of the admin contract (the admin checks the values)."""
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []

    def number(text: str, what: str) -> int:
        if not text.isdigit():
            raise argparse.ArgumentTypeError(f"{what} must be a whole number of minutes, got {text!r} in {spec!r}")
        return int(text)

    if kind == "approval" and not parts:
        return {"type": "approval"}
    if kind == "scan" and 1 <= len(parts) <= 2 and parts[0]:
        gate: dict[str, Any] = {"type": "scan", "blockAt": parts[0].upper()}
        if len(parts) == 2:
            gate["timeoutMinutes"] = number(parts[1], "the scan timeout")
        return gate
    if kind == "signature" and len(parts) <= 1:
        gate = {"type": "signature"}
        if parts:
            gate["timeoutMinutes"] = number(parts[0], "the signature timeout")
        return gate
    if kind == "verified" and len(parts) == 2 and parts[0]:
        return {"type": "verified", "triggers": parts[0].split(","), "minutes": number(parts[1], "verified")}
    raise argparse.ArgumentTypeError(f"invalid gate {spec!r}: expected {GATE_HELP.split(': ', 1)[1]}")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--target is not valid JSON: {exc}") from exc


def command_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Translate parsed arguments into the admin JSON command (no validation beyond shape: the admin does it)."""
    verb = args.verb
    if verb == "prune":
        return prune_command(args)
    if verb == "check":
        return check_command(args)
    if verb == "policy":
        return policy_command(args)
    if verb == "trigger":
        action = f"trigger.{args.tverb}"
        cmd: dict[str, Any] = {"action": action}
        if args.tverb == "add":
            given = [x for x in (args.ecs, args.eks, args.lambda_, args.target) if x]
            if len(given) != 1:
                raise UsageError("trigger add needs exactly one of --ecs, --eks, --lambda or --target"
                                 + (f" (got {len(given)})" if given else ""))
            if args.ecs:
                target = _ecs_target(args.ecs)
            elif args.eks:
                target = _eks_target(args.eks)
            elif args.lambda_:
                spec = args.lambda_  # NAME[:ALIAS]; an ARN or partial ARN (maybe qualified) goes as it is
                function, _, alias = (spec, "", "") if ":function:" in spec else spec.partition(":")
                target = {"type": "lambda", "function": function, **({"alias": alias} if alias else {})}
            else:
                target = _json(args.target)
            cmd.update({"from": args.from_, "target": target})
            if args.paused:
                cmd["paused"] = True
            if args.gate:
                cmd["gates"] = args.gate
        elif args.tverb == "gates":
            if bool(args.gate) == args.clear:
                raise UsageError("trigger gates needs --gate (one or more) or --clear")
            cmd.update({"id": args.id, "gates": args.gate or []})
        elif args.tverb == "list":
            if args.from_:
                cmd["from"] = args.from_
        else:
            _put_selector(cmd, args)
        return cmd
    cmd = {"action": verb}
    if verb == "describe":
        cmd["stream"] = args.stream
    elif verb == "history":
        cmd["target"] = args.target
        if args.limit is not None:
            cmd["limit"] = args.limit
    elif verb == "import":
        if args.target:
            cmd["target"] = args.target
        if args.stream:
            cmd["stream"] = args.stream
    elif verb == "tag":
        cmd.update({"source": args.source, "target": args.targets if len(args.targets) > 1 else args.targets[0]})
        if args.alias:
            cmd["alias"] = True
    elif verb == "untag":
        cmd["target"] = args.target
        if args.keep_in_registry:
            cmd["keep_in_registry"] = True
    elif verb == "rollback":
        for key in ("target", "trigger", "to", "steps"):
            if getattr(args, key) is not None:
                cmd[key] = getattr(args, key)
    elif verb == "deploy":
        _put_selector(cmd, args)
        if args.force:
            cmd["force"] = True
    elif verb in ("approve", "reject"):
        cmd["id" if re.fullmatch(r"tr-[a-f0-9]{12}", args.subject) else "target"] = args.subject
        cmd["digest"] = args.digest
        if getattr(args, "reason", None) is not None:
            cmd["reason"] = args.reason
    return cmd


def precheck(command: dict[str, Any]) -> None:
    """Check the names the user typed before any configuration is read, so a typo is reported as a typo (exit 2)
    even without a stack. Full registry URIs are left to the stack, which knows its own registry."""
    from .model import ImageRef, StreamTag, parse_target, validate_repository

    def plain(value: Any) -> bool:  # not a full URI whose first part is a registry host
        first, slash, _ = value.partition("/") if isinstance(value, str) else ("", "", "")
        return isinstance(value, str) and not (slash and re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?",
                                                                      first))

    action = command["action"]
    stream = command.get("stream")
    if stream is not None and plain(stream):
        validate_repository(stream)
    targets = command.get("target")
    if action in ("history", "untag", "import", "tag", "policy.set", "policy.remove", "policy.resume") or (
            action == "rollback" and "target" in command):
        for ref in targets if isinstance(targets, list) else [targets] if targets is not None else []:
            if plain(ref):
                StreamTag.parse(ref, "target")
    if action == "tag" and plain(command.get("source")):
        ImageRef.parse(command["source"], "source")
    if "from" in command and command["from"] != "*" and plain(command["from"]):
        StreamTag.parse(command["from"], "from")
    if action == "trigger.add" and isinstance(targets, dict) and not targets.get("discover"):
        parse_target(targets)


def _put_selector(cmd: dict[str, Any], args: argparse.Namespace) -> None:
    if args.id:
        cmd["id"] = args.id
    if args.from_:
        cmd["from"] = args.from_


# ---------------------------------------------------------------------------------------------- policy


POLICY_EXAMPLES = """examples:
  imagestreams policy set team/web:stable --semver '^1.2'
  imagestreams policy set team/web:nightly --pattern '^main-(?P<n>[0-9]+)$' --order numeric --extract n
  imagestreams policy set team/web:prod --follow staging --gate verified:tr-0123456789ab:30 --gate approval
  imagestreams policy list --stream team/web
  imagestreams policy resume team/web:stable"""


def add_policy_verb(verbs: Any) -> None:
    pol = verbs.add_parser("policy", help="policy tags: keep a tag on the best tag a policy selects",
                           description="policy tags: keep a tag on the best tag of its stream that a semver range, "
                                       "a pattern or another tag (through gates) selects",
                           epilog=POLICY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    pverbs = _Verbs(pol.add_subparsers(dest="pverb", required=True, metavar="ACTION"))
    p = pverbs.add_parser("set", help="give a tag a policy (evaluated at once; may move the tag)",
                          epilog=POLICY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="REF")
    p.add_argument("--semver", metavar="RANGE", help="npm-style range: ^1.2, ~1.2.3, 1.2.x, '>=1.2.0 <2', 'a || b'")
    p.add_argument("--prerelease", action="store_true", help="with --semver: pre-release tags are candidates too")
    p.add_argument("--pattern", metavar="REGEX", help="tags fully matching this regular expression (Python syntax)")
    p.add_argument("--order", choices=("numeric", "alphabetical", "pushed"), help="with --pattern (alphabetical)")
    p.add_argument("--extract", metavar="GROUP", help="with --pattern: order by this group of the match")
    p.add_argument("--follow", metavar="TAG", help="another tag of the same stream")
    p.add_argument("--gate", action="append", default=None, metavar="GATE",
                   help="verified:TRIGGER[,TRIGGER…]:MINUTES | approval | scan:SEVERITY[:TIMEOUT_MINUTES] | "
                        "signature[:TIMEOUT_MINUTES] (repeatable)")
    p = pverbs.add_parser("list", help="policy tags with what they selected")
    p.add_argument("--stream")
    for name, text in (("remove", "remove a tag's policy (the tag stays, as a plain tag)"),
                       ("resume", "resume a policy held by a rollback of its tag (evaluates at once)")):
        pverbs.add_parser(name, help=text).add_argument("target", metavar="REF")


def _minutes(text: str, spec: str) -> int:
    if not text.isdigit():
        raise UsageError(f"--gate {spec!r}: minutes must be a whole number, got {text!r}")
    return int(text)


def parse_gate_flag(spec: str) -> dict[str, Any]:
    """``--gate`` text as the gate object the admin takes."""
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    if kind == "approval" and not parts:
        return {"type": "approval"}
    if kind == "verified" and len(parts) == 2 and parts[0]:
        return {"type": "verified", "triggers": [t for t in parts[0].split(",") if t],
                "minutes": _minutes(parts[1], spec)}
    if kind == "scan" and 1 <= len(parts) <= 2 and parts[0]:
        gate: dict[str, Any] = {"type": "scan", "blockAt": parts[0].upper()}
        if len(parts) == 2:
            gate["timeoutMinutes"] = _minutes(parts[1], spec)
        return gate
    if kind == "signature" and len(parts) <= 1:
        gate = {"type": "signature"}
        if parts:
            gate["timeoutMinutes"] = _minutes(parts[0], spec)
        return gate
    raise UsageError(f"--gate takes verified:TRIGGER[,TRIGGER…]:MINUTES, approval, scan:SEVERITY[:MINUTES] or "
                     f"signature[:MINUTES], got {spec!r}")


def policy_command(args: argparse.Namespace) -> dict[str, Any]:
    cmd: dict[str, Any] = {"action": f"policy.{args.pverb}"}
    if args.pverb == "list":
        if args.stream:
            cmd["stream"] = args.stream
        return cmd
    cmd["target"] = args.target
    if args.pverb != "set":
        return cmd
    kinds = [k for k in ("semver", "pattern", "follow") if getattr(args, k) is not None]
    if len(kinds) != 1:
        raise UsageError("policy set needs exactly one of --semver, --pattern or --follow"
                         + (f" (got {len(kinds)})" if kinds else ""))
    if args.prerelease and kinds[0] != "semver":
        raise UsageError("--prerelease goes with --semver")
    if (args.order or args.extract) and kinds[0] != "pattern":
        raise UsageError("--order and --extract go with --pattern")
    policy: dict[str, Any] = {kinds[0]: getattr(args, kinds[0])}
    if args.prerelease:
        policy["prerelease"] = True
    if args.order:
        policy["order"] = args.order
    if args.extract:
        policy["extract"] = args.extract
    cmd["policy"] = policy
    if args.gate:
        cmd["gates"] = [parse_gate_flag(g) for g in args.gate]
    return cmd


def policy_text(policy: dict[str, Any] | None) -> str:
    """A policy (P) in a few words: ``semver ^1.2``, ``pattern RE (numeric by n)``, ``follow staging``."""
    if not policy:
        return "-"
    spec = policy.get("policy") or {}
    if "semver" in spec:
        text = f"semver {spec['semver']}" + (" +prerelease" if spec.get("prerelease") else "")
    elif "pattern" in spec:
        by = f" by {spec['extract']}" if spec.get("extract") is not None else ""
        text = f"pattern {spec['pattern']} ({spec.get('order', 'alphabetical')}{by})"
    else:
        text = f"follow {spec.get('follow')}"
    gates = [g.get("type", "?") for g in policy.get("gates") or []]
    if gates:
        text += f" [gates: {', '.join(gates)}]"
    return text + (" (held)" if policy.get("held") else "")


def render_policies(policies: list[dict[str, Any]]) -> str:
    if not policies:
        return "no policy tags"
    rows = []
    for p in policies:
        gate = p.get("gate") or {}
        rows.append([p["target"], policy_text({**p, "held": False}), p["status"], p.get("selected"),
                     short(p.get("digest")), "yes" if p.get("held") else "no",
                     f"{gate.get('type')}: {gate.get('state')} {gate.get('reason') or ''}".strip() if gate else "-"])
    return table(["TARGET", "POLICY", "STATUS", "SELECTED", "DIGEST", "HELD", "GATE"], rows)


# ---------------------------------------------------------------------------------------------- check


def add_check_verb(verbs: Any) -> None:
    text = ("diagnose the deployed stack: functions, rules, schedule, dead-letter queues, the reconciler's last run, "
            "each trigger's permissions and target, lifecycle rules that would expire what targets run")
    p = verbs.add_parser("check", help=text, description=text,
                         epilog="exit 0 when no finding is an error, 1 otherwise. "
                                "example: imagestreams check    |    imagestreams check --trigger t-1a2b3c")
    p.add_argument("--trigger", metavar="ID", help="check only this trigger (and its repository's lifecycle)")


def check_command(args: argparse.Namespace) -> dict[str, Any]:
    cmd: dict[str, Any] = {"action": "check"}
    if args.trigger is not None:
        cmd["trigger"] = args.trigger
    return cmd


def render_check(result: dict[str, Any]) -> str:
    findings = result.get("findings", [])
    if not findings:
        return "nothing to check"
    rows = [[f["status"].upper(), f["check"], f["subject"], f["message"], f.get("fix") if f["status"] != "ok" else ""]
            for f in findings]
    counts = {s: sum(1 for f in findings if f["status"] == s) for s in ("ok", "warn", "error")}
    return (table(["STATUS", "CHECK", "SUBJECT", "MESSAGE", "FIX"], rows)
            + f"\n{counts['ok']} ok, {counts['warn']} warn, {counts['error']} error")


def check_failures(result: dict[str, Any]) -> list[str]:
    errors = [f for f in result.get("findings", []) if f.get("status") == "error"]
    return [f"check found {len(errors)} error(s)"] if errors else []


# ---------------------------------------------------------------------------------------------- prune


def add_prune_verb(verbs: Any) -> None:
    text = "delete images no stream tag, kept revision, young image or target needs (a dry run unless --confirm)"
    p = verbs.add_parser("prune", help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="example: imagestreams prune team/web    |    imagestreams prune team/web --confirm")
    p.add_argument("stream", nargs="?", help="one stream (default: every stream)")
    p.add_argument("--confirm", action="store_true", help="delete the candidates (default: only list them)")
    p.add_argument("--keep-tag-revisions", type=int, metavar="N", help="newest history digests kept per tag (3)")
    p.add_argument("--keep-younger-than-minutes", type=int, metavar="M", help="keep images pushed since (60)")
    p.add_argument("--cursor", help="continue from the next value of an earlier answer (one call only)")


def prune_command(args: argparse.Namespace) -> dict[str, Any]:
    cmd: dict[str, Any] = {"action": "prune"}
    for key, value in (("stream", args.stream), ("keepTagRevisions", args.keep_tag_revisions),
                       ("keepYoungerThanMinutes", args.keep_younger_than_minutes), ("cursor", args.cursor)):
        if value is not None:
            cmd[key] = value
    if args.confirm:
        cmd["confirm"] = True
    return cmd


MAX_PRUNE_CALLS = 10_000


def run_prune(args: argparse.Namespace, command: dict[str, Any],
              transport: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Call prune until it has no ``next`` (unless one ``--cursor`` was given), merging the answers."""
    if command.get("confirm"):
        command["actor"] = args.actor or caller_arn(args.region)
    merged: dict[str, Any] = {"candidates": [], "deleted": [], "reclaimableBytes": 0, "next": None}
    for _ in range(MAX_PRUNE_CALLS):
        answer = transport(command)
        if not answer.get("ok"):
            return answer
        result = answer["result"]
        for key in ("candidates", "deleted", "failures"):
            merged.setdefault(key, [])
            merged[key] += result.get(key) or []
        merged["reclaimableBytes"] += result.get("reclaimableBytes") or 0
        merged["next"] = result.get("next")
        stuck = command.get("confirm") and not result.get("deleted") and result.get("next") == command.get("cursor")
        if not merged["next"] or args.cursor is not None or stuck:
            break
        command = {**command, "cursor": merged["next"]}
    if not merged.get("failures"):
        merged.pop("failures", None)
    return {"ok": True, "result": merged}


def render_prune(result: dict[str, Any]) -> str:
    deleted = {(d["stream"], d["digest"]) for d in result.get("deleted") or []}
    rows = [[c["stream"], short(c["digest"]), when(c["pushedAt"]), c["sizeBytes"],
             "deleted" if (c["stream"], c["digest"]) in deleted else "candidate"] for c in result["candidates"]]
    out = [table(["STREAM", "DIGEST", "PUSHED (UTC)", "BYTES", "STATE"], rows) if rows else "nothing to prune"]
    megabytes = result["reclaimableBytes"] / 1e6
    if deleted:
        out.append(f"deleted {len(deleted)} of {len(rows)} candidate(s), {megabytes:.1f} MB listed")
    elif rows:
        out.append(f"{len(rows)} candidate(s), {megabytes:.1f} MB reclaimable; dry run: add --confirm to delete")
    for failure in result.get("failures") or []:
        out.append(f"  not deleted: {clean(failure['stream'])}@{short(failure['digest'])}: {clean(failure['reason'])}")
    if result.get("next"):
        out.append(f"more to do: --cursor {clean(result['next'])}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ transports


def caller_arn(region: str | None) -> str:
    from . import aws

    try:
        return aws.session().client("sts", region_name=region).get_caller_identity()["Arn"]
    except Exception:  # noqa: BLE001 - attribution is best effort; CloudTrail has the verified record
        return "unknown"


def invoke_function(function: str, command: dict[str, Any], region: str | None) -> dict[str, Any]:
    from . import aws

    client = aws.session().client("lambda", region_name=region, config=aws.client_config())
    out = client.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(command).encode())
    payload = json.loads(out["Payload"].read() or b"null")
    if out.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise RuntimeError(f"admin function failed: {message}")
    return payload


def run_in_process(command: dict[str, Any]) -> dict[str, Any]:
    from .admin import dispatch
    from .bootstrap import services

    return dispatch(services, command)


NO_STACK = ("no stack configured: run `imagestreams-local up` and paste the export lines it prints, or pass "
            "--function with the deployed admin function's name (the stack's AdminFunctionName output)")


def setup_problem(exc: BaseException, args: argparse.Namespace) -> str | None:
    """A one-line message with the fix for the setup problems a user hits first, or None for anything else.
    Matched by class name and error code so this module needs no botocore import."""
    name = type(exc).__name__
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if name == "NotConfigured":
        return NO_STACK
    if name == "NoRegionError":
        return "no AWS region: pass --region, or set AWS_DEFAULT_REGION (the playground's export lines set it)"
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return ("no AWS credentials: run `aws configure` or `aws sso login` (or set AWS_PROFILE); for the "
                "playground, paste the export lines `imagestreams-local up` prints")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError"):
        where = getattr(exc, "kwargs", {}).get("endpoint_url") or endpoint or "AWS"
        hint = ("is `imagestreams-local up` still running? Its export lines set AWS_ENDPOINT_URL" if endpoint
                else "check your network and --region")
        return f"cannot reach {where}: {hint}"
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error") or {}
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    operation = getattr(exc, "operation_name", "")
    if code == "ResourceNotFoundException" and operation == "Invoke":
        return (f"no function {args.function!r}: pass --function with the admin function's name or ARN (the "
                "stack's AdminFunctionName output), in the stack's region")
    if code == "ResourceNotFoundException":
        table = os.environ.get("TABLE_NAME", "?")
        return (f"table {table!r} not found (TABLE_NAME) in {os.environ.get('AWS_REGION') or 'this region'}: use "
                "the StreamsTableName output of the deployed stack, or restart `imagestreams-local up` and paste "
                "its export lines again")
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
                "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException"):
        return (f"access denied ({code}) on {operation or 'an AWS call'}: {message} - use credentials allowed to "
                "invoke the admin function (--function), or renew them (`aws sso login`)")
    return None


def _failed_fires(action: str, result: dict[str, Any]) -> list[str]:
    if action == "check":
        return check_failures(result)
    if action not in ("trigger.add", "deploy", "trigger.resume", "trigger.gates", "approve", "reject"):
        return []
    triggers = [result["trigger"]] if result.get("trigger") else result.get("triggers") or []
    return [f"trigger {clean(t['id'])}: fire failed: "
            f"{clean(t.get('lastError') or _gate_text(t.get('gate')) or t.get('status'))}"
            # a gate that says no is the answer, not a failure of the command: only a `deploy` it stopped failed
            for t in triggers if t.get("status") == "Failed" or (action == "deploy" and t.get("status") == "Blocked")]


def main(argv: Sequence[str] | None = None, *,
         transport: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command = command_from_args(args)
        precheck(command)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"imagestreams: error: {clean(exc)}", file=sys.stderr)
        return 2
    except ImageStreamsError as exc:
        print(f"imagestreams: {clean(exc.type)}: {clean(exc.message)}", file=sys.stderr)
        return 2
    try:
        if command["action"] in MUTATING:
            command["actor"] = args.actor or caller_arn(args.region)
        if transport is None:
            if args.function:
                def transport(cmd: dict[str, Any]) -> dict[str, Any]:
                    return invoke_function(args.function, cmd, args.region)
            else:
                if args.region:
                    os.environ["AWS_DEFAULT_REGION"] = args.region
                transport = run_in_process
        answer = run_prune(args, command, transport) if command["action"] == "prune" else transport(command)
    except KeyboardInterrupt:
        print("imagestreams: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback, for what a user can fix
        problem = setup_problem(exc, args)
        if problem is None and not isinstance(exc, RuntimeError):
            if os.environ.get("IMAGESTREAMS_DEBUG"):
                raise
            problem = (f"unexpected error {type(exc).__name__}: {exc} (set IMAGESTREAMS_DEBUG=1 to see where it "
                       "came from)")
        print(f"imagestreams: {clean(problem or exc)}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(answer, indent=2, sort_keys=True))
    elif answer.get("ok"):
        print(render(command["action"], answer["result"]))
    if not answer.get("ok"):
        if args.output != "json":
            print(f"imagestreams: {clean(answer['error']['type'])}: {clean(answer['error']['message'])}",
                  file=sys.stderr)
        return 1
    failed = _failed_fires(command["action"], answer["result"])
    for line in failed:
        print(f"imagestreams: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
