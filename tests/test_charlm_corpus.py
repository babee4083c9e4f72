"""The default corpus, reading user files (and every way they can be unusable), the vocabulary."""

import hashlib
import sys

import numpy as np
import pytest

from jaxrnn.charlm import _corpus_digests
from jaxrnn.charlm.corpus import Vocabulary, default_corpus, is_stable_default_corpus, read_corpus, text_lines
from jaxrnn.charlm.errors import CharLMError


def test_default_corpus_is_prose_from_the_standard_library():
    text = default_corpus()
    assert len(text) > 100_000
    assert text == default_corpus()  # the same text every time
    assert text.isascii() and ">>>" not in text
    assert "Return" in text and "the" in text.split()
    assert len(Vocabulary.of(text)) < 100


@pytest.mark.skipif(not (3, 11) <= sys.version_info[:2] <= (3, 13), reason="the corpus is pinned for Python 3.11-3.13")
def test_default_corpus_is_the_same_text_under_every_supported_python():
    text = default_corpus()
    assert len(text) == _corpus_digests.CORPUS_CHARACTERS == 169_217
    assert hashlib.sha256(text.encode()).hexdigest() == _corpus_digests.CORPUS_SHA256
    assert is_stable_default_corpus(text) and not is_stable_default_corpus(text[:-1])
    assert len(Vocabulary.of(text)) == 94


@pytest.mark.skipif(not (3, 11) <= sys.version_info[:2] <= (3, 13), reason="the corpus is pinned for Python 3.11-3.13")
def test_default_corpus_does_not_see_what_imported_packages_replace(monkeypatch):
    # PyTorch replaces `inspect.getfile` on import; its docstring then no longer belongs to `inspect`.
    import inspect

    from jaxrnn.charlm._docstrings import paragraph_digest, pristine_prose_paragraphs, prose_paragraphs

    def getfile(documented):
        return "replaced"

    monkeypatch.setattr(inspect, "getfile", getfile)
    in_this_process = {paragraph_digest(paragraph) for paragraph in prose_paragraphs()}
    assert not set(_corpus_digests.PARAGRAPH_DIGESTS) <= in_this_process  # the replacement hides a paragraph
    pristine_prose_paragraphs.cache_clear()
    assert is_stable_default_corpus(default_corpus())


def test_read_corpus_returns_the_utf8_text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes("\ufeffĀrvíztűrő tükörfúrógép\nline two\n".encode())
    assert read_corpus(str(path)) == "Ārvíztűrő tükörfúrógép\nline two\n"  # byte-order mark dropped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "empty"),
        (b" \n\t\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary (NUL byte at offset 8)"),
        ("caf\u00e9 na\u00efve\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 3)"),
    ],
    ids=["missing", "empty", "blank", "binary", "latin-1"],
)
def test_read_corpus_rejects_unusable_files_in_one_line(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CharLMError) as error:
        read_corpus(str(path))
    assert message in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_read_corpus_rejects_a_directory(tmp_path):
    with pytest.raises(CharLMError, match="not a regular file"):
        read_corpus(str(tmp_path))


def test_vocabulary_round_trip_and_unknown_characters():
    vocabulary = Vocabulary.of("hello world\n")
    assert vocabulary.characters == "\n dehlorw"
    ids = vocabulary.encode("world")
    assert ids.dtype == np.int32 and list(ids) == [8, 6, 7, 5, 2]
    assert vocabulary.decode(ids) == "world"
    with pytest.raises(CharLMError, match=r"--prime has characters outside the model's vocabulary: 'XZab'"):
        vocabulary.encode("Zebra X", "--prime")


def test_text_lines_are_the_non_blank_lines():
    assert text_lines("Aardonyx\r\n\n  \nAbelisaurus\nZuniceratops") == ["Aardonyx", "Abelisaurus", "Zuniceratops"]
