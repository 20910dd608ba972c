"""The decoder example in docs/protocol.md runs and prints what the page says."""

from __future__ import annotations

import contextlib
import io
import pathlib

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_decoder_example_runs() -> None:
    example = DOC.read_text().split("```python\n")[1].split("```")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, str(DOC), "exec"), {})
    assert out.getvalue().splitlines() == [
        "[CanDo(function=b'reverse')]",
        "[AdminCommand(line=b'status'), SubmitJob(function=b'reverse', unique=b'', "
        "data=b'te\\x00st')]",
        "b'INVALID_MAGIC' b'Request magic expected' False",
    ]
