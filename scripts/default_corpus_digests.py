"""Writes `jaxrnn/charlm/_corpus_digests.py`: the paragraphs of the default corpus.

    python scripts/default_corpus_digests.py python3.11 python3.12 python3.13

Runs `jaxrnn/charlm/_docstrings.py` (standard library only) under each given interpreter,
keeps the docstring paragraphs that every one of them produces, and writes their digests in
the order the first interpreter finds them. `jaxrnn train` builds its default corpus from
exactly these paragraphs, so the text is the same under each of these Pythons; the file also
records the corpus's length and sha256, which the tests check.
"""

import hashlib
import json
import os
import subprocess
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRACTOR = os.path.join(REPOSITORY, "jaxrnn", "charlm", "_docstrings.py")
OUTPUT = os.path.join(REPOSITORY, "jaxrnn", "charlm", "_corpus_digests.py")
DIGESTS_PER_LINE = 8

PROGRAM = (
    "import json, runpy, sys; found = runpy.run_path(sys.argv[1]); "
    "print(json.dumps([sys.version.split()[0], found['prose_paragraphs']()]))"
)


def paragraphs_of(interpreter: str) -> tuple[str, list[str]]:
    done = subprocess.run([interpreter, "-c", PROGRAM, EXTRACTOR], capture_output=True, text=True, check=True)
    version, paragraphs = json.loads(done.stdout)
    return version, paragraphs


def main(interpreters: list[str]) -> int:
    if not interpreters:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    found = [paragraphs_of(interpreter) for interpreter in interpreters]
    shared = set.intersection(*(set(paragraphs) for _, paragraphs in found))
    chosen = [paragraph for paragraph in found[0][1] if paragraph in shared]
    from runpy import run_path

    digest = run_path(EXTRACTOR)["paragraph_digest"]
    digests = [digest(paragraph) for paragraph in chosen]
    if len(set(digests)) != len(digests):
        raise SystemExit("two paragraphs share a digest prefix; raise DIGEST_LENGTH in _docstrings.py")
    corpus = "".join(paragraph + "\n" for paragraph in chosen)
    versions = ", ".join(version for version, _ in found)
    rows = [" ".join(digests[i : i + DIGESTS_PER_LINE]) for i in range(0, len(digests), DIGESTS_PER_LINE)]
    body = "\n".join(rows)
    text = (
        f'"""The paragraphs of the default corpus: docstring paragraphs that Python {versions} all produce.\n\n'
        f"Written by `scripts/default_corpus_digests.py`; do not edit. Each entry is the start of a paragraph's\n"
        f'sha256 (`_docstrings.paragraph_digest`), in corpus order.\n"""\n\n'
        f"CORPUS_CHARACTERS = {len(corpus)}\n"
        f'CORPUS_SHA256 = "{hashlib.sha256(corpus.encode()).hexdigest()}"\n\n'
        f'PARAGRAPH_DIGESTS = """\n{body}\n""".split()\n'
    )
    with open(OUTPUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{len(chosen)} paragraphs shared by Python {versions} ({len(corpus):,} characters): wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
