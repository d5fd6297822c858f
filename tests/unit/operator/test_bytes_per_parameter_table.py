"""The memory estimator's bytes per parameter equal the shared table the server also tests
against (docs/bytes_per_parameter.json), so an estimate matches what llm-server stores."""

from __future__ import annotations

import json
from pathlib import Path

from llm_operator.estimate import BYTES_PER_PARAMETER, DTYPE_BYTES, INT4_GROUP_SIZE

TABLE = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "bytes_per_parameter.json").read_text()
)


def test_every_precision_uses_the_shared_figure() -> None:
    precisions = TABLE["precisions"]
    assert set(BYTES_PER_PARAMETER) == set(precisions)
    for name, figure in BYTES_PER_PARAMETER.items():
        assert figure == precisions[name]["bytes_per_parameter"], name


def test_int4_figure_is_the_servers_default_group_size() -> None:
    int4 = TABLE["precisions"]["int4"]
    assert int4["default_group_size"] == INT4_GROUP_SIZE
    assert (
        BYTES_PER_PARAMETER["int4"]
        == int4["bytes_per_parameter_by_group_size"][str(INT4_GROUP_SIZE)]
    )
    assert (
        BYTES_PER_PARAMETER["int4"] == int4["value_bytes"] + int4["scale_bytes"] / INT4_GROUP_SIZE
    )


def test_unquantized_dtype_sizes_agree() -> None:
    for dtype, size in TABLE["unquantized_dtype_bytes"].items():
        assert DTYPE_BYTES[dtype] == size
