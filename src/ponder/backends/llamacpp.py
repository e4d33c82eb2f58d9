"""In-process llama.cpp backend: n samples per prompt in one batched decode loop.

Each request's prompt is evaluated once into one sequence, then given to its other samples by
``llama_memory_seq_cp`` (by default each sequence has its own KV stream and the prompt's cells
are copied; with ``kv_unified=True`` they are shared). One thread runs the decoding loop:
every step decodes one token for every live sequence of every queued request in a single batch
(their ids kept consecutive, so llama.cpp makes it one ubatch), and admits waiting samples as
soon as sequence slots and KV cells free up (continuous batching), so concurrent callers share
the batch instead of queueing.
Sampling (temperature, top-k, top-p, min-p, seed) and logprobs are done in NumPy on the logits,
so each sequence has its own stop strings, its own random stream and its own early stop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ponder.backends.base import Backend, Capabilities, ProgressCallback
from ponder.backends.chat_template import ChatTemplate
from ponder.backends.grammars import ConstrainedSampling, check_grammar
from ponder.backends.sampling import sample_token, top_logprobs
from ponder.errors import BackendError, ConfigError, MissingDependency, ModelError, PromptTooLong
from ponder.types import Completion, GenerationRequest, TokenLogprob, Usage


def _import_llama_cpp():
    try:
        import llama_cpp
        import llama_cpp._internals as internals
        import llama_cpp._logger as llama_logger
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependency("llama-cpp-python", "llamacpp") from exc
    return llama_cpp, internals, llama_logger


class _Job:
    """One ``generate`` call: its requests, results so far, and the future that delivers them."""

    def __init__(self, requests: list[GenerationRequest], prompts: list[list[int]],
                 on_progress: ProgressCallback | None) -> None:
        self.requests = requests
        self.prompts = prompts
        self.on_progress = on_progress
        self.results: list[list[Completion | None]] = [[None] * r.n for r in requests]
        self.remaining = sum(r.n for r in requests)
        self.produced = 0
        self.cancel = threading.Event()
        self.future: concurrent.futures.Future[list[list[Completion]]] = (
            concurrent.futures.Future()
        )
        self.submitted = time.monotonic()
        self.charged: set[int] = set()
        self.evaluated: dict[int, int] = {}  # request -> prompt tokens actually evaluated


@dataclass
class _Unit:
    """Samples of one request admitted together: they share one evaluation of the prompt."""

    job: _Job
    request: int
    indices: list[int]
    alive: int = 0  # samples still generating; the prompt's cells are held until it is 0


@dataclass
class _Seq:
    """One sample being generated."""

    unit: _Unit
    index: int
    seq_id: int
    rng: np.random.Generator
    pos: int
    reserved: int
    pieces: list[bytes] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    stop: str | None = None  # the stop string that ended it
    constrained: ConstrainedSampling | None = None  # the request's grammar, as it decodes


class LlamaCppBackend(Backend):
    """Loads a GGUF file and generates with llama.cpp in this process.

    ``n_seq_max`` bounds how many sequences decode together (calls larger than it are split
    into rounds automatically); ``n_ctx`` is the KV cache of all of them together. By default
    (``kv_unified=False``) each sequence has its own stream of ``n_ctx / n_seq_max`` cells, so a
    token's attention spans only its own sequence: with one cache shared by all (``kv_unified=
    True``) every token attends over every live sequence's cells, and a decode step of 16
    sequences of 768 tokens took 2.3x as long (bench/decode_scaling.py). A unified cache still
    shares a common prompt prefix between different requests of one round (beams of a step
    search); split streams copy it. Left to None, ``n_seq_max``, ``n_ctx`` and ``n_threads`` are
    chosen from the machine (cores, memory) and the model (see :func:`auto_settings`).
    ``flash_attn`` turns on llama.cpp's flash attention.

    ``deterministic=True`` makes decoding batch-invariant: a sample's tokens depend only on its
    prompt, its seed and its index, never on what else is decoding beside it (see
    :data:`PAD_ROWS`). ggml's CPU kernels change with the number of rows in a call (a
    single-row vec_dot below 2 rows, llamafile's tiled GEMM above; a different path again at 8
    rows for K-quants on AVX-512) and, with weights repacked for the CPU, with a row's place in
    its group of 4. So this mode loads the weights unrepacked, pads every decode step to at least
    ``PAD_ROWS`` rows with throwaway rows in free sequence slots, and evaluates each prompt in
    its own calls, padded the same way with throwaway tokens after its end. Attention over split
    KV streams is already invariant (masked cells add exact zeros). It needs ``kv_unified=False``
    (a shared cache places a sequence's cells wherever they are free). The cost is measured in
    ``bench/determinism.py``.
    """

    name = "llamacpp"

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
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelError(f"not a GGUF model file: {path}")
        if deterministic and kv_unified:
            raise ConfigError("deterministic decoding needs kv_unified=False: a shared KV cache "
                              "places a sequence's cells wherever they are free (or turn it "
                              "off: --no-deterministic, -B deterministic=false)")
        llama_cpp, internals, llama_logger = _import_llama_cpp()
        llama_logger.set_verbose(verbose)
        self._llama_cpp = llama_cpp
        self.model = label or path.name
        self.path = path
        model_params = llama_cpp.llama_model_default_params()
        if deterministic:  # repacked weights compute a row by its place in a group of 4
            model_params.use_extra_bufts = False
        try:
            self._model = internals.LlamaModel(
                path_model=str(path), params=model_params, verbose=verbose
            )
        except ValueError as exc:
            raise ModelError(f"cannot load {path}: corrupt or unsupported GGUF file") from exc
        # the model's size, for FLOPs-equivalent costs (2 x parameters per token)
        self.parameters = int(llama_cpp.llama_model_n_params(self._model.model))
        auto = auto_settings(self._model.model, n_seq_max=n_seq_max)
        n_seq_max = n_seq_max or auto.n_seq_max
        if deterministic and n_batch < n_seq_max + PAD_ROWS:
            raise ConfigError(f"deterministic decoding needs n_batch >= n_seq_max + {PAD_ROWS} "
                              "(a decode step must be one call)")
        n_ctx = n_ctx or auto.n_ctx
        n_ctx = min(n_ctx, max(self._model.n_ctx_train(), 64) * n_seq_max)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.kv_unified = kv_unified
        params.flash_attn_type = 1 if flash_attn else 0
        threads = n_threads or auto.n_threads
        params.n_threads = threads
        params.n_threads_batch = threads
        try:
            self._ctx = internals.LlamaContext(model=self._model, params=params, verbose=verbose)
        except ValueError as exc:
            raise ModelError(f"cannot create a llama.cpp context for {path}") from exc
        self._batch = internals.LlamaBatch(n_tokens=max(n_batch, n_seq_max), embd=0,
                                           n_seq_max=n_seq_max)
        self.n_ctx = self._ctx.n_ctx()
        self.kv_unified = kv_unified
        self.deterministic = deterministic
        # rows every llama_decode call has at least (1: no padding); a decode step can pad only
        # into free sequence slots, so with fewer slots than PAD_ROWS every step is padded to
        # all of them (one row count, one kernel path)
        self.pad_rows = PAD_ROWS if deterministic else 1
        # Cells one sequence can use: all of them in a unified cache, else its own stream.
        self.seq_ctx = self.n_ctx if kv_unified else self.n_ctx // n_seq_max
        self.n_seq_max = n_seq_max
        self.n_batch = n_batch
        self.n_threads = threads
        self.n_ctx_train = self._model.n_ctx_train()
        self._vocab = self._model.vocab
        self._n_vocab = self._model.n_vocab()
        self._memory = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closed = False
        metadata = self._model.metadata()
        bos = self._model.token_bos()
        eos = self._model.token_eos()
        self.template = ChatTemplate(
            metadata.get("tokenizer.chat_template"),
            bos_token=self._token_text(bos),
            eos_token=self._token_text(eos),
        )
        self._add_bos = bool(self._model.add_bos_token()) and bos >= 0
        self._pad_token = max(bos, 0)  # any token will do for a throwaway row
        # checked before the decoding thread exists: nothing else uses the context yet
        self._invariant = self._check_invariance() if deterministic else False
        self._bos_text = self._token_text(bos)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(parallel_n=True, logprobs=True, prefill=True, early_stop=True,
                            grammar=True, max_context=self.n_ctx_train)

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

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return len(self.prompt_tokens(request))

    def _is_eog(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # -- generation ------------------------------------------------------------------------

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]:
        job = self.submit(requests, on_progress)
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancel.set()  # the scheduler stops its sequences at the next step
            raise

    def submit(self, requests: Sequence[GenerationRequest],
               on_progress: ProgressCallback | None = None) -> _Job:
        """Queue requests for the decoding loop; the job's future resolves to the completions.
        Requests of concurrent jobs decode in the same batches (continuous batching)."""
        requests = list(requests)
        prompts = [self.prompt_tokens(r) for r in requests]
        for r, p in zip(requests, prompts, strict=True):
            if r.n < 1:
                raise ConfigError("n must be at least 1")
            if len(p) + (self.pad_rows - 1) >= self.seq_ctx:
                raise PromptTooLong(
                    f"prompt of {len(p)} tokens does not fit the context of {self.seq_ctx} "
                    "tokens per sequence" + ("" if self.kv_unified else
                                             " (kv_unified=False splits n_ctx by n_seq_max)"))
        for k, r in enumerate(requests):
            if r.constraint is not None and not check_grammar(self._llama_cpp, self._vocab,
                                                              r.constraint):
                requests[k] = r.replace(constraint=None)  # sampled freely, checked after
        job = _Job(requests, prompts, on_progress)
        with self._lock:
            if self._closed:
                raise BackendError("the llama.cpp backend is closed")
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="ponder-llamacpp",
                                                daemon=True)
                self._worker.start()
            self._queue.put(job)
        return job

    # -- the decoding loop (one thread) ---------------------------------------------------

    def _loop(self) -> None:
        """Continuous batching: admit queued samples whenever sequence slots and KV cells allow,
        evaluate their prompts, then decode one token for every live sequence per step."""
        llama_cpp = self._llama_cpp
        pending: collections.deque[_Unit] = collections.deque()
        live: list[_Seq] = []
        logits: dict[int, np.ndarray] = {}
        free_ids = list(range(self.n_seq_max))[::-1]  # pop() gives the lowest free id
        reserved = 0
        while True:
            block = not live and not pending
            try:
                while True:
                    job = self._queue.get(block=block)
                    block = False
                    if job is None:
                        self._fail([*(s.unit.job for s in live), *(u.job for u in pending)],
                                   BackendError("the llama.cpp backend was closed"))
                        return
                    pending.extend(_Unit(job, ri, list(range(r.n)))
                                   for ri, r in enumerate(job.requests))
            except queue.Empty:
                pass
            try:
                admitted, reserved = self._admit(pending, len(free_ids), reserved, bool(live))
                if admitted:
                    live.extend(self._prefill(admitted, free_ids, logits, live))
                for s in live:
                    if s.unit.job.cancel.is_set():
                        s.finish = "cancelled"
                    else:
                        self._advance(s, logits[s.seq_id])
                jobs = {id(s.unit.job): s.unit.job for s in live}
                for job in jobs.values():
                    job.produced += sum(1 for s in live if s.unit.job is job)
                    if job.on_progress is not None:
                        try:
                            job.on_progress(job.produced)
                        except Exception as exc:  # noqa: BLE001 - the caller's callback
                            self._fail([job], BackendError(f"progress callback failed: {exc}"))
                            job.cancel.set()  # its sequences stop; other jobs go on
                still: list[_Seq] = []
                for s in live:
                    if s.finish is None:
                        still.append(s)
                        continue
                    llama_cpp.llama_memory_seq_rm(self._memory, s.seq_id, -1, -1)
                    free_ids.append(s.seq_id)
                    del logits[s.seq_id]
                    reserved -= s.reserved
                    s.unit.alive -= 1
                    if s.unit.alive == 0:
                        reserved -= len(s.unit.job.prompts[s.unit.request])
                    self._finish(s)
                live = still
                free_ids.sort(reverse=True)
                if live and not self.kv_unified:
                    self._compact(live, free_ids, logits)
                live.sort(key=lambda s: s.seq_id)
                if live:
                    rows = self._step(live, free_ids)
                    for s, row in zip(live, rows, strict=True):
                        s.pos += 1
                        logits[s.seq_id] = row
            except Exception as exc:  # noqa: BLE001 - delivered to every caller waiting on it
                error = exc if isinstance(exc, BackendError) else BackendError(
                    f"llama.cpp generation failed: {exc}")
                self._fail([*(s.unit.job for s in live), *(u.job for u in pending)], error)
                llama_cpp.llama_memory_clear(self._memory, True)
                live, pending, logits = [], collections.deque(), {}
                free_ids, reserved = list(range(self.n_seq_max))[::-1], 0

    def _step(self, live: list[_Seq], free_ids: list[int]) -> list[np.ndarray]:
        """Decode one token for every live sequence: one call, the rows in sequence id order.
        Deterministic: padded to ``pad_rows`` rows (or every slot, when there are fewer) with a
        throwaway token at position 0 of each of the lowest free slots, cleared after."""
        items = [(s.tokens[-1], s.pos, s.seq_id, True) for s in live]
        want = min(self.pad_rows, self.n_seq_max) - len(items)
        spare = sorted(free_ids)[:max(0, want)]
        # a padding row wants logits too: the output layer's kernel also depends on its rows
        items += [(self._pad_token, 0, seq_id, True) for seq_id in spare]
        try:
            return self._decode(items)[: len(live)]
        finally:
            for seq_id in spare:
                self._llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

    def _compact(self, live: list[_Seq], free_ids: list[int], logits: dict[int, np.ndarray]
                 ) -> None:
        """Keep the live sequences' ids consecutive from 0: llama.cpp splits a step over split
        streams into one ubatch per run of consecutive sequence ids, so 7 sequences scattered
        over 16 ids cost up to 7 passes over the weights instead of one. Each live sequence
        above the lowest free id moves there (its stream is copied, the old one cleared)."""
        llama_cpp = self._llama_cpp
        for s in sorted(live, key=lambda s: s.seq_id, reverse=True):
            if not free_ids or free_ids[-1] > s.seq_id:
                break
            low = free_ids.pop()
            llama_cpp.llama_memory_seq_cp(self._memory, s.seq_id, low, -1, -1)
            llama_cpp.llama_memory_seq_rm(self._memory, s.seq_id, -1, -1)
            logits[low] = logits.pop(s.seq_id)
            free_ids.append(s.seq_id)
            free_ids.sort(reverse=True)
            s.seq_id = low

    def _per_sample(self, unit: _Unit) -> int:
        prompt = len(unit.job.prompts[unit.request])
        return max(1, min(unit.job.requests[unit.request].params.max_tokens,
                          self.seq_ctx - prompt))

    def _admit(self, pending: collections.deque[_Unit], slots: int, reserved: int, busy: bool
               ) -> tuple[list[_Unit], int]:
        """Take as many pending samples as free sequence slots and KV cells allow, reserving
        each sample's worst case (prompt once per unit, max_tokens per sample)."""
        admitted: list[_Unit] = []
        while pending and slots > 0:
            unit = pending[0]
            if unit.job.cancel.is_set() or unit.job.future.done():
                pending.popleft()
                self._drop(unit)
                continue
            prompt = len(unit.job.prompts[unit.request])
            per_sample = self._per_sample(unit)
            room = (self.n_ctx - reserved - prompt) // per_sample if self.kv_unified else slots
            k = min(len(unit.indices), slots, room)
            if k < 1:
                if busy or admitted:
                    break  # wait for running sequences to free cells
                k = 1  # alone, one sample always fits: its length is capped by the context
            if k < len(unit.indices):
                pending[0] = _Unit(unit.job, unit.request, unit.indices[k:])
                unit = _Unit(unit.job, unit.request, unit.indices[:k])
            else:
                pending.popleft()
            admitted.append(unit)
            slots -= k
            reserved += prompt + k * per_sample
        return admitted, reserved

    def _prefill(self, units: list[_Unit], free_ids: list[int], logits: dict[int, np.ndarray],
                 live: Sequence[_Seq] = ()) -> list[_Seq]:
        """Evaluate each admitted unit's prompt once (packed into shared batches), then share it
        with the unit's other samples by sequence copy. A prompt that starts like an earlier one
        of the same round (beams of a step search: same question, same first steps) or like a
        live sequence's prompt (the rest of a request admitted in parts, another plan on the
        same question, few-shot exemplars every problem starts with) evaluates only the rest: a
        unified cache shares that prefix's cells, split streams copy the donor's stream and cut
        it back to the prefix."""
        llama_cpp = self._llama_cpp
        heads = [free_ids.pop() for _ in units]
        donors: list[int] = []  # units whose whole prompt is evaluated in the first pass
        shares: dict[int, tuple[int, int]] = {}  # unit -> (donor sequence, shared prefix length)
        running = {id(s.unit): s for s in live}.values()  # one live sequence per unit
        for k, unit in enumerate(units):
            prompt = unit.job.prompts[unit.request]
            best, source = 0, -1
            for s in running:  # its cells hold its prompt (and what it generated after)
                n = _common_prefix(prompt, s.unit.job.prompts[s.unit.request])
                if n > best:
                    best, source = n, s.seq_id
            for d in donors:
                n = _common_prefix(prompt, units[d].job.prompts[units[d].request])
                if n > best:
                    best, source = n, heads[d]
            best = min(best, len(prompt) - 1)  # the last token is evaluated for its logits
            if best >= MIN_SHARED_PREFIX:
                shares[k] = (source, best)
            else:
                donors.append(k)
        last: dict[int, np.ndarray] = {}
        for group in (donors, list(shares)):
            items: list[tuple[int, int, int, bool]] = []
            for k in group:
                unit, start = units[k], shares.get(k, (0, 0))[1]
                prompt = unit.job.prompts[unit.request]
                if start and self.kv_unified:  # the prefix's cells become shared
                    llama_cpp.llama_memory_seq_cp(self._memory, shares[k][0], heads[k], 0, start)
                elif start:  # another stream: copy the donor's whole stream, cut it back
                    llama_cpp.llama_memory_seq_cp(self._memory, shares[k][0], heads[k], -1, -1)
                    llama_cpp.llama_memory_seq_rm(self._memory, heads[k], start, -1)
                unit.job.evaluated.setdefault(unit.request, len(prompt) - start)
                own = [(prompt[p], p, heads[k], p == len(prompt) - 1)
                       for p in range(start, len(prompt))]
                if self.deterministic:  # alone, its last call padded: see _prompt_alone
                    last[k] = self._prompt_alone(own, heads[k], len(prompt))
                else:
                    items.extend(own)
            if items:
                for k, row in zip(group, self._decode(items), strict=True):
                    last[k] = row
        seqs = []
        for k, (unit, head) in enumerate(zip(units, heads, strict=True)):
            request = unit.job.requests[unit.request]
            for j, index in enumerate(unit.indices):
                seq_id = head if j == 0 else free_ids.pop()
                if seq_id != head:
                    llama_cpp.llama_memory_seq_cp(self._memory, head, seq_id, -1, -1)
                seed = request.params.seed
                rng = np.random.default_rng(None if seed is None else [seed, index])
                seqs.append(_Seq(unit, index, seq_id, rng, len(unit.job.prompts[unit.request]),
                                 self._per_sample(unit), constrained=self._constrained(request)))
                logits[seq_id] = last[k]
            unit.alive = len(unit.indices)
        return seqs

    def _prompt_alone(self, items: list[tuple[int, int, int, bool]], seq_id: int, end: int
                      ) -> np.ndarray:
        """Evaluate one prompt's tokens in calls of their own (packed with others, llama.cpp
        splits the batch into ubatches whose sizes depend on the other prompts' lengths), the
        last call padded to ``pad_rows`` rows with throwaway tokens after the prompt's end
        (causal attention: no real token sees them), whose cells are then cleared."""
        short = len(items) % self.n_batch
        if 0 < short < self.pad_rows:
            items = items + [(self._pad_token, end + j, seq_id, False)
                             for j in range(self.pad_rows - short)]
        try:
            [row] = self._decode(items)
        finally:
            self._llama_cpp.llama_memory_seq_rm(self._memory, seq_id, end, -1)
        return row

    def batch_invariant(self) -> bool:
        """Whether a sequence decodes to the same logits alone and beside a sequence in every
        other slot: checked once, when a deterministic backend is loaded, on this machine's
        kernels (a few short decode calls). False when not deterministic."""
        return bool(self._invariant)

    def _check_invariance(self) -> bool:
        """The probe of :meth:`batch_invariant`; False (not checked) where a sequence's cells
        cannot hold it."""
        llama_cpp = self._llama_cpp
        if self.seq_ctx < 64:
            return False
        probe = self.tokenize("Batch invariance probe: one, two, three, four, five.")
        # mates of one length: packed, llama.cpp splits unequal sequences into many ubatches
        mates = [[(101 * k + j) % self._n_vocab for j in range(4)]
                 for k in range(1, self.n_seq_max)]

        def run(others: list[list[int]]) -> list[np.ndarray]:
            llama_cpp.llama_memory_clear(self._memory, True)
            prompts = [probe, *others]
            rows = [self._prompt_alone([(t, p, 0, p == len(probe) - 1)
                                        for p, t in enumerate(probe)], 0, len(probe))]
            if others:  # the mates' own logits do not matter: one packed call
                rows += self._decode([(t, p, sid, p == len(prompt) - 1)
                                      for sid, prompt in enumerate(prompts) if sid
                                      for p, t in enumerate(prompt)])
            seen = [rows[0]]
            pos = [len(prompt) for prompt in prompts]
            for _ in range(3):
                items = [(int(np.argmax(row)), p, sid, True)
                         for sid, (row, p) in enumerate(zip(rows, pos, strict=True))]
                spare = list(range(len(items), min(self.pad_rows, self.n_seq_max)))
                items += [(self._pad_token, 0, sid, True) for sid in spare]
                rows = self._decode(items)[: len(prompts)]
                for sid in spare:
                    llama_cpp.llama_memory_seq_rm(self._memory, sid, -1, -1)
                pos = [p + 1 for p in pos]
                seen.append(rows[0])
            llama_cpp.llama_memory_clear(self._memory, True)
            return seen

        alone, beside = run([]), run(mates)
        return all(np.array_equal(a, b) for a, b in zip(alone, beside, strict=True))

    def _finish(self, s: _Seq) -> None:
        """Store a finished sample's completion; deliver the job when it has all of them."""
        job, ri = s.unit.job, s.unit.request
        request = job.requests[ri]
        if self.deterministic:
            # the prompt goes with sample 0, at its full length: which sample finishes first,
            # and how much of the prompt another live sequence's cells saved, depend on what
            # ran beside it (a server's usage counts cached prompt tokens the same way)
            first = s.index == 0
            job.evaluated[ri] = len(job.prompts[ri])
        else:
            first = ri not in job.charged
        job.charged.add(ri)
        text = b"".join(s.pieces).decode("utf-8", errors="replace")
        job.results[ri][s.index] = Completion(
            text=_cut_at_stop(text, request.params.stop),
            finish_reason=s.finish,  # type: ignore[arg-type]
            usage=Usage(
                prompt_tokens=job.evaluated.get(ri, len(job.prompts[ri])) if first else 0,
                completion_tokens=len(s.tokens),
                calls=1 if first else 0,
            ),
            logprobs=tuple(s.logprobs) if request.params.logprobs is not None else None,
            stop_sequence=s.stop,
        )
        if request.on_sample is not None and not job.future.done():
            try:
                request.on_sample(s.index, job.results[ri][s.index])
            except Exception as exc:  # noqa: BLE001 - the caller's callback
                self._fail([job], BackendError(f"sample callback failed: {exc}"))
                job.cancel.set()
        job.remaining -= 1
        if job.remaining == 0:
            self._deliver(job)

    def _drop(self, unit: _Unit) -> None:
        """Samples of a cancelled job that never started: empty, cancelled completions."""
        job = unit.job
        for index in unit.indices:
            job.results[unit.request][index] = Completion(text="", finish_reason="cancelled")
            job.remaining -= 1
        if job.remaining == 0:
            self._deliver(job)

    @staticmethod
    def _deliver(job: _Job) -> None:
        seconds = time.monotonic() - job.submitted
        rows = []
        for row in job.results:
            done = [c for c in row if c is not None]
            if done:  # the request's wall time goes with its prompt, on its first sample
                first = done[0]
                done[0] = dataclasses.replace(first, usage=first.usage + Usage(seconds=seconds))
            rows.append(done)
        if not job.future.done():
            job.future.set_result(rows)

    @staticmethod
    def _fail(jobs: list[_Job], error: Exception) -> None:
        for job in {id(j): j for j in jobs}.values():
            if not job.future.done():
                job.future.set_exception(error)

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
            with DECODE_TURNS:
                rc = llama_cpp.llama_decode(self._ctx.ctx, batch)
                if rc != 0:
                    raise BackendError(f"llama_decode failed with code {rc} (context full?)")
                if wanted:  # every wanted row at once, in batch order: one copy, not one per row
                    ptr = llama_cpp.llama_get_logits(self._ctx.ctx)
                    rows = np.ctypeslib.as_array(ptr, shape=(len(wanted), self._n_vocab)).copy()
                    out.extend(rows)
        return out

    def _constrained(self, request: GenerationRequest) -> ConstrainedSampling | None:
        if request.constraint is None:
            return None
        return ConstrainedSampling(self._llama_cpp, self._vocab, request.constraint,
                                   lambda text: self.tokenize(text))

    def _advance(self, s: _Seq, logits: np.ndarray) -> None:
        """Sample one token for ``s`` and decide whether it is finished."""
        request = s.unit.job.requests[s.unit.request]
        params = request.params
        token = sample_token(logits, params, s.rng)
        if s.constrained is not None:  # a token the grammar refuses is drawn again, masked
            token = s.constrained.choose(token, logits,
                                         lambda masked: sample_token(masked, params, s.rng))
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
        if s.constrained is not None:
            s.constrained.accepted(token, s.text, previous)
        if params.stop:
            longest = max(len(x) for x in params.stop)
            window = s.text[max(0, previous - longest):]
            hit = next((stop for stop in params.stop if stop in window), None)
            if hit is not None:
                s.finish, s.stop = "stop", hit
                return
        if request.monitor is not None and request.monitor(s.index, s.text, token_lp):
            s.finish = "cancelled"
            return
        if len(s.tokens) >= s.reserved or s.pos + 1 >= self.seq_ctx:
            s.finish = "length"

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            worker = self._worker
            self._queue.put(None)
        if worker is not None:
            worker.join()
        for obj in ("_batch", "_ctx", "_model"):
            closer = getattr(getattr(self, obj, None), "close", None)
            if closer is not None:
                closer()


@dataclass(frozen=True)
class AutoSettings:
    """What a backend left to defaults gets: see :func:`auto_settings`."""

    n_seq_max: int
    n_ctx: int
    n_threads: int


KV_MEMORY = 1 << 30  # at most this much KV cache by default (and an eighth of free memory)


def auto_settings(model: object, *, n_seq_max: int | None = None,
                  cores: int | None = None, memory: int | None = None) -> AutoSettings:
    """Defaults from the machine and the model. Sequences: 8 per core, at most 32 (a decode
    step's cost grows slowly with the batch until the cores saturate: 16 sequences on 2 cores
    gave 1.8x the tokens/s of 4). Context per sequence: what the KV memory budget (min of
    ``KV_MEMORY`` and an eighth of available memory) holds at the model's bytes per cell,
    between 1024 and 4096 tokens and at most the training context. Threads: every core; ggml's
    threads spin and wait for each other, so callers should not run other CPU work beside
    decoding on the same cores (see docs/architecture.md)."""
    import llama_cpp

    n_head = max(1, llama_cpp.llama_model_n_head(model))
    return plan_settings(
        n_layer=llama_cpp.llama_model_n_layer(model), n_head=n_head,
        n_head_kv=llama_cpp.llama_model_n_head_kv(model) or n_head,
        n_embd=llama_cpp.llama_model_n_embd(model),
        n_ctx_train=llama_cpp.llama_model_n_ctx_train(model),
        n_seq_max=n_seq_max, cores=cores, memory=memory)


def check_engine_settings(model_path: str | os.PathLike[str], *, n_ctx: int | None,
                          n_seq_max: int | None, n_batch: int, n_threads: int | None,
                          deterministic: object, kv_unified: object) -> Path:
    """The model file's path, and the settings both llama.cpp engines take checked the same
    way (ModelError for a missing file, ConfigError for a bad setting)."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if (n_ctx is not None and n_ctx < 64) or (n_seq_max is not None and n_seq_max < 1) \
            or n_batch < 1 or (n_threads is not None and n_threads < 1):
        raise ConfigError("n_ctx must be >= 64, n_seq_max, n_batch and n_threads >= 1")
    if not isinstance(deterministic, bool) or not isinstance(kv_unified, bool):
        raise ConfigError("deterministic and kv_unified must be true or false")
    return path


def plan_settings(*, n_layer: int, n_head: int, n_head_kv: int, n_embd: int, n_ctx_train: int,
                  n_seq_max: int | None = None, cores: int | None = None,
                  memory: int | None = None) -> AutoSettings:
    """:func:`auto_settings` from the model's shape (both engines: the prebuilt one reads it
    from the GGUF metadata)."""
    cores = cores or os.cpu_count() or 1
    seqs = n_seq_max or max(4, min(32, 8 * cores))
    n_head = max(1, n_head)
    head_dim = n_embd // n_head
    cell = max(1, 2 * 2 * n_layer * (n_head_kv or n_head) * head_dim)  # K and V, f16
    budget = min(KV_MEMORY, (memory if memory is not None else _available_memory()) // 8)
    per_seq = budget // cell // seqs // 256 * 256
    train = n_ctx_train or 4096
    per_seq = max(1024, min(4096, train, per_seq))
    return AutoSettings(n_seq_max=seqs, n_ctx=per_seq * seqs, n_threads=cores)


def batch_sequences(cores: int | None = None) -> int:
    """Sequences for a throughput run (``ponder eval``/``tune``: many problems in flight, no
    one waiting on a stream): 16 per core, at most 64. Twice ``auto_settings``' interactive
    default: 32 sequences of 384 tokens decoded 1.1-1.3x the tokens/s of 16 on 2 cores
    (bench/decode_scaling.py), at twice the time per token of each."""
    return max(4, min(64, 16 * (cores or os.cpu_count() or 1)))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


# What every llama_decode call holds. Two in-process models (a generator and a strong model)
# decode at once without turns: measured on 2 cores (bench/two_models.py), both at once gave
# 107-114% of the tokens/s of one after the other, taking turns through a process-wide lock
# 90-100%. The bench swaps a lock in here to measure turns.
DECODE_TURNS: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
PAD_ROWS = 8  # deterministic decoding: every llama_decode call has at least this many rows

MIN_SHARED_PREFIX = 16  # shorter common prefixes are cheaper to evaluate than to track


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(cuts)] if cuts else text
