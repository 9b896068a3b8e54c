"""Small-sample statistics for paired pass/fail results: Wilson intervals, paired bootstrap, exact McNemar."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pydantic import BaseModel

__all__ = ["wilson", "Comparison", "compare"]

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n ((0, 1) for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _binom_cdf(k: int, n: int) -> float:
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


class Comparison(BaseModel):
    """System B against system A on the same items."""

    a: str
    b: str
    n: int
    rate_a: float
    rate_b: float
    diff: float  # rate_b - rate_a
    ci_low: float
    ci_high: float
    b_only: int  # items B got right and A wrong
    a_only: int
    mcnemar_p: float
    significant: bool  # the interval excludes 0 and p < 0.05


def compare(name_a: str, a: Sequence[bool], name_b: str, b: Sequence[bool], *, samples: int = 5000,
            seed: int = 0) -> Comparison:
    """Paired bootstrap 95% interval of the difference in rates, and the exact two-sided McNemar test."""
    if len(a) != len(b):
        raise ValueError(f"paired results differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    diffs = [int(y) - int(x) for x, y in zip(a, b)]
    rng = random.Random(seed)
    if n:
        boot = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
        lo, hi = boot[int(0.025 * samples)], boot[min(samples - 1, int(0.975 * samples))]
    else:
        lo = hi = 0.0
    b_only = sum(1 for d in diffs if d > 0)
    a_only = sum(1 for d in diffs if d < 0)
    m = b_only + a_only
    p = 1.0 if m == 0 else min(1.0, 2 * _binom_cdf(min(b_only, a_only), m))
    rate_a = sum(map(int, a)) / n if n else 0.0
    rate_b = sum(map(int, b)) / n if n else 0.0
    return Comparison(a=name_a, b=name_b, n=n, rate_a=rate_a, rate_b=rate_b, diff=rate_b - rate_a,
                      ci_low=lo, ci_high=hi, b_only=b_only, a_only=a_only, mcnemar_p=p,
                      significant=(lo > 0 or hi < 0) and p < 0.05)
