"""`llm-operator` / `python -m llm_operator`: run the kopf operator."""

from __future__ import annotations

import logging
import sys

from llm_operator.settings import OperatorConfig, config_from_args, parser


def run(config: OperatorConfig) -> None:
    """Run the operator until SIGINT/SIGTERM (kopf handles the signals)."""
    import kopf

    import llm_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=config.peering is None,
        peering_name=config.peering,
        clusterwide=config.all_namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness,
        memo=kopf.Memo(config=config),
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run(config_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
