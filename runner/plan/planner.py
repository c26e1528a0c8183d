"""From a validated job spec to a :class:`JobPlan`: sources with resolved times, and limits.

Pure: no I/O beyond re-reading manifests lazily when the run streams them. Relative times are
resolved once, against ``now`` at job start; a resume passes the frozen times from its checkpoint
so the same targets are selected a day later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from runner.kinds.base import Product
from runner.kinds.listing import TimeWindow
from runner.kinds.registry import selector_of
from runner.kinds.spec_model import SpecTarget
from runner.kinds.timespec import ResolvedTimes
from runner.plan.selection import Explicit, Manifest, Source
from runner.plan.shard import (
    Shard,
    own_part,
    share_deletions,
    share_product,
    share_rate,
    share_slots,
)
from runner.spec.holds import HoldSpec
from runner.spec.jobspec import JobSpec, describe_changes, spec_fingerprint
from runner.spec.resolved import Resolution, resolution
from runner.values import ProductLimit, RetryPolicy

__all__ = ["JobPlan", "ServiceSet", "build_plan", "describe_changes", "shard_plan"]

ServiceSet = Literal["all"] | tuple[str, ...] | None


@dataclass(frozen=True)
class JobPlan:
    """Everything a run needs from the spec, with every time resolved."""

    name: str
    fingerprint: str
    canonical: dict[str, Any]
    frozen_now: str
    times_json: dict[str, str]
    sources: list[Source]
    service: str | None  # the job's one Service (None: the default one, or several)
    webhooks: bool | None
    concurrency: int
    per_conversation_rate: float
    per_service_rate: float
    products: dict[Product, ProductLimit]
    retry: RetryPolicy
    poll_interval: float
    operation_timeout: float
    max_deletions: int | None
    max_failure_rate: float
    failure_rate_min_count: int
    fanout: int
    shard: Shard | None = None  # this process's part of the targets, when the job is sharded
    # A job of several Services: "all" (found when the run starts) or their SIDs; each v1
    # source is then listed in each of them, and each target carries its Service.
    services: ServiceSet = None
    # Legal holds of the spec's exclude: (the config's are merged in where the run starts).
    holds: HoldSpec | None = None

    def resolution(self, hosts: Mapping[str, str], account_sid: str) -> Resolution:
        """What the plan resolves to (its frozen cutoffs, the Service), sent to ``hosts`` on
        the account ``account_sid``: what plan, run and apply show before they act."""
        return resolution(
            self.name,
            self.canonical,
            self.times_json,
            frozen_at=self.frozen_now,
            hosts=hosts,
            account_sid=account_sid,
        )


def build_plan(
    spec: JobSpec, now: datetime, *, frozen_times: Mapping[str, object] | None = None
) -> JobPlan:
    """Plan ``spec`` as of ``now``; a resume passes the times frozen in its checkpoint."""
    times = (
        ResolvedTimes.from_json(frozen_times)
        if frozen_times is not None
        else ResolvedTimes.at(spec, now)
    )
    sources = [_source(i, t, times) for i, t in enumerate(spec.targets)]
    limits = spec.limits
    products = {
        Product.CONVERSATIONS: ProductLimit(
            limits.conversations.rate, limits.conversations.burst, limits.conversations.concurrency
        ),
        Product.MEMORY: ProductLimit(
            limits.memory.rate, limits.memory.burst, limits.memory.concurrency
        ),
    }
    return JobPlan(
        name=spec.name,
        fingerprint=spec_fingerprint(spec),
        canonical=spec.canonical(),
        frozen_now=now.isoformat(),
        times_json=times.to_json(),
        sources=sources,
        service=spec.one_service,
        services=_services(spec),
        webhooks=spec.webhooks,
        concurrency=limits.concurrency,
        per_conversation_rate=limits.per_conversation_rate,
        per_service_rate=limits.per_service_rate,
        products=products,
        retry=RetryPolicy(
            max_attempts=spec.retry.max_attempts,
            base_delay=spec.retry.base_delay,
            max_delay=spec.retry.max_delay,
            max_elapsed=spec.retry.max_elapsed,
            max_pause=spec.retry.max_pause,
        ),
        poll_interval=spec.operations.poll_interval,
        operation_timeout=spec.operations.timeout,
        max_deletions=spec.safety.max_deletions,
        max_failure_rate=spec.safety.max_failure_rate,
        failure_rate_min_count=spec.safety.failure_rate_min_count,
        # Enough conversations drained at once that the account cap, not one conversation's
        # 30/s, bounds a message purge.
        fanout=max(8, limits.concurrency),
        holds=None if spec.exclude is None else spec.exclude.resolved() or None,
    )


def _services(spec: JobSpec) -> ServiceSet:
    if isinstance(spec.service, tuple):
        return spec.service
    return "all" if spec.service == "all" else None


def _source(index: int, target: SpecTarget, times: ResolvedTimes) -> Source:
    selector = selector_of(target.kind)
    if selector is not None:
        # Its own ids, file and listing (an identity: a person's messages, participants, User).
        return selector.select(target, _no_window, f"targets[{index}]")
    kind = target.resource_kind
    if target.ids is not None:
        return Explicit(kind, tuple(target.explicit_ids()))
    if target.from_file is not None and target.manifest is not None:
        return Manifest(kind, target.iter_manifest, target.manifest.count)

    def window(stem: str) -> TimeWindow:
        """The resolved bounds ``<stem>_before`` / ``<stem>_after`` of this target."""
        return TimeWindow(
            before=times.get(index, f"{stem}_before"), after=times.get(index, f"{stem}_after")
        )

    return kind.select(target, window)


def _no_window(stem: str) -> TimeWindow:
    return TimeWindow()


def shard_plan(plan: JobPlan, shard: Shard | None) -> JobPlan:
    """``plan`` with the account-wide budgets cut to this shard's share.

    The account cap, the per-Service rate, the per-product limits and safety.max_deletions are
    spent by every shard at once, so each gets 1/n. The per-conversation rate is not divided:
    every message and participant of a conversation belongs to one shard, which therefore has
    all of it.
    """
    if shard is None or shard.count == 1:
        return plan  # one shard of one is the whole job: no suffix, no division
    concurrency = share_slots(plan.concurrency, shard.count)
    products: dict[Product, ProductLimit] = {
        product: share_product(limit, shard.count) for product, limit in plan.products.items()
    }
    return dataclasses.replace(
        plan,
        concurrency=concurrency,
        per_service_rate=share_rate(plan.per_service_rate, shard.count),
        products=products,
        # As the planner does: enough conversations drained at once to fill the (smaller) cap.
        fanout=max(8, concurrency),
        shard=shard,
        max_deletions=share_deletions(plan.max_deletions, shard),
        sources=[own_part(s, shard, plan.max_deletions is not None) for s in plan.sources],
    )
