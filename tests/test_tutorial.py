"""The explainer tutorial (docs/tutorials/explainer.md) says "every output below is what the code
prints": run its code blocks in order and hold it to that."""

import contextlib
import io
import re
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorials" / "explainer.md"


def _code_and_shown_output():
    text = TUTORIAL.read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    code = [body for lang, body in blocks if lang == "python"]
    # An output block is an untagged block right after a Python block.
    shown = [
        body for (lang, body), (prev, _) in zip(blocks[1:], blocks) if not lang and prev == "python"
    ]
    return code, shown


def test_the_explainer_tutorial_prints_what_it_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, shown = _code_and_shown_output()
    assert len(code) >= 8 and len(shown) >= 6
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile("\n".join(code), str(TUTORIAL), "exec"), {})
    printed = out.getvalue()
    for block in shown:
        for line in block.splitlines():
            if line.strip() and "..." not in line:
                assert line in printed, (
                    f"the tutorial shows {line!r}, but its code does not print it"
                )
