"""Which targets triggers may touch: an allow-list per target kind, plus "same account".

Patterns are shell-style (``prod-*``); ``*`` allows everything. ECS clusters are matched by name, EKS targets as
``<cluster>/<namespace>``, Lambda functions by name. A target named by ARN must be in this stack's account.

A target in another account names a role there (``roleArn``): its account must be one of
``AllowedTargetAccounts`` (default: none besides this account, whose targets need no role) and the role's name must
match ``TargetRolePattern`` (``*`` wildcards; empty: no role may be assumed). Its ARNs must then name the role's
account.

A stack builds its policy from its parameters (:meth:`TargetPolicy.from_strings`): an empty ECS or EKS list means
"any", but an empty Lambda list means *no* Lambda targets. Updating a function's code runs new code with that
function's role, so Lambda targets stay off until ``LambdaFunctionPattern`` names the functions. (The bare
``TargetPolicy()`` allows everything: it is for in-process use without a stack.)
"""

from __future__ import annotations

import fnmatch
import re
from typing import NamedTuple

from .errors import Forbidden, Invalid
from .model import ROLE_ARN_RE, EcsTarget, EksTarget, Target, canonical_target, function_name, short_name

_ARN_ACCOUNT = re.compile(r"arn:aws[a-z-]*:[a-z]+:[a-z0-9-]*:([0-9]{12}):")


def _patterns(raw: str | None) -> tuple[str, ...]:
    items = tuple(p.strip() for p in (raw or "*").split(",") if p.strip())
    return items or ("*",)


_PARAMETER = {"ECS cluster": "AllowedEcsClusters", "EKS namespace": "AllowedEksNamespaces",
              "Lambda function": "AllowedLambdaFunctions / LambdaFunctionPattern"}


class TargetPolicy(NamedTuple):
    ecs_clusters: tuple[str, ...] = ("*",)
    eks_namespaces: tuple[str, ...] = ("*",)
    lambda_functions: tuple[str, ...] = ("*",)
    account: str | None = None
    region: str | None = None  # the stack's region: a target ARN must name it
    target_accounts: tuple[str, ...] = ()  # accounts targets may be in (empty: this account only)
    role_pattern: str = ""  # role names a target's roleArn may name (empty: none)

    @classmethod
    def from_strings(cls, ecs: str | None, eks: str | None, functions: str | None,
                     account: str | None, region: str | None = None, target_accounts: str | None = None,
                     role_pattern: str | None = None) -> TargetPolicy:
        lambdas = tuple(p.strip() for p in (functions or "").split(",") if p.strip())  # empty: none
        return cls(_patterns(ecs), _patterns(eks), lambdas, account or None, region or None,
                   parse_accounts(target_accounts), (role_pattern or "").strip())

    @property
    def accounts(self) -> tuple[str, ...]:
        """The accounts targets may be in: ``AllowedTargetAccounts``, or this account alone."""
        return self.target_accounts or ((self.account,) if self.account else ())

    def check_role(self, target: Target) -> None:
        """A target's account (its ``roleArn``'s, else this stack's) is allowed, and so is the role's name."""
        role = getattr(target, "role_arn", None)
        if not role:  # this stack's own account: its own roles and the allow-lists above govern it
            return
        match = ROLE_ARN_RE.fullmatch(role)
        if match is None:  # parse_target refuses these; a stored trigger may not have been parsed
            raise Forbidden(f"{target.describe()}: roleArn {role!r} is not an IAM role ARN")
        account, name = match["account"], match["name"]
        if self.account is not None and account == self.account:
            raise Forbidden(f"{target.describe()}: roleArn names a role in this stack's own account {account}; "
                            "targets in this account are updated with the stack's own roles (drop roleArn)")
        if account not in self.accounts:
            allowed = ", ".join(self.target_accounts) or "empty: this account only"
            raise Forbidden(f"{target.describe()}: account {account} is not in AllowedTargetAccounts ({allowed})")
        if not self.role_pattern:
            raise Forbidden(f"{target.describe()}: no target role may be assumed; set the TargetRolePattern "
                            f"parameter (e.g. {name})")
        if not fnmatch.fnmatchcase(name, self.role_pattern):
            raise Forbidden(f"{target.describe()}: role {name} does not match TargetRolePattern "
                            f"({self.role_pattern})")

    def canonical(self, target: Target) -> Target:
        """The target in its one stored spelling (names; ARNs checked against this account and region)."""
        return canonical_target(target, self.account, self.region)

    def check(self, target: Target) -> None:
        """Raise :class:`Forbidden` when the target is outside the allow-list or another account."""
        self.check_role(target)
        home = ROLE_ARN_RE.fullmatch(target.role_arn)["account"] if getattr(target, "role_arn", None) \
            else self.account  # type: ignore[index]
        names = [v for k, v in target.as_dict().items() if isinstance(v, str) and k not in ("roleArn", "externalId")]
        for value in names:
            match = _ARN_ACCOUNT.match(value)
            if match and home and match[1] != home:
                raise Forbidden(f"{target.describe()} is in account {match[1]}; this target may only name "
                                f"account {home}")
        if isinstance(target, EcsTarget):
            subject, allowed, what = short_name(target.cluster), self.ecs_clusters, "ECS cluster"
        elif isinstance(target, EksTarget):
            subject, allowed, what = f"{target.cluster}/{target.namespace}", self.eks_namespaces, "EKS namespace"
        else:
            subject, allowed, what = function_name(target.function), self.lambda_functions, "Lambda function"
            if not allowed:
                raise Forbidden(f"Lambda targets are off in this stack: set the LambdaFunctionPattern parameter "
                                f"(and optionally AllowedLambdaFunctions) to the functions triggers may update, "
                                f"e.g. {subject}")
        if not any(fnmatch.fnmatchcase(subject, pattern) for pattern in allowed):
            raise Forbidden(f"{what} {subject} is not in this stack's allow-list ({', '.join(allowed)}; "
                            f"parameter {_PARAMETER[what]})")


_ACCOUNT = re.compile(r"[0-9]{12}")


def parse_accounts(raw: str | None) -> tuple[str, ...]:
    """``AllowedTargetAccounts``: comma-separated 12-digit account ids (empty: none listed)."""
    items = tuple(a.strip() for a in (raw or "").split(",") if a.strip())
    bad = [a for a in items if not _ACCOUNT.fullmatch(a)]
    if bad:
        raise Invalid(f"AllowedTargetAccounts must list 12-digit account ids, got {', '.join(map(repr, bad))}")
    return items
