"""`llm-operator` / `python -m llm_operator`: the operator process (built by the operator issue)."""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "llm-operator: the reconciling operator is not built yet (see the operator issue); "
        "use `llmops validate` and `llmops cost` meanwhile.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
