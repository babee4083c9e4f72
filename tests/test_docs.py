"""The documentation: every python block runs as pasted, the site builds in strict mode, the README links resolve.

A python block is a fenced block opened by a line that is exactly "```python". Each one runs alone in a fresh
interpreter from the repository root, so a block must import what it uses; a block with an `import torch` line
is skipped where PyTorch is not installed (the `test` extra installs it on Python 3.11 only).
"""

import importlib.util
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NEEDS_TORCH = re.compile(r"^\s*(import torch\b|from torch\b)", re.MULTILINE)
BUILD_SECONDS = 60  # the site's build stays well under this


def python_blocks():
    """Every block, the README's in the default run and the docs pages' with the slow set (a few seconds each)."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        marks = () if page.name == "README.md" else (pytest.mark.slow,)
        for match in PYTHON_BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT).as_posix()}:{line}", marks=marks)


@pytest.fixture(scope="module")
def block_environment(tmp_path_factory):
    """The environment of each block's interpreter: ours, with a compilation cache shared by the blocks of this
    run (many compile the same small functions, e.g. `init_parameters`'s; a cache changes no result)."""
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-compilation-cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@pytest.mark.parametrize("block", list(python_blocks()))
def test_python_block_runs_alone_in_a_fresh_interpreter(block, block_environment):
    if NEEDS_TORCH.search(block) and importlib.util.find_spec("torch") is None:
        pytest.skip("the block imports torch, which is not installed")
    result = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, cwd=ROOT, env=block_environment, timeout=300
    )
    assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"


def test_every_page_with_code_has_its_blocks_collected():
    """The block pattern finds the blocks of the pages that have them (a change of fence would silently drop them)."""
    ids = [param.id for param in python_blocks()]
    assert any(i.startswith("README.md:") for i in ids)
    assert any(i.startswith("docs/guide.md:") for i in ids)
    assert any(i.startswith("docs/migration.md:") for i in ids)


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= 12_000, f"README.md has {len(text)} characters; the rest belongs in docs/"
    links = [link.partition("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", text)]
    relative = [link for link in links if link and not re.match(r"^[a-z]+:", link)]
    assert relative and [link for link in relative if not (ROOT / link).exists()] == []


def test_readme_quickstart_commands_are_the_documented_ones():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'python3 -m venv .venv && . .venv/bin/activate && pip install ".[cli]" && jaxrnn train\n' in text
    assert 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && pytest\n' in text


def test_api_reference_covers_the_public_names():
    import jaxrnn

    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: (\S+)$", text, re.MULTILINE))
    expected = {f"jaxrnn.{name}" for name in jaxrnn.__all__} | {"jaxrnn.nnx.RNN", "jaxrnn.equinox.RNN"}
    assert sorted(expected - documented) == []


def test_the_package_version_is_the_one_pyproject_declares():
    import jaxrnn

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert jaxrnn.__version__ == declared


def mkdocs_is_installed():
    modules = ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter")
    return all(importlib.util.find_spec(module.split(".")[0]) is not None for module in modules)


needs_mkdocs = pytest.mark.skipif(
    not mkdocs_is_installed(), reason='the docs tools are not installed: pip install -e ".[docs]"'
)


def mkdocs_build(root, site_dir):
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )


@needs_mkdocs
def test_site_builds_in_strict_mode(tmp_path):
    """`mkdocs build --strict`: a broken link or anchor, a page missing from the nav, a docstring griffe cannot
    parse, a link from a notebook to nothing — any warning fails the build."""
    start = time.perf_counter()
    result = mkdocs_build(ROOT, tmp_path / "site")
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert seconds < BUILD_SECONDS, f"the site took {seconds:.0f} s to build"
    site = tmp_path / "site"
    assert (site / "api" / "index.html").read_text(encoding="utf-8").count('class="doc doc-heading"') >= 27
    assert "arithmatex" in (site / "derivation" / "index.html").read_text(encoding="utf-8")
    assert (site / "notebooks" / "01_derivation" / "index.html").exists()


@needs_mkdocs
def test_links_out_of_docs_lead_to_published_files_and_broken_ones_fail_the_build(tmp_path):
    """docs/_hooks.py on a small repository: a link to a source file resolves to its published copy; a link to a
    file that does not exist, or to an anchor no heading makes, fails the strict build."""
    (tmp_path / "jaxrnn").mkdir()
    (tmp_path / "jaxrnn" / "layer.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "NOTES.md").write_text("# Notes\n\n## A section\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "index.md"
    hooks = (ROOT / "docs" / "_hooks.py").as_posix()
    (tmp_path / "mkdocs.yml").write_text(
        f"site_name: t\nhooks: [{hooks}]\nvalidation: {{anchors: warn}}\nnav: [index.md]\n", encoding="utf-8"
    )

    good = "[the layer](../jaxrnn/layer.py), [notes](../benchmarks/NOTES.md#a-section)"
    page.write_text(f"# Home\n\n{good}\n", encoding="utf-8")
    result = mkdocs_build(tmp_path, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'href="jaxrnn/layer.py"' in home and 'href="benchmarks/NOTES/#a-section"' in home
    assert (tmp_path / "site" / "jaxrnn" / "layer.py").read_text(encoding="utf-8") == "x = 1\n"

    broken = ("../jaxrnn/missing.py", "../benchmarks/NOTES.md#nowhere", "../docs/missing.md")
    page.write_text("# Home\n\n" + ", ".join(f"[broken]({link})" for link in broken) + "\n", encoding="utf-8")
    result = mkdocs_build(tmp_path, tmp_path / "site")
    assert result.returncode != 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == len(broken), result.stderr
