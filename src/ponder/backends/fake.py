"""ScriptedBackend: a backend that answers from a script, for tests, docs and examples.

>>> import asyncio
>>> from ponder.types import GenerationRequest, Message
>>> b = ScriptedBackend(["The answer is 22.", "The answer is 21."])
>>> req = GenerationRequest((Message("user", "17 + 5?"),), n=2)
>>> [c.text for c in asyncio.run(b.generate([req]))[0]]
['The answer is 22.', 'The answer is 21.']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from ponder.backends.base import Backend, Capabilities, ProgressCallback
from ponder.errors import BackendError
from ponder.types import Completion, GenerationRequest, TokenLogprob, Usage

Responder = Callable[[GenerationRequest, int], "str | Completion"]


def count_words(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def _prompt_words(request: GenerationRequest) -> int:
    return sum(count_words(m.content) for m in request.messages) + count_words(request.prefill)


class ScriptedBackend(Backend):
    """Answers each sample with the next scripted item, or with ``responder(request, index)``.

    Items are strings or whole :class:`Completion` objects (to script logprobs or finish
    reasons). Tokens are counted as words. Every request is recorded in ``history``.
    A request's ``monitor`` sees the text word by word and can stop a sample early.
    """

    name = "fake"

    def __init__(
        self,
        script: Iterable[str | Completion] | Responder = (),
        *,
        model: str = "scripted",
        capabilities: Capabilities | None = None,
        parameters: int | None = None,
    ) -> None:
        self.model = model
        self.parameters = parameters
        self._responder: Responder | None = script if callable(script) else None
        self._queue: list[str | Completion] = [] if callable(script) else list(script)
        self._caps = capabilities or Capabilities(
            parallel_n=True, logprobs=True, prefill=True, early_stop=True, max_context=4096
        )
        self.history: list[GenerationRequest] = []
        self.calls = 0

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Exactly what a call charges: the words of the messages and the prefill."""
        return _prompt_words(request)

    def enqueue(self, *items: str | Completion) -> None:
        self._queue.extend(items)

    @property
    def remaining(self) -> int:
        return len(self._queue)

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        produced = 0
        for request in requests:
            self.history.append(request)
            self.calls += 1
            prompt = _prompt_words(request)
            samples = []
            for i in range(request.n):
                completion = self._complete(request, i)
                first = Usage(prompt_tokens=prompt, calls=1) if i == 0 else Usage()
                usage = first + Usage(completion_tokens=completion.usage.completion_tokens)
                samples.append(replace(completion, usage=usage))
                if request.on_sample is not None:
                    request.on_sample(i, samples[-1])
                produced += usage.completion_tokens
                if on_progress:
                    on_progress(produced)
            out.append(samples)
        return out

    def _next(self, request: GenerationRequest, index: int) -> str | Completion:
        if self._responder is not None:
            return self._responder(request, index)
        if not self._queue:
            raise BackendError("ScriptedBackend: the script has no more responses")
        return self._queue.pop(0)

    def _complete(self, request: GenerationRequest, index: int) -> Completion:
        item = self._next(request, index)
        completion = item if isinstance(item, Completion) else Completion(text=item)
        text, finish = completion.text, completion.finish_reason
        stop_sequence = completion.stop_sequence
        cuts = [(text.find(s), s) for s in request.params.stop if s in text]
        if cuts:
            cut, stop_sequence = min(cuts)
            text, finish = text[:cut], "stop"
        words = text.split(" ")
        if count_words(text) > request.params.max_tokens:
            text = " ".join(text.split()[: request.params.max_tokens])
            finish = "length"
        logprobs = completion.logprobs
        if request.monitor is not None:
            for k in range(1, len(words) + 1):
                token_lp = logprobs[k - 1] if logprobs and k <= len(logprobs) else None
                if request.monitor(index, " ".join(words[:k]), token_lp):
                    text, finish = " ".join(words[:k]), "cancelled"
                    logprobs = logprobs[:k] if logprobs else logprobs
                    break
        if request.params.logprobs is None:
            logprobs = None
        elif logprobs is None:
            logprobs = tuple(TokenLogprob(w, 0.0) for w in text.split())
        n_tokens = len(logprobs) if logprobs is not None else count_words(text)
        return replace(
            completion,
            text=text,
            finish_reason=finish,
            stop_sequence=stop_sequence,
            logprobs=logprobs,
            usage=Usage(completion_tokens=n_tokens),
        )
