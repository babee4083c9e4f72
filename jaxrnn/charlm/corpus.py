"""Text for the character-level model: the default corpus, user files, and the vocabulary.

The default corpus is English prose every Python install carries: the paragraphs of the
standard library's docstrings (module, class and function documentation of the modules in
`CORPUS_MODULES`), without code examples. It is built at run time, nothing is downloaded, and
it is the same text for the same Python version (about 180,000 characters, 94 distinct).
"""

from __future__ import annotations

import importlib
import inspect
import os
import warnings

import numpy as np

from jaxrnn.charlm.errors import CharLMError

# Pure-Python modules of every CPython build whose docstrings are mostly prose.
CORPUS_MODULES = (
    "argparse collections functools itertools json textwrap string random statistics heapq bisect difflib "
    "shutil os re pathlib typing inspect logging subprocess threading datetime calendar fractions decimal "
    "contextlib dataclasses enum abc io csv zipfile tarfile tempfile glob fnmatch copy pprint operator math "
    "unittest email.message urllib.parse queue sched base64 hmac secrets uuid locale codecs struct weakref "
    "types traceback warnings doctest timeit ast tokenize configparser shlex optparse html mimetypes smtplib "
    "cmd code gzip"
).split()

# Below this the default corpus is not worth training on (Python run with -OO strips docstrings).
MINIMUM_DEFAULT_CORPUS = 20_000

# Input id of the start of a text or line: `jax.nn.one_hot` maps it to the zero vector, the
# course's `x_1 = 0`.
START = -1


def default_corpus() -> str:
    """The standard library's docstring paragraphs, one per line (see the module docstring).

    A paragraph is kept when it is prose: no indented or `>>>` lines, ASCII, at least 40
    characters, starting with a capital letter, not seen before.
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
    corpus = "".join(paragraph + "\n" for paragraph in paragraphs)
    if len(corpus) < MINIMUM_DEFAULT_CORPUS:
        raise CharLMError(
            f"the default corpus (standard-library docstrings) has only {len(corpus)} characters "
            f"(is Python running with -OO?); pass --data PATH"
        )
    return corpus


def _public_members(module):
    members = sorted(vars(module).items())
    return [
        value
        for name, value in members
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isroutine(value))
        and getattr(value, "__module__", None) == module.__name__
    ]


def read_corpus(path: str) -> str:
    """The text of a UTF-8 file, with one clear `CharLMError` for each way it can be unusable.

    Args:
      path: a file path.

    Returns:
      The decoded text (line endings as in the file; a leading byte-order mark dropped).

    Raises:
      CharLMError: missing, not a regular file, unreadable, empty, binary (NUL bytes) or not UTF-8.
    """
    if not os.path.exists(path):
        raise CharLMError(f"--data {path}: no such file")
    if not os.path.isfile(path):
        raise CharLMError(f"--data {path}: not a regular file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise CharLMError(f"--data {path}: cannot read it ({err.strerror})") from None
    if b"\0" in raw:
        offset = raw.index(b"\0")
        raise CharLMError(f"--data {path}: looks binary (NUL byte at offset {offset}); expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CharLMError(
            f"--data {path}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); "
            f"convert it, e.g. iconv -t UTF-8"
        ) from None
    if not text.strip():
        raise CharLMError(f"--data {path}: empty (no characters other than whitespace)")
    return text


def text_lines(text: str) -> list[str]:
    """The non-blank lines of `text`, without line endings: the examples of `--lines` mode."""
    return [line for line in text.splitlines() if line.strip()]


class Vocabulary:
    """The characters of a corpus, each with an integer id (sorted by code point).

    Args:
      characters: the distinct characters, in id order.
    """

    def __init__(self, characters: str):
        if len(set(characters)) != len(characters) or not characters:
            raise ValueError(f"Vocabulary: characters must be distinct and non-empty; received {characters!r}")
        self.characters = characters
        self._ids = {c: i for i, c in enumerate(characters)}

    @classmethod
    def of(cls, text: str) -> Vocabulary:
        """The vocabulary of every character in `text`."""
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.characters)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.characters == other.characters

    def __hash__(self) -> int:
        return hash(self.characters)

    def __contains__(self, character: str) -> bool:
        return character in self._ids

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """`text` -> int32 ids `(len(text),)`; `what` names the text in the error for unknown characters."""
        unknown = sorted(set(text) - set(self._ids))
        if unknown:
            raise CharLMError(f"{what} has characters outside the model's vocabulary: {''.join(unknown)!r}")
        return np.fromiter((self._ids[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        """int ids -> text."""
        return "".join(self.characters[int(i)] for i in ids)
