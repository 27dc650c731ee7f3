"""The parts of ``check`` for gates and notifications, mixed into :class:`imagestreams.check.Checker`:

- ``mapping``         the event source mappings the gate clock (SQS) and the notifications (table stream) arrive
  through exist and are Enabled, and their last batch did not fail;
- ``notify-topic``    with a notification topic: it exists and its policy lets EventBridge publish to it (and it is
  not encrypted with the AWS managed key, which EventBridge cannot use);
- ``scan-gate``       per trigger or policy tag with a ``scan`` gate: its repository is scanned on push (basic) or
  by enhanced scanning, else the gate can only time out;
- ``signature-gate``  per trigger or policy tag with a ``signature`` gate: the registry's signing configuration
  signs its repository, else only a signature pushed as a referrer (Notation, cosign) can pass it.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from typing import Any

from .check_common import ERROR, OK, WARN, Unreadable, as_list, finding, service_allows

# (function label, event source service) -> the mapping's label in findings
MAPPINGS = {"NotifyItemChanges": ("Notify", "dynamodb"), "GateClock": ("Gates", "sqs")}
SCANNED = {"SCAN_ON_PUSH", "CONTINUOUS_SCAN"}
AWS_MANAGED_SNS_KEY = "alias/aws/sns"


def gate_types(gates: Iterable[Any]) -> set[str]:
    """The gate types of a trigger (``Gate`` objects) or of a policy tag (gate dicts as stored)."""
    return {str(g.get("type") if isinstance(g, dict) else getattr(g, "type", "")) for g in gates or ()}


def events_may_publish(policy_text: str | None, topic_arn: str, account: str | None) -> bool:
    """Whether a topic policy has an Allow of ``sns:Publish`` on this topic for the EventBridge service (or for
    ``"*"``), with no condition, or one that names this account."""
    for statement, actions in service_allows(policy_text, "events.amazonaws.com"):
        if not actions & {"sns:publish", "sns:*", "*"}:
            continue
        if not any(fnmatch.fnmatchcase(topic_arn, str(r)) for r in as_list(statement.get("Resource", "*"))):
            continue
        if "Condition" in statement and account and account not in json.dumps(statement["Condition"]):
            continue
        return True
    return False


def covers(filters: Iterable[dict[str, Any]] | None, repository: str) -> bool:
    """Whether a rule's repository filters (wildcards; none = every repository) include this repository."""
    filters = list(filters or [])
    return not filters or any(fnmatch.fnmatchcase(repository, str(f.get("filter", ""))) for f in filters)


class GateChecks:
    """Mixin of :class:`imagestreams.check.Checker` (uses its ``aws``, ``stack``, ``streams`` and ``_read``)."""

    aws: Any
    stack: Any
    streams: Any

    def _read(self, check: str, subject: str, fn: Any, *args: Any) -> tuple[Any, dict[str, str] | None]:
        raise NotImplementedError  # Checker's

    # ------------------------------------------------------------------------------- stack: mappings, topic

    def notify_checks(self) -> list[dict[str, str]]:
        out = [self.mapping(label, *how) for label, how in MAPPINGS.items() if how[0] in self.stack.functions]
        if self.stack.topic:
            out.append(self.notify_topic(self.stack.topic))
        return out

    def mapping(self, label: str, function_label: str, service: str) -> dict[str, str]:
        function = self.stack.functions[function_label]
        found, problem = self._read("mapping", label, self.aws.event_sources, function)
        if problem:
            return problem
        mine = [m for m in found or [] if f":{service}:" in str(m.get("source", ""))]
        source = "the table stream" if service == "dynamodb" else "the gate clock queue"
        if not mine:
            return finding("mapping", label, ERROR, f"function {function} has no event source mapping from {source}",
                           "redeploy the stack (sam deploy)")
        m = mine[0]
        uuid, state, result = m.get("uuid", ""), str(m.get("state", "")), str(m.get("lastResult") or "")
        if state == "Disabled":
            return finding("mapping", label, ERROR,
                           f"the mapping {uuid} from {source} to {function} is Disabled: nothing is delivered",
                           f"aws lambda update-event-source-mapping --uuid {uuid} --enabled")
        if state != "Enabled":
            reason = f" ({m['reason']})" if m.get("reason") else ""
            return finding("mapping", label, WARN, f"the mapping {uuid} from {source} to {function} is {state}{reason}",
                           "run check again in a minute; if it stays, redeploy the stack")
        if result.startswith("PROBLEM"):
            return finding("mapping", label, WARN, f"the mapping {uuid} from {source} is Enabled, last batch: {result}",
                           f"the logs of {function} name the failure; failed batches go to its dead-letter queue")
        return finding("mapping", label, OK, f"the mapping from {source} to {function} is Enabled")

    def notify_topic(self, topic: str) -> dict[str, str]:
        subject = "NotificationTopic"
        attrs, problem = self._read("notify-topic", subject, self.aws.topic_attributes, topic)
        if problem:
            return problem
        if attrs is None:
            return finding("notify-topic", subject, ERROR, f"SNS topic {topic} does not exist",
                           "create it, or deploy with NotificationTopicArn naming an existing topic (or empty)")
        account = self.stack.account_id or topic.split(":")[4]
        if not events_may_publish(attrs.get("Policy"), topic, account):
            statement = {"Sid": "ImageStreamsNotifications", "Effect": "Allow",
                         "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish", "Resource": topic,
                         "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:events:{topic.split(':')[3]}:{account}"
                                                                    ":rule/*"}}}
            return finding("notify-topic", subject, WARN,
                           f"the policy of {topic} does not let EventBridge publish: no notification reaches it",
                           f"add this statement to the topic's policy: {json.dumps(statement, sort_keys=True)}")
        key = str(attrs.get("KmsMasterKeyId") or "")
        if key == AWS_MANAGED_SNS_KEY or key.endswith(":" + AWS_MANAGED_SNS_KEY):
            return finding("notify-topic", subject, WARN,
                           f"{topic} is encrypted with the AWS managed key {AWS_MANAGED_SNS_KEY}, which EventBridge "
                           "may not use: no notification reaches it",
                           "encrypt it with a customer managed key whose policy lets events.amazonaws.com use "
                           "kms:GenerateDataKey* and kms:Decrypt (aws sns set-topic-attributes --attribute-name "
                           "KmsMasterKeyId)")
        note = f"; encrypted with {key}: its key policy must let events.amazonaws.com use it" if key else ""
        return finding("notify-topic", subject, OK, f"the policy of {topic} lets EventBridge publish{note}")

    # ------------------------------------------------------------------------------- gates: their evidence

    def gate_checks(self, subject: str, stream: str, gates: Iterable[Any]) -> list[dict[str, str]]:
        """The checks of one trigger's or policy tag's gates: can their evidence ever arrive?"""
        types = gate_types(gates)
        out = []
        if "scan" in types:
            out.append(self.scan_gate(subject, stream))
        if "signature" in types:
            out.append(self.signature_gate(subject, stream))
        return out

    def policy_gate_checks(self) -> list[dict[str, str]]:
        all_policies = getattr(self.streams.store, "all_policies", None)
        if all_policies is None:
            return []
        out: list[dict[str, str]] = []
        for p in sorted(all_policies(), key=lambda p: str(p.stream_tag)):
            out += self.gate_checks(str(p.stream_tag), p.stream_tag.stream, p.gates)
        return out

    def _cached(self, key: tuple[str, ...], fn: Any, *args: Any) -> Any:
        """One read per key for the whole diagnosis (many triggers share a repository); raises Unreadable."""
        cache = self.__dict__.setdefault("_gate_reads", {})
        if key not in cache:
            try:
                cache[key] = fn(*args)
            except Unreadable as exc:
                cache[key] = exc
        if isinstance(cache[key], Unreadable):
            raise cache[key]
        return cache[key]

    def _scanning(self, stream: str) -> tuple[str | None, dict[str, Any] | None]:
        """(the registry's scan type when readable, the repository's effective scanning configuration)."""
        try:
            scan_type = self._cached(("registry-scanning",), self.aws.registry_scan_type)
        except Unreadable:
            scan_type = None  # the repository's own answer still tells whether it is scanned
        return scan_type, self._cached(("repository-scanning", stream), self.aws.repository_scanning, stream)

    def scan_gate(self, subject: str, stream: str) -> dict[str, str]:
        answer, problem = self._read("scan-gate", subject, self._scanning, stream)
        if problem:
            return problem
        scan_type, repo = answer
        if repo is None:
            return finding("scan-gate", subject, WARN, f"repository {stream} was not found: its scanning is unknown",
                           f"create {stream}, or remove the scan gate")
        frequency = str(repo.get("frequency") or "MANUAL")
        enhanced = scan_type == "ENHANCED"
        if frequency in SCANNED or (not enhanced and repo.get("scanOnPush")):
            how = (f"by enhanced scanning ({frequency.lower().replace('_', ' ')})" if enhanced else
                   "on push (basic scanning)")
            return finding("scan-gate", subject, OK, f"{stream} is scanned {how}")
        if enhanced:
            return finding(
                "scan-gate", subject, WARN,
                f"enhanced scanning covers no rule for {stream}: its images are never scanned, so the scan gate can "
                "only time out (blocked: not scanned)",
                "add a filter for it to the registry's enhanced scanning rules: aws ecr put-registry-scanning-"
                "configuration --scan-type ENHANCED --rules '[{\"scanFrequency\":\"SCAN_ON_PUSH\",\"repositoryFilters"
                f"\":[{{\"filter\":\"{stream}\",\"filterType\":\"WILDCARD\"}}]}}]' (this replaces the rules: "
                "include the current ones, see aws ecr get-registry-scanning-configuration)")
        return finding(
            "scan-gate", subject, WARN,
            f"{stream} is not scanned on push: its images are never scanned, so the scan gate can only time out "
            "(blocked: not scanned)",
            f"aws ecr put-image-scanning-configuration --repository-name {stream} --image-scanning-configuration "
            "scanOnPush=true (or turn on enhanced scanning for it)")

    def signature_gate(self, subject: str, stream: str) -> dict[str, str]:
        rules, problem = self._read("signature-gate", subject, self._cached, ("signing",),
                                    self.aws.signing_configuration)
        if problem:
            return problem
        referrers = ("so the signature gate passes only on a Notation or cosign signature pushed to it as a "
                     "referrer, else it blocks at its timeout")
        fix = ("set up ECR managed signing: a signing profile (aws signer put-signing-profile --profile-name "
               "imagestreams --platform-id Notation-OCI-SHA384-ECDSA), then aws ecr put-signing-configuration "
               "--signing-configuration '{\"rules\":[{\"signingProfileArn\":\"<the profile's ARN>\","
               f"\"repositoryFilters\":[{{\"filter\":\"{stream}\",\"filterType\":\"WILDCARD_MATCH\"}}]}}]}}' (this "
               "replaces the rules: include the current ones); or sign in your pipeline (notation / cosign)")
        if rules is None:
            return finding("signature-gate", subject, WARN,
                           f"the registry has no signing configuration: ECR does not sign {stream}'s images, "
                           f"{referrers}", fix)
        matching = [r for r in rules if covers(r.get("repositoryFilters"), stream)]
        if not matching:
            return finding("signature-gate", subject, WARN,
                           f"no rule of the registry's signing configuration covers {stream}, {referrers}", fix)
        return finding("signature-gate", subject, OK,
                       f"ECR signs {stream}'s images on push with {matching[0].get('signingProfileArn')}")
