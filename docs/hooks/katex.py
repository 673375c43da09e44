"""MkDocs hook: serve KaTeX from the built site, so math renders with no network.

KaTeX is not committed to the repository. The first build fetches the pinned release
tarball with `npm pack katex@VERSION` (npm, KaTeX's own distribution channel, through the
registry npm is configured for), checks it against the
pinned sha512 (the `integrity` field npm publishes), and unpacks the browser files into a
per-user cache (`$XDG_CACHE_HOME/nima-docs/`, default `~/.cache/nima-docs/`). Every build
then adds them to the site under `assets/katex/`; mkdocs.yml loads them through
`extra_css` / `extra_javascript`, and `docs/javascripts/katex-render.js` typesets the
`.arithmatex` elements that `pymdownx.arithmatex` (generic mode) emits.

Air-gapped build: copy an unpacked cache directory (or let one build run with network)
and nothing is fetched again. To upgrade KaTeX, change the two pins below together:
`npm view katex@VERSION dist.integrity` prints the matching hash.
"""

import base64
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
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


def on_config(config: MkDocsConfig) -> None:
    if not _cache_dir().is_dir():
        _fill_cache(_cache_dir())


def on_files(files: Files, config: MkDocsConfig) -> Files:
    cache = _cache_dir()
    for path in sorted(p for p in cache.rglob("*") if p.is_file()):
        uri = f"{SITE_PREFIX}/{path.relative_to(cache).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
