"""Get a pinned file from the first place that has it intact: cache, mirror directory, upstream URL.

Why three places: readers with internet get files from the upstream repository at the pinned commit;
offline machines (CI, this project's sandbox, a classroom) get them from a mirror directory; everyone keeps
them in a local cache afterwards. Whatever the place, the sha256 of the raw content is checked against the
pinned manifest before the file is used, so a stale cache, a tampered mirror or a moved upstream branch can
never silently change a result.

Places, in order:

1. the cache: ``$JUDGELAB_CACHE`` or the OS cache directory (``~/.cache/judgelab``), ``<source>/<path>``;
2. mirror directories: ``$JUDGELAB_DATA_MIRROR`` (``os.pathsep``-separated), else ``../shared/data`` beside
   the working directory or one of its parents; a mirror keeps upstream paths and stores files gzipped
   (``<path>.gz``) or as they are;
3. the upstream raw URL at the pinned commit, downloaded and verified by :mod:`pooch`.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import pooch

from judgelab.data.sources import get_source


class DataIntegrityError(RuntimeError):
    """No place had the file with the pinned hash. The message names the file, the hash and every place."""


def cache_dir() -> Path:
    """Where verified files are kept: ``$JUDGELAB_CACHE`` or the OS cache directory."""
    env = os.environ.get("JUDGELAB_CACHE")
    return Path(env) if env else Path(pooch.os_cache("judgelab")) / "data"


def mirror_dirs() -> list[Path]:
    """Mirror directories to look in, from ``$JUDGELAB_DATA_MIRROR`` or a ``shared/data`` found nearby."""
    env = os.environ.get("JUDGELAB_DATA_MIRROR")
    if env is not None:
        return [Path(p) for p in env.split(os.pathsep) if p]
    here = Path.cwd().resolve()
    package = Path(__file__).resolve()
    for base in [here, *here.parents, *package.parents]:
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return [candidate]
    return []


def sha256_of(path: Path) -> str:
    return pooch.file_hash(str(path), alg="sha256")


def _from_mirror(mirror: Path, source: str, path: str, dest: Path, expected: str, looked: list[str]) -> bool:
    """Copy (and gunzip) one mirror file into ``dest`` if its raw content has the expected hash.

    Any failure to read a candidate -- a truncated or corrupt gzip (``EOFError``, ``gzip.BadGzipFile``, or
    ``zlib.error`` from a damaged deflate stream, which is *not* an ``OSError``), an unreadable file -- is a
    failed copy like a wrong hash: it is noted with the file's name in ``looked`` and the next candidate,
    mirror or upstream is tried. The temporary ``.part-*`` file is removed on every path that does not
    rename it into place.
    """
    for candidate, opener in ((mirror / source / f"{path}.gz", gzip.open), (mirror / source / path, open)):
        if not candidate.is_file():
            looked.append(f"mirror {candidate}: absent")
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, opener(candidate, "rb") as src:
                shutil.copyfileobj(src, out)
            got = sha256_of(tmp)
            if got != expected:
                looked.append(f"mirror {candidate}: sha256 of content is {got}, not the pinned one")
                continue
            os.replace(tmp, dest)  # atomic: a reader never sees a half-written file
            return True
        except (OSError, EOFError, zlib.error) as err:  # truncated, corrupt or non-gzip file; unreadable
            looked.append(f"mirror {candidate}: unreadable ({type(err).__name__}: {err})")
            continue
        finally:
            tmp.unlink(missing_ok=True)  # no-op once renamed into place
    return False


def fetch(source: str, path: str, *, download: bool = True) -> Path:
    """Return a local path to the verified raw content of ``path`` from pinned ``source``.

    Raises :class:`DataIntegrityError` naming the file, the expected sha256 and every place looked, when no
    place has the file with the pinned hash. ``download=False`` never touches the network.
    """
    src = get_source(source)
    pin = src.file(path)
    dest = cache_dir() / source / path
    looked: list[str] = []

    if dest.is_file():
        got = sha256_of(dest)
        if got == pin.sha256:
            return dest
        looked.append(f"cache {dest}: sha256 {got} does not match (ignored, will be replaced)")
    else:
        looked.append(f"cache {dest}: absent")

    mirrors = mirror_dirs()
    if not mirrors:
        looked.append("mirror: none configured (set JUDGELAB_DATA_MIRROR) and no ../shared/data found")
    for mirror in mirrors:
        if _from_mirror(mirror, source, path, dest, pin.sha256, looked):
            return dest

    url = src.url(path)
    if url is None:
        looked.append(f"upstream: {src.name} has no byte-identical upstream file; only a mirror can serve it")
    elif not download:
        looked.append(f"upstream {url}: not tried (download disabled)")
    else:
        try:
            got_path = pooch.retrieve(
                url,
                known_hash=f"sha256:{pin.sha256}",
                fname=Path(path).name,
                path=dest.parent,
                progressbar=False,
                downloader=pooch.HTTPDownloader(timeout=60),
            )
            return Path(got_path)
        except Exception as err:  # noqa: BLE001 - every failure becomes one clear error below
            looked.append(f"upstream {url}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")

    places = "\n  - ".join(looked)
    raise DataIntegrityError(
        f"no intact copy of {source}/{path}\n"
        f"  expected sha256 {pin.sha256} ({pin.size} bytes)\n"
        f"  looked in:\n  - {places}"
    )


def verify_source(source: str, *, download: bool = True, progress: bool = True) -> list[Path]:
    """Fetch and verify every pinned file of ``source``; returns their local paths."""
    from tqdm.auto import tqdm

    files = list(get_source(source).files)
    return [fetch(source, p, download=download) for p in tqdm(files, desc=source, disable=not progress)]
