"""In-process llama.cpp backend: n samples per prompt in one batched decode loop.

Each request's prompt is evaluated once into one sequence, then shared with its other samples by
``llama_memory_seq_cp`` (a unified KV cache, so the prompt's cells are shared, not copied). Every
step then decodes one token for every live sequence of every request in a single batch.
Sampling (temperature, top-k, top-p, min-p, seed) and logprobs are done in NumPy on the logits,
so each sequence has its own stop strings, its own random stream and its own early stop.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ponder.backends.base import Capabilities, ProgressCallback
from ponder.backends.chat_template import ChatTemplate
from ponder.backends.sampling import sample_token, top_logprobs
from ponder.errors import BackendError, ConfigError, MissingDependency, ModelError
from ponder.types import Completion, GenerationRequest, TokenLogprob, Usage


def _import_llama_cpp():
    try:
        import llama_cpp
        import llama_cpp._internals as internals
        import llama_cpp._logger as llama_logger
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependency("llama-cpp-python", "llamacpp") from exc
    return llama_cpp, internals, llama_logger


@dataclass
class _Seq:
    """One sample being generated."""

    request: int
    index: int
    seq_id: int
    params: object
    rng: np.random.Generator
    pos: int
    pieces: list[bytes] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    text: str = ""
    finish: str | None = None


class LlamaCppBackend:
    """Loads a GGUF file and generates with llama.cpp in this process.

    ``n_ctx`` is the KV cache shared by all sequences of a call; ``n_seq_max`` bounds how many
    sequences decode together. Calls larger than either are split into rounds automatically.
    ``kv_unified=False`` gives each sequence its own n_ctx / n_seq_max cells (faster attention
    when prompts are short, but a long prompt may no longer fit); ``flash_attn`` turns on
    llama.cpp's flash attention.
    """

    name = "llamacpp"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 8192,
        n_seq_max: int = 32,
        n_batch: int = 512,
        n_threads: int | None = None,
        flash_attn: bool = False,
        kv_unified: bool = True,
        label: str | None = None,
        verbose: bool = False,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelError(f"not a GGUF model file: {path}")
        if n_ctx < 64 or n_seq_max < 1 or n_batch < 1:
            raise ConfigError("n_ctx must be >= 64, n_seq_max and n_batch >= 1")
        llama_cpp, internals, llama_logger = _import_llama_cpp()
        llama_logger.set_verbose(verbose)
        self._llama_cpp = llama_cpp
        self.model = label or path.name
        self.path = path
        model_params = llama_cpp.llama_model_default_params()
        try:
            self._model = internals.LlamaModel(
                path_model=str(path), params=model_params, verbose=verbose
            )
        except ValueError as exc:
            raise ModelError(f"cannot load {path}: corrupt or unsupported GGUF file") from exc
        n_ctx = min(n_ctx, max(self._model.n_ctx_train(), 64) * n_seq_max)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.kv_unified = kv_unified
        params.flash_attn_type = 1 if flash_attn else 0
        threads = n_threads or max(1, os.cpu_count() or 1)
        params.n_threads = threads
        params.n_threads_batch = threads
        try:
            self._ctx = internals.LlamaContext(model=self._model, params=params, verbose=verbose)
        except ValueError as exc:
            raise ModelError(f"cannot create a llama.cpp context for {path}") from exc
        self._batch = internals.LlamaBatch(n_tokens=max(n_batch, n_seq_max), embd=0,
                                           n_seq_max=n_seq_max)
        self.n_ctx = self._ctx.n_ctx()
        self.n_seq_max = n_seq_max
        self.n_batch = n_batch
        self.n_ctx_train = self._model.n_ctx_train()
        self._vocab = self._model.vocab
        self._n_vocab = self._model.n_vocab()
        self._memory = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Lock()
        metadata = self._model.metadata()
        bos = self._model.token_bos()
        eos = self._model.token_eos()
        self.template = ChatTemplate(
            metadata.get("tokenizer.chat_template"),
            bos_token=self._token_text(bos),
            eos_token=self._token_text(eos),
        )
        self._add_bos = bool(self._model.add_bos_token()) and bos >= 0
        self._bos_text = self._token_text(bos)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(parallel_n=True, logprobs=True, prefill=True, early_stop=True,
                            max_context=self.n_ctx_train)

    # -- text and tokens -------------------------------------------------------------------

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._model.token_get_text(token)

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
            cached = buf.raw[:n]
            self._pieces[token] = cached
        return cached

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos, True)

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        """The tokens of a request's formatted chat plus its prefill."""
        prompt = self.template.render(request.messages, add_generation_prompt=True)
        prompt += request.prefill
        add_bos = self._add_bos and not (self._bos_text and prompt.startswith(self._bos_text))
        return self.tokenize(prompt, add_bos=add_bos)

    def _is_eog(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # -- generation ------------------------------------------------------------------------

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate_sync, list(requests), on_progress,
                                           cancel)
        except asyncio.CancelledError:
            cancel.set()  # the worker sees it after the current decode step and frees its work
            raise

    def _generate_sync(
        self,
        requests: list[GenerationRequest],
        on_progress: ProgressCallback | None,
        cancel: threading.Event,
    ) -> list[list[Completion]]:
        prompts = [self.prompt_tokens(r) for r in requests]
        for r, p in zip(requests, prompts, strict=True):
            if r.n < 1:
                raise ConfigError("n must be at least 1")
            if len(p) >= self.n_ctx:
                raise BackendError(
                    f"prompt of {len(p)} tokens does not fit the context of {self.n_ctx} tokens"
                )
        results: list[list[Completion | None]] = [[None] * r.n for r in requests]
        produced = [0]
        with self._lock:
            for round_ in self._plan(requests, prompts):
                self._run_round(requests, prompts, round_, results, on_progress, produced, cancel)
        return [[c for c in row if c is not None] for row in results]

    def _plan(self, requests: list[GenerationRequest], prompts: list[list[int]]
              ) -> list[list[tuple[int, list[int]]]]:
        """Pack (request, sample indices) into rounds that fit the KV cache and sequence slots."""
        rounds: list[list[tuple[int, list[int]]]] = []
        current: list[tuple[int, list[int]]] = []
        cells = seqs = 0
        for ri, request in enumerate(requests):
            pending = list(range(request.n))
            per_sample = min(request.params.max_tokens, self.n_ctx - len(prompts[ri]))
            while pending:
                room_seqs = self.n_seq_max - seqs
                room_cells = self.n_ctx - cells - len(prompts[ri])
                fit = min(len(pending), room_seqs, room_cells // max(1, per_sample))
                if fit < 1:
                    if not current:  # a lone sample always fits: its max_tokens gets capped
                        fit = 1
                    else:
                        rounds.append(current)
                        current, cells, seqs = [], 0, 0
                        continue
                current.append((ri, pending[:fit]))
                pending = pending[fit:]
                cells += len(prompts[ri]) + fit * per_sample
                seqs += fit
        if current:
            rounds.append(current)
        return rounds

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> list[np.ndarray]:
        """Decode (token, pos, seq_id, want_logits) items; return logits rows for wanted items."""
        llama_cpp = self._llama_cpp
        out: list[np.ndarray] = []
        step = self.n_batch
        for start in range(0, len(items), step):
            chunk = items[start : start + step]
            batch = self._batch.batch
            batch.n_tokens = len(chunk)
            wanted = []
            for i, (token, pos, seq_id, want) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq_id
                batch.logits[i] = want
                if want:
                    wanted.append(i)
            rc = llama_cpp.llama_decode(self._ctx.ctx, batch)
            if rc != 0:
                raise BackendError(f"llama_decode failed with code {rc} (context full?)")
            for i in wanted:
                ptr = llama_cpp.llama_get_logits_ith(self._ctx.ctx, i)
                out.append(np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy())
        return out

    def _run_round(
        self,
        requests: list[GenerationRequest],
        prompts: list[list[int]],
        round_: list[tuple[int, list[int]]],
        results: list[list[Completion | None]],
        on_progress: ProgressCallback | None,
        produced: list[int],
        cancel: threading.Event,
    ) -> None:
        llama_cpp = self._llama_cpp
        llama_cpp.llama_memory_clear(self._memory, True)
        started = time.monotonic()
        seqs: list[_Seq] = []
        first_logits: list[np.ndarray] = []
        next_seq = 0
        for ri, indices in round_:
            request, prompt = requests[ri], prompts[ri]
            head = next_seq
            items = [(t, p, head, p == len(prompt) - 1) for p, t in enumerate(prompt)]
            [logits] = self._decode(items)
            for index in indices:
                seq_id = next_seq
                next_seq += 1
                if seq_id != head:
                    llama_cpp.llama_memory_seq_cp(self._memory, head, seq_id, -1, -1)
                seed = request.params.seed
                rng = np.random.default_rng(None if seed is None else [seed, index])
                seqs.append(_Seq(ri, index, seq_id, request.params, rng, len(prompt)))
                first_logits.append(logits)
        prompt_seconds = time.monotonic() - started
        charged: set[int] = set()
        logits_by_seq = dict(zip((s.seq_id for s in seqs), first_logits, strict=True))
        live = list(seqs)
        while live:
            for s in live:
                self._advance(s, logits_by_seq[s.seq_id], requests[s.request], prompts[s.request])
            produced[0] += len(live)
            if on_progress is not None:
                on_progress(produced[0])
            if cancel.is_set():
                for s in live:
                    s.finish = s.finish or "cancelled"
            for s in live:
                if s.finish is not None:
                    llama_cpp.llama_memory_seq_rm(self._memory, s.seq_id, -1, -1)
            live = [s for s in live if s.finish is None]
            if not live:
                break
            items = [(s.tokens[-1], s.pos, s.seq_id, True) for s in live]
            rows = self._decode(items)
            for s, row in zip(live, rows, strict=True):
                s.pos += 1
                logits_by_seq[s.seq_id] = row
        elapsed = time.monotonic() - started
        total_tokens = max(1, sum(len(s.tokens) for s in seqs))
        for s in seqs:
            request = requests[s.request]
            first = s.request not in charged
            charged.add(s.request)
            usage = Usage(
                prompt_tokens=len(prompts[s.request]) if first else 0,
                completion_tokens=len(s.tokens),
                calls=1 if first else 0,
                seconds=(prompt_seconds if first else 0.0)
                + (elapsed - prompt_seconds) * len(s.tokens) / total_tokens,
            )
            text = b"".join(s.pieces).decode("utf-8", errors="replace")
            text = _cut_at_stop(text, request.params.stop)
            results[s.request][s.index] = Completion(
                text=text,
                finish_reason=s.finish,  # type: ignore[arg-type]
                usage=usage,
                logprobs=tuple(s.logprobs) if request.params.logprobs is not None else None,
            )

    def _advance(self, s: _Seq, logits: np.ndarray, request: GenerationRequest,
                 prompt: list[int]) -> None:
        """Sample one token for ``s`` and decide whether it is finished."""
        params = request.params
        token = sample_token(logits, params, s.rng)
        s.tokens.append(token)
        eog = self._is_eog(token)
        piece = b"" if eog else self.piece(token)
        s.pieces.append(piece)
        token_lp = None
        if params.logprobs is not None:
            lp, top = top_logprobs(logits, token, params.logprobs)
            token_lp = TokenLogprob(
                piece.decode("utf-8", errors="replace"), lp,
                tuple((self.piece(t).decode("utf-8", errors="replace"), v) for t, v in top),
            )
            s.logprobs.append(token_lp)
        if eog:
            s.finish = "stop"
            return
        previous = len(s.text)
        s.text = b"".join(s.pieces).decode("utf-8", errors="ignore")
        if params.stop:
            longest = max(len(x) for x in params.stop)
            window = s.text[max(0, previous - longest):]
            if any(stop in window for stop in params.stop):
                s.finish = "stop"
                return
        if request.monitor is not None and request.monitor(s.index, s.text, token_lp):
            s.finish = "cancelled"
            return
        if len(s.tokens) >= params.max_tokens or s.pos + 1 >= self.n_ctx:
            s.finish = "length"

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for obj in ("_batch", "_ctx", "_model"):
                closer = getattr(getattr(self, obj, None), "close", None)
                if closer is not None:
                    closer()


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(cuts)] if cuts else text
