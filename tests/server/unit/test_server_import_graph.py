"""No import cycle inside llm_server (the layers contract only orders packages, not modules)."""

from __future__ import annotations

import graphlib

import grimp


def test_llm_server_modules_import_each_other_without_a_cycle() -> None:
    graph = grimp.build_graph("llm_server")
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    try:
        order = list(graphlib.TopologicalSorter(imports).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
    assert "llm_server.engine.engine" in order
