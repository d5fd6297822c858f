"""The operator's autoscaling flags reach the frozen config (and the render settings)."""

from __future__ import annotations

from llm_operator.settings import config_from_args, parser


def test_defaults() -> None:
    config = config_from_args(parser().parse_args(["-A"]))
    assert (config.scrape_interval_seconds, config.scrape_timeout_seconds) == (10.0, 2.0)
    assert config.render.keda_prometheus_address.startswith("http://prometheus-operated.")
    assert config.render.network_policy_namespaces == ()


def test_flags() -> None:
    args = parser().parse_args(
        [
            "-n", "team-a",
            "--scrape-interval-seconds", "5", "--scrape-timeout-seconds", "0.5",
            "--keda-prometheus-address", "http://prom.monitoring:9090",
            "--network-policy", "--network-policy-namespace", "llm-system",
            "--network-policy-namespace", "monitoring",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.scrape_interval_seconds, config.scrape_timeout_seconds) == (5.0, 0.5)
    assert config.render.keda_prometheus_address == "http://prom.monitoring:9090"
    assert config.render.network_policy_namespaces == ("llm-system", "monitoring")
