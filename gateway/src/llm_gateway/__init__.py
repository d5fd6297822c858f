"""llm-gateway: one OpenAI front door for every LLMDeployment.

It routes by the request's `model` to that deployment's replicas, picks a replica by prefix
affinity with bounded load, holds requests while a deployment scales from zero, and exports
Prometheus metrics. Stateless: several gateway replicas agree on routing without shared state.
"""
