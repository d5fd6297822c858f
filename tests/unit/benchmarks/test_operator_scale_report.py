"""The operator scale benchmark's arithmetic (benchmarks/operator_scale_report.py): Prometheus
text parsing and histogram_quantile as PromQL computes it. Pure, milliseconds."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import operator_scale_report as report

TEXT = """\
# HELP h A histogram.
# TYPE h histogram
h_bucket{le="0.1"} 50.0
h_bucket{le="1.0"} 99.0
h_bucket{le="+Inf"} 100.0
h_count 100.0
apiserver_request_total{code="201",resource="pods",subresource="",verb="POST"} 3
apiserver_request_total{code="409",resource="pods",subresource="",verb="POST"} 1
apiserver_request_total{code="200",resource="pods",subresource="status",verb="PATCH"} 2
"""


def test_parse_and_sum_by_labels() -> None:
    samples = report.parse_metrics(TEXT)
    assert report.request_table(samples) == {"POST pods": 4.0, "PATCH pods/status": 2.0}
    assert report.buckets(samples, "h") == {0.1: 50.0, 1.0: 99.0, math.inf: 100.0}


def test_histogram_quantile_interpolates_within_the_bucket_like_promql() -> None:
    cumulative = {0.1: 50.0, 1.0: 99.0, math.inf: 100.0}
    assert report.histogram_quantile(0.5, cumulative) == 0.1
    assert math.isclose(report.histogram_quantile(0.99, cumulative) or 0, 1.0)
    assert math.isclose(report.histogram_quantile(0.25, cumulative) or 0, 0.05)
    assert report.histogram_quantile(0.999, cumulative) == 1.0  # in +Inf: highest finite bound
    assert report.histogram_quantile(0.5, {math.inf: 0.0}) is None
    assert report.fraction_within(cumulative, 1.0) == 0.99


def test_deltas_drop_what_did_not_move() -> None:
    assert report.delta({"a": 3.0, "b": 1.0}, {"a": 1.0, "b": 1.0}) == {"a": 2.0}
    assert report.bucket_delta({1.0: 5.0, math.inf: 6.0}, {1.0: 2.0}) == {1.0: 3.0, math.inf: 6.0}


def test_a_quantile_above_the_last_finite_bucket_is_only_a_bound() -> None:
    assert report.beyond_buckets(0.99, {10.0: 98.0, math.inf: 100.0})
    assert not report.beyond_buckets(0.99, {10.0: 99.0, math.inf: 100.0})
