"""The operator's view of llm-gateway: --gateway-url (or its env) and the demand wake-up."""

from __future__ import annotations

import asyncio

import pytest

from llm_operator.catalog import default_catalog
from llm_operator.settings import GATEWAY_URL_ENV, config_from_args, parser
from llm_operator.state import Wakeups


def test_no_gateway_url_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GATEWAY_URL_ENV, raising=False)
    config = config_from_args(parser().parse_args(["-A"]))
    assert config.gateway_url is None
    assert config.reconcile_settings(default_catalog()).gateway_url is None


def test_the_flag_or_the_env_sets_it_without_a_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "http://llmops-gateway.llmops.svc:8080/v1"
    config = config_from_args(parser().parse_args(["-A", "--gateway-url", url + "/"]))
    assert config.gateway_url == url
    monkeypatch.setenv(GATEWAY_URL_ENV, url)
    assert config_from_args(parser().parse_args(["-A"])).gateway_url == url


@pytest.mark.parametrize("bad", ["llmops-gateway:8080", "ftp://x/v1", "http://a b/v1"])
def test_a_gateway_url_that_is_no_http_url_stops_start_up(bad: str) -> None:
    with pytest.raises(SystemExit, match="--gateway-url must be an http"):
        config_from_args(parser().parse_args(["-A", "--gateway-url", bad]))


def test_a_new_demand_stamp_wakes_the_daemon_once() -> None:
    async def run() -> list[bool]:
        wakeups = Wakeups(resync_seconds=3600)
        key = ("ns", "chat")
        woken = []
        for stamp in (None, "2026-01-01T12:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T12:00:05Z"):
            wakeups.wake_on_new_demand(key, stamp)
            woken.append(await wakeups.wait(key, also_at=float("inf"), stopped=asyncio.sleep(0.01)))
        return woken

    assert asyncio.run(run()) == [False, True, False, True]
