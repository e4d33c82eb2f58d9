"""The prebuilt llama.cpp engine: xllamacpp's in-process llama.cpp server.

``xllamacpp`` is a prebuilt (manylinux, abi3) wheel that embeds llama.cpp's own server engine:
``n_parallel`` slots decoded together by continuous batching, a prompt cache, logprobs. ponder
calls it in-process (``Server.handle_completions``, no HTTP) with the prompt rendered by its own
chat template and tokenized by the engine, so prefill continuation and prompt token counts are
exactly what the native backend gives. Each sample is one streamed completion in its own slot,
with its own seed: stop strings, a request's ``monitor`` and cancellation end that sample alone
(the stream is closed, which cancels its task in the engine).

What it cannot do, declared honestly:

- ``parallel_n`` is False: the samples of a request decode in the same batches, but each slot
  evaluates the prompt itself (the engine's prompt cache reuses a prompt a slot held before, not
  one a concurrent slot is evaluating).
- Batch-invariant decoding: the engine's decode batches cannot be padded from here, so a
  sample's numbers depend on what decodes beside it (``batch_invariant()`` is False).

The embedded server also listens for HTTP: here only on a Unix socket in a private folder,
behind a random API key; ponder uses it for ``/tokenize`` alone. Its model introspection comes
from the GGUF header (``gguf.py``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hashlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder.backends.base import Backend, Capabilities, ProgressCallback
from ponder.backends.chat_template import ChatTemplate
from ponder.backends.gguf import read_gguf
from ponder.backends.llamacpp import _cut_at_stop, check_engine_settings, plan_settings
from ponder.errors import BackendError, ConfigError, ModelError, PromptTooLong
from ponder.types import Completion, GenerationRequest, TokenLogprob, Usage

# llama.cpp's COMMON_GRAMMAR_TRIGGER_TYPE_WORD: a lazy grammar starts at this text
TRIGGER_WORD = 1
# the order of the native backend's NumPy sampler (temperature scales before the cuts)
SAMPLERS = ["top_k", "temperature", "min_p", "top_p"]
# every other llama.cpp sampler off: the native backend has none of them
NEUTRAL = {"repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
           "typical_p": 1.0, "dry_multiplier": 0.0, "xtc_probability": 0.0, "mirostat": 0,
           "top_n_sigma": -1.0}
NOT_INVARIANT = ("the prebuilt engine (xllamacpp) cannot pad its decode batches: a sample's "
                 "numbers depend on what decoded beside it (the native engine can: pip install "
                 "'ponder[native]')")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


@dataclass
class _Call:
    """One ``generate`` call: its progress total and whether it was cancelled or failed."""

    on_progress: ProgressCallback | None
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    produced: int = 0
    error: BaseException | None = None

    def progress(self, tokens: int) -> None:
        if self.on_progress is None or tokens == 0:
            return
        with self.lock:
            self.produced += tokens
            try:
                self.on_progress(self.produced)
            except Exception as exc:  # noqa: BLE001 - the caller's callback
                self.fail(BackendError(f"progress callback failed: {exc}"))

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.cancel.set()


@dataclass
class _Sample:
    """One sample being streamed."""

    text: str = ""
    tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: str | None = None
    stop: str | None = None
    error: str | None = None
    usage: dict[str, Any] | None = None


def sample_seed(seed: int | None, index: int) -> int:
    """The engine seed of sample ``index`` of a request seeded ``seed`` (random when None)."""
    if seed is None:
        return random.SystemRandom().randrange(0, 0xFFFFFFFF)
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 0xFFFFFFFF  # 0xFFFFFFFF means "random"


class XLlamaCppBackend(Backend):
    """Loads a GGUF file into xllamacpp's in-process llama.cpp server (the prebuilt engine).

    Takes the native :class:`~ponder.backends.llamacpp.LlamaCppBackend`'s options, with the same
    defaults (``n_seq_max`` slots, ``n_ctx`` the KV cache of all of them, split per slot unless
    ``kv_unified``). ``deterministic`` is recorded, but the engine cannot decode
    batch-invariantly: ``batch_invariant()`` is False and the report says why.
    """

    name = "llamacpp"
    engine = "prebuilt"
    invariance_note = NOT_INVARIANT

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int | None = None,
        n_seq_max: int | None = None,
        n_batch: int = 512,
        n_threads: int | None = None,
        flash_attn: bool = False,
        kv_unified: bool = False,
        deterministic: bool = False,
        label: str | None = None,
        verbose: bool = False,
    ) -> None:
        path = check_engine_settings(model_path, n_ctx=n_ctx, n_seq_max=n_seq_max,
                                     n_batch=n_batch, n_threads=n_threads,
                                     deterministic=deterministic, kv_unified=kv_unified)
        info = read_gguf(path)  # a wrong or corrupt file fails here, clearly
        try:
            import xllamacpp
        except ImportError as exc:
            raise ConfigError("the prebuilt llama.cpp engine is not installed; run: "
                              "pip install xllamacpp") from exc
        self.model = label or path.name
        self.path = path
        self.parameters = info.parameters
        self.n_ctx_train = int(info.arch("context_length", 0) or 0)
        n_head = info.arch("attention.head_count", 1)
        n_head_kv = info.arch("attention.head_count_kv", n_head)
        head = max(n_head) if isinstance(n_head, list) else int(n_head or 1)
        head_kv = max(n_head_kv) if isinstance(n_head_kv, list) else int(n_head_kv or head)
        auto = plan_settings(n_layer=int(info.arch("block_count", 1) or 1), n_head=head,
                             n_head_kv=head_kv, n_embd=int(info.arch("embedding_length", 0) or 0),
                             n_ctx_train=self.n_ctx_train, n_seq_max=n_seq_max)
        n_seq_max = n_seq_max or auto.n_seq_max
        n_ctx = n_ctx or auto.n_ctx
        n_ctx = min(n_ctx, max(self.n_ctx_train, 64) * n_seq_max)
        self.n_seq_max = n_seq_max
        self.n_threads = n_threads or auto.n_threads
        self.n_batch = n_batch
        self.kv_unified = kv_unified
        self.deterministic = deterministic
        self.n_ctx = n_ctx
        self.seq_ctx = n_ctx if kv_unified else n_ctx // n_seq_max
        self.template = ChatTemplate(info.metadata.get("tokenizer.chat_template"),
                                     bos_token=info.token_text("bos_token_id"),
                                     eos_token=info.token_text("eos_token_id"))
        self._bos_text = self.template.bos_token

        self._folder = tempfile.mkdtemp(prefix="ponder-engine-")  # 0700: ours alone
        self._socket = os.path.join(self._folder, "engine.sock")
        self._key = secrets.token_urlsafe(32)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = n_seq_max
        params.kv_unified = kv_unified
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.cpuparams.n_threads = self.n_threads
        params.cpuparams_batch.n_threads = self.n_threads
        params.flash_attn_type = (xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
                                  if flash_attn else
                                  xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.ctx_shift = False  # a full slot ends its sample ("length"), as in the native one
        params.cache_prompt = True
        params.warmup = False
        params.hostnames = [self._socket]  # no TCP port
        params.api_keys = [self._key]
        params.verbosity = 3 if verbose else -1
        handlers = _signal_handlers()
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - the engine's own error types
            shutil.rmtree(self._folder, ignore_errors=True)
            raise ModelError(f"cannot load {path} in the prebuilt llama.cpp engine: {exc}") \
                from exc
        finally:
            _restore(handlers)  # the engine installs its own SIGINT/SIGTERM handlers
        self._tokens: collections.OrderedDict[tuple[str, bool], list[int]] = \
            collections.OrderedDict()
        self._token_lock = threading.Lock()
        bos = self._tokenize("", add_special=True)
        self._add_bos = bool(bos)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(16, 2 * n_seq_max), thread_name_prefix="ponder-xllamacpp")
        self._live: dict[int, _Call] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(parallel_n=False, logprobs=True, prefill=True, early_stop=True,
                            grammar=True,
                            max_context=self.n_ctx_train)

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "engine": self.engine}

    def batch_invariant(self) -> bool:
        """Always False: see :data:`NOT_INVARIANT`."""
        return False

    # -- text and tokens -------------------------------------------------------------------

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        conn = _UnixConnection(self._socket)
        try:
            conn.request("POST", route, json.dumps(body),
                         {"Authorization": f"Bearer {self._key}",
                          "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            raise BackendError(f"the prebuilt llama.cpp engine did not answer: {exc}") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise BackendError(f"the prebuilt llama.cpp engine refused {route}: "
                               f"{data[:300].decode(errors='replace')}")
        return json.loads(data)

    def _tokenize(self, text: str, *, add_special: bool) -> list[int]:
        key = (text, add_special)
        with self._token_lock:
            if key in self._tokens:
                self._tokens.move_to_end(key)
                return self._tokens[key]
        tokens = [int(t) for t in self._post("/tokenize", {
            "content": text, "add_special": add_special, "parse_special": True})["tokens"]]
        with self._token_lock:
            self._tokens[key] = tokens
            while len(self._tokens) > 256:
                self._tokens.popitem(last=False)
        return tokens

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return self._tokenize(text, add_special=add_bos)

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        """The tokens of a request's formatted chat plus its prefill (as the native backend)."""
        prompt = self.template.render(request.messages, add_generation_prompt=True)
        prompt += request.prefill
        add_bos = self._add_bos and not (self._bos_text and prompt.startswith(self._bos_text))
        return self.tokenize(prompt, add_bos=add_bos)

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return len(await asyncio.to_thread(self.prompt_tokens, request))

    # -- generation ------------------------------------------------------------------------

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]:
        requests = list(requests)
        prompts = await asyncio.to_thread(lambda: [self.prompt_tokens(r) for r in requests])
        for r, p in zip(requests, prompts, strict=True):
            if r.n < 1:
                raise ConfigError("n must be at least 1")
            if len(p) >= self.seq_ctx:
                raise PromptTooLong(
                    f"prompt of {len(p)} tokens does not fit the context of {self.seq_ctx} "
                    "tokens per sequence" + ("" if self.kv_unified else
                                             " (kv_unified=False splits n_ctx by n_seq_max)"))
        call = _Call(on_progress)
        with self._lock:
            if self._closed:
                raise BackendError("the llama.cpp backend is closed")
            self._live[id(call)] = call
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        futures = [[loop.run_in_executor(self._pool, self._sample, call, r, p, i)
                    for i in range(r.n)] for r, p in zip(requests, prompts, strict=True)]
        try:
            rows = [list(await asyncio.gather(*row)) for row in futures]
        except BaseException:
            call.cancel.set()  # its samples stop at their next token
            raise
        finally:
            with self._lock:
                self._live.pop(id(call), None)
        if call.error is not None:
            raise call.error
        seconds = time.monotonic() - started
        for row in rows:  # the call's wall time goes with each request's prompt
            row[0] = _with_seconds(row[0], seconds)
        return rows

    def _body(self, request: GenerationRequest, prompt: list[int], index: int) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {
            "prompt": prompt, "stream": True, "stream_options": {"include_usage": True},
            "max_tokens": max(1, min(params.max_tokens, self.seq_ctx - len(prompt))),
            "temperature": max(0.0, params.temperature), "top_k": max(0, params.top_k),
            "top_p": params.top_p, "min_p": params.min_p,
            "seed": sample_seed(params.seed, index), "samplers": SAMPLERS,
            "cache_prompt": True, **NEUTRAL,
        }
        if params.logprobs is not None:  # 0: the chosen token's logprob alone
            body["logprobs"] = max(1, params.logprobs)
        constraint = request.constraint
        if constraint is not None:  # llama.cpp's grammar sampler; lazy: from the trigger on
            body["grammar"] = constraint.from_trigger()
            if constraint.lazy:
                words = [t for t, _ in constraint.triggers if t]
                body["grammar_lazy"] = True
                body["grammar_triggers"] = [{"type": TRIGGER_WORD, "value": w} for w in words]
                # a trigger that is one token must be a preserved token (llama.cpp asks for it)
                body["preserved_tokens"] = [w for w in words if len(self._tokenize(
                    w, add_special=False)) == 1]
        return body

    def _sample(self, call: _Call, request: GenerationRequest, prompt: list[int],
                index: int) -> Completion:
        """Stream one sample (on a worker thread); the engine's task is cancelled when the
        callback returns True (a stop string, the monitor, a cancelled or failed call)."""
        params = request.params
        s = _Sample()
        stops = params.stop
        longest = max((len(x) for x in stops), default=0)

        def on_chunk(chunk: dict[str, Any]) -> bool:
            try:
                return read(chunk)
            except Exception as exc:  # noqa: BLE001 - a monitor's; the engine would swallow it
                call.fail(BackendError(f"llama.cpp generation failed: {exc}"))
                return True

        def read(chunk: dict[str, Any]) -> bool:
            if "error" in chunk or not isinstance(chunk.get("choices"), list):
                error = chunk.get("error", chunk)
                s.error = str(error.get("message", error) if isinstance(error, dict) else error)
                return True
            if chunk.get("usage"):
                s.usage = chunk["usage"]
            if call.cancel.is_set():
                s.finish = s.finish or "cancelled"
                return True
            for choice in chunk["choices"]:
                entries = (choice.get("logprobs") or {}).get("content") or []
                previous = len(s.text)
                s.text += choice.get("text") or ""
                n = len(entries) if params.logprobs is not None else (1 if choice.get("text")
                                                                       else 0)
                s.tokens += n
                token_lp = None
                for entry in entries:
                    token_lp = _token_logprob(entry, params.logprobs or 0)
                    s.logprobs.append(token_lp)
                call.progress(n)
                if stops:
                    window = s.text[max(0, previous - longest):]
                    hit = next((stop for stop in stops if stop in window), None)
                    if hit is not None:
                        s.finish, s.stop = "stop", hit
                        return True
                if n and request.monitor is not None and request.monitor(index, s.text, token_lp):
                    s.finish = "cancelled"
                    return True
                if choice.get("finish_reason"):
                    s.finish = "length" if choice["finish_reason"] == "length" else "stop"
            return False

        try:
            self._server.handle_completions(self._body(request, prompt, index), on_chunk)
        except Exception as exc:  # noqa: BLE001 - delivered to the caller
            call.fail(BackendError(f"llama.cpp generation failed: {exc}"))
        if s.error is not None:
            call.fail(BackendError(f"the prebuilt llama.cpp engine failed: {s.error}"))
        tokens = s.tokens
        if s.usage is not None:  # the engine's own count (it ran to its end)
            tokens = int(s.usage.get("completion_tokens", tokens))
        first = index == 0
        completion = Completion(
            text=_cut_at_stop(s.text, stops),
            finish_reason=(s.finish or "stop"),  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=len(prompt) if first else 0, completion_tokens=tokens,
                        calls=1 if first else 0),
            logprobs=tuple(s.logprobs) if params.logprobs is not None else None,
            stop_sequence=s.stop,
        )
        if request.on_sample is not None and call.error is None:
            try:
                request.on_sample(index, completion)
            except Exception as exc:  # noqa: BLE001 - the caller's callback
                call.fail(BackendError(f"sample callback failed: {exc}"))
        return completion

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for call in self._live.values():
                call.fail(BackendError("the llama.cpp backend was closed"))
        self._pool.shutdown(wait=True)
        server = self.__dict__.pop("_server", None)
        del server  # the engine stops its loop and frees the model
        shutil.rmtree(self._folder, ignore_errors=True)


def _token_logprob(entry: dict[str, Any], k: int) -> TokenLogprob:
    def text(e: dict[str, Any]) -> str:
        raw = e.get("bytes")
        return bytes(raw).decode("utf-8", errors="replace") if raw is not None \
            else str(e.get("token", ""))

    top = tuple((text(t), float(t["logprob"])) for t in (entry.get("top_logprobs") or [])[:k])
    return TokenLogprob(text(entry), float(entry["logprob"]), top)


def _with_seconds(c: Completion, seconds: float) -> Completion:
    return dataclasses.replace(c, usage=c.usage + Usage(seconds=seconds))


def _signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)
