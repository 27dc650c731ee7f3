"""Cross-account targets: roleArn/externalId parsing, canonical names within the role's account, the
AllowedTargetAccounts / TargetRolePattern checks at add, fire and rollback, one driver per role, credentials
assumed once per role and refreshed before they expire, forwarded rollout events."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from imagestreams import aws
from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.bootstrap import RoleDrivers
from imagestreams.errors import Forbidden, Invalid
from imagestreams.events import ForeignEvent, parse_ecs_deployment_event
from imagestreams.model import EcsTarget, StreamTag, parse_target, target_key, trigger_id
from imagestreams.policy import TargetPolicy
from imagestreams.services import ImageStreams

HOME, OTHER = "123456789012", "222222222222"
ROLE = f"arn:aws:iam::{OTHER}:role/imagestreams-target"
DIGEST = "sha256:" + "a" * 64
DIGEST2 = "sha256:" + "b" * 64
RAW = {"type": "ecs", "cluster": "prod", "service": "web", "container": "web"}


def policy(accounts: str = OTHER, pattern: str = "imagestreams-*") -> TargetPolicy:
    return TargetPolicy.from_strings("*", "*", "*", HOME, "us-east-1", accounts, pattern)


# ------------------------------------------------------------------------------------------- the model

def test_role_fields_round_trip_and_same_account_keys_and_ids_stay_as_stored():
    target = parse_target({**RAW, "roleArn": ROLE, "externalId": "team-a:1"})
    assert (target.role_arn, target.external_id) == (ROLE, "team-a:1")
    assert parse_target(target.as_dict()) == target
    plain = parse_target(RAW)
    assert "roleArn" not in plain.as_dict()
    assert target_key(plain) == "ecs:prod/web"
    stream_tag = StreamTag("team/web", "latest")
    stored_formula = "tr-" + hashlib.sha256(f"{stream_tag}|{sorted(RAW.items())}".encode()).hexdigest()[:12]
    assert trigger_id(stream_tag, plain) == stored_formula  # triggers stored before this change keep their ids


def test_the_account_is_part_of_key_and_id_of_a_target_in_another_account():
    stream_tag = StreamTag("team/web", "latest")
    here, there = parse_target(RAW), parse_target({**RAW, "roleArn": ROLE})
    assert target_key(there) == f"ecs:prod/web@{OTHER}" != target_key(here)
    assert trigger_id(stream_tag, there) != trigger_id(stream_tag, here)
    third = parse_target({**RAW, "roleArn": "arn:aws:iam::333333333333:role/imagestreams-target"})
    assert target_key(third) != target_key(there)


@pytest.mark.parametrize("raw, error", [
    ({**RAW, "roleArn": "arn:aws:iam::222222222222:user/x"}, "roleArn"),
    ({**RAW, "roleArn": ROLE, "externalId": "x" * 1225}, "externalId"),
    ({**RAW, "roleArn": ROLE, "externalId": "ab\x00cd"}, "externalId"),
    ({**RAW, "externalId": "abcd"}, "externalId"),
])
def test_malformed_role_or_external_id_is_invalid(raw, error):
    with pytest.raises(Invalid) as info:
        parse_target(raw)
    assert error in info.value.message


def test_arns_are_canonical_within_the_role_account():
    there = policy().canonical(parse_target(
        {**RAW, "cluster": f"arn:aws:ecs:us-east-1:{OTHER}:cluster/prod",
         "service": f"arn:aws:ecs:us-east-1:{OTHER}:service/prod/web", "roleArn": ROLE}))
    assert there == EcsTarget("prod", "web", "web", ROLE)
    with pytest.raises(Forbidden):  # an ARN of the stack's account on a target that lives in the role's account
        policy().canonical(parse_target({**RAW, "service": f"arn:aws:ecs:us-east-1:{HOME}:service/prod/web",
                                         "roleArn": ROLE}))
    with pytest.raises(Forbidden):  # without a role, another account's ARN is refused as before
        policy().canonical(parse_target({**RAW, "service": f"arn:aws:ecs:us-east-1:{OTHER}:service/prod/web"}))


@pytest.mark.parametrize("accounts, pattern, role", [
    ("", "imagestreams-*", ROLE),  # default: no other account
    (OTHER, "", ROLE),  # no TargetRolePattern: nothing assumable
    (OTHER, "imagestreams-*", f"arn:aws:iam::{OTHER}:role/admin"),
    (OTHER, "imagestreams-*", "arn:aws:iam::333333333333:role/imagestreams-target"),
    (OTHER, "imagestreams-*", f"arn:aws:iam::{HOME}:role/imagestreams-target"),  # our own account needs no role
])
def test_roles_and_accounts_outside_the_parameters_are_forbidden(accounts, pattern, role):
    with pytest.raises(Forbidden):
        policy(accounts, pattern).check(parse_target({**RAW, "roleArn": role}))


def test_a_role_matching_both_parameters_is_allowed_and_role_paths_match_by_name():
    policy().check(parse_target({**RAW, "roleArn": ROLE}))
    policy().check(parse_target({**RAW, "roleArn": f"arn:aws:iam::{OTHER}:role/ops/imagestreams-x"}))
    policy("", "").check(parse_target(RAW))  # this account's targets need neither parameter


def test_allowed_target_accounts_must_be_account_ids():
    with pytest.raises(Invalid):
        policy("2222,abc")


# ----------------------------------------------------------------------------- add, fire and rollback

def world(pol: TargetPolicy):
    store, registry = MemoryStore(), MemoryRegistry()
    accounts: dict[str | None, MemoryEcs] = {None: MemoryEcs(), ROLE: MemoryEcs()}
    for ecs in accounts.values():
        ecs.images[("prod", "web")] = {"web": "nginx:latest"}
    built: list = []

    def build(role, external):
        built.append((role, external))
        return accounts[role]

    streams = ImageStreams(store, registry, {"ecs": RoleDrivers(build)}, policy=pol)
    registry.set("team/web", "latest", DIGEST)
    streams.sync(StreamTag("team/web", "latest"))
    return streams, store, registry, accounts, built


def test_a_fire_writes_the_role_account_and_never_the_same_names_here():
    streams, _, _, accounts, built = world(policy())
    trigger = streams.add_trigger(StreamTag("team/web", "latest"), parse_target({**RAW, "roleArn": ROLE}))
    assert accounts[ROLE].images[("prod", "web")]["web"].endswith("@" + DIGEST)
    assert accounts[None].images[("prod", "web")]["web"] == "nginx:latest"
    assert trigger.last_triggered_digest == DIGEST
    assert built.count((ROLE, None)) == 1  # one driver per role, reused


def test_add_of_a_role_not_allowed_writes_nothing():
    streams, store, _, accounts, _ = world(policy(pattern="other-*"))
    writes = store.writes
    with pytest.raises(Forbidden):
        streams.add_trigger(StreamTag("team/web", "latest"), parse_target({**RAW, "roleArn": ROLE}))
    assert store.writes == writes and accounts[ROLE].calls == 0


def test_fire_and_rollback_check_the_parameters_again():
    streams, store, registry, accounts, _ = world(policy())
    stream_tag = StreamTag("team/web", "latest")
    trigger = streams.add_trigger(stream_tag, parse_target({**RAW, "roleArn": ROLE}))
    registry.set("team/web", "latest", DIGEST2)
    streams.sync(stream_tag)
    streams.policy = policy(accounts="333333333333")  # the operator removed the account since
    calls = accounts[ROLE].calls
    after = streams.fire(store.get_trigger(trigger.id), store.get_head(stream_tag))
    assert after.status == "Failed" and "AllowedTargetAccounts" in after.last_error
    assert accounts[ROLE].calls == calls  # the target was neither read nor written
    with pytest.raises(Forbidden):
        streams.rollback_target(trigger.id, to=DIGEST)
    assert accounts[ROLE].calls == calls


# ---------------------------------------------------------------------------------------- credentials

class FakeSts:
    def __init__(self, lifetime: timedelta) -> None:
        self.lifetime, self.calls = lifetime, []

    def assume_role(self, **kwargs):
        self.calls.append(kwargs)
        n = len(self.calls)
        return {"Credentials": {"AccessKeyId": f"AK{n}", "SecretAccessKey": "s", "SessionToken": "t",
                                "Expiration": datetime.now(UTC) + self.lifetime}}


@pytest.fixture
def fake_sts(monkeypatch):
    aws.reset()
    sts = FakeSts(timedelta(hours=1))
    real = aws.client
    monkeypatch.setattr(aws, "client", lambda service: sts if service == "sts" else real(service))
    yield sts
    monkeypatch.undo()
    aws.reset()


def test_credentials_are_assumed_once_per_role_and_again_before_they_expire(fake_sts, monkeypatch):
    session = aws.role_session(ROLE, "ext-1")
    assert fake_sts.calls == []  # nothing assumed until a call needs it
    keys = {session.get_credentials().get_frozen_credentials().access_key for _ in range(100)}
    assert keys == {"AK1"} and len(fake_sts.calls) == 1
    assert fake_sts.calls[0]["RoleArn"] == ROLE and fake_sts.calls[0]["ExternalId"] == "ext-1"
    assert aws.role_session(ROLE, "ext-1") is session  # cached per role
    assert aws.role_session(f"arn:aws:iam::{OTHER}:role/imagestreams-b") is not session
    fake_sts.lifetime = timedelta(hours=1)
    credentials = session.get_credentials()
    credentials._expiry_time = datetime.now(UTC) + timedelta(minutes=5)  # close to expiry: refreshed first
    assert credentials.get_frozen_credentials().access_key == "AK2"
    assert len(fake_sts.calls) == 2


def test_no_role_uses_the_stack_own_client(fake_sts):
    assert aws.role_client("ecs", None) is aws.client("ecs")
    assert fake_sts.calls == []


# ------------------------------------------------------------------------------------- rollout events

def event(account: str, state: str = "COMPLETED") -> dict:
    return {"source": "aws.ecs", "detail-type": "ECS Deployment State Change", "account": account,
            "region": "us-east-1", "resources": [f"arn:aws:ecs:us-east-1:{account}:service/prod/web"],
            "detail": {"eventName": f"SERVICE_DEPLOYMENT_{state}", "deploymentId": "ecs-svc/1"}}


def test_a_forwarded_event_from_an_allowed_account_names_that_account():
    change = parse_ecs_deployment_event(event(OTHER), account=HOME, region="us-east-1", target_accounts=(OTHER,))
    assert change.target_key == target_key(parse_target({**RAW, "roleArn": ROLE}))
    home = parse_ecs_deployment_event(event(HOME), account=HOME, region="us-east-1", target_accounts=(OTHER,))
    assert home.target_key == "ecs:prod/web"
    with pytest.raises(ForeignEvent):
        parse_ecs_deployment_event(event("333333333333"), account=HOME, region="us-east-1", target_accounts=(OTHER,))
    mixed = {**event(OTHER), "account": "333333333333"}  # envelope and service of different accounts
    with pytest.raises(ForeignEvent):
        parse_ecs_deployment_event(mixed, account=HOME, region="us-east-1", target_accounts=(OTHER,))


# ------------------------------------------------------------------------------------------- templates

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_the_workload_account_template_passes_cfn_lint():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    lint = Path(sys.executable).with_name("cfn-lint")
    command = [str(lint)] if lint.exists() else [shutil.which("cfn-lint") or "cfn-lint"]
    out = subprocess.run([*command, str(ROOT / "docs/target-account.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_workload_role_trusts_exactly_our_three_roles_and_forwards_deployment_events():
    from imagestreams_local.template import load_template

    template = load_template(ROOT / "docs/target-account.yaml")
    role = template["Resources"]["TargetRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": [{"Ref": "DeployerRoleArn"}, {"Ref": "ReconcilerRoleArn"},
                                          {"Ref": "AdminRoleArn"}]}
    assert trust["Condition"]["Fn::If"][0] == "HasExternalId"
    rule = template["Resources"]["ForwardDeployments"]["Properties"]
    assert rule["EventPattern"]["detail-type"] == ["ECS Deployment State Change"]
    assert rule["Targets"][0]["Arn"] == {"Ref": "ImageStreamsEventBusArn"}


def test_our_template_lets_the_three_roles_assume_target_roles_only_when_configured():
    from imagestreams_local.template import Resolver, load_template

    template = load_template(ROOT / "template.yaml")
    resources = template["Resources"]
    for function in ("DeployerFunction", "ReconcilerFunction", "AdminFunction"):
        policies = resources[function]["Properties"]["Policies"]
        guarded = [p["Fn::If"] for p in policies if isinstance(p, dict) and "Fn::If" in p
                   and p["Fn::If"][0] == "CrossAccountTargets"]
        assert len(guarded) == 1, function
        (statement,) = guarded[0][1]["Statement"]
        assert statement["Action"] == ["sts:AssumeRole"]
        assert "aws:ResourceAccount" in statement["Condition"]["StringEquals"]
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["ALLOWED_TARGET_ACCOUNTS"] == {"Ref": "AllowedTargetAccounts"}
    assert env["TARGET_ROLE_PATTERN"] == {"Ref": "TargetRolePattern"}
    defaults = Resolver(template, "us-east-1", HOME, {})
    assert not defaults.condition("CrossAccountTargets")  # by default no role is assumable
    assert not defaults.condition("HasTargetAccounts")
    only_accounts = Resolver(template, "us-east-1", HOME, {"AllowedTargetAccounts": OTHER})
    assert not only_accounts.condition("CrossAccountTargets")
    both = Resolver(template, "us-east-1", HOME, {"AllowedTargetAccounts": OTHER, "TargetRolePattern": "is-*"})
    assert both.condition("CrossAccountTargets")


def test_role_drivers_forward_plain_attributes_as_they_are():
    class Driver:
        finds_past_rollouts = False

        def inspect(self, target, deployment):
            return (self, target)

    made: dict = {}
    drivers = RoleDrivers(lambda role, ext: made.setdefault(role, Driver()))
    assert drivers.finds_past_rollouts is False
    assert not hasattr(drivers, "validate")
    there = parse_target({**RAW, "roleArn": ROLE})
    assert drivers.inspect(there, None)[0] is made[ROLE]


def test_eks_tokens_of_a_target_in_another_account_are_signed_with_the_role(fake_sts, monkeypatch):
    from imagestreams import bootstrap
    from imagestreams.adapters.eks import eks_token

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    there = bootstrap._eks_driver(None, ROLE, "ext-1")
    here = bootstrap._eks_driver(None)
    assert there.api.clusters.session is aws.role_session(ROLE, "ext-1")
    assert here.api.clusters.session is aws.session()
    token = eks_token(there.api.clusters.session, "prod", "us-east-1")
    import base64

    url = base64.urlsafe_b64decode(token.removeprefix("k8s-aws-v1.") + "==").decode()
    assert "X-Amz-Credential=AK1" in url and len(fake_sts.calls) == 1  # signed with the assumed credentials
