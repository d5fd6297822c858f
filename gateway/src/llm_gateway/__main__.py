"""`llm-gateway`: serve the OpenAI front door until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from llm_gateway.app import build_app
from llm_gateway.directory import Directory, StaticDirectory
from llm_gateway.routes import RouteLookup
from llm_gateway.settings import GatewaySettings, SettingsError, parse_settings
from llm_gateway.static_models import StaticConfig, StaticModelsError, load_static_config
from llm_gateway.tenants import TenantLookup

logger = logging.getLogger("llm_gateway")


def _directory(settings: GatewaySettings, static: StaticConfig | None) -> Directory:
    if static is not None:
        return StaticDirectory(static.targets)
    # Imported here: static mode and the unit tests need no cluster client.
    from llm_gateway.kube_directory import from_settings

    directory: Directory = from_settings(settings)
    return directory


def _tenants(settings: GatewaySettings) -> TenantLookup | None:
    """LLMTenants' keys on a cluster; with static models every caller is anonymous."""
    if not settings.kube:
        return None
    from llm_gateway.kube_tenants import from_settings

    tenants: TenantLookup = from_settings(settings)
    return tenants


def _routes(settings: GatewaySettings, static: StaticConfig | None) -> RouteLookup:
    """LLMRoutes on a cluster; the file's `routes:` with static models."""
    if static is not None:
        return static.routes
    from llm_gateway.kube_routes import from_settings

    routes: RouteLookup = from_settings(settings)
    return routes


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
        static = None
        if settings.static_models is not None:
            static = load_static_config(settings.static_models)
        directory = _directory(settings, static)
        tenants = _tenants(settings)
        routes = _routes(settings, static)
    except (SettingsError, StaticModelsError) as exc:
        print(f"llm-gateway: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = build_app(settings, directory, tenants=tenants, routes=routes)
    logger.info("listening on %s:%d", settings.host, settings.port)
    # handler_cancellation: a client that leaves cancels its held or streaming request, which
    # closes the upstream connection so the replica stops generating for nobody.
    web.run_app(
        app, host=settings.host, port=settings.port, handler_cancellation=True,
        print=None, access_log=None,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
