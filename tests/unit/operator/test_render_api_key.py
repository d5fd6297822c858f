"""`spec.server.apiKeySecret` becomes llm-server's LLM_SERVER_API_KEY, read from the Secret
(issue 18 item 7): the key never passes through the operator, a ConfigMap or the spec."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import yaml

from llm_operator.api.resource import LLMDeployment
from llm_operator.catalog import default_catalog
from llm_operator.render import RenderSettings, desired_objects, dump_objects
from llm_operator.resolve import resolve

MANIFEST = """
apiVersion: inference.llmops.dev/v1alpha1
kind: LLMDeployment
metadata: {name: chat, namespace: team-a}
spec:
  model: {uri: "hf://meta-llama/Llama-3.1-8B-Instruct", maxContextLength: 8192}
  accelerator: {type: L4}
  server:
    env: [{name: LOG_FORMAT, value: json}]
    apiKeySecret: {name: chat-api-keys, key: keys}
"""


def render(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    resource = LLMDeployment.model_validate(manifest)
    return desired_objects(resource, resolve(resource.spec, default_catalog()), RenderSettings())


def server_env(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: list[dict[str, Any]] = container["env"]
    return env


def test_the_api_key_comes_from_the_secret() -> None:
    manifest = yaml.safe_load(MANIFEST)
    objects = render(manifest)
    env = server_env(objects)
    assert {"name": "LOG_FORMAT", "value": "json"} in env
    assert [e for e in env if e["name"] == "LLM_SERVER_API_KEY"] == [
        {
            "name": "LLM_SERVER_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "chat-api-keys", "key": "keys"}},
        }
    ]
    assert "chat-api-keys" not in "".join(
        dump_objects([o for o in objects if o["kind"] == "ConfigMap"])
    )
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    kubernetes_validate.validate(deployment, "1.29", strict=True)

    del manifest["spec"]["server"]["apiKeySecret"]
    assert not [e for e in server_env(render(manifest)) if e["name"] == "LLM_SERVER_API_KEY"]
