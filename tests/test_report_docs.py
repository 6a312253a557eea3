"""The docs say what the committed results say: regenerated from them, the docs' generated
blocks come out the same; a generated sentence quotes its tables; the prose holds no timing,
ratio or throughput of its own."""

import re
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.runs import read

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# What docs/benchmarks.md and the README's headline are generated from (make bench-docs DIR=...),
# per device: the runs, the first of them holding the figures.
SOURCES = {
    "cpu": ["cpu-20261202-1622", "cpu-20261202-1705"],
    "gpu": ["gpu-20261126-0258"],
}
DOCS = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
# Prose in these files may not state a measured number of its own (outside generated blocks and
# code blocks, which show a command's real output).
PROSE = ["README.md", "CONTRIBUTING.md", "docs/api.md", "docs/cli.md", "docs/guarantees.md"]
PROSE += ["docs/benchmarks.md", "docs/cores.md"]
MEASURED = re.compile(
    r"\b\d[\d,]*(?:\.\d+)?\s?(?:x|us|ms|s|min|h|MiB|GiB|KB|k)\b(?!-)|\b\d[\d,]*(?:\.\d+)?x\b"
)
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?x?")
BLOCK = re.compile(
    r"<!-- (?P<marker>[a-z]+):(?P<device>[a-z]+):start -->.*?<!-- (?P=marker):(?P=device):end -->",
    re.DOTALL,
)
CODE = re.compile(r"```.*?```", re.DOTALL)


def generated(device):
    paths = [RESULTS / name for name in SOURCES[device]]
    data = read(paths)
    prefix = report.prefix_of(paths[0])
    made = {
        device: [
            f
            for f in report.figures.FIGURES
            if Path(report.figures.path(prefix, f, device)).exists()
        ]
    }
    return data, prefix, made


@pytest.mark.parametrize("device", sorted(SOURCES))
def test_the_committed_docs_are_what_the_committed_results_generate(device):
    data, prefix, made = generated(device)
    for path, marker, build in (
        (DOCS, "bench", report.render),
        (README, "headline", report.headline),
    ):
        if f"<!-- {marker}:{device}:start -->" not in path.read_text():
            assert path == README, f"{path} has no {marker}:{device} block"
            continue
        relative = Path(
            *[".."] * len(path.parent.relative_to(ROOT).parts), prefix.relative_to(ROOT)
        )
        expected = build(data, str(relative), made)[device]
        assert report.block(path, marker, device) == expected, (
            f"{path.name}'s {marker}:{device} block differs from what {SOURCES[device]} "
            "generate: run make bench-docs"
        )
        for figure in re.findall(r"\]\(([^)]+\.png)\)", expected):
            assert (path.parent / figure).exists(), figure


@pytest.mark.parametrize("device", sorted(SOURCES))
def test_every_generated_sentence_quotes_its_tables(device):
    data, _, made = generated(device)
    doc = report.render(data, "report", made)[device]
    cells = set()
    sentences = []
    for line in doc.splitlines():
        if line.startswith("|"):
            for cell in line.split("|"):
                cells.update(NUMBER.findall(cell))
        elif line and not line.startswith(("Columns:", "Machine:", "**", "!", "\\*")):
            sentences.append(line)
    for sentence in sentences:
        for n in NUMBER.findall(re.sub(r"S\d+, B\d+, T\d+|part \d|\d+ of \d+", "", sentence)):
            assert n in cells, f"{n!r} in {sentence!r} is in no table"


@pytest.mark.parametrize("doc", PROSE)
def test_the_prose_states_no_measured_number_of_its_own(doc):
    text = (ROOT / doc).read_text()
    prose = CODE.sub("", BLOCK.sub("", text))
    found = [m.group(0) for m in MEASURED.finditer(prose)]
    assert not found, f"{doc} states measured numbers outside its generated blocks: {found}"


def test_the_prose_check_finds_what_the_issue_found():
    # The contradictions of the old README: prose numbers beside tables saying otherwise.
    old = "Part 3 now costs 1.9x part 1 and part 4 5.1x; about 16 us on the 2-core CPU."
    assert [m.group(0) for m in MEASURED.finditer(old)] == ["1.9x", "5.1x", "16 us"]
