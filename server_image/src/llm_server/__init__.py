"""llm-server: the inference engine and OpenAI-compatible HTTP server that llm-operator deploys."""

__version__ = "0.1.0"
