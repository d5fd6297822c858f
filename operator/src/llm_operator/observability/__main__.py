"""Write (or, with --check, verify) the chart's Prometheus rules and Grafana dashboards."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llm_operator.observability.files import generated_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_operator.observability")
    parser.add_argument("--chart", type=Path, default=Path("charts/llm-operator"))
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for relative, text in generated_files().items():
        path = args.chart / relative
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("stale, run `make observability`: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
