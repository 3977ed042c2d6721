"""Run llama.cpp's OpenAI-compatible server (llama-cpp-python) on a GGUF file, for tests and benchmarks.

    from judgelab.models.llamacpp_server import serve_gguf
    from judgelab.models.openai_backend import OpenAICompatibleModel
    from judgelab.models.zoo import zoo_entry

    with serve_gguf(zoo_entry("smollm2-135m-instruct").gguf_path()) as base_url:
        judge = OpenAICompatibleModel.for_zoo("smollm2-135m-instruct", base_url)
        judge.option_probs(prompts, ["1", "2"])

The server is ``python -m llama_cpp.server`` (``pip install 'judgelab[server]'``), started as a subprocess
through ``python -m judgelab.models.llamacpp_backend serve`` (extra buffer types off, see there)
on 127.0.0.1 with ``--logits_all True`` (llama-cpp-python returns log-probabilities only then). Its chat
endpoint renders the chat template stored in the GGUF's metadata unless ``chat_format`` names another one.
Note that llama-cpp-python's server runs one request at a time (it holds a lock around its single model),
so concurrent requests queue rather than batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class ServerError(RuntimeError):
    """The llama.cpp server did not start (or died); the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:]) or "(empty log)"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200 and "data" in json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_command(
    gguf_path: str | Path,
    *,
    port: int,
    n_ctx: int = 4096,
    chat_format: str | None = None,
    n_threads: int | None = None,
    model_alias: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line :func:`serve_gguf` runs."""
    threads = n_threads or os.cpu_count() or 1
    cmd = [
        # llama_cpp.server through judgelab's launcher, which turns llama.cpp's extra buffer types (AMX
        # repacking) off: on CPUs that list amx_tile but do not run it (this project's VMs) the plain server
        # dies with an illegal instruction on its first request. See llamacpp_backend.serve.
        sys.executable, "-m", "judgelab.models.llamacpp_backend", "serve",
        "--model", str(gguf_path),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--logits_all", "True",
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        "--use_mlock", "False",  # mlock fails quietly or loudly in containers; the file is mmapped anyway
        "--verbose", "False",
    ]
    if model_alias:
        cmd += ["--model_alias", model_alias]
    if chat_format:
        cmd += ["--chat_format", chat_format]
    return cmd + list(extra_args)


@contextmanager
def serve_gguf(
    gguf_path: str | Path,
    *,
    port: int | None = None,
    n_ctx: int = 4096,
    chat_format: str | None = None,
    n_threads: int | None = None,
    model_alias: str | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 120.0,
) -> Iterator[str]:
    """Serve ``gguf_path`` with llama.cpp's server on 127.0.0.1; yields the base URL (``http://127.0.0.1:P/v1``).

    Waits (at most ``startup_timeout`` seconds) until ``/v1/models`` answers; raises :class:`ServerError`
    with the tail of the server's log if it exits or never answers. The server is terminated on exit (killed
    if it does not stop within 10 s). ``n_threads`` defaults to all CPU cores; ``model_alias`` is the model
    id the server reports (default: the path); ``extra_args`` are passed on verbatim.
    """
    try:
        import llama_cpp  # noqa: F401
    except ImportError as err:
        raise ServerError("llama-cpp-python is not installed: pip install 'judgelab[server]'") from err
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ServerError(f"no GGUF file at {gguf_path}")
    port = port or free_port()
    cmd = server_command(gguf_path, port=port, n_ctx=n_ctx, chat_format=chat_format, n_threads=n_threads,
                         model_alias=model_alias, extra_args=extra_args)
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory(prefix="judgelab-llamacpp-") as tmp:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            # a log file, not a pipe: a pipe nobody reads fills up and blocks the server
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + startup_timeout
            while not _answers(base_url + "/models"):
                if proc.poll() is not None:
                    raise ServerError(
                        f"llama.cpp server for {gguf_path.name} exited with code {proc.returncode} before "
                        f"answering on {base_url}; command: {' '.join(cmd)}\n--- log tail ---\n{_tail(log_path)}"
                    )
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"llama.cpp server for {gguf_path.name} did not answer on {base_url} within "
                        f"{startup_timeout:.0f}s\n--- log tail ---\n{_tail(log_path)}"
                    )
                time.sleep(0.2)
            yield base_url
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


__all__ = ["ServerError", "free_port", "serve_gguf", "server_command"]
