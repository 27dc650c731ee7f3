"""The embedded AWS's lifecycle policy previews, asked through plain boto3 calls to the moto endpoint: a preview runs
for a while on the doubles' clock, then lists what the repository's lifecycle policy would expire, evaluated as the
ECR user guide describes it (rule priorities, tag prefixes and patterns, image counts and ages), page by page; the
errors ECR documents; and the project's own preview adapter reading it."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from imagestreams.adapters.diagnose import AwsDiagnosis
from imagestreams.expiry import PreviewHit
from imagestreams_local import lifecycle
from imagestreams_local.embedded import EmbeddedAws

REPO = "team/web"
DAY = 24 * 60


@pytest.fixture(scope="module")
def embedded():
    aws = EmbeddedAws(use_dynamodb_local=False).start()
    yield aws
    aws.stop()


@pytest.fixture
def aws(embedded):
    embedded.reset()
    embedded.client("ecr").create_repository(repositoryName=REPO)
    yield embedded
    embedded.reset()  # back to real time for the next test


def rule(priority, status, count_type="imageCountMoreThan", count=1, *, prefixes=None, patterns=None,
         description=None, **extra):
    selection = {"tagStatus": status, "countType": count_type, "countNumber": count}
    if count_type == "sinceImagePushed":
        selection["countUnit"] = "days"
    if prefixes is not None:
        selection["tagPrefixList"] = prefixes
    if patterns is not None:
        selection["tagPatternList"] = patterns
    out = {"rulePriority": priority, "description": description or f"Rule {priority}", "selection": selection,
           "action": {"type": "expire"}}
    for key, value in extra.items():  # selection__x / action__x override those parts
        part, _, name = key.partition("__")
        out[part][name] = value
    return out


def policy(*rules):
    return json.dumps({"rules": list(rules)})


def push(aws, tag, seed, *also):
    return aws.push_image(REPO, tag, seed=seed, also=also, emit=False)["detail"]["image-digest"]


def preview(aws, *rules, stored=True, **kwargs):
    """Start a preview (of the stored policy, or of the text given), let it finish, return every result page."""
    ecr = aws.client("ecr")
    if stored:
        ecr.put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=policy(*rules))
        ecr.start_lifecycle_policy_preview(repositoryName=REPO)
    else:
        ecr.start_lifecycle_policy_preview(repositoryName=REPO, lifecyclePolicyText=policy(*rules))
    aws.advance(seconds=lifecycle.PREVIEW_DELAY)
    return ecr.get_lifecycle_policy_preview(repositoryName=REPO, **kwargs)


def expired(answer):
    return {r["imageDigest"]: r["appliedRulePriority"] for r in answer["previewResults"]}


def error(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"]


# ------------------------------------------------------------------------------------------ the call sequence


def test_a_preview_runs_then_lists_what_the_stored_policy_expires(aws):
    ecr = aws.client("ecr")
    lifecycle.configure(preview_delay=30)
    old, new = push(aws, "v1", "1"), None
    aws.advance(1)
    new = push(aws, "v2", "2")
    text = policy(rule(1, "any", description="keep one image"))
    ecr.put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=text)

    started = ecr.start_lifecycle_policy_preview(repositoryName=REPO)
    assert (started["status"], started["lifecyclePolicyText"], started["registryId"]) == (
        "IN_PROGRESS", text, "123456789012")
    running = ecr.get_lifecycle_policy_preview(repositoryName=REPO)
    assert running["status"] == "IN_PROGRESS" and not running.get("previewResults")
    assert error(ecr.start_lifecycle_policy_preview, repositoryName=REPO) == \
        "LifecyclePolicyPreviewInProgressException"

    aws.advance(seconds=30)
    done = ecr.get_lifecycle_policy_preview(repositoryName=REPO)
    assert done["status"] == "COMPLETE" and done["lifecyclePolicyText"] == text
    assert done["summary"] == {"expiringImageTotalCount": 1}
    [result] = done["previewResults"]
    assert (result["imageDigest"], result["imageTags"], result["action"], result["appliedRulePriority"]) == (
        old, ["v1"], {"type": "EXPIRE"}, 1)
    pushed = {i["imageDigest"]: i["imagePushedAt"] for i in ecr.describe_images(repositoryName=REPO)["imageDetails"]}
    assert result["imagePushedAt"] == pushed[old] < pushed[new]
    # a finished preview may be replaced by a new one
    assert ecr.start_lifecycle_policy_preview(repositoryName=REPO)["status"] == "IN_PROGRESS"


def test_a_given_policy_text_is_previewed_instead_of_the_stored_one(aws):
    ecr = aws.client("ecr")
    old = push(aws, "v1", "1")
    push(aws, "v2", "2")
    ecr.put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=policy(rule(1, "any", count=5)))
    answer = preview(aws, rule(1, "tagged", prefixes=["v"]), stored=False)
    assert expired(answer) == {old: 1}
    assert json.loads(answer["lifecyclePolicyText"])["rules"][0]["selection"]["tagStatus"] == "tagged"


def test_the_errors_ecr_documents(aws):
    ecr = aws.client("ecr")
    assert error(ecr.start_lifecycle_policy_preview, repositoryName=REPO) == "LifecyclePolicyNotFoundException"
    assert error(ecr.get_lifecycle_policy_preview, repositoryName=REPO) == "LifecyclePolicyPreviewNotFoundException"
    assert error(ecr.start_lifecycle_policy_preview, repositoryName="team/none") == "RepositoryNotFoundException"
    assert error(ecr.get_lifecycle_policy_preview, repositoryName="team/none") == "RepositoryNotFoundException"


@pytest.mark.parametrize("bad", [
    [rule(1, "any"), rule(2, "tagged", prefixes=["v"])],  # the `any` rule must have the highest priority
    [rule(1, "tagged", prefixes=["v"]), rule(1, "untagged")],  # priorities are unique
    [rule(1, "untagged"), rule(2, "untagged", count_type="sinceImagePushed")],  # one rule for untagged images
    [rule(1, "tagged", prefixes=["v"]), rule(2, "tagged", prefixes=["v"], count=3)],  # the same prefix set twice
    [rule(1, "tagged")],  # tagged needs a prefix or pattern list
    [rule(1, "tagged", prefixes=["v"], patterns=["v*"])],  # but not both
    [rule(1, "untagged", prefixes=["v"])],  # untagged takes none
    [rule(1, "tagged", patterns=["*a*b*c*d*e"])],  # at most four wildcards
    [rule(1, "any", selection__countUnit="days")],  # countUnit only with sinceImagePushed
    [rule(1, "any", count_type="sinceImagePushed", selection__countUnit="hours")],
    [rule(1, "any", count=0)],
    [rule(1, "any", selection__tagStatus="all")],
    [rule(0, "any")],
    [rule(1, "any", action__type="delete")],
    [rule(1, "any", action__type="transition", action__targetStorageClass="archive")],  # archive: refused
    [rule(1, "any", count_type="sinceImagePulled")],
], ids=lambda rules: ",".join(json.dumps(r["selection"], sort_keys=True)[:40] for r in rules))
def test_an_invalid_policy_text_is_refused(aws, bad):
    ecr = aws.client("ecr")
    text = policy(*bad)
    assert error(ecr.start_lifecycle_policy_preview, repositoryName=REPO, lifecyclePolicyText=text) == \
        "InvalidParameterException"
    assert error(ecr.get_lifecycle_policy_preview, repositoryName=REPO) == "LifecyclePolicyPreviewNotFoundException"


def test_text_that_is_no_policy_is_refused(aws):
    ecr = aws.client("ecr")
    for text in ("x" * 120, json.dumps({"rules": [], "padding": "p" * 100})):
        assert error(ecr.start_lifecycle_policy_preview, repositoryName=REPO, lifecyclePolicyText=text) == \
            "InvalidParameterException"


# ------------------------------------------------------------------------------------------ selection and counts


def test_image_count_keeps_the_newest_by_push_time(aws):
    digests = []
    for n in range(5):
        digests.append(push(aws, f"v{n}", str(n)))
        aws.advance(10)
    assert expired(preview(aws, rule(1, "any", count=2))) == dict.fromkeys(digests[:3], 1)


def test_since_image_pushed_counts_days_on_the_embedded_clock(aws):
    old = push(aws, "v1", "1")
    aws.advance(3 * DAY)
    middle = push(aws, "v2", "2")
    aws.advance(4 * DAY + 60)
    push(aws, "v3", "3")  # pushed now: not old, although the clock moved a week
    assert expired(preview(aws, rule(1, "any", "sinceImagePushed", 7))) == {old: 1}
    aws.advance(1 * DAY)  # a new preview, a day later: v2 is older than four days now
    assert expired(preview(aws, rule(1, "any", "sinceImagePushed", 4))) == {old: 1, middle: 1}


def test_tag_prefixes_must_all_match_some_tag(aws):
    # "Filtering on multiple tags in a single rule", example A of the ECR user guide
    a = push(aws, "alpha-1", "A")
    aws.advance(DAY)
    push(aws, "beta-1", "B")
    aws.advance(DAY)
    c = push(aws, "alpha-2", "C", "beta-2")
    aws.advance(6 * DAY)
    push(aws, "alpha-3", "D")
    aws.advance(DAY)
    push(aws, "beta-3", "E")
    aws.advance(DAY)
    f = push(aws, "alpha-4", "F", "beta-4")
    aws.advance(2 * DAY)
    assert expired(preview(aws, rule(1, "tagged", "sinceImagePushed", 5, prefixes=["alpha", "beta"]))) == {c: 1}
    assert a not in expired(preview(aws, rule(1, "tagged", "sinceImagePushed", 5, prefixes=["alpha", "beta"])))
    assert f not in expired(preview(aws, rule(1, "tagged", prefixes=["alpha", "beta"])))  # the newest is kept


def test_tag_patterns_match_whole_tags_with_wildcards(aws):
    prod = push(aws, "prod-1", "1")
    release = push(aws, "release-2.0-rc1", "2")
    push(aws, "prod", "3")  # the newest, matches prod*
    other = push(aws, "xprod-4", "4")
    push(aws, "nightly", "5")
    answer = preview(aws, rule(1, "tagged", patterns=["prod*"]), rule(2, "tagged", "sinceImagePushed", 1,
                                                                      patterns=["*-rc*"]))
    assert expired(answer) == {prod: 1}  # xprod-4 does not start with prod; the rc image is not a day old
    aws.advance(2 * DAY)
    assert expired(preview(aws, rule(1, "tagged", patterns=["prod*"]),
                           rule(2, "tagged", "sinceImagePushed", 1, patterns=["*-rc*"]))) == {prod: 1, release: 2}
    assert other not in expired(preview(aws, rule(1, "tagged", patterns=["*prod*", "*4"])))  # keeps the only one


def test_untagged_rules_see_only_untagged_images(aws):
    tagged = push(aws, "v1", "t")
    first = push(aws, None, "u1")
    push(aws, None, "u2")
    answer = preview(aws, rule(1, "untagged"))
    assert expired(answer) == {first: 1} and tagged not in expired(answer)
    assert answer["previewResults"][0]["imageTags"] == []


# ------------------------------------------------------------------------------------------ priorities


def _beta_prod_repository(aws):
    """The repository of "Filtering on multiple rules" in the ECR user guide: A [beta-1, prod-1] 10 days old,
    B [beta-2, prod-2] 9 days old, C [beta-3] 8 days old."""
    a = push(aws, "beta-1", "A", "prod-1")
    aws.advance(DAY)
    b = push(aws, "beta-2", "B", "prod-2")
    aws.advance(DAY)
    c = push(aws, "beta-3", "C")
    aws.advance(8 * DAY)
    return a, b, c


def test_an_image_a_higher_rule_selects_is_never_expired_by_a_lower_one(aws):
    a, _b, _c = _beta_prod_repository(aws)
    # example A: rule 2 would expire A and B (keeping C), but both match rule 1's tags: only A goes, by rule 1
    answer = preview(aws, rule(1, "tagged", prefixes=["prod"]), rule(2, "tagged", prefixes=["beta"]))
    assert expired(answer) == {a: 1}


def test_rule_order_decides_which_rule_expires(aws):
    a, b, _c = _beta_prod_repository(aws)
    # example B: the same rules, priorities swapped: rule 1 (beta) expires A and B; rule 2 sees nothing new
    answer = preview(aws, rule(1, "tagged", prefixes=["beta"]), rule(2, "tagged", prefixes=["prod"]))
    assert expired(answer) == {a: 1, b: 1}
    assert answer["summary"] == {"expiringImageTotalCount": 2}


def test_lower_rules_still_count_what_higher_rules_selected(aws):
    # "Filtering on all images", example B: A [alpha-1, beta-1] 4 days, B untagged 3 days, C [alpha-2] 2 days,
    # D [git hash] 1 day, E untagged 1 day (the newest)
    a = push(aws, "alpha-1", "A", "beta-1")
    aws.advance(DAY)
    b = push(aws, None, "B")
    aws.advance(DAY)
    push(aws, "alpha-2", "C")
    aws.advance(DAY)
    d = push(aws, "githash", "D")
    aws.advance(1)
    push(aws, None, "E")
    aws.advance(DAY - 1)
    answer = preview(aws, rule(1, "tagged", prefixes=["alpha"]), rule(2, "untagged", "sinceImagePushed", 1),
                     rule(3, "any"))
    # rule 3 keeps the newest image of all (E, rule 2's) and may only mark D: A, B, C, E matched higher rules
    assert expired(answer) == {a: 1, b: 2, d: 3}


# ------------------------------------------------------------------------------------------ pages and filters


def test_results_come_in_pages_of_at_most_max_results(aws):
    ecr = aws.client("ecr")
    digests = [push(aws, f"v{n}", str(n)) for n in range(6)]
    first = preview(aws, rule(1, "any"), maxResults=2)
    pages, token = [first], first.get("nextToken")
    while token:
        pages.append(ecr.get_lifecycle_policy_preview(repositoryName=REPO, maxResults=2, nextToken=token))
        token = pages[-1].get("nextToken")
    assert [len(p["previewResults"]) for p in pages] == [2, 2, 1]
    assert [r["imageDigest"] for p in pages for r in p["previewResults"]] == digests[:5]  # oldest first
    assert {p["summary"]["expiringImageTotalCount"] for p in pages} == {5}
    assert error(ecr.get_lifecycle_policy_preview, repositoryName=REPO, maxResults=101) == \
        "InvalidParameterException"
    assert error(ecr.get_lifecycle_policy_preview, repositoryName=REPO, nextToken="garbage") == \
        "InvalidParameterException"


def test_without_max_results_a_page_holds_one_hundred(aws):
    ecr = aws.client("ecr")
    for n in range(102):
        push(aws, None, f"u{n}")
    first = preview(aws, rule(1, "untagged"))
    assert len(first["previewResults"]) == 100 and first["summary"]["expiringImageTotalCount"] == 101
    rest = ecr.get_lifecycle_policy_preview(repositoryName=REPO, nextToken=first["nextToken"])
    assert len(rest["previewResults"]) == 1 and "nextToken" not in rest


def test_the_tag_status_filter_and_image_ids_narrow_the_results(aws):
    ecr = aws.client("ecr")
    tagged = push(aws, "v1", "t1")
    untagged = push(aws, None, "u1")
    push(aws, "v2", "t2")
    answer = preview(aws, rule(1, "any"), filter={"tagStatus": "UNTAGGED"})
    assert expired(answer) == {untagged: 1}
    answer = ecr.get_lifecycle_policy_preview(repositoryName=REPO, filter={"tagStatus": "TAGGED"})
    assert expired(answer) == {tagged: 1}
    answer = ecr.get_lifecycle_policy_preview(repositoryName=REPO, imageIds=[{"imageTag": "v1"}])
    assert expired(answer) == {tagged: 1}


# ------------------------------------------------------------------------------------------ the project's adapter


def test_the_reconcilers_adapter_starts_reads_and_names_the_rule(aws):
    lifecycle.configure(preview_delay=60)
    old = push(aws, "v1", "1")
    push(aws, "v2", "2")
    aws.client("ecr").put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=policy(
        rule(1, "tagged", patterns=["v*"], description="keep the newest release")))
    diagnosis = AwsDiagnosis(aws.client)
    assert diagnosis.start_preview(REPO) is True
    assert diagnosis.start_preview(REPO) is True  # joins the preview that runs
    assert diagnosis.preview_result(REPO) is None
    aws.advance(seconds=60)
    assert diagnosis.preview_result(REPO) == {old: PreviewHit("EXPIRE", "rule 1: keep the newest release", ("v1",))}
    aws.client("ecr").delete_lifecycle_policy(repositoryName=REPO)
    assert AwsDiagnosis(aws.client).start_preview(REPO) is False  # no lifecycle policy


def test_checks_adapter_waits_for_the_preview(aws):
    lifecycle.configure(preview_delay=0)
    old = push(aws, "v1", "1")
    push(aws, "v2", "2")
    aws.client("ecr").put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=policy(rule(1, "any")))
    slept = []
    assert AwsDiagnosis(aws.client, sleep=slept.append).lifecycle_preview(REPO) == {old: "EXPIRE"}
    assert slept == []
