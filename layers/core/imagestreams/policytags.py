"""Policy tags: a stream tag that ImageStreams keeps on the best *candidate* tag of its own stream.

Candidates are the stream's live tags that are neither alias tags (they track another tag) nor policy tags
(they are derived themselves). Whenever a tag of the stream moves or is deleted — and on every reconciler run —
each policy picks its candidate again from the table's heads (no registry listing); when the choice changes, the
policy tag is re-pointed in ECR byte-exact (same manifest, same media type) and its move is recorded in the tag's
history with cause ``policy`` and actor ``policy:<kind>``. Its triggers then fire as for any other move.

Three kinds, one per policy tag:

``{"semver": RANGE, "prerelease": false}``
    Tags that parse as semantic versions ``MAJOR.MINOR.PATCH[-PRERELEASE]``, with an optional leading ``v``
    (``v1.2.3``), filtered by an npm-style range: ``^1.2``, ``~1.2.3``, ``1.2.x``, ``>=1.2.0 <2.0.0``,
    ``^1.2 || ^2.0``. The highest version wins. Pre-release tags (``1.3.0-rc.1``) are candidates only with
    ``"prerelease": true``; then they count as the versions they are (``1.3.0-rc.1`` is above ``1.2.9`` and below
    ``1.3.0``). A range that does not parse is refused.

``{"pattern": REGEX, "order": "numeric" | "alphabetical" | "pushed", "extract": GROUP}``
    Tags that *fully* match the regular expression (Python syntax, at most 256 characters), ordered by the named
    or numbered group ``extract`` (or by the whole tag without it): ``numeric`` compares it as a number (a tag
    whose value is not a number is no candidate), ``alphabetical`` as text, ``pushed`` orders by the time the
    image was pushed to ECR. The highest wins. ``order`` defaults to ``alphabetical``.
    So that no tag can make matching slow, patterns are restricted: no backreferences, look-arounds or
    conditionals; no repetition inside a repetition (``(a+)+``), no alternation inside a repetition
    (``(a|b)*``); repeat counts at most 128; and at most two variable repetitions (``*``, ``+``, ``?``,
    ``{m,n}``) that can match a common character (``[0-9]+\\.[0-9]+`` has none in common; ``.*-.*`` has two;
    ``.*-.*-.*`` has three: write ``[^-]*-[^-]*-.*`` instead).

``{"follow": TAG}``
    The named tag of the same stream (any tag, a policy tag too; at most 10 follows in a chain). With gates
    this is promotion: ``prod`` follows ``staging`` once the gates pass.

Ties (two tags with the same version, value or push time) go to the tag whose name sorts last. No candidate:
the policy tag stays where it is (or does not exist yet) and the policy reports ``NoCandidate``. A rollback of a
policy tag *holds* its policy (``held: true``) until ``policy.resume``, which evaluates at once. A tag that is an
alias cannot get a policy, and a policy tag cannot become an alias; copying onto a policy tag or untagging it is
refused too (its policy decides where it points: ``policy remove`` first makes it a plain tag again).

Standard library only; the semver library is imported when a semver policy is parsed.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from .errors import Invalid
from .model import StreamTag, fields, show, validate_tag

KINDS = ("semver", "pattern", "follow")
ORDERS = ("numeric", "alphabetical", "pushed")
STATUSES = ("Selected", "NoCandidate", "Gated", "Blocked")
FIELDS = {"semver": {"semver", "prerelease"}, "pattern": {"pattern", "order", "extract"}, "follow": {"follow"}}
MAX_PATTERN = 256
MAX_RANGE = 256
MAX_REPEAT_COUNT = 128  # no tag is longer
MAX_OVERLAPPING_REPEATS = 2  # variable repetitions sharing a character: O(n^2) steps at worst on a 128-char tag
MAX_FOLLOW_CHAIN = 10
TAG_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_VERSION_RE = re.compile(r"v?([0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?)")


class Candidate(NamedTuple):
    """A tag a policy may select: its digest and when its image was pushed (for order ``pushed``)."""

    tag: str
    digest: str
    pushed_at: datetime | None = None


class PolicySpec(NamedTuple):
    """A validated policy: ``kind`` and what it needs to select (``matcher``: a semver spec, a compiled regex, or
    the followed tag)."""

    kind: str
    raw: dict[str, Any]
    matcher: Any
    prerelease: bool = False
    order: str = "alphabetical"
    extract: str | int | None = None


# ------------------------------------------------------------------------------------------ parsing


def parse_policy(raw: Any) -> PolicySpec:
    """A policy object as given to ``policy.set``: exactly one kind, only its fields, each valid (``Invalid``)."""
    if not isinstance(raw, dict):
        raise Invalid(f"policy must be an object with one of {', '.join(KINDS)}, got {type(raw).__name__}")
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        raise Invalid(f"policy must have exactly one of {', '.join(KINDS)}"
                      + (f", got {', '.join(kinds)}" if kinds else ""))
    kind = kinds[0]
    unknown = set(raw) - FIELDS[kind]
    if unknown:
        raise Invalid(f"unknown {fields(unknown)} in a {kind} policy; accepted: {', '.join(sorted(FIELDS[kind]))}")
    try:
        return _compiled(kind, json.dumps(raw, sort_keys=True))
    except RecursionError:
        raise Invalid("policy is nested too deeply") from None


@functools.lru_cache(maxsize=512)
def _compiled(kind: str, text: str) -> PolicySpec:
    raw = json.loads(text)
    if kind == "semver":
        prerelease = raw.get("prerelease", False)
        if not isinstance(prerelease, bool):
            raise Invalid(f"policy.prerelease must be true or false, got {show(prerelease)}")
        return PolicySpec(kind, raw, _semver_spec(raw["semver"]), prerelease=prerelease)
    if kind == "pattern":
        regex = compile_pattern(raw["pattern"])
        order = raw.get("order", "alphabetical")
        if order not in ORDERS:
            raise Invalid(f"policy.order must be one of {', '.join(ORDERS)}, got {show(order)}")
        extract = _group(regex, raw["extract"]) if "extract" in raw else None
        return PolicySpec(kind, raw, regex, order=order, extract=extract)
    return PolicySpec(kind, raw, validate_tag(raw["follow"]))


def _semver_spec(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"policy.semver must be a non-empty npm-style range like ^1.2, got {show(value)}")
    if len(value) > MAX_RANGE or not value.isprintable():
        raise Invalid(f"policy.semver must be at most {MAX_RANGE} printable characters")
    import semantic_version

    try:
        spec = semantic_version.NpmSpec(value)
    except (ValueError, TypeError) as exc:
        raise Invalid(f"policy.semver {show(value)} is not an npm-style range (like ^1.2, ~1.2.3, 1.2.x, "
                      f">=1.2.0 <2.0.0, a || b): {str(exc)[:200]}") from None
    return spec


def _group(regex: re.Pattern[str], value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Invalid(f"policy.extract must name a group of the pattern, got {show(value)}")
    name = value[1:] if isinstance(value, str) and value.startswith("$") else value  # Flux writes $name
    if isinstance(name, str) and name.isdigit():
        name = int(name)
    if isinstance(name, int):
        if not 0 <= name <= regex.groups:
            raise Invalid(f"policy.extract {show(value)}: the pattern has {regex.groups} group(s)")
        return name
    if name not in regex.groupindex:
        named = ", ".join(sorted(regex.groupindex)) or "none"
        raise Invalid(f"policy.extract {show(value)} is not a group of the pattern (named groups: {named})")
    return name


def compile_pattern(value: Any) -> re.Pattern[str]:
    """A user's regular expression, refused (``Invalid``, naming the position) when it does not compile or could
    make matching slow (see the module's description)."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"policy.pattern must be a non-empty regular expression, got {show(value)}")
    if len(value) > MAX_PATTERN:
        raise Invalid(f"policy.pattern is {len(value)} characters long; at most {MAX_PATTERN}")
    if not value.isprintable():
        raise Invalid("policy.pattern must not contain control characters")
    from re import _parser  # type: ignore[attr-defined]  # the parser `re` itself uses (3.11+)

    try:
        parsed = _parser.parse(value, 0)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise Invalid(f"policy.pattern does not compile{where}: {exc.msg}") from None
    except RecursionError:
        raise Invalid("policy.pattern is nested too deeply") from None
    ignore_case = bool(parsed.state.flags & re.IGNORECASE)
    repeats: list[frozenset[str]] = []
    _check(parsed.data, value, repeats, ignore_case, in_repeat=False)
    tokens: list[tuple[str, frozenset[str]]] = []
    if _tokens(parsed.data, ignore_case, tokens):
        overlapping = _conflicts(tokens)
    else:  # an alternation: count every variable repetition sharing a character with another one
        overlapping = sum(1 for i, a in enumerate(repeats)
                          if any(a & b for j, b in enumerate(repeats) if j != i))
    if overlapping > MAX_OVERLAPPING_REPEATS:
        raise Invalid(f"policy.pattern has {overlapping} repetitions (*, +, ?, {{m,n}}) that can match the same "
                      f"characters; at most {MAX_OVERLAPPING_REPEATS} (anchor them with literals they cannot match, "
                      r"e.g. [0-9]+\.[0-9]+), so that no tag can make matching slow")
    try:
        return re.compile(value)
    except re.error as exc:  # pragma: no cover - the parser above accepted it
        raise Invalid(f"policy.pattern does not compile: {exc}") from None


_REFUSED = {
    "GROUPREF": "backreferences", "GROUPREF_EXISTS": "conditionals (?(...)...)", "ASSERT": "look-arounds",
    "ASSERT_NOT": "look-arounds",
}
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


def _check(items: Any, text: str, repeats: list[frozenset[str]], ignore_case: bool, *, in_repeat: bool) -> None:
    for op, arg in items:
        name = str(op)
        if name in _REFUSED:
            raise Invalid(f"policy.pattern uses {_REFUSED[name]}, which are not allowed (they can make matching "
                          "slow)")
        if name in _REPEATS:
            low, high, body = arg
            if in_repeat:
                raise Invalid("policy.pattern repeats something that itself repeats (like (a+)+), which is not "
                              "allowed: it can make matching slow")
            if low > MAX_REPEAT_COUNT or (high > MAX_REPEAT_COUNT and high != _maxrepeat()):
                raise Invalid(f"policy.pattern repeats something more than {MAX_REPEAT_COUNT} times; no tag is "
                              "longer than 128 characters")
            if low != high:
                repeats.append(_chars(body, ignore_case))
            _check(body, text, repeats, ignore_case, in_repeat=True)
        elif name == "BRANCH":
            if in_repeat:
                raise Invalid("policy.pattern repeats an alternation (like (a|b)+), which is not allowed: it can "
                              "make matching slow; use a character class ([ab]+) instead")
            for branch in arg[1]:
                _check(branch, text, repeats, ignore_case, in_repeat=in_repeat)
        elif name == "SUBPATTERN":
            _, add_flags, _, body = arg
            _check(body, text, repeats, ignore_case or bool(add_flags & re.IGNORECASE), in_repeat=in_repeat)
        elif name == "ATOMIC_GROUP":
            _check(arg, text, repeats, ignore_case, in_repeat=in_repeat)


def _tokens(items: Any, ignore_case: bool, out: list[tuple[str, frozenset[str]]]) -> bool:
    """The pattern as a flat sequence: ``("rep", chars)`` for a variable repetition, ``("one", chars)`` for a
    piece that must match (one or a fixed number of characters). False when it has an alternation."""
    for op, arg in items:
        name = str(op)
        if name == "BRANCH":
            return False
        if name in _REPEATS:
            low, high, body = arg
            out.append(("one" if low == high and low > 0 else "rep", _chars(body, ignore_case)))
        elif name == "SUBPATTERN":
            if not _tokens(arg[3], ignore_case or bool(arg[1] & re.IGNORECASE), out):
                return False
        elif name == "ATOMIC_GROUP":
            if not _tokens(arg, ignore_case, out):
                return False
        elif name != "AT":
            out.append(("one", _chars([(op, arg)], ignore_case)))
    return True


def _conflicts(tokens: list[tuple[str, frozenset[str]]]) -> int:
    """How many variable repetitions can trade characters with another one: two repetitions sharing a character,
    unless a piece that must match lies between them and the first cannot match any of its characters (then the
    first one's end is forced: it stops where that piece's character is)."""
    involved: set[int] = set()
    for i, (kind, chars) in enumerate(tokens):
        if kind != "rep":
            continue
        for j in range(i + 1, len(tokens)):
            other_kind, other = tokens[j]
            if other_kind == "one" and not (other & chars):
                break  # a separator this repetition cannot cross
            if other_kind == "rep" and other & chars:
                involved |= {i, j}
    return len(involved)


def _maxrepeat() -> int:
    from re import _constants  # type: ignore[attr-defined]

    return int(_constants.MAXREPEAT)


_CATEGORIES = {
    "CATEGORY_DIGIT": frozenset("0123456789"),
    "CATEGORY_WORD": frozenset(c for c in TAG_ALPHABET if c.isalnum() or c == "_"),
    "CATEGORY_SPACE": frozenset(),
}


def _category(name: str) -> frozenset[str]:
    if name.startswith("CATEGORY_NOT_"):
        return TAG_ALPHABET - _CATEGORIES.get("CATEGORY_" + name[len("CATEGORY_NOT_"):], frozenset())
    return _CATEGORIES.get(name, TAG_ALPHABET)


def _chars(items: Any, ignore_case: bool) -> frozenset[str]:
    """The tag characters a repeated piece can match (over-approximated when unsure: then it counts as overlapping
    more, never less)."""
    out: set[str] = set()
    for op, arg in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL"):
            char = {chr(arg)} & TAG_ALPHABET
            out |= char if name == "LITERAL" else TAG_ALPHABET - char
        elif name == "ANY":
            out |= TAG_ALPHABET
        elif name == "CATEGORY":
            out |= _category(str(arg))
        elif name == "IN":
            out |= _class(arg)
        elif name == "SUBPATTERN":
            out |= _chars(arg[3], ignore_case)
        elif name == "AT":
            continue
        else:
            out |= TAG_ALPHABET
    if ignore_case:
        out |= {c.swapcase() for c in out} & TAG_ALPHABET
    return frozenset(out)


def _class(items: Any) -> frozenset[str]:
    out: set[str] = set()
    negate = False
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            out.add(chr(arg))
        elif name in ("RANGE", "RANGE_UNI_IGNORE"):
            out |= {c for c in TAG_ALPHABET if arg[0] <= ord(c) <= arg[1]}
        elif name == "CATEGORY":
            out |= _category(str(arg))
        else:
            out |= TAG_ALPHABET
    chars = frozenset(out) & TAG_ALPHABET
    return TAG_ALPHABET - chars if negate else chars


# ---------------------------------------------------------------------------------------- selection


@functools.lru_cache(maxsize=8192)
def _version(tag: str) -> Any:
    """The semantic version a tag names (``1.2.3``, ``v1.2.3-rc.1``), or None."""
    match = _VERSION_RE.fullmatch(tag)
    if match is None:
        return None
    import semantic_version

    try:
        return semantic_version.Version(match[1])
    except ValueError:
        return None


def _semver_key(spec: PolicySpec, tag: str) -> Any:
    version = _version(tag)
    if version is None:
        return None
    if version.prerelease:
        if not spec.prerelease:
            return None
        return version if _natural(spec.matcher.clause).match(version) else None
    return version if version in spec.matcher else None


@functools.lru_cache(maxsize=256)
def _natural(clause: Any) -> Any:
    """The range with pre-releases compared as the versions they are (npm's ``includePrerelease``)."""
    from semantic_version import base

    if isinstance(clause, base.Range):
        return base.Range(clause.operator, clause.target, prerelease_policy=base.Range.PRERELEASE_NATURAL,
                          build_policy=clause.build_policy)
    if isinstance(clause, (base.AllOf, base.AnyOf)):
        return type(clause)(*(_natural(c) for c in clause.clauses))
    return clause


def _pattern_key(spec: PolicySpec, candidate: Candidate) -> Any:
    match = spec.matcher.fullmatch(candidate.tag)
    if match is None:
        return None
    if spec.order == "pushed":
        return candidate.pushed_at.timestamp() if candidate.pushed_at else None
    value = match.group(spec.extract) if spec.extract is not None else candidate.tag
    if value is None:
        return None  # the group took no part in the match
    if spec.order == "numeric":
        if not _NUMBER_RE.fullmatch(value):
            return None
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the regex admits only numbers
            return None
    return value


def select(spec: PolicySpec, candidates: list[Candidate]) -> tuple[str, str] | None:
    """The best candidate's ``(tag, digest)`` under ``spec``, or None when no candidate qualifies. The caller
    passes the candidates the kind may see (for ``follow``: every live tag)."""
    if spec.kind == "follow":
        found = next((c for c in candidates if c.tag == spec.matcher), None)
        return (found.tag, found.digest) if found else None
    best: tuple[Any, str, str] | None = None
    for candidate in candidates:
        if spec.kind == "semver":
            key = _semver_key(spec, candidate.tag)
        else:
            key = _pattern_key(spec, candidate)
        if key is None:
            continue
        if best is None or (key, candidate.tag) > (best[0], best[1]):
            best = (key, candidate.tag, candidate.digest)
    return (best[1], best[2]) if best else None


# ------------------------------------------------------------------------------------------- policy


class Policy(NamedTuple):
    """A policy tag as stored: what it selects by, its gates (gate objects as given), whether a rollback holds it,
    and what it selected last (``status``, ``selected``, ``digest``, ``gate``). ``gate_state`` belongs to the
    gates (the digest waiting, approvals)."""

    stream_tag: StreamTag
    policy: dict[str, Any]
    gates: tuple[dict[str, Any], ...] = ()
    held: bool = False
    status: str = "NoCandidate"
    selected: str | None = None
    digest: str | None = None
    gate: dict[str, Any] | None = None
    gate_state: dict[str, Any] | None = None
    rev: int = 0
    at: datetime | None = None

    @property
    def spec(self) -> PolicySpec:
        return parse_policy(self.policy)

    @property
    def kind(self) -> str:
        return next((k for k in KINDS if k in self.policy), "follow")

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": str(self.stream_tag),
            "policy": self.policy,
            "gates": list(self.gates),
            "held": self.held,
            "status": self.status,
            "selected": self.selected,
            "digest": self.digest,
            "gate": self.gate,
        }

    def outcome(self) -> tuple[Any, ...]:
        """What an evaluation decides (compared to skip writes that would change nothing)."""
        return self.status, self.selected, self.digest, self.gate, self.gate_state
