"""The prose paragraphs of the standard library's docstrings, with nothing but the standard library.

Kept free of numpy, JAX and the rest of jaxrnn so that `scripts/default_corpus_digests.py`
can run it under every supported Python to choose the paragraphs they all share.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import subprocess
import sys
import warnings

# Pure-Python modules of every CPython build whose docstrings are mostly prose.
CORPUS_MODULES = (
    "argparse collections functools itertools json textwrap string random statistics heapq bisect difflib "
    "shutil os re pathlib typing inspect logging subprocess threading datetime calendar fractions decimal "
    "contextlib dataclasses enum abc io csv zipfile tarfile tempfile glob fnmatch copy pprint operator math "
    "unittest email.message urllib.parse queue sched base64 hmac secrets uuid locale codecs struct weakref "
    "types traceback warnings doctest timeit ast tokenize configparser shlex optparse html mimetypes smtplib "
    "cmd code gzip"
).split()

DIGEST_LENGTH = 12  # hex characters of a paragraph's sha256 kept to name it


def prose_paragraphs() -> list[str]:
    """The docstring paragraphs of `CORPUS_MODULES` that are prose, each once, in the order found.

    A paragraph is kept when it is prose: no indented or `>>>` lines, ASCII, at least 40
    characters, starting with a capital letter. Its lines are joined with single spaces.
    """
    seen: set[str] = set()
    paragraphs = []
    for name in CORPUS_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for documented in (module, *_public_members(module)):
            with warnings.catch_warnings():  # some members (typing.io) warn when their docstring is read
                warnings.simplefilter("ignore", DeprecationWarning)
                docstring = inspect.getdoc(documented) or ""
            for paragraph in docstring.split("\n\n"):
                lines = paragraph.splitlines()
                if not lines or any(line.startswith((" ", "\t", ">>>")) for line in lines):
                    continue
                text = " ".join(line.strip() for line in lines)
                if len(text) >= 40 and text[0].isupper() and text.isascii() and text not in seen:
                    seen.add(text)
                    paragraphs.append(text)
    return paragraphs


@functools.cache
def pristine_prose_paragraphs() -> tuple[str, ...]:
    """`prose_paragraphs()` as a fresh interpreter finds them (`python -I` running this file).

    The calling process may have imported packages that replace standard-library functions
    (PyTorch replaces `inspect.getfile`, whose docstring then counts as the package's, not
    `inspect`'s): a fresh interpreter sees the standard library as shipped. Falls back to
    this process where no interpreter can be started.
    """
    try:
        done = subprocess.run([sys.executable, "-I", __file__], capture_output=True, text=True, check=True, timeout=120)
        return tuple(json.loads(done.stdout))
    except (OSError, ValueError, subprocess.SubprocessError):
        return tuple(prose_paragraphs())


def paragraph_digest(paragraph: str) -> str:
    """The first `DIGEST_LENGTH` hex characters of the paragraph's UTF-8 sha256."""
    return hashlib.sha256(paragraph.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


def _public_members(module):
    members = sorted(vars(module).items())
    return [
        value
        for name, value in members
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isroutine(value))
        and getattr(value, "__module__", None) == module.__name__
    ]


if __name__ == "__main__":
    print(json.dumps(prose_paragraphs()))
