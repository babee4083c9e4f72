"""mkdocs hooks: the site publishes the repository's folders that the pages link to.

The pages link to files beside `docs/` as the repository lays them out — `../jaxrnn/_cells/gru.py`,
`../notebooks/01_derivation.ipynb`, `../benchmarks/NOTES.md` — so that every link works on a code host and in an
editor. The site publishes those folders beside the pages, at the same places with `docs/` as the root: the
notebooks rendered by mkdocs-jupyter (not executed), the Markdown as pages, the rest (source, images) as files.

Each link that leaves `docs/` is rewritten to the published copy of its target. A link whose target does not exist
is left as written, so `mkdocs build --strict` fails on it as on any other broken link; the links inside the
rendered notebooks, which mkdocs does not check, are checked here and fail the same way.
"""

import logging
import posixpath
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.utils import get_relative_url

log = logging.getLogger("mkdocs.hooks.repository")

# The repository's folders the site publishes, and which of their files.
PUBLISHED = {
    "benchmarks": ("*.md", "*.png", "*.py"),
    "examples": ("*.py",),
    "jaxrnn": ("*.py",),
    "notebooks": ("*.ipynb",),
}
MARKDOWN_LINK = re.compile(r"(\]\()([^()\s]+)(\))")
HTML_LINK = re.compile(r'(href=")([^"]+)(")')


def _repository(config):
    return Path(config.docs_dir).resolve().parent


def _repository_path(file):
    """Where a site file lives in the repository, relative to its root."""
    return file.src_uri if getattr(file, "repository_file", False) else f"docs/{file.src_uri}"


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns the notebooks into pages
def on_files(files: Files, config) -> Files:
    repository = _repository(config)
    for folder, patterns in PUBLISHED.items():
        for pattern in patterns:
            for path in sorted((repository / folder).rglob(pattern)):
                src_uri = path.relative_to(repository).as_posix()
                if "__pycache__" in src_uri or "/." in src_uri or files.get_file_from_path(src_uri):
                    continue
                # Published because pages link to them: in the navigation or not, as mkdocs.yml says.
                file = File(
                    src_uri,
                    str(repository),
                    config.site_dir,
                    config.use_directory_urls,
                    inclusion=InclusionLevel.NOT_IN_NAV,
                )
                file.repository_file = True
                files.append(file)
    return files


def _is_relative(link):
    """A link to a file by its relative path: not a URL with a scheme, nor absolute, nor an anchor on the page."""
    return not (re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith(("#", "/")))


def _resolve(link, page, files):
    """The site file that the relative link of `page` points to (None if there is none), and the link's anchor."""
    path, _, anchor = link.partition("#")
    target = posixpath.normpath(posixpath.join(posixpath.dirname(_repository_path(page.file)), path))
    src_uri = target[len("docs/") :] if target.startswith("docs/") else target
    return files.get_file_from_path(src_uri), anchor


def on_page_markdown(markdown, page, config, files):
    def rewrite(match):
        if not _is_relative(match.group(2)):
            return match.group(0)
        target, anchor = _resolve(match.group(2), page, files)
        if target is None:
            return match.group(0)  # mkdocs reports it
        relative = posixpath.relpath(target.src_uri, posixpath.dirname(page.file.src_uri) or ".")
        return f"{match.group(1)}{relative}{'#' + anchor if anchor else ''}{match.group(3)}"

    return MARKDOWN_LINK.sub(rewrite, markdown)


def on_page_content(html, page, config, files):
    if not page.file.src_uri.endswith(".ipynb"):
        return html  # Markdown pages: mkdocs has resolved and checked their links

    def rewrite(match):
        link = match.group(2)
        if not _is_relative(link):
            return match.group(0)
        target, anchor = _resolve(link, page, files)
        if target is None:
            log.warning("Notebook '%s' contains a link '%s' to no published file.", page.file.src_uri, link)
            return match.group(0)
        url = get_relative_url(target.url, page.url)
        return f"{match.group(1)}{url}{'#' + anchor if anchor else ''}{match.group(3)}"

    return HTML_LINK.sub(rewrite, html)
