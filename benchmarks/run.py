"""``make bench``: the whole benchmark suite, its JSON under benchmarks/results/, and the report.

    python -m benchmarks.run [--readme] [extra pytest arguments]

The file is named after the device JAX uses by default (cpu or gpu) and the date; the report
(tables and plots) is written beside it, and with ``--readme`` into README.md.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import jax
import pytest

from benchmarks import report

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str]) -> int:
    readme = "--readme" in argv
    argv = [a for a in argv if a != "--readme"]
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    path = RESULTS / f"{jax.default_backend()}-{stamp}.json"
    code = pytest.main(
        [
            "benchmarks",
            "-p",
            "no:cacheprovider",
            "--benchmark-enable",
            f"--benchmark-json={path}",
            "--benchmark-columns=median,iqr,rounds",
            *argv,
        ]
    )
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not path.exists():
        return int(code)
    report.main([str(path), *(["--readme", "README.md"] if readme else [])])
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
