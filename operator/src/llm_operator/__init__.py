"""llm-operator: managed, cost-efficient LLM deployments on Kubernetes."""

__version__ = "0.1.0"
