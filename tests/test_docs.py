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


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def test_the_readme_is_a_landing_page_whose_links_resolve_inside_the_repo():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 20_000, f"README.md is {len(text.encode()):,} bytes"
    targets = [m["target"] for m in LINK.finditer(text)]
    assert len(targets) >= 10
    for target in targets:
        assert "://" not in target, f"README.md links outside the repo: {target}"
        path = (ROOT / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT.resolve()) and path.exists(), f"broken link {target}"
    # The two set-up commands, exactly.
    assert "make demo   # sets up .venv" in text and "make test   # sets up .venv" in text
