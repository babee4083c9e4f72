"""The notebooks run top to bottom, and are committed with outputs built from their sources; the derivation
page names code that exists."""

import importlib.util
import re
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

NAMES = ["01_derivation", "02_manual_vs_autodiff", "03_gradients_through_time", "04_forward_and_reverse"]
WITH_PLOTS = {"02_manual_vs_autodiff", "03_gradients_through_time", "04_forward_and_reverse"}
MAX_NOTEBOOK_BYTES = 500_000


def outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def test_the_notebooks_have_sources():
    assert build.names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_built_from_its_source_with_outputs(name):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    assert build.is_up_to_date(name), f"{path} is out of date: run python scripts/build_notebooks.py {name}"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES
    notebook = nbformat.read(path, as_version=4)
    produced = outputs(notebook)
    assert produced and not [o for o in produced if o.output_type == "error"]
    assert (name in WITH_PLOTS) == any("image/png" in o.get("data", {}) for o in produced)
    assert str(ROOT) not in path.read_text(encoding="utf-8"), "no absolute paths of this checkout in the outputs"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow  # each notebook executes end to end (20-60 s); the built notebooks are checked by default
def test_notebook_runs_top_to_bottom(name, tmp_path):
    """Executes a copy, with its outputs cleared, in a fresh kernel; a failing cell raises CellExecutionError."""
    copy = tmp_path / f"{name}.ipynb"
    shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", copy)
    notebook = nbformat.read(copy, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = build.execute(notebook, tmp_path)
    assert all(cell.execution_count for cell in executed.cells if cell.cell_type == "code")
    assert not [o for o in outputs(executed) if o.output_type == "error"]
    nbformat.write(executed, copy)  # kept in tmp_path for inspection


def test_notebook_source_format(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\n\n# %% [markdown]\n# end\n")
    notebook = build.notebook_from_source(source)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [
        ("markdown", "# Title\n\ntext"),
        ("code", "x = 1"),
        ("markdown", "end"),
    ]


def test_derivation_page_quotes_and_names_code_that_exists():
    """Every formula quoted from a code comment is in the library's source; every function named is defined
    there; links resolve. (Read as text, whatever the modules are called.)"""
    page = ROOT / "docs" / "derivation.md"
    text = page.read_text(encoding="utf-8")
    quoted = re.findall(r"`([^`]+)`", text)
    source = "\n".join(path.read_text(encoding="utf-8") for path in sorted((ROOT / "jaxrnn").rglob("*.py")))
    formulas = [q for q in quoted if any(symbol in q for symbol in ("Σ", "⊙", "^T"))]
    assert len(formulas) >= 9
    assert [f for f in formulas if f not in source] == []
    not_functions = {"checkpoint_every", "da_start", "da_final"}  # arguments, not functions
    functions = [q for q in quoted if re.fullmatch(r"[a-z]+(_[a-z]+)+", q) and q not in not_functions]
    assert len(functions) >= 10
    defined = lambda name: re.search(rf"^\s*(def {name}\(|{name} = )", source, re.MULTILINE)
    assert [f for f in functions if not defined(f)] == []
    links = re.findall(r"\]\((\.\./[^)#]+)\)", text)
    assert links and [link for link in links if not (page.parent / link).exists()] == []
