"""Issue 18, item 11: the operator's --verbose mode logs no whole object bodies.

kopf logs each object it processes and each patch whole at DEBUG; with the spec's env values,
args and every annotation in them. The operator's log handler keeps the line, not the body.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from llm_operator.__main__ import MAX_LOG_MESSAGE, configure_logging

BODY = {
    "metadata": {"name": "chat", "annotations": {"x": "y" * 2000}},
    "spec": {"server": {"env": [{"name": "DB_PASSWORD", "value": "hunter2-SECRET"}]}},
}


@pytest.fixture
def verbose_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(verbose=True, stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.parametrize(
    "template",
    [
        "Merge-patching the resource with: {body!r}",
        "Merge-patching the status with: {body!r}",
        "JSON-patching the resource with: {body!r}",
        "Handler 'reconcile' is in progress: {body!r}",
    ],
)
def test_kopf_debug_lines_keep_the_line_not_the_body(
    verbose_log: io.StringIO, template: str
) -> None:
    # kopf formats these with f-strings, so the body arrives inside the message.
    logging.getLogger("kopf.objects").debug(template.format(body=BODY))
    out = verbose_log.getvalue()
    assert "hunter2-SECRET" not in out and "DB_PASSWORD" not in out
    assert template.split(":")[0] in out and "characters not logged" in out


def test_any_long_message_is_capped_and_short_ones_pass(verbose_log: io.StringIO) -> None:
    log = logging.getLogger("llm_operator.test")
    log.debug("reconciled %s/%s", "ns", "chat")
    log.debug("x" * (MAX_LOG_MESSAGE + 100) + "hunter2-SECRET")
    out = verbose_log.getvalue().splitlines()
    assert out[0].endswith("reconciled ns/chat")
    assert "hunter2-SECRET" not in out[1] and out[1].endswith("114 more characters not logged>")
    assert len(out) == 2
