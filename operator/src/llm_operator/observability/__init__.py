"""Prometheus rules and Grafana dashboards for LLMDeployments, generated from one place.

`python -m llm_operator.observability` (`make observability`) writes them into the chart:
charts/llm-operator/files/prometheus-rules.yaml and files/dashboards/*.json. Pure: no kopf,
kubernetes or prometheus_client; the metric names are those of llm_operator.metrics and
llm_server.metrics (see docs/observability.md).
"""

from llm_operator.observability.files import generated_files

__all__ = ["generated_files"]
