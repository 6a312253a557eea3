"""The docs quote the project's real code: every excerpt must still be in the file it names."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXCERPT = re.compile(r"<!-- from: (?P<path>\S+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)


def excerpts(doc):
    text = (ROOT / doc).read_text()
    return [(m["path"], m["code"]) for m in EXCERPT.finditer(text)]


@pytest.mark.parametrize("doc", ["docs/walkthrough.md"])
def test_excerpts_are_in_the_files_they_name(doc):
    found = excerpts(doc)
    assert len(found) >= 10
    for path, code in found:
        # Compare line by line, ignoring indentation (excerpts are dedented).
        source = [line.strip() for line in (ROOT / path).read_text().splitlines()]
        lines = [line.strip() for line in code.splitlines()]
        n = len(lines)
        assert any(source[i : i + n] == lines for i in range(len(source) - n + 1)), (
            f"{doc}: this excerpt is no longer in {path}:\n{code}"
        )
