"""The README's API examples run as written, in order, and do what their comments say."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title):
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_api_examples_run_and_give_the_shapes_they_state():
    blocks = re.findall(r"```python\n(.*?)```", section("API"), re.DOTALL)
    assert len(blocks) == 3
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["a"].shape == (16, 50, 128)  # the stack: (B, T, 2 · 64)
    assert [tuple(s.shape for s in pair) for pair in namespace["finals"]] == [((16, 64), (16, 64))] * 2
    assert namespace["a_final"].shape == (16, 64)
    assert set(namespace["grads"]) == {"Wax", "Waa", "Wya", "ba", "by"}


def test_the_package_version_is_the_one_pyproject_declares():
    import tomllib

    import jaxrnn

    declared = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert jaxrnn.__version__ == declared
