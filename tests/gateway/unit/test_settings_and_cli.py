"""Settings from flags and LLM_GATEWAY_* variables; the CLI's one-line errors; static files."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.__main__ import main
from llm_gateway.settings import GatewaySettings, SettingsError, parse_settings
from llm_gateway.static_models import StaticModelsError, load_static_models, parse_static_models


def test_defaults_match_the_contract() -> None:
    settings = parse_settings(["--kube"], environ={})
    assert (settings.port, settings.prefix_chars, settings.load_factor) == (8080, 256, 1.25)
    assert (settings.max_held_per_model, settings.hold_timeout_seconds) == (100, 300.0)
    assert (settings.max_queued_per_model, settings.queue_timeout_seconds) == (1000, 60.0)
    assert settings.scrape_interval_seconds == 2.0 and settings.namespaces == ()


def test_flags_win_over_environment() -> None:
    environ = {
        "LLM_GATEWAY_PORT": "9000", "LLM_GATEWAY_NAMESPACES": "a, b", "LLM_GATEWAY_KUBE": "1",
    }  # fmt: skip
    settings = parse_settings(["--port", "9100", "--load-factor", "1.5"], environ=environ)
    assert settings.port == 9100 and settings.load_factor == 1.5
    assert settings.namespaces == ("a", "b") and settings.kube


@pytest.mark.parametrize(
    "argv",
    [["--kube", "--port", "0"], ["--kube", "--load-factor", "0.5"], ["--kube", "--port", "x"],
     ["--kube", "--hold-timeout-seconds", "0"], ["--kube", "--bogus"], [],
     ["--kube", "--max-queued-per-model", "0"], ["--kube", "--queue-timeout-seconds", "-1"],
     ["--kube", "--static-models", "m.yaml"]],
)  # fmt: skip
def test_bad_settings_are_rejected(argv: list[str]) -> None:
    with pytest.raises(SettingsError):
        parse_settings(argv, environ={})


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        GatewaySettings().port = 1  # type: ignore[misc]


def test_cli_bad_flag_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kube", "--max-held-per-model", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("llm-gateway: error: max_held_per_model")


def test_cli_unreadable_static_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--static-models", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_static_models_file(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("tiny:\n  - http://127.0.0.1:8001\n  - http://127.0.0.1:8002/\n")
    [target] = load_static_models(path)
    assert target.model == "tiny"
    assert [(r.pod, r.url, r.ready) for r in target.replicas] == [
        ("127.0.0.1:8001", "http://127.0.0.1:8001", True),
        ("127.0.0.1:8002", "http://127.0.0.1:8002", True),
    ]


@pytest.mark.parametrize(
    "document",
    [None, [], {"m": "http://a:1"}, {"m": ["ftp://a:1"]}, {"m": ["http://a:1/v1"]}, {"m": [3]},
     {"": ["http://a:1"]}],
)  # fmt: skip
def test_bad_static_models(document: object) -> None:
    with pytest.raises(StaticModelsError):
        parse_static_models(document)
