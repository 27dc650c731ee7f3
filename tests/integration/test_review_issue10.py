"""Adversarial review of policy tags, gates and notifications on the embedded AWS (DynamoDB as deployed)."""

from __future__ import annotations

from tests.integration.test_policy_tags import admin, push, repo  # noqa: F401 - fixture


def test_review_policy_list_of_every_stream_works_on_dynamodb(repo):  # noqa: F811
    push(repo, "v1.2.0")
    admin(repo, action="policy.set", target="team/web:stable", policy={"semver": "^1.2"})
    listed = admin(repo, action="policy.list")["policies"]
    assert [p["target"] for p in listed] == ["team/web:stable"]
