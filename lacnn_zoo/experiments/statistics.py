"""The statistics of results over seeds: mean and spread, Welch's test (scipy) with its confidence interval, and
the verdict a criterion takes from it."""

import math

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05


# ---------------------------------------------------------------------------------------------------- statistics

def welch(a, b, confidence=CONFIDENCE):
    """Welch's unequal-variance t-test of mean(a) - mean(b), with its `confidence` interval (SciPy's
    `ttest_ind(equal_var=False)` and its `confidence_interval`).

    Args:
        a: the first group's values (a sequence of numbers).
        b: the second group's values.
        confidence: the confidence level of the interval.

    Returns:
        A dict (diff, ci_low, ci_high, t, df, p, n_a, n_b); the interval and test are None with fewer than 2
        values in a group or no spread in either (the test is undefined there).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = {"diff": float(a.mean() - b.mean()), "ci_low": None, "ci_high": None, "t": None, "df": None, "p": None,
           "n_a": len(a), "n_b": len(b)}
    if len(a) < 2 or len(b) < 2:
        return out
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if se <= 1e-12 * max(1.0, abs(a.mean()), abs(b.mean())):  # no spread (up to round-off): undefined
        return out
    test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(confidence_level=confidence)
    out.update(t=float(test.statistic), df=float(test.df), p=float(test.pvalue), ci_low=float(interval.low),
               ci_high=float(interval.high))
    return out


def mean_std(values):
    """(mean, sample std) of the values that are not None; (None, None) when none is; std 0 for one value.

    Args:
        values: numbers, None for a missing one.

    Returns:
        `(mean, std)` as floats (the std with ddof=1), or `(None, None)`.
    """
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_interval(values, confidence=CONFIDENCE):
    """Mean, sample std and Student's t confidence interval of the mean.

    Args:
        values: the numbers (seeds' results).
        confidence: the confidence level of the interval.

    Returns:
        `(mean, std, low, high)`; the interval is `(None, None)` for fewer than 2 values.
    """
    from scipy import stats  # lazy: SciPy's stats loads in about a second, only when a test is made

    mean, std = mean_std(values)
    if len(values) < 2:
        return mean, std, None, None
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * std / math.sqrt(len(values))
    return mean, std, mean - half, mean + half


# Fewer seeds than this per side leave Welch's test with under 2 degrees of freedom (t_0.975 = 12.7 at df = 1):
# a prediction that is not significant then is "not shown", not "did not hold".
MIN_SEEDS = 3


def verdict(p, diff, n, sign):
    """A criterion's verdict from a Welch test: "not shown" when the test had fewer than MIN_SEEDS values per side
    (`n`) to tell, whatever its p-value (the quick study's 2 seeds); otherwise "held" (p < ALPHA, difference of the
    predicted `sign`) or "did not hold" (significant the other way, or not significant).

    Args:
        p: the test's p-value, or None when the test is undefined.
        diff: the difference of the means.
        n: values per side (the smaller side).
        sign: the predicted sign of `diff`, +1 or -1.

    Returns:
        "held", "did not hold", or "not shown: n=<n> per side (...)".
    """
    if n < MIN_SEEDS:  # Welch's test on 2 values a side has about one degree of freedom: it tells nothing
        return f"not shown: n={n} per side (the criterion needs >= {MIN_SEEDS} seeds)"
    if p is not None and p < ALPHA and np.sign(diff) == sign:
        return "held"
    return "did not hold"
