"""The bad-input corpus: malformed or hostile ingest events, admin commands and trigger targets.

Every entry must get a clear error (``Invalid`` for events; an ``{"ok": false}`` answer for commands), change
nothing (zero writes, zero ECR or ECS calls) and raise nothing unexpected. Used by tests/unit/test_corpus.py and
``make corpus`` (bench/corpus.py), which prints the count.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

DIGEST = "sha256:" + "a" * 64
HUGE = "a" * 10_000

# values that are never a valid repository, tag, digest, name or id
HOSTILE_STRINGS = [
    "", " ", HUGE, "wéb", "网站", "web\n", "we\x00b", "web\x1b[31m", "../etc/passwd", "a/b/../c", "/abs", "a//b",
    "web;rm -rf /", "$(id)", "`id`", "web' OR '1'='1", "%2e%2e%2f", "\\..\\", "web\u202e", "\ud83d\ude00",
]
WRONG_TYPES = [None, 1, 1.5, True, [], {}, ["web"], {"name": "web"}]
BAD_DIGESTS = [
    "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64, "sha256:" + "g" * 64, "md5:" + "a" * 32,
    "sha512:" + "a" * 128, "a" * 64, "sha256:", "sha256" + "a" * 64, " sha256:" + "a" * 64,
]


def valid_event() -> dict[str, Any]:
    return {
        "version": "0", "id": "e1", "detail-type": "ECR Image Action", "source": "aws.ecr",
        "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"result": "SUCCESS", "repository-name": "team/web", "image-digest": DIGEST,
                   "action-type": "PUSH", "image-tag": "latest"},
    }


def bad_events() -> Iterator[tuple[str, Any]]:
    for value in [None, [], "event", 7, True]:
        yield f"event is {value!r}", value
    for key in ("source", "detail-type", "detail"):
        event = valid_event()
        del event[key]
        yield f"missing {key}", event
    for value in ["aws.s3", "AWS.ECR", "aws.ecr ", "", 5, None, ["aws.ecr"], "aws.ecs"]:
        yield f"source {value!r}", {**valid_event(), "source": value}
    for value in ["ECR Image Scan", "ECR Pull Through Cache Action", "", None, ["ECR Image Action"],
                  "ecr image action"]:
        yield f"detail-type {value!r}", {**valid_event(), "detail-type": value}
    for value in ["PUSH", [], 1, None]:
        yield f"detail {value!r}", {**valid_event(), "detail": value}
    for field, values in {
        "repository-name": HOSTILE_STRINGS + WRONG_TYPES + ["Team/Web", "w", "team/web/", "-web", "web-"],
        "image-digest": BAD_DIGESTS + [1, True, [], {}],
        "image-tag": [s for s in HOSTILE_STRINGS if s] + [1, True, [], {}, "-latest", "a" * 129, "lat est"],
        "action-type": ["PULL", "push", "", None, 1, ["PUSH"], "REPLICATE"],
        "result": [None, 1, [], {}],
    }.items():
        for value in values:
            event = copy.deepcopy(valid_event())
            event["detail"][field] = value
            yield f"detail.{field} {value!r:.40}", event
    event = valid_event()
    del event["detail"]["repository-name"]
    yield "missing detail.repository-name", event


ECS = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def bad_targets() -> Iterator[tuple[str, Any]]:
    for value in WRONG_TYPES + ["ecs", "prod/web:web"]:
        yield f"target {value!r}", value
    for value in ["k8s", "ECS", "", None, 1, "pod"]:
        yield f"target.type {value!r}", {**ECS, "type": value}
    yield "ecs target with extra field", {**ECS, "role": "admin"}
    for field in ("cluster", "service", "container"):
        broken = dict(ECS)
        del broken[field]
        yield f"ecs target without {field}", broken
        for value in HOSTILE_STRINGS + WRONG_TYPES[:6] + ["a:b", "a b"]:
            yield f"ecs target {field}={value!r:.30}", {**ECS, field: value}
    eks = {"type": "eks", "cluster": "prod", "namespace": "apps", "kind": "Deployment", "name": "web",
           "container": "web"}
    for field, values in {"namespace": ["../kube-system", "Apps", "a_b", "", "a" * 64, 1],
                          "kind": ["Pod", "deployment", "Job", "", None], "name": ["web/x", "Web", "", "a b"],
                          "container": ["Web", "a.b", "", "web\n"], "cluster": ["", "-x", "a" * 101, "a/b"],
                          "discover": [False, "true", 1]}.items():
        for value in values:
            yield f"eks target {field}={value!r:.30}", {**eks, field: value}
    yield "eks discovery with extra field", {"type": "eks", "cluster": "prod", "discover": True, "namespace": "x"}
    for value in ["a b", "", "x" * 65, "arn:aws:lambda:us-east-1:123:function:f", 1, "f;id"]:
        yield f"lambda function {value!r:.30}", {"type": "lambda", "function": value}
    for value in ["1", "a b", "", "$LATEST"]:
        yield f"lambda alias {value!r}", {"type": "lambda", "function": "f", "alias": value}


def base_bad_commands() -> Iterator[tuple[str, Any]]:
    for value in [None, [], "describe", 1, True]:
        yield f"command {value!r}", value
    for value in ["nope", "", None, 1, "DESCRIBE", "trigger.delete", "describe ", ["describe"]]:
        yield f"action {value!r}", {"action": value}
    yield "describe without stream", {"action": "describe"}
    yield "describe with unknown field", {"action": "describe", "stream": "team/web", "verbose": True}
    for value in HOSTILE_STRINGS + WRONG_TYPES:
        yield f"describe stream={value!r:.30}", {"action": "describe", "stream": value}
        yield f"history target={value!r:.30}", {"action": "history", "target": value}
        yield f"trigger.list from={value!r:.30}", {"action": "trigger.list", "from": value}
        yield f"tag source={value!r:.30}", {"action": "tag", "source": value, "target": "team/web:prod"}
    for value in ["", " ", HUGE, "web\n", "we\x00b", "web\x1b[31m", "web\u202e", "\ud83d", *WRONG_TYPES]:
        yield f"actor={value!r:.30}", {"action": "import", "target": "team/web:latest", "actor": value}
    for value in [0, -1, "5", 1.5, True, None, []]:
        yield f"history limit={value!r:.30}", {"action": "history", "target": "team/web:latest", "limit": value}
    for value in BAD_DIGESTS:
        yield f"tag source digest {value!r:.30}", {"action": "tag", "source": f"team/web@{value}",
                                                   "target": "team/web:prod"}
        yield f"rollback to {value!r:.30}", {"action": "rollback", "target": "team/web:latest", "to": value}
    for value in [[], 5, {}, ["team/web:a"] * 51, ["team/web:a", "team/web:a"], "team/api:prod", "team/web:latest",
                  "docker.io/team/web:prod", "team/web@" + DIGEST]:
        yield f"tag target={value!r:.30}", {"action": "tag", "source": "team/web:latest", "target": value}
    for value in ["yes", 1, None, []]:
        yield f"tag alias={value!r}", {"action": "tag", "source": "team/web:latest", "target": "team/web:x",
                                       "alias": value}
        yield f"untag keep_in_registry={value!r}", {"action": "untag", "target": "team/web:latest",
                                                    "keep_in_registry": value}
        yield f"trigger.add paused={value!r}", {"action": "trigger.add", "from": "team/web:latest", "target": ECS,
                                                "paused": value}
    for value in [0, -1, "1", True, 1.0]:
        yield f"rollback steps={value!r}", {"action": "rollback", "target": "team/web:latest", "steps": value}
    yield "rollback both target and trigger", {"action": "rollback", "target": "team/web:latest",
                                               "trigger": "tr-000000000000"}
    yield "rollback with neither", {"action": "rollback"}
    yield "rollback to and steps", {"action": "rollback", "target": "team/web:latest", "steps": 1, "to": DIGEST}
    for action in ("trigger.remove", "trigger.pause", "trigger.resume", "deploy"):
        yield f"{action} without selector", {"action": action}
        yield f"{action} with both selectors", {"action": action, "id": "tr-000000000000", "from": "team/web:latest"}
        for value in ["tr-", "tr-XYZ000000000", "../x", "", 1, None, "tr-0000000000000", HUGE]:
            yield f"{action} id={value!r:.30}", {"action": action, "id": value}
    for name, target in bad_targets():
        yield f"trigger.add {name}", {"action": "trigger.add", "from": "team/web:latest", "target": target}
    yield "trigger.add without from", {"action": "trigger.add", "target": ECS}
    yield "trigger.add discovery with a from", {"action": "trigger.add", "from": "team/web:latest",
                                                "target": {"type": "eks", "cluster": "prod", "discover": True}}
    yield "trigger.add in another account", {"action": "trigger.add", "from": "team/web:latest", "target": {
        **ECS, "cluster": "arn:aws:ecs:us-east-1:999999999999:cluster/prod"}}
    yield "trigger.add outside the allow-list", {"action": "trigger.add", "from": "team/web:latest",
                                                 "target": {**ECS, "cluster": "payments"}}
    yield "import with target and stream", {"action": "import", "target": "team/web:latest", "stream": "team/web"}
    yield "import with neither", {"action": "import"}


# f-outside: outside text, oversized annotations, alternate target spellings ---------------------------------

# Text that reaches us from outside (workload image fields, API messages, event reasons, platform strings):
# stored at most 1 KB, rendered without control characters.
HOSTILE_OUTSIDE_TEXT = [
    "evil\x1b[2K\r\ntr-000000000000  team/web:latest  ecs prod/web:web  Deployed  no",  # erase line + fake row
    "nginx\x1b]0;pwned\x07:latest", "web\u202egnp.exe", "a\u2028b\u2029c", "c1\x85\x9b31m", "nul\x00byte",
    "tab\there", "lone \ud83d surrogate", "linux/" + "\u00e9" * 225_000, "x" * 450_000,
]
# image.openshift.io/triggers values that must be one problem each (not one per entry), never thousands
_ENTRY = ('{"from": {"kind": "ImageStreamTag", "name": "team/web:latest"}, '
          '"fieldPath": "spec.template.spec.containers[?(@.name==\\"nope\\")].image"}')
BAD_ANNOTATIONS = [
    "[" + ",".join(['{"from": 1}'] * 21_000) + "]",  # ~250 KiB of bad entries
    "[" + ",".join([_ENTRY] * 1890) + "]",  # ~255 KiB of well-formed entries naming a missing container
    "[" + ",".join([_ENTRY] * 101) + "]",  # small, but more entries than any pod has containers
    " " * 200_000 + "[]", "[" * 100_000,
    "[" * 20_000,  # small enough to parse, deep enough to exhaust the JSON parser's recursion
]
# Spellings of one target: each group must give one trigger id (stack account 123456789012, us-east-1)
_ECS_ARN = "arn:aws:ecs:us-east-1:123456789012"
_FN_ARN = "arn:aws:lambda:us-east-1:123456789012:function"
ALTERNATE_SPELLINGS = [
    [{"type": "ecs", "cluster": c, "service": s, "container": "web"}
     for c in ("prod", f"{_ECS_ARN}:cluster/prod")
     for s in ("web", f"{_ECS_ARN}:service/prod/web", f"{_ECS_ARN}:service/web")],
    [{"type": "lambda", "function": f} for f in ("resize", "123456789012:function:resize", f"{_FN_ARN}:resize")],
    [{"type": "lambda", "function": "resize", "alias": "live"}, {"type": "lambda", "function": "resize:live"},
     {"type": "lambda", "function": "123456789012:function:resize:live"},
     {"type": "lambda", "function": f"{_FN_ARN}:resize:live"},
     {"type": "lambda", "function": f"{_FN_ARN}:resize", "alias": "live"}],
]


def _f_outside_commands() -> Iterator[tuple[str, Any]]:
    refused = {
        "ecs service ARN of another cluster": {**ECS, "service": f"{_ECS_ARN}:service/payments/web"},
        "ecs cluster field holding a service ARN": {**ECS, "cluster": f"{_ECS_ARN}:service/prod/web"},
        "ecs service field holding a cluster ARN": {**ECS, "service": f"{_ECS_ARN}:cluster/prod"},
        "ecs service ARN in another account": {
            **ECS, "service": "arn:aws:ecs:us-east-1:999999999999:service/prod/web"},
        "ecs cluster ARN in another region": {**ECS, "cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/prod"},
        "lambda partial ARN in another account": {"type": "lambda", "function": "999999999999:function:resize"},
        "lambda version qualifier": {"type": "lambda", "function": "resize:3"},
        "lambda ARN with version qualifier": {"type": "lambda", "function": f"{_FN_ARN}:resize:3"},
        "lambda $LATEST qualifier": {"type": "lambda", "function": "resize:$LATEST"},
        "lambda qualifier and alias disagree": {"type": "lambda", "function": "resize:live", "alias": "beta"},
    }
    for name, target in refused.items():
        yield f"trigger.add {name}", {"action": "trigger.add", "from": "team/web:latest", "target": target}



# c-registry ------------------------------------------------------------------------------------------------------
# References naming a registry other than the stack's own (another account, another region, not ECR at all), and
# alias structures beyond the documented limits. The registry commands are refused in any world (with the stack's
# registry unknown, no registry-qualified reference is accepted), so they join bad_commands(); the alias commands
# need a world holding a full-depth chain and a tag with the maximum of aliases: alias_limit_world() builds it,
# and tests/unit/test_registry_refs.py runs them there.

OWN_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
FOREIGN_REGISTRIES = [
    "111111111111.dkr.ecr.eu-west-1.amazonaws.com",  # another account, another region
    "111111111111.dkr.ecr.us-east-1.amazonaws.com",  # another account, same region
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com",  # this account, another region
    "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn",  # another partition
    "docker.io", "ghcr.io", "localhost:5000", "public.ecr.aws",
]


def registry_bad_commands() -> Iterator[tuple[str, Any]]:
    for host in FOREIGN_REGISTRIES:
        ref = f"{host}/team/web:latest"
        yield f"tag source in {host}", {"action": "tag", "source": ref, "target": "team/web:prod"}
        yield f"tag source digest in {host}", {"action": "tag", "source": f"{host}/team/web@{DIGEST}",
                                               "target": "team/web:prod"}
        yield f"tag target in {host}", {"action": "tag", "source": "team/web:latest",
                                        "target": [f"{host}/team/web:prod"]}
        yield f"untag in {host}", {"action": "untag", "target": ref}
        yield f"rollback in {host}", {"action": "rollback", "target": ref, "to": DIGEST}
        yield f"import target in {host}", {"action": "import", "target": ref}
        yield f"import stream in {host}", {"action": "import", "stream": f"{host}/team/web"}
        yield f"describe in {host}", {"action": "describe", "stream": f"{host}/team/web"}
        yield f"history in {host}", {"action": "history", "target": ref}
        yield f"trigger.add from {host}", {"action": "trigger.add", "from": ref, "target": ECS}
        yield f"trigger.list from {host}", {"action": "trigger.list", "from": ref}
        yield f"trigger.pause from {host}", {"action": "trigger.pause", "from": ref}
        yield f"deploy from {host}", {"action": "deploy", "from": ref}


ALIAS_CHAIN = [f"a{i}" for i in range(1, 11)]  # latest <- a1 <- a2 ... <- a10: ten links, the most followed
BRANCH = [f"b{i}" for i in range(1, 6)]  # base <- b1 ... <- b5
MANY = [f"m{i:03d}" for i in range(100)]  # 100 tags tracking "many": the most one tag may have


def alias_limit_world(streams: Any, registry: Any) -> None:
    """Give team/web a full-depth alias chain, a five-deep branch and a tag with the maximum of aliases."""
    from itertools import pairwise

    from imagestreams.model import ImageRef, StreamTag

    for tag in ("latest", "base", "many"):
        registry.set("team/web", tag, DIGEST)
        streams.sync(StreamTag("team/web", tag))
    for chain in (["latest", *ALIAS_CHAIN], ["base", *BRANCH]):
        for source, target in pairwise(chain):
            streams.tag(ImageRef("team/web", source), [StreamTag("team/web", target)], alias=True)
    streams.tag(ImageRef("team/web", "many"), [StreamTag("team/web", t) for t in MANY], alias=True)


def alias_bad_commands() -> Iterator[tuple[str, Any]]:
    yield "alias one link below a full-depth chain", {"action": "tag", "source": "team/web:a10",
                                                      "target": "team/web:a11", "alias": True}
    yield "alias a tag with a deep branch below a deep chain", {"action": "tag", "source": "team/web:a6",
                                                                "target": "team/web:base", "alias": True}
    yield "alias cycle through a chain", {"action": "tag", "source": "team/web:a10", "target": "team/web:latest",
                                          "alias": True}
    yield "alias the 101st tag", {"action": "tag", "source": "team/web:many", "target": "team/web:one-more",
                                  "alias": True}
    yield "alias two more tags to a tag with 100", {"action": "tag", "source": "team/web:many",
                                            "target": [f"team/web:x{i}" for i in range(2)], "alias": True}
    yield "roll an alias back on its own", {"action": "rollback", "target": "team/web:a3"}



# ---------------------------------------------------------------------------------------------------------------
# Cross-account targets: a target's roleArn / externalId that are malformed, or name a role
# or account the stack does not allow.

def xacct_bad_commands() -> Iterator[tuple[str, Any]]:
    base = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}
    good_role = "arn:aws:iam::222222222222:role/imagestreams-target"
    roles = {
        "roleArn not a role ARN": "arn:aws:iam::222222222222:user/deployer",
        "roleArn with a short account": "arn:aws:iam::2222:role/imagestreams-target",
        "roleArn of another service": "arn:aws:sts::222222222222:assumed-role/x/y",
        "roleArn empty": "",
        "roleArn a bare name": "imagestreams-target",
        "roleArn with a role name of 65 characters": "arn:aws:iam::222222222222:role/" + "r" * 65,
        "roleArn with a newline": good_role + "\n",
        "roleArn with a space": "arn:aws:iam::222222222222:role/image streams",
        "roleArn of 3000 characters": "arn:aws:iam::222222222222:role/" + "p/" * 1500 + "r",
        "roleArn a number": 222222222222,
        "roleArn a list": [good_role],
        "roleArn null with externalId": None,
    }
    for name, role in roles.items():
        target = {**base, "roleArn": role}
        if role is None:
            target["externalId"] = "abc"
        yield f"xacct: {name}", {"action": "trigger.add", "from": "team/web:latest", "target": target}
    externals = {
        "externalId too long": "x" * 1225,
        "externalId of one character": "x",
        "externalId with a control character": "abc\x07def",
        "externalId with a newline": "abc\ndef",
        "externalId with a space": "abc def",
        "externalId not a string": 12345,
        "externalId empty": "",
    }
    for name, external in externals.items():
        yield f"xacct: {name}", {"action": "trigger.add", "from": "team/web:latest",
                                 "target": {**base, "roleArn": good_role, "externalId": external}}
    yield "xacct: externalId without roleArn", {"action": "trigger.add", "from": "team/web:latest",
                                                "target": {**base, "externalId": "abc123"}}
    yield "xacct: lambda target with a malformed roleArn", {
        "action": "trigger.add", "from": "team/web:latest",
        "target": {"type": "lambda", "function": "svc", "roleArn": "arn:aws:iam::x:role/r"}}
    yield "xacct: eks target with a malformed roleArn", {
        "action": "trigger.add", "from": "team/web:latest",
        "target": {"type": "eks", "cluster": "c", "namespace": "n", "kind": "Deployment", "name": "w",
                   "container": "w", "roleArn": "arn:aws:iam::222222222222:role/"}}
    # well formed, but not allowed by this stack (no AllowedTargetAccounts / TargetRolePattern): Forbidden
    yield "xacct: a role in an account not allowed", {"action": "trigger.add", "from": "team/web:latest",
                                                      "target": {**base, "roleArn": good_role}}
    yield "xacct: a role in this stack's own account", {
        "action": "trigger.add", "from": "team/web:latest",
        "target": {**base, "roleArn": "arn:aws:iam::123456789012:role/imagestreams-target"}}
    yield "xacct: a service ARN of another account than the role's", {
        "action": "trigger.add", "from": "team/web:latest",
        "target": {**base, "service": "arn:aws:ecs:us-east-1:333333333333:service/prod/web", "roleArn": good_role}}



# ------------------------------------------------------------------------------------------------- gates

BAD_GATES: list[Any] = [
    "approval", {"type": "approval"}, [None], ["approval"], [{"type": "nope"}], [{"type": None}], [{}],
    [{"type": "Approval"}], [{"type": "approval", "who": "me"}], [{"type": "approval"}, {"type": "approval"}],
    [{"type": "scan"}], [{"type": "scan", "blockAt": "SEVERE"}], [{"type": "scan", "blockAt": "critical"}],
    [{"type": "scan", "blockAt": ["CRITICAL"]}], [{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": -1}],
    [{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": 0}], [{"type": "scan", "blockAt": "HIGH",
                                                                  "timeoutMinutes": 1.5}],
    [{"type": "scan", "blockAt": "HIGH", "timeoutMinutes": True}], [{"type": "scan", "blockAt": "HIGH",
                                                                     "timeoutMinutes": 10**9}],
    [{"type": "signature", "timeoutMinutes": "30"}], [{"type": "signature", "blockAt": "HIGH"}],
    [{"type": "verified", "triggers": "tr-0123456789ab", "minutes": 5}],
    [{"type": "verified", "triggers": [], "minutes": 5}],
    [{"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": -5}],
    [{"type": "verified", "triggers": ["tr-0123456789ab"]}],
    [{"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 5}],  # names no existing trigger
    [{"type": "verified", "triggers": ["tr-" + "a" * 40], "minutes": 5}],
    [{"type": "verified", "triggers": [1], "minutes": 5}],
    [{"type": "verified", "triggers": ["tr-0123456789ab"] * 21, "minutes": 5}],
    [{"type": "approval"}] + [{"type": "verified", "triggers": ["tr-0123456789ab"], "minutes": 1}] * 10,
] + [[{"type": "verified", "triggers": [s], "minutes": 1}] for s in HOSTILE_STRINGS]


def gate_bad_commands() -> Iterator[tuple[str, Any]]:
    for i, gates in enumerate(BAD_GATES):
        yield f"gates: trigger.add with bad gates #{i}", {"action": "trigger.add", "from": "team/web:latest",
                                                           "target": ECS, "gates": gates}
        yield f"gates: trigger.gates with bad gates #{i}", {"action": "trigger.gates", "id": "tr-0123456789ab",
                                                             "gates": gates}
    yield "gates: trigger.gates of an unknown trigger", {"action": "trigger.gates", "id": "tr-0123456789ab",
                                                         "gates": []}
    yield "gates: trigger.gates without id", {"action": "trigger.gates", "gates": []}
    yield "gates: trigger.gates unknown field", {"action": "trigger.gates", "id": "tr-0123456789ab", "gates": [],
                                                 "force": True}
    yield "gates: discovery target with gates", {"action": "trigger.add", "from": "*", "gates": [],
                                                 "target": {"type": "eks", "cluster": "prod", "discover": True}}
    for value in ["yes", 1, None, [], {}]:
        yield f"gates: deploy force {value!r}", {"action": "deploy", "from": "team/web:latest", "force": value}
    for verb in ("approve", "reject"):
        yield f"gates: {verb} without digest", {"action": verb, "id": "tr-0123456789ab"}
        yield f"gates: {verb} without id or target", {"action": verb, "digest": DIGEST}
        yield f"gates: {verb} with id and target", {"action": verb, "id": "tr-0123456789ab",
                                                    "target": "team/web:prod", "digest": DIGEST}
        yield f"gates: {verb} of an unknown trigger", {"action": verb, "id": "tr-0123456789ab", "digest": DIGEST}
        yield f"gates: {verb} unknown field", {"action": verb, "id": "tr-0123456789ab", "digest": DIGEST,
                                               "gates": []}
        for digest in BAD_DIGESTS + [None, 1, [], "latest"]:
            yield f"gates: {verb} digest {digest!r}", {"action": verb, "id": "tr-0123456789ab", "digest": digest}
        for value in HOSTILE_STRINGS + WRONG_TYPES:
            yield f"gates: {verb} id {value!r:.40}", {"action": verb, "id": value, "digest": DIGEST}
            if value:
                yield f"gates: {verb} target {value!r:.40}", {"action": verb, "target": value, "digest": DIGEST}
    yield "gates: approve with a reason", {"action": "approve", "id": "tr-0123456789ab", "digest": DIGEST,
                                           "reason": "fine"}
    for reason in [1, None, [], {}, "x" * 2000, "bad\x00reason", "line\nbreak", "\x1b[31mred"]:
        yield f"gates: reject reason {reason!r:.40}", {"action": "reject", "id": "tr-0123456789ab",
                                                      "digest": DIGEST, "reason": reason}


def bad_gate_events() -> Iterator[tuple[str, Any]]:
    """Gate events (ECR Image Scan, Inspector2 Scan, Signer Job Status Change) and gate clock messages that the
    gates function refuses (``Invalid``), touching nothing."""
    scan = {"source": "aws.ecr", "detail-type": "ECR Image Scan", "account": "123456789012", "region": "us-east-1",
            "detail": {"scan-status": "COMPLETE", "repository-name": "team/web", "image-digest": DIGEST}}
    for value in [None, [], "event", 7]:
        yield f"gate event is {value!r}", value
    for value in ["aws.s3", "aws.ecs", None, "AWS.ECR"]:
        yield f"gate event source {value!r}", {**scan, "source": value}
    for value in ["ECR Image Action", "Inspector2 Finding", None, ""]:
        yield f"gate event detail-type {value!r}", {**scan, "detail-type": value}
    for value in ["x", None, [], 5]:
        yield f"gate event detail {value!r}", {**scan, "detail": value}
    for value in HOSTILE_STRINGS + WRONG_TYPES + ["arn:aws:ecr:us-east-1:123456789012:repo/team/web",
                                                  "arn:aws:s3:::bucket/team/web"]:
        yield f"gate event repository-name {value!r:.40}", {**scan, "detail": {**scan["detail"],
                                                                               "repository-name": value}}
    for value in BAD_DIGESTS + [None, 1, []]:
        yield f"gate event image-digest {value!r}", {**scan, "detail": {**scan["detail"], "image-digest": value}}
    inspector = {**scan, "source": "aws.inspector2", "detail-type": "Inspector2 Scan", "detail": {
        **scan["detail"], "repository-name": "arn:aws:ecr:us-east-1:123456789012:repository/team/web"}}
    yield "gate event Inspector2 about another account", {
        **inspector, "detail": {**inspector["detail"],
                                "repository-name": "arn:aws:ecr:us-east-1:999999999999:repository/team/web"}}
    yield "gate event Inspector2 from another region", {**inspector, "region": "eu-west-1"}


def bad_clock_messages() -> Iterator[tuple[str, Any]]:
    good = {"kind": "trigger", "id": "tr-0123456789ab", "digest": DIGEST, "due": "2026-01-01T00:00:00Z"}
    for value in [None, [], "x", 1]:
        yield f"clock message {value!r}", value
    for key in ("kind", "id", "digest", "due"):
        yield f"clock message without {key}", {k: v for k, v in good.items() if k != key}
    for value in ["stream", None, 1, "TRIGGER"]:
        yield f"clock kind {value!r}", {**good, "kind": value}
    for value in HOSTILE_STRINGS[:8] + WRONG_TYPES:
        yield f"clock id {value!r:.40}", {**good, "id": value}
        yield f"clock policy target {value!r:.40}", {"kind": "policy", "target": value, "digest": DIGEST,
                                                     "due": good["due"]}
    for value in ["tomorrow", "2026-01-01T00:00:00", 1, None, "2026-13-01T00:00:00Z"]:
        yield f"clock due {value!r}", {**good, "due": value}



# ---------------------------------------------------------------------------------------------------------------
# Policy tags: hostile regular expressions, ranges that do not parse, unknown fields, gates that
# cannot be parsed. Refused in any world, before anything is read or written. The alias <-> policy conflicts need a
# world with an alias and a policy tag: policy_world() builds it and tests/unit/test_policy_tags.py runs
# policy_conflict_commands() there.

# Each is refused: catastrophic backtracking shapes, features that allow it, compile errors, limits.
HOSTILE_PATTERNS = [
    r"(a+)+", r"(a*)*b", r"(a|aa)*", r"(x+x+)+y", r"^(\w+\s?)*$", r"(?:[a-z]+-?)+$", r"(a|b|ab)*c", r"(.*a){12}",
    r"(a)\1", r"(?P<x>a)(?P=x)", r"(?=a).*", r"(?!a).*", r"(?<=a)b", r"(?<!a)b", r"(?P<n>a)?(?(n)b|c)",
    r".*.*.*x", r"[a-z]*[a-z]*[a-z]*0", r".*-?.*-?.*-?.*", r"\w*\d*\w*[0-9]*$", r"a{1000}", r"a{0,500}",
    r"(", r"[z-a]", r"a**", r"(?P<1>a)", r"\p{L}", "a" * 257, "", "a\nb", "a\x00", 5, None, ["a"], {"re": "a"},
]
# The worst shapes the limits still allow: two repetitions that can trade characters (with separators they can
# cross, optional pieces, repeat counts at the cap, ignore-case, alternations), each next to repetitions they cannot
# trade with; against tags that make them backtrack most.
WORST_ALLOWED_PATTERNS = [
    r".*.*x", r".*.*", r"[a-z0-9]*[a-z0-9]*!", r".*-.*-x", r".{0,128}.{0,128}x", r"(?i)[a-z]*[A-Z]*0",
    r"v?[0-9]*[0-9]*\.", r"(?:ab)*(?:ab)*c", r"[^.]*[^.]*\.x", r"\w*\w*-", r"(?P<a>.*)(?P<b>.*)-x",
    r"(.*|a)(.*|b)y", r"(.*|a)(b|c)(.*|d)y", r"[^-]*-[^-]*-.*.*Q", r"x?y?z?[0-9]*[0-9]*a",
    r"[0-9]+\.[0-9]+\.[0-9]+-rc[0-9]+\.[a-z]+-[a-z0-9]*[a-z0-9]*Q",
]
HOSTILE_TAGS = ["a" * 128, "a" * 127 + "-", "-" * 128, "a-" * 64, "0" * 128, "ab" * 64, "a." * 64,
                "1.2.3-rc4." + "a" * 118, "A" * 128, "x" + "a" * 127]




def worst_pattern_match_ms() -> float:
    """The slowest full match of any of the worst allowed patterns against any hostile tag, in ms."""
    import time

    from imagestreams.policytags import compile_pattern

    worst = 0.0
    for pattern in WORST_ALLOWED_PATTERNS:
        regex = compile_pattern(pattern)
        for tag in HOSTILE_TAGS:
            started = time.perf_counter()
            regex.fullmatch(tag)
            worst = max(worst, (time.perf_counter() - started) * 1000)
    return worst


BAD_RANGES = ["foo", "", " ", ">>1", "1.2.3.4", "^", "~>1", "1.2.3 -", "=<1", "^1.2" * 80, "1.2.3\n", 7, None,
              ["^1"], {"range": "^1"}, True]


def policy_bad_commands() -> Iterator[tuple[str, Any]]:
    def cmd(policy: Any, **extra: Any) -> dict[str, Any]:
        return {"action": "policy.set", "target": "team/web:stable", "policy": policy, **extra}

    for pattern in HOSTILE_PATTERNS:
        yield f"policy pattern {pattern!r:.40}", cmd({"pattern": pattern, "order": "numeric"})
    for value in BAD_RANGES:
        yield f"policy semver {value!r:.40}", cmd({"semver": value})
    yield "policy with two kinds", cmd({"semver": "^1.2", "pattern": "v.*"})
    yield "policy with no kind", cmd({"order": "numeric"})
    yield "policy empty", cmd({})
    for value in ["^1.2", ["semver", "^1.2"], 1, None, True]:
        yield f"policy {value!r:.30}", cmd(value)
    yield "semver policy with order", cmd({"semver": "^1.2", "order": "numeric"})
    yield "semver policy with an unknown field", cmd({"semver": "^1.2", "include": "all"})
    yield "follow policy with extract", cmd({"follow": "staging", "extract": "n"})
    for value in ["yes", 1, None, "true"]:
        yield f"semver prerelease={value!r}", cmd({"semver": "^1.2", "prerelease": value})
    for value in ["random", "", None, "NUMERIC", 1, "newest"]:
        yield f"pattern order={value!r}", cmd({"pattern": "v.*", "order": value})
    for value in ["missing", 2, -1, True, "", None, ["n"]]:
        yield f"pattern extract={value!r}", cmd({"pattern": "main-(?P<n>[0-9]+)", "order": "numeric",
                                                 "extract": value})
    for value in ["bad tag!", "", "a" * 129, "-x", 5, None, "team/web:staging"]:
        yield f"follow {value!r:.30}", cmd({"follow": value})
    yield "follow itself", cmd({"follow": "stable"})
    yield "policy.set with an unknown field", cmd({"semver": "^1.2"}, verbose=True)
    yield "policy.set without policy", {"action": "policy.set", "target": "team/web:stable"}
    yield "policy.set without target", {"action": "policy.set", "policy": {"semver": "^1.2"}}
    for value in ["approval", {"type": "approval"}, 1, [{"type": "nope"}], [{"kind": "scan"}], ["approval"]]:
        yield f"policy gates={value!r:.30}", cmd({"semver": "^1.2"}, gates=value)
    for value in ["team/web", "team/web@" + DIGEST, "docker.io/team/web:stable", "Team/Web:x", "", 1, None]:
        yield f"policy.set target={value!r:.30}", {"action": "policy.set", "target": value,
                                                   "policy": {"semver": "^1.2"}}
    for action in ("policy.remove", "policy.resume"):
        yield f"{action} of a tag without a policy", {"action": action, "target": "team/web:latest"}
        yield f"{action} without target", {"action": action}
        yield f"{action} with an unknown field", {"action": action, "target": "team/web:latest", "id": "x"}
    yield "policy.list with an unknown field", {"action": "policy.list", "from": "team/web:latest"}
    for value in ["", "Team/Web", "team/web:latest", 1, None]:
        yield f"policy.list stream={value!r}", {"action": "policy.list", "stream": value}



def policy_world(streams: Any, registry: Any) -> None:
    """team/web with v1.2.0 and v1.3.0, ``edge`` an alias of ``latest``, and ``stable`` a semver policy tag."""
    from imagestreams.model import ImageRef, StreamTag

    for n, tag in enumerate(("latest", "v1.2.0", "v1.3.0")):
        registry.set("team/web", tag, "sha256:" + f"{n + 1}" * 64)
        streams.sync(StreamTag("team/web", tag))
    streams.tag(ImageRef("team/web", "latest"), [StreamTag("team/web", "edge")], alias=True)
    streams.set_policy(StreamTag("team/web", "stable"), {"semver": "^1.2"})
    streams.set_policy(StreamTag("team/web", "prod"), {"follow": "stable"})


def policy_conflict_commands() -> Iterator[tuple[str, Any]]:
    yield "policy on an alias tag", {"action": "policy.set", "target": "team/web:edge",
                                     "policy": {"semver": "^1.2"}}
    yield "alias onto a policy tag", {"action": "tag", "source": "team/web:latest", "target": "team/web:stable",
                                      "alias": True}
    yield "alias onto policy tags among others", {"action": "tag", "source": "team/web:latest",
                                                  "target": ["team/web:fresh", "team/web:prod"], "alias": True}
    yield "untag a policy tag", {"action": "untag", "target": "team/web:stable"}
    yield "copy onto a policy tag", {"action": "tag", "source": "team/web:latest", "target": "team/web:stable"}
    yield "follow cycle", {"action": "policy.set", "target": "team/web:stable", "policy": {"follow": "prod"}}
    yield "policy replaced by one with a hostile pattern", {"action": "policy.set", "target": "team/web:stable",
                                                            "policy": {"pattern": "(a+)+$"}}


# Every group of commands refused in any world, in one list: a new feature adds its group here.
COMMAND_GROUPS = (base_bad_commands, _f_outside_commands, registry_bad_commands, xacct_bad_commands,
                  gate_bad_commands, policy_bad_commands)


def bad_commands() -> Iterator[tuple[str, Any]]:
    for group in COMMAND_GROUPS:
        yield from group()
