"""The small strategic merge behind server.podTemplate."""

from __future__ import annotations

from llm_operator.render import strategic_merge

BASE = {
    "metadata": {"labels": {"a": "1"}},
    "spec": {
        "containers": [
            {
                "name": "main",
                "image": "x",
                "args": ["--a"],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
    },
}


def test_maps_merge_and_null_deletes() -> None:
    out = strategic_merge(BASE, {"metadata": {"labels": {"b": "2", "a": None}}})
    assert out["metadata"]["labels"] == {"b": "2"}


def test_named_lists_merge_by_key_and_others_replace() -> None:
    out = strategic_merge(
        BASE,
        {
            "spec": {
                "containers": [
                    {"name": "main", "args": ["--b"], "env": [{"name": "B", "value": "3"}]},
                    {"name": "side", "image": "y"},
                ],
                "tolerations": [],
            }
        },
    )
    main, side = out["spec"]["containers"]
    assert main["image"] == "x" and main["args"] == ["--b"]
    assert main["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    assert side == {"name": "side", "image": "y"}
    assert out["spec"]["tolerations"] == []


def test_patch_directives() -> None:
    out = strategic_merge(
        BASE,
        {
            "spec": {
                "volumes": [{"name": "tmp", "$patch": "delete"}, {"name": "new", "emptyDir": {}}],
                "containers": [
                    {"name": "main", "volumeMounts": [{"mountPath": "/tmp", "$patch": "delete"}]}
                ],
            },
            "metadata": {"$patch": "replace", "labels": {"z": "9"}},
        },
    )
    assert out["spec"]["volumes"] == [{"name": "new", "emptyDir": {}}]
    assert out["spec"]["containers"][0]["volumeMounts"] == []
    assert out["metadata"] == {"labels": {"z": "9"}}


def test_inputs_are_not_modified() -> None:
    patch = {"spec": {"containers": [{"name": "main", "image": "z"}]}}
    strategic_merge(BASE, patch)
    assert BASE["spec"]["containers"][0]["image"] == "x"  # type: ignore[index]
    assert patch == {"spec": {"containers": [{"name": "main", "image": "z"}]}}
