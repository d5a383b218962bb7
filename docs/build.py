"""Build the API reference of the public module (`miakit.__all__`) from its docstrings with pdoc:
`python docs/build.py [OUT]` (default docs/api; `make docs`). Fails (exit 1, naming them) on a
pdoc warning or a broken reference: a `miakit.x` in backticks that is no link, i.e. names
nothing public."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import pdoc

import miakit


def build(out: Path) -> list[str]:
    """Write the reference into `out`; the problems found (empty when it is sound)."""
    for name in miakit.__all__:  # load the lazily bound names: pdoc reads the module's dict
        getattr(miakit, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc("miakit", r"!miakit\..*", output_directory=out)
    problems = [f"pdoc: {w.message}" for w in caught if "pdoc" in w.filename]
    page = (out / "miakit.html").read_text()
    problems += [f"missing from the reference: {n}" for n in miakit.__all__
                 if n != "__version__" and f'id="{n}"' not in page]  # fmt: skip
    problems += [
        f"broken reference: {name}"
        for name in re.findall(r"<code>(miakit\.[\w.]+)(?:\(\))?</code>", page)
    ]
    return problems


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "api")
    found = build(target)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"API reference: {target / 'index.html'}")
