"""Composition root: the only code that pairs ports with adapters. Cached per warm container."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from . import aws
from .config import Settings

if TYPE_CHECKING:  # the use cases and adapters load when services are built: the notify function needs none of them
    from .ports import TargetDriver
    from .services import ImageStreams


class LazyDrivers(Mapping[str, "TargetDriver"]):
    """Builds a target driver (and its client) the first time a trigger of that type fires."""

    def __init__(self, factories: dict[str, Callable[[], TargetDriver]]) -> None:
        self._factories = factories
        self._built: dict[str, TargetDriver] = {}

    def __getitem__(self, key: str) -> TargetDriver:
        if key not in self._built:
            self._built[key] = self._factories[key]()
        return self._built[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


class RoleDrivers:
    """The driver of one target type, one per account: a target with ``roleArn`` is read and written by a driver
    whose clients act as that role (``sts:AssumeRole``, credentials cached per role); every other target by the
    stack's own. Forwards every driver method whose first argument is a target."""

    def __init__(self, build: Callable[[str | None, str | None], TargetDriver]) -> None:
        self._build = build
        self._drivers: dict[tuple[str | None, str | None], TargetDriver] = {}

    def for_role(self, role_arn: str | None, external_id: str | None = None) -> TargetDriver:
        key = (role_arn or None, external_id or None)
        if key not in self._drivers:
            self._drivers[key] = self._build(*key)
        return self._drivers[key]

    def for_target(self, target: Any) -> TargetDriver:
        return self.for_role(getattr(target, "role_arn", None), getattr(target, "external_id", None))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self.for_role(None), name)  # AttributeError when the driver has no such method
        if not callable(value):
            return value  # a property of the driver kind (e.g. finds_past_rollouts), the same for every role

        def routed(first: Any = None, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.for_target(first), name)(first, *args, **kwargs)

        return routed


def _ecs_driver(task_role_pattern: str, role: str | None = None, external_id: str | None = None) -> TargetDriver:
    from .adapters.ecs import EcsDriver

    return EcsDriver(aws.role_client("ecs", role, external_id), task_role_pattern=task_role_pattern)


def _eks_driver(registry: str | None = None, role: str | None = None,
                external_id: str | None = None) -> TargetDriver:
    from .adapters.eks import EksClusters, EksDriver, KubeApi

    return EksDriver(KubeApi(EksClusters(aws.role_client("eks", role, external_id),
                                         aws.session_for(role, external_id))), registry=registry)


def _lambda_driver(role: str | None = None, external_id: str | None = None) -> TargetDriver:
    from .adapters.awslambda import LambdaDriver

    return LambdaDriver(aws.role_client("lambda", role, external_id))


def stack_registry_host(settings: Settings) -> str | None:
    """``<account>.dkr.ecr.<region>.amazonaws.com``: the only registry references may name. None when the account
    or region is unknown (then references that name any registry are refused)."""
    if not settings.account_id or not settings.region:
        return None
    from .model import registry_host

    return registry_host(settings.account_id, settings.region)


def _diagnosis() -> Any:
    """The AWS reads of the ``check`` action (imported only when it runs)."""
    from .adapters.diagnose import AwsDiagnosis

    return AwsDiagnosis(aws.client)


def build(settings: Settings) -> ImageStreams:
    from .adapters.dynamodb import DynamoStore
    from .adapters.ecr import EcrRegistry
    from .policy import TargetPolicy
    from .services import ImageStreams

    fire_queue = None
    if settings.fire_queue_url:
        from .adapters.sqs import SqsFireQueue

        fire_queue = SqsFireQueue(aws.LazyClient("sqs"), settings.fire_queue_url)
    gate_clock = None
    if settings.gate_clock_queue_url:
        from .adapters.sqs import SqsGateClock

        gate_clock = SqsGateClock(aws.LazyClient("sqs"), settings.gate_clock_queue_url)
    host = stack_registry_host(settings)
    streams = ImageStreams(
        store=DynamoStore(aws.client("dynamodb"), settings.table,
                          tombstone_ttl=timedelta(days=settings.tombstone_ttl_days)),
        registry=EcrRegistry(aws.LazyClient("ecr"), host=host,
                             repository_pattern=settings.repository_pattern),
        drivers=LazyDrivers({
            "ecs": lambda: RoleDrivers(lambda role, ext: _ecs_driver(settings.task_role_pattern, role, ext)),
            "eks": lambda: RoleDrivers(lambda role, ext: _eks_driver(host, role, ext)),
            "lambda": lambda: RoleDrivers(_lambda_driver)}),
        fire_queue=fire_queue,
        gate_clock=gate_clock,
        history_limit=settings.history_limit,
        policy=TargetPolicy.from_strings(settings.allowed_ecs_clusters, settings.allowed_eks_namespaces,
                                         settings.allowed_lambda_functions, settings.account_id, settings.region,
                                         settings.allowed_target_accounts, settings.target_role_pattern),
    )
    streams.diagnosis = _diagnosis  # type: ignore[attr-defined]
    return streams


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def services() -> ImageStreams:
    return build(settings())


def reconciler() -> Any:
    from .reconcile import Reconciler

    streams = services()
    return Reconciler(streams, streams.registry, streams.store, expiry=expiry_watch(streams))


def expiry_watch(streams: ImageStreams) -> Any:
    """The reconciler's expiry-risk pass: lifecycle previews of the repositories we own, RISK items in the table."""
    from .adapters.diagnose import AwsDiagnosis
    from .adapters.risks import DynamoRiskStore
    from .check import period
    from .expiry import ExpiryWatch

    registry = streams.registry
    return ExpiryWatch(streams, registry.repositories, AwsDiagnosis(aws.client),
                       DynamoRiskStore(aws.client("dynamodb"), settings().table), clock=streams.clock,
                       period=period(os.environ.get("RECONCILE_SCHEDULE")),
                       owns=getattr(registry, "owns", lambda _repository: True))


@lru_cache(maxsize=1)
def publisher() -> Any:
    """Where notifications go: EventBridge, the bus named by ``EVENT_BUS_NAME`` (empty: the default bus)."""
    import os

    from .adapters.events import EventBridgePublisher

    return EventBridgePublisher(aws.client("events"), os.environ.get("EVENT_BUS_NAME", "").strip() or None)


def reset() -> None:
    publisher.cache_clear()
    services.cache_clear()
    settings.cache_clear()
    aws.reset()
