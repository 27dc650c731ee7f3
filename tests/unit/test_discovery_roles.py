"""EKS discovery in another account: ``{"type": "eks", "cluster": …, "discover": true, "roleArn": …}`` lists the
cluster's workloads as that role (checked against AllowedTargetAccounts / TargetRolePattern first) and every
adopted trigger carries the role, so its fires act as the role too."""

from __future__ import annotations

import pytest

from imagestreams.adapters.memory import MemoryEcs, MemoryRegistry, MemoryStore
from imagestreams.admin import dispatch
from imagestreams.bootstrap import RoleDrivers
from imagestreams.errors import Invalid
from imagestreams.model import EksTarget, StreamTag, parse_discovery
from imagestreams.policy import TargetPolicy
from imagestreams.ports import DriverResult
from imagestreams.services import ImageStreams
from tests.conftest import digest

HOME, OTHER = "123456789012", "222222222222"
ROLE = f"arn:aws:iam::{OTHER}:role/imagestreams-target"
APP = StreamTag("team/app", "latest")
DISCOVER = {"type": "eks", "cluster": "prod", "discover": True}


class Cluster(MemoryEcs):
    """One account's view of EKS: the annotated workloads it lists, and the images fires wrote."""

    current_pins = None

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names
        self.listed = 0
        self.applied: list[tuple[EksTarget, str]] = []

    def discover(self, cluster: str):
        self.listed += 1
        return [(APP, EksTarget(cluster, "apps", "Deployment", n, "web"), False) for n in self.names], []

    def apply(self, target, image):
        self.applied.append((target, image))
        return DriverResult(changed=True, rollout_state="COMPLETED")


def world(pattern: str = "imagestreams-*"):
    accounts = {None: Cluster(["home-a"]), ROLE: Cluster(["far-a", "far-b"])}
    built: list = []

    def build(role, external):
        built.append((role, external))
        return accounts[role]

    policy = TargetPolicy.from_strings("*", "*", "*", HOME, "us-east-1", OTHER, pattern)
    store, registry = MemoryStore(), MemoryRegistry()
    streams = ImageStreams(store, registry, {"eks": RoleDrivers(build)}, policy=policy)
    registry.set(APP.stream, APP.tag, digest(1))
    streams.sync(APP)
    return streams, store, accounts, built


def add(streams, target):
    return dispatch(streams, {"action": "trigger.add", "from": "*", "target": target})


def test_discovery_with_a_role_lists_as_the_role_and_every_trigger_carries_it():
    streams, _, accounts, built = world()
    result = add(streams, {**DISCOVER, "roleArn": ROLE, "externalId": "ext-123"})["result"]
    assert accounts[ROLE].listed == 1 and accounts[None].listed == 0
    assert (ROLE, "ext-123") in built  # (the stack's own driver may be built to read a property, never to list)
    names = sorted(t["target"]["name"] for t in result["triggers"])
    assert names == ["far-a", "far-b"]
    for trigger in result["triggers"]:
        assert trigger["target"]["roleArn"] == ROLE and trigger["target"]["externalId"] == "ext-123"
    stored = streams.list_triggers()
    assert {t.target.role_arn for t in stored} == {ROLE}
    # the fires at add went to the other account's workloads, never to same-named ones here
    assert sorted(t.name for t, _ in accounts[ROLE].applied) == ["far-a", "far-b"]
    assert accounts[None].applied == []
    assert all(image.endswith("@" + digest(1)) for _, image in accounts[ROLE].applied)


def test_discovery_without_a_role_stays_in_this_account():
    streams, _, accounts, _ = world()
    result = add(streams, DISCOVER)["result"]
    assert [t["target"]["name"] for t in result["triggers"]] == ["home-a"]
    assert "roleArn" not in result["triggers"][0]["target"]
    assert accounts[ROLE].listed == 0


@pytest.mark.parametrize("role, pattern", [
    (ROLE, "other-*"),                                         # the role name is not allowed
    ("arn:aws:iam::333333333333:role/imagestreams-target", "imagestreams-*"),  # the account is not allowed
    (f"arn:aws:iam::{HOME}:role/imagestreams-target", "imagestreams-*"),       # this account needs no role
])
def test_a_role_outside_the_parameters_is_forbidden_before_anything_is_listed(role, pattern):
    streams, store, accounts, built = world(pattern)
    writes = store.writes
    answer = add(streams, {**DISCOVER, "roleArn": role})
    assert answer["error"]["type"] == "Forbidden", answer
    assert all(role is None for role, _ in built) and store.writes == writes
    assert all(c.listed == 0 for c in accounts.values())


@pytest.mark.parametrize("raw, error", [
    ({**DISCOVER, "externalId": "ext-123"}, "externalId comes with target.roleArn only"),
    ({**DISCOVER, "roleArn": "arn:aws:iam::2222:role/x"}, "invalid target.roleArn"),
    ({**DISCOVER, "roleArn": ROLE, "externalId": "x"}, "invalid target.externalId"),
    ({**DISCOVER, "namespace": "apps"}, "accepted: cluster, discover, externalId, roleArn, type"),
])
def test_malformed_role_fields_of_a_discovery_are_invalid(raw, error):
    with pytest.raises(Invalid, match=error):
        parse_discovery(raw)
    streams, store, accounts, built = world()
    writes = store.writes
    answer = add(streams, raw)
    assert answer["error"]["type"] == "Invalid" and error in answer["error"]["message"]
    assert all(role is None for role, _ in built) and store.writes == writes


def test_a_driver_that_cannot_act_as_a_role_refuses_a_discovery_with_one():
    store, registry = MemoryStore(), MemoryRegistry()
    cluster = Cluster(["home-a"])
    streams = ImageStreams(store, registry, {"eks": cluster},
                           policy=TargetPolicy.from_strings("*", "*", "*", HOME, "us-east-1", OTHER, "*"))
    answer = add(streams, {**DISCOVER, "roleArn": ROLE})
    assert answer["error"]["type"] == "Invalid" and "roleArn" in answer["error"]["message"]
    assert cluster.listed == 0


def test_the_same_workload_with_and_without_a_role_are_two_triggers():
    streams, _, accounts, _ = world()
    accounts[None].names = ["same"]
    accounts[ROLE].names = ["same"]
    here = add(streams, DISCOVER)["result"]["triggers"]
    there = add(streams, {**DISCOVER, "roleArn": ROLE})["result"]["triggers"]
    assert here[0]["id"] != there[0]["id"]
    assert len(streams.list_triggers()) == 2


def test_a_cluster_the_role_cannot_find_is_not_found():
    from imagestreams.errors import TargetError

    streams, _, accounts, _ = world()

    def missing(cluster):
        raise TargetError(f"EKS cluster {cluster} not found")

    accounts[ROLE].discover = missing
    answer = add(streams, {**DISCOVER, "roleArn": ROLE})
    assert answer["error"]["type"] == "NotFound" and "in account 222222222222" in answer["error"]["message"]
