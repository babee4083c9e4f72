"""Builds the notebooks in `notebooks/` from their sources and executes them.

Each notebook is written as a Python file in `notebooks/sources/`, in the "percent" format:
`# %%` starts a code cell, `# %% [markdown]` a Markdown cell whose lines are comments. This
script turns a source into a notebook (nbformat), runs it top to bottom in a fresh
`python3` kernel (nbclient), and writes `notebooks/<name>.ipynb` with its outputs, so the
notebooks render with results where the repository is browsed.

    python scripts/build_notebooks.py                 # build every notebook
    python scripts/build_notebooks.py 03_gradients_through_time
    python scripts/build_notebooks.py --check         # are the committed notebooks up to date?
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = NOTEBOOKS / "sources"
KERNEL = "python3"
CELL_TIMEOUT_S = 600


def notebook_from_source(path: Path) -> nbformat.NotebookNode:
    """The notebook, without outputs, that a percent-format source describes."""
    cells, kind, lines = [], None, []

    def close():
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(text))
        elif kind == "code" and text:
            cells.append(nbformat.v4.new_code_cell(text))

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            close()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind == "code":
            lines.append(line)
    close()
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    return notebook


def execute(notebook: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Runs every cell in order in a fresh kernel; raises `nbclient.exceptions.CellExecutionError` on an error."""
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def write_atomically(notebook: nbformat.NotebookNode, path: Path) -> None:
    """Writes to a temporary file next to `path`, then renames it over `path`."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            nbformat.write(notebook, file)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes it 0600
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def names() -> list[str]:
    return sorted(p.stem for p in SOURCES.glob("*.py"))


def is_up_to_date(name: str) -> bool:
    """Whether `notebooks/<name>.ipynb` has the cells of its source, each code cell executed."""
    path = NOTEBOOKS / f"{name}.ipynb"
    if not path.exists():
        return False
    committed = nbformat.read(path, as_version=4)
    generated = notebook_from_source(SOURCES / f"{name}.py")
    same_cells = [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in generated.cells
    ]
    executed = all(c.execution_count is not None for c in committed.cells if c.cell_type == "code")
    return same_cells and executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"notebooks to build (default all: {', '.join(names())})")
    parser.add_argument("--check", action="store_true", help="only check that the notebooks are up to date")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(names()))
    if unknown:
        raise SystemExit(f"build_notebooks: unknown notebook {unknown}; expected some of {names()}")
    selected = args.names or names()
    if args.check:
        stale = [name for name in selected if not is_up_to_date(name)]
        print("up to date" if not stale else f"out of date: {stale} (run python scripts/build_notebooks.py)")
        return 1 if stale else 0
    for name in selected:
        start = time.perf_counter()
        notebook = execute(notebook_from_source(SOURCES / f"{name}.py"), NOTEBOOKS)
        path = NOTEBOOKS / f"{name}.ipynb"
        write_atomically(notebook, path)
        print(f"{path.relative_to(NOTEBOOKS.parent)}: {time.perf_counter() - start:.1f} s, {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
