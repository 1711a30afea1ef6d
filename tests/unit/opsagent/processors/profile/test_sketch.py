from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsagent.processors.profile.sketch import DDSketch

ALPHA = 0.01
# Latencies as they occur: zeros, sub-millisecond to minutes (any unit), plus wide extremes.
values_st = st.lists(
    st.one_of(
        st.just(0.0),
        st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
        st.integers(min_value=0, max_value=100_000).map(float),
    ),
    min_size=1, max_size=400,
)
qs_st = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=6)


def exact(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s) - 1e-9) - 1)]  # nearest rank


@settings(max_examples=300, deadline=None)
@given(values=values_st, qs=qs_st)
def test_quantiles_within_relative_error_of_exact(values: list[float], qs: list[float]) -> None:
    sk = DDSketch(ALPHA)
    for v in values:
        sk.add(v)
    for q, est in zip(qs, sk.quantiles(qs), strict=True):
        want = exact(values, q)
        assert abs(est - want) <= ALPHA * want * (1 + 1e-9), (q, est, want)


@settings(max_examples=200, deadline=None)
@given(a=values_st, b=values_st, qs=qs_st)
def test_merge_equals_sketch_of_concatenation(
        a: list[float], b: list[float], qs: list[float]) -> None:
    sa, sb, sab = DDSketch(ALPHA), DDSketch(ALPHA), DDSketch(ALPHA)
    for v in a:
        sa.add(v)
        sab.add(v)
    for v in b:
        sb.add(v)
        sab.add(v)
    sa.merge(sb)
    assert sa.bins == sab.bins
    assert (sa.zero, sa.count, sa.min, sa.max) == (sab.zero, sab.count, sab.min, sab.max)
    assert sa.sum == pytest.approx(sab.sum)
    assert sa.quantiles(qs) == sab.quantiles(qs)


@settings(max_examples=100, deadline=None)
@given(values=values_st)
def test_weighted_add_equals_repeated_add(values: list[float]) -> None:
    once, rep = DDSketch(ALPHA), DDSketch(ALPHA)
    for v in values:
        once.add(v, 3)
        for _ in range(3):
            rep.add(v)
    assert once.bins == rep.bins and once.zero == rep.zero and once.count == rep.count


def test_min_max_and_extremes_are_exact() -> None:
    sk = DDSketch(ALPHA)
    for v in (3.0, 7.0, 1234.5):
        sk.add(v)
    assert sk.quantiles([0.0, 1.0]) == [3.0, 1234.5]


def test_zero_values_answer_zero() -> None:
    sk = DDSketch(ALPHA)
    for v in (0.0, 0.0, 0.0, 5.0):
        sk.add(v)
    assert sk.quantile(0.5) == 0.0
    assert sk.quantile(1.0) == 5.0


def test_memory_is_bounded_and_collapse_keeps_high_quantiles_accurate() -> None:
    sk = DDSketch(ALPHA, max_buckets=64)
    values = [1.5 ** i for i in range(-200, 200)]  # spans ~140 orders of magnitude
    for v in values:
        sk.add(v)
    assert len(sk.bins) <= 64
    assert sk.collapsed > 0
    for q in (0.9, 0.99, 1.0):
        want = exact(values, q)
        assert abs(sk.quantile(q) - want) <= ALPHA * want * (1 + 1e-9)


def test_rejects_negative_and_nan_and_empty() -> None:
    sk = DDSketch()
    with pytest.raises(ValueError):
        sk.add(-1.0)
    with pytest.raises(ValueError):
        sk.add(float("nan"))
    with pytest.raises(ValueError):
        sk.quantile(0.5)


def test_merge_needs_same_accuracy() -> None:
    with pytest.raises(ValueError):
        DDSketch(0.01).merge(DDSketch(0.005))
