"""The OpenAI-compatible HTTP layer: protocol models, handlers, streaming, lifecycle."""
