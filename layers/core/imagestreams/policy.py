"""Which targets triggers may touch: an allow-list per target kind, plus "same account".

Patterns are shell-style (``prod-*``); ``*`` allows everything. ECS clusters are matched by name, EKS targets as
``<cluster>/<namespace>``, Lambda functions by name. A target named by ARN must be in this stack's account.

A stack builds its policy from its parameters (:meth:`TargetPolicy.from_strings`): an empty ECS or EKS list means
"any", but an empty Lambda list means *no* Lambda targets. Updating a function's code runs new code with that
function's role, so Lambda targets stay off until ``LambdaFunctionPattern`` names the functions. (The bare
``TargetPolicy()`` allows everything: it is for in-process use without a stack.)
"""

from __future__ import annotations

import fnmatch
import re
from typing import NamedTuple

from .errors import Forbidden
from .model import EcsTarget, EksTarget, Target, canonical_target, function_name, short_name

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

    @classmethod
    def from_strings(cls, ecs: str | None, eks: str | None, functions: str | None,
                     account: str | None, region: str | None = None) -> TargetPolicy:
        lambdas = tuple(p.strip() for p in (functions or "").split(",") if p.strip())  # empty: none
        return cls(_patterns(ecs), _patterns(eks), lambdas, account or None, region or None)

    def canonical(self, target: Target) -> Target:
        """The target in its one stored spelling (names; ARNs checked against this account and region)."""
        return canonical_target(target, self.account, self.region)

    def check(self, target: Target) -> None:
        """Raise :class:`Forbidden` when the target is outside the allow-list or another account."""
        names = [v for v in target.as_dict().values() if isinstance(v, str)]
        for value in names:
            match = _ARN_ACCOUNT.match(value)
            if match and self.account and match[1] != self.account:
                raise Forbidden(f"{target.describe()} is in account {match[1]}; this stack only updates targets "
                                f"in account {self.account}")
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
