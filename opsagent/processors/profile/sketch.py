"""A mergeable relative-error quantile sketch (DDSketch-style log buckets) with bounded memory.

Values x > 0 fall in bucket k = ceil(log_gamma(x)) with gamma = (1 + a) / (1 - a), so bucket k
holds (gamma^(k-1), gamma^k]; a quantile is answered with 2 gamma^k / (gamma + 1), which is within
a relative error `a` (relative_accuracy) of every value in the bucket; ranks 0 and count - 1
are answered with the exact min and max. Values <= ZERO_THRESHOLD
are counted in a zero bucket and answered as 0. Masson, Rim, Lee: "DDSketch: a fast and fully
mergeable quantile sketch with relative-error guarantees", VLDB 2019.

Memory is bounded by `max_buckets`: when a new bucket would pass it, the lowest buckets are
collapsed into the lowest remaining one (as DDSketch does), so only the lowest quantiles lose
the bound, and only when the data spans more than gamma^max_buckets (about 6e17 for a = 1 % and
2048 buckets). Quantile answers are clamped to the exact [min, max] seen.

Two sketches with the same relative_accuracy merge exactly: merge(a, b) equals the sketch of the
concatenated data (bucket for bucket), which makes per-batch, per-file or per-pod sketches
combinable.
"""

from __future__ import annotations

import math

ZERO_THRESHOLD = 1e-9


class DDSketch:
    __slots__ = ("alpha", "gamma", "mult", "max_buckets", "bins", "zero", "count", "sum",
                 "min", "max", "collapsed")

    def __init__(self, relative_accuracy: float = 0.01, max_buckets: int = 2048) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy}")
        if max_buckets < 2:
            raise ValueError(f"max_buckets must be >= 2, got {max_buckets}")
        self.alpha = relative_accuracy
        self.gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self.mult = 1.0 / math.log(self.gamma)
        self.max_buckets = max_buckets
        self.bins: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.collapsed = 0  # values moved by collapsing (their quantiles lose the bound)

    def key(self, value: float) -> int:
        """Bucket index of a value > ZERO_THRESHOLD (callers may cache it per distinct value)."""
        return math.ceil(math.log(value) * self.mult)

    def add(self, value: float, n: int = 1) -> None:
        """Add `value` (>= 0) with weight n."""
        if value <= ZERO_THRESHOLD:
            if value < 0 or value != value:
                raise ValueError(f"sketch values must be >= 0, got {value}")
            self.add_key(None, value, n)
        else:
            self.add_key(math.ceil(math.log(value) * self.mult), value, n)

    def add_key(self, key: int | None, value: float, n: int = 1) -> None:
        """Add `value` whose bucket `key` was computed with key() (None: the zero bucket)."""
        self.count += n
        self.sum += value * n
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if key is None:
            self.zero += n
            return
        bins = self.bins
        if key in bins:
            bins[key] += n
        else:
            bins[key] = n
            if len(bins) > self.max_buckets:
                self._collapse()

    def _collapse(self) -> None:
        keys = sorted(self.bins)
        excess = len(keys) - self.max_buckets
        target = keys[excess]
        moved = 0
        for k in keys[:excess]:
            moved += self.bins.pop(k)
        self.bins[target] += moved
        self.collapsed += moved

    def merge(self, other: DDSketch) -> None:
        """Add every value of `other` (same relative_accuracy) into this sketch."""
        if other.gamma != self.gamma:
            raise ValueError("cannot merge sketches with different relative accuracy")
        self.count += other.count
        self.sum += other.sum
        self.zero += other.zero
        self.collapsed += other.collapsed
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        bins = self.bins
        for k, n in other.bins.items():
            bins[k] = bins.get(k, 0) + n
        while len(bins) > self.max_buckets:
            self._collapse()

    def quantile(self, q: float) -> float:
        """Estimate of the nearest-rank q-quantile: the value of rank max(0, ceil(q * count) - 1)
        (0-based) in sorted order, so p99 of 3 values is the largest, p50 of 4 the second."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: list[float]) -> list[float]:
        """Estimates for several q in [0, 1] with one pass over the buckets."""
        if self.count == 0:
            raise ValueError("quantile of an empty sketch")
        # The epsilon keeps 0.07 * 100 = 7.000000000000001 at rank 6, not 7.
        ranks = sorted((max(0, math.ceil(q * self.count - 1e-9) - 1), i)
                       for i, q in enumerate(qs))
        result = [0.0] * len(qs)
        keys = sorted(self.bins)
        cum = self.zero
        ki = 0
        last = self.count - 1
        for rank, i in ranks:
            if rank <= 0 or rank >= last:  # the extremes are known exactly
                result[i] = self.min if rank <= 0 else self.max
                continue
            if rank < self.zero:
                result[i] = 0.0
                continue
            while cum <= rank and ki < len(keys):
                cum += self.bins[keys[ki]]
                ki += 1
            k = keys[ki - 1]
            est = 2.0 * self.gamma ** k / (self.gamma + 1.0)
            result[i] = min(max(est, self.min), self.max)
        return result
