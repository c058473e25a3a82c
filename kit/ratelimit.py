"""Rate limits by key (API key, client address …): Redis-backed when configured, in memory otherwise.

Rules are strings such as "60/minute" or "10/second;300/hour". A Redis outage does not lock
citizens out: the limiter falls back to its in-memory window and logs the failure.
"""

import functools
import logging
import math
import time
from dataclasses import dataclass

import limits
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from kit.errors import AppError

log = logging.getLogger("minsheng.ratelimit")


@dataclass(frozen=True)
class Decision:
    """The outcome of one hit."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int


@functools.lru_cache(maxsize=256)
def _parse(rule: str) -> tuple:
    return tuple(limits.parse_many(rule))


class RateLimiter:
    """Sliding-window limits shared by all replicas when a Redis URL is given."""

    def __init__(self, redis_url: str | None = None, *, namespace: str = "minsheng"):
        self.namespace = namespace
        self._memory = SlidingWindowCounterRateLimiter(storage_from_string("async+memory://"))
        self._shared = None
        self._shared_down_until = 0.0
        if redis_url:
            url = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
            self._shared = SlidingWindowCounterRateLimiter(storage_from_string(url, key_prefix=namespace))

    async def hit(self, rule: str, *key: str) -> Decision:
        """Count one request against every limit of the rule; the strictest decides."""
        decisions = []
        for item in _parse(rule):
            decisions.append(await self._hit_one(item, key))
        refused = [d for d in decisions if not d.allowed]
        if refused:
            return max(refused, key=lambda d: d.retry_after)
        return min(decisions, key=lambda d: d.remaining)

    async def _hit_one(self, item, key) -> Decision:
        strategy = self._memory
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                allowed = await self._shared.hit(item, self.namespace, *key)
                stats = await self._shared.get_window_stats(item, self.namespace, *key)
                return self._decision(item, allowed, stats)
            except Exception as exc:  # Redis down: keep limiting per replica, retry Redis in a while
                self._shared_down_until = time.monotonic() + 5.0
                log.warning("shared rate limiter unavailable, limiting in memory: %s", exc)
        allowed = await strategy.hit(item, self.namespace, *key)
        stats = await strategy.get_window_stats(item, self.namespace, *key)
        return self._decision(item, allowed, stats)

    @staticmethod
    def _decision(item, allowed: bool, stats) -> Decision:
        retry = 0 if allowed else max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(
            allowed=allowed, limit=item.amount, remaining=max(0, stats.remaining), retry_after=retry
        )

    async def enforce(self, rule: str, *key: str, what: str = "requests") -> Decision:
        """Hit, and raise 429 with Retry-After when over the limit."""
        d = await self.hit(rule, *key)
        if not d.allowed:
            raise AppError(
                429,
                "rate_limited",
                f"too many {what}; try again in {d.retry_after} s",
                headers={"Retry-After": str(d.retry_after), "X-RateLimit-Limit": str(d.limit)},
            )
        return d
