"""Verified data: pinned upstream sources, fetched from cache, mirror or upstream, hash-checked, loaded tidy."""

from judgelab.data.fetch import DataIntegrityError, cache_dir, fetch, mirror_dirs, verify_source
from judgelab.data.sources import SOURCE_NAMES, PinnedFile, Source, get_source

__all__ = [
    "DataIntegrityError",
    "PinnedFile",
    "SOURCE_NAMES",
    "Source",
    "cache_dir",
    "fetch",
    "get_source",
    "mirror_dirs",
    "verify_source",
]
