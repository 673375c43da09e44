r"""MkDocs hook: typeset the site's math at build time with KaTeX, and fail on any TeX error.

`pymdownx.arithmatex` (generic mode) leaves every formula in the page as
`<span class="arithmatex">\( ... \)</span>` (inline) or
`<div class="arithmatex">\[ ... \]</div>` (display). After each page is converted, this
hook sends its formulas to KaTeX running in node (`katex_render.js`, one process for the
whole build) and puts KaTeX's HTML in their place, so the pages need no script to show math
and load nothing from elsewhere: the site ships only KaTeX's stylesheet and fonts, under
`assets/katex/`. A formula KaTeX cannot typeset (a parse error, or input it would accept
only loosely: strict mode is "error") fails the build, naming the page and the TeX; so does
a heading whose math would reach the table of contents as raw TeX (give it a plain label:
`## Why $\sqrt{d_k}$ { data-toc-label="Why √d_k" }`).

KaTeX is not committed to the repository. The first build fetches the pinned release
tarball with `npm pack katex@VERSION` (npm, KaTeX's own distribution channel: this needs
npm and access to the npm registry once), checks it against the pinned sha512 (the
`integrity` field npm publishes), and unpacks the files it needs into a per-user cache
(`$XDG_CACHE_HOME/nima-docs/`, default `~/.cache/nima-docs/`). Later builds run offline.
No package on PyPI ships KaTeX's distribution by itself (those that vendor it are plugins
of larger frameworks), so npm it is; node itself is needed at every build.

Air-gapped build: copy an unpacked cache directory (or let one build run with network)
and nothing is fetched again. To upgrade KaTeX, change the two pins below together:
`npm view katex@VERSION dist.integrity` prints the matching hash.
"""

import base64
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from html import unescape
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

KATEX_VERSION = "0.19.1"
KATEX_INTEGRITY = (  # npm's `dist.integrity` for that version, split to fit the line
    "sha512-jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QE"
    "i+of0/YeOy15lDgRhKvr5614uRrEfA=="
)
PACKAGE = f"katex@{KATEX_VERSION}"
SITE_PREFIX = "assets/katex"  # where the files land in the site; mkdocs.yml points here
log = logging.getLogger(f"mkdocs.hooks.{Path(__file__).stem}")


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "nima-docs" / f"katex-{KATEX_VERSION}"


def _wanted(member_name: str) -> str | None:
    """Path inside the cache for a tarball member we ship, or None to skip it."""
    if member_name == "package/LICENSE":
        return "LICENSE"
    if member_name in ("package/dist/katex.min.js", "package/dist/katex.min.css"):
        return member_name.removeprefix("package/dist/")
    fonts = "package/dist/fonts/"
    name = member_name.removeprefix(fonts)
    if member_name.startswith(fonts) and "/" not in name and ".." not in name:
        return f"fonts/{name}"
    return None


def _download() -> bytes:
    """The release tarball, fetched by `npm pack` and checked against the pinned hash."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run(
                ["npm", "pack", PACKAGE, "--silent", "--pack-destination", tmp],
                capture_output=True, text=True, timeout=300, check=False,
            )
        except OSError as err:
            raise PluginError(
                f"KaTeX {KATEX_VERSION} is not in {_cache_dir()} and npm could not be run to "
                f"fetch it: {err}"
            ) from err
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise PluginError(
                f"KaTeX {KATEX_VERSION} is not in {_cache_dir()} and `npm pack {PACKAGE}` "
                f"failed: {done.stderr.strip() or done.stdout.strip()}"
            )
        data = tarballs[0].read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != KATEX_INTEGRITY:
        raise PluginError(f"{PACKAGE} does not match the pinned hash {KATEX_INTEGRITY}")
    return data


def _fill_cache(cache: Path) -> None:
    """Unpack the browser files into `cache`, atomically (a half-written cache never exists)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".katex-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(_download()), mode="r:gz") as tar:
            for member in tar.getmembers():
                target = _wanted(member.name)
                if target is None or not member.isfile():
                    continue
                (staging / target).parent.mkdir(parents=True, exist_ok=True)
                (staging / target).write_bytes(tar.extractfile(member).read())
        staging.rename(cache)
    except OSError:
        if not cache.is_dir():  # a concurrent build may have won the rename; else re-raise
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Katex:
    """One node process running `katex_render.js`: a list of formulas in, their HTML out."""

    def __init__(self, katex_js: Path) -> None:
        try:
            self.process = subprocess.Popen(
                ["node", str(RENDERER), str(katex_js)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, encoding="utf-8",
            )
        except OSError as err:
            raise PluginError(f"node is needed to typeset the math with KaTeX: {err}") from err

    def render(self, formulas: list[tuple[str, bool]]) -> list[dict[str, str]]:
        """KaTeX's answer for each (tex, display) pair: {"html": ...} or {"error": ...}."""
        self.process.stdin.write(json.dumps(formulas) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise PluginError(f"{RENDERER.name} exited with {self.process.wait()}")
        return json.loads(answer)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


RENDERER = Path(__file__).with_name("katex_render.js")
# arithmatex's generic output: \( \) inline in a span, \[ \] (or a bare environment) in a div
MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.DOTALL)
DELIMITERS = re.compile(r"^\\[(\[]|\\[)\]]$")
_state: dict = {}


def on_config(config: MkDocsConfig) -> None:
    if not _cache_dir().is_dir():
        _fill_cache(_cache_dir())


def on_pre_build(config: MkDocsConfig) -> None:
    _state.update(katex=_Katex(_cache_dir() / "katex.min.js"), errors=[])


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add KaTeX's stylesheet and fonts to the site (the script is not needed in the browser)."""
    cache = _cache_dir()
    for path in sorted(p for p in cache.rglob("*") if p.is_file() and p.name != "katex.min.js"):
        uri = f"{SITE_PREFIX}/{path.relative_to(cache).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def _toc_titles(items) -> list[str]:
    return [t for item in items for t in (item.title, *_toc_titles(item.children))]


def on_page_content(html: str, page, config: MkDocsConfig, files: Files) -> str:
    where = page.file.src_uri
    for title in _toc_titles(page.toc):
        if "\\(" in title or "$" in title:
            _state["errors"].append(f"{where}: the heading {title.strip()!r} puts raw TeX in "
                                    "the table of contents; give it a plain label with "
                                    '{ data-toc-label="..." }')
    found = list(MATH.finditer(html))
    formulas = []
    for match in found:
        tex = DELIMITERS.sub("", unescape(match[2]).strip())
        formulas.append((tex, match[1] == "div"))
    answers = _state["katex"].render(formulas) if formulas else []
    pieces, end = [], 0
    for match, (tex, _), answer in zip(found, formulas, answers, strict=True):
        if "error" in answer:
            _state["errors"].append(f"{where}: {answer['error']}\n    in: {tex}")
        pieces += [html[end:match.start()], answer.get("html", match[0])]
        end = match.end()
    return "".join(pieces) + html[end:]


def on_post_build(config: MkDocsConfig) -> None:
    _state.pop("katex").close()
    errors = _state["errors"]
    if errors:
        raise PluginError(f"{len(errors)} math error(s):\n" + "\n".join(errors))
