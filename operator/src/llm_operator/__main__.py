"""`llm-operator` / `python -m llm_operator`: run the kopf operator."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import sys
from typing import TYPE_CHECKING, TextIO

from llm_operator.settings import OperatorConfig, config_from_args, parser

if TYPE_CHECKING:
    from llm_operator.k8s import KubeApi

logger = logging.getLogger("llm_operator")


async def prepare_cluster(api: KubeApi, config: OperatorConfig, timeout: float = 300.0) -> None:
    """Wait until the API serves our CRDs, then make sure the peering object exists.

    kopf scans the CRDs once at start-up (scanning is off), so starting before a fresh
    `helm install` has them established would leave it watching nothing. Mandatory peering
    pauses every replica until the peering object exists, so the operator creates it (a 409
    from a peer that was quicker is fine) instead of asking the installer to order it after
    the CRDs.
    """
    from llm_operator.api.resource import GROUP, PLURAL, VERSION
    from llm_operator.api.route import PLURAL as ROUTE_PLURAL
    from llm_operator.k8s import ApiError

    group = "/apis/kopf.dev/v1"
    wanted = [(f"/apis/{GROUP}/{VERSION}", PLURAL), (f"/apis/{GROUP}/{VERSION}", ROUTE_PLURAL)]
    if config.peering is not None:
        wanted.append((group, "clusterkopfpeerings" if config.all_namespaces else "kopfpeerings"))
    deadline = asyncio.get_running_loop().time() + timeout
    for group_path, plural in wanted:
        while True:
            try:
                served = await api.call("GET", group_path) or {}
                if plural in {r.get("name") for r in served.get("resources", [])}:
                    break
            except ApiError as exc:
                if exc.status not in (0, 404, 503):
                    raise
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"{group_path} does not serve {plural}: install the CRDs")
            logger.info("waiting for the API to serve %s/%s", group_path, plural)
            await asyncio.sleep(2.0)
    if config.peering is None:
        return
    # kopf uses one ClusterKopfPeering with -A, else one KopfPeering per watched namespace.
    if config.all_namespaces:
        targets = [(f"{group}/clusterkopfpeerings", "ClusterKopfPeering")]
    else:
        targets = [
            (f"{group}/namespaces/{ns}/kopfpeerings", "KopfPeering") for ns in config.namespaces
        ]
    for collection, kind in targets:
        body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": config.peering}}
        try:
            await api.call("POST", collection, body=body)
        except ApiError as exc:
            if exc.status != 409:  # a peer created it first
                raise


async def _prepare(config: OperatorConfig) -> None:
    from llm_operator.k8s import KubeApi

    api = KubeApi.from_environment()
    try:
        await prepare_cluster(api, config)
    finally:
        api.close()


def run(config: OperatorConfig) -> None:
    """Run the operator until SIGINT/SIGTERM (kopf handles the signals)."""
    import kopf

    import llm_operator.handlers  # noqa: F401  (registers the handlers)

    asyncio.run(_prepare(config))
    kopf.run(
        standalone=config.peering is None,
        peering_name=config.peering,
        # kopf pauses *every* replica that sees a peer of equal priority; distinct random
        # priorities make it a leader election: the highest acts, the others stand by and
        # take over when its keep-alive lapses (kopf's peering lifetime, 60 s).
        priority=random.SystemRandom().randint(1, 2**30) if config.peering else None,
        clusterwide=config.all_namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness,
        memo=kopf.Memo(config=config),
    )


# kopf logs each object it processes and each patch whole at DEBUG ("... is in progress:
# {body}", "Merge-patching the resource with: {patch}"): the spec's env values and args, every
# annotation. --verbose keeps the line, not the body; any other message is capped.
MAX_LOG_MESSAGE = 500
_BODY_MESSAGE = re.compile(r"^(.{0,200}?(?: is in progress| with)): [\[{(].*$", re.DOTALL)


class BodyRedactingFilter(logging.Filter):
    """Verbose mode never logs whole object bodies (issue 18 item 11)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        match = _BODY_MESSAGE.match(message)
        if match:
            kept = match.group(1)
            shortened = f"{kept}: <body of {len(message) - len(kept) - 2} characters not logged>"
        elif len(message) > MAX_LOG_MESSAGE:
            hidden = len(message) - MAX_LOG_MESSAGE
            shortened = f"{message[:MAX_LOG_MESSAGE]}... <{hidden} more characters not logged>"
        else:
            return True
        record.msg, record.args = shortened, None
        return True


def configure_logging(verbose: bool, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(BodyRedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args.verbose)
    run(config_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
