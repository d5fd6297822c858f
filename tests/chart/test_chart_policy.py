"""Issue 18, item 9: the chart's `server.policy` values reach the operator as its flags."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
from chart_rendering import of_component, render, render_objects

from llm_operator.render.policy import PodPolicy
from llm_operator.settings import config_from_args, parser


def _policy(values: dict[str, Any]) -> PodPolicy:
    operator = of_component(render_objects(values), "operator")
    (deployment,) = [o for o in operator if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return config_from_args(parser().parse_args(container["args"])).render.pod_policy


def test_defaults_allow_the_examples_models_directory_and_nothing_more() -> None:
    assert _policy({}) == PodPolicy(
        allowed_host_paths=("/models",), allowed_secrets=("hf-token", "llm-*")
    )


def test_every_policy_value_becomes_a_flag() -> None:
    values = {
        "server": {
            "policy": {
                "allowedHostPaths": [],
                "allowedImageRegistries": ["registry.corp/", "ghcr.io/llmops-dev/llm-server"],
                "allowedSecrets": [],
                "allowedServiceAccounts": ["reader"],
                "allowHostNamespaces": True,
            }
        }
    }
    assert _policy(values) == PodPolicy(
        allowed_host_paths=(),
        allowed_image_registries=("registry.corp/", "ghcr.io/llmops-dev/llm-server"),
        allowed_secrets=(),
        allowed_service_accounts=("reader",),
        allow_host_namespaces=True,
    )


@pytest.mark.parametrize(
    "policy",
    [{"allowedHostPaths": ["models"]}, {"allowedSecrets": ["a,b"]}, {"allowPrivileged": True}],
)
def test_the_schema_refuses_bad_policy_values(policy: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError, match="/server/policy"):
        render({"server": {"policy": policy}})
