import pytest

from imagestreams.errors import Invalid
from imagestreams.model import ImageRef, StreamTag, parse_target, pinned_ref, runs_digest
from tests.conftest import digest

REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    "text, stream, tag, dig, registry",
    [
        ("web:latest", "web", "latest", None, None),
        ("team/web:v1.2.3", "team/web", "v1.2.3", None, None),
        (f"team/web@{digest(1)}", "team/web", None, digest(1), None),
        (f"{REG}/team/web:prod", "team/web", "prod", None, REG),
        (f"{REG}/team/web@{digest(2)}", "team/web", None, digest(2), REG),
    ],
)
def test_parse_valid_references(text, stream, tag, dig, registry):
    ref = ImageRef.parse(text, registry=REG)  # a full URI must name the stack's own registry
    assert (ref.stream, ref.tag, ref.digest, ref.registry) == (stream, tag, dig, registry)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "", "web", "Web:latest", "w:latest", "web:", "web:-bad", "web:" + "a" * 129, "web@sha256:abc",
        f"web@{digest(1).upper()}", "../web:latest", "a/b/../c:latest", "web//x:1", "/web:1", "web/:1",
        "docker.io/library/web:1", "web:la\ntest", "web:lat est", "wéb:latest", "x" * 600, 42, None, ["web:1"],
    ],
)
def test_parse_rejects_malformed_references(text):
    with pytest.raises(Invalid):
        ImageRef.parse(text)


def test_stream_tag_refuses_digest_reference():
    with pytest.raises(Invalid, match="tag reference"):
        StreamTag.parse(f"web@{digest(1)}")


def test_runs_digest_only_for_pinned_same_repository():
    ref = pinned_ref(REG, "team/web", digest(1))
    assert runs_digest(ref, REG, "team/web") == digest(1)
    assert runs_digest(f"{REG}/team/web:latest", REG, "team/web") is None
    assert runs_digest(f"{REG}/team/other@{digest(1)}", REG, "team/web") is None


@pytest.mark.parametrize(
    "raw, message",
    [
        ("ecs", "must be an object"),
        ({"type": "k8s"}, "target.type"),
        ({"type": "ecs", "cluster": "c", "service": "s"}, "missing container"),
        ({"type": "ecs", "cluster": "c", "service": "s", "container": "web", "extra": 1}, "unknown field"),
        ({"type": "ecs", "cluster": "c/../x", "service": "s", "container": "web"}, "invalid target.cluster"),
        ({"type": "ecs", "cluster": "c", "service": "s", "container": "we b"}, "invalid target.container"),
        ({"type": "lambda"}, "missing function"),
        ({"type": "lambda", "function": "a b"}, "invalid target.function"),
        ({"type": "lambda", "function": "f", "alias": "12"}, "invalid target.alias"),
        ({"type": "eks", "cluster": "c", "namespace": "ns", "kind": "Pod", "name": "n", "container": "c"},
         "target.kind"),
        ({"type": "eks", "cluster": "c", "namespace": "../kube-system", "kind": "Deployment", "name": "n",
          "container": "c"}, "invalid target.namespace"),
        ({"type": "eks", "cluster": "c", "namespace": "ns", "kind": "Deployment", "name": "a/b", "container": "c"},
         "invalid target.name"),
        ({"type": "eks", "cluster": "c", "namespace": "ns", "kind": "Deployment", "name": "n", "container": "C"},
         "invalid target.container"),
        ({"type": "eks", "cluster": "c", "namespace": "ns", "kind": "Deployment", "name": "n"}, "missing container"),
        ({"type": "eks", "cluster": "c", "discover": False}, "discover must be true"),
    ],
)
def test_parse_target_errors(raw, message):
    with pytest.raises(Invalid, match=message):
        parse_target(raw)


def test_parse_target_accepts_arns():
    target = parse_target({"type": "ecs", "cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
                           "service": "arn:aws:ecs:us-east-1:123456789012:service/prod/web", "container": "web"})
    assert target.describe() == "ecs:prod/web/web"


def test_parse_eks_and_lambda_targets():
    eks = parse_target({"type": "eks", "cluster": "prod", "namespace": "apps", "kind": "CronJob",
                        "name": "nightly.report", "container": "job"})
    assert eks.type == "eks" and eks.describe() == "eks:prod/apps/cronjob/nightly.report/job"
    fn = parse_target({"type": "lambda", "function": "arn:aws:lambda:us-east-1:123456789012:function:resize",
                       "alias": "live"})
    assert fn.type == "lambda" and fn.as_dict()["alias"] == "live"


def test_lambda_target_key_is_the_same_for_name_partial_arn_and_arn():
    from imagestreams.model import LambdaTarget, target_key

    keys = {target_key(LambdaTarget(f)) for f in
            ("resize", "123456789012:function:resize", "arn:aws:lambda:us-east-1:123456789012:function:resize")}
    assert keys == {"lambda:resize"}
