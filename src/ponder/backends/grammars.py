"""Grammar-constrained sampling for the native llama.cpp engine (ponder's own batcher samples
in numpy; llama.cpp's grammar sampler says which tokens the grammar allows).

A sequence with a :class:`~ponder.types.Constraint` samples as usual; while its grammar is
active, a token the grammar refuses is drawn again from the logits with every refused token
masked (llama.cpp's own sampler does the same: checking one token is cheap, masking the whole
vocabulary is not). A lazy constraint waits for its trigger in the text; the grammar then
governs what follows it. The logprobs a sample reports are the model's own, before the mask.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ponder.errors import BackendError
from ponder.types import Constraint

log = logging.getLogger("ponder.backends")
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")], align=True)


class TokenGrammar:
    """One sequence's grammar state (a llama.cpp grammar sampler over the model's vocabulary),
    freed with the object."""

    def __init__(self, llama_cpp: Any, vocab: Any, grammar: str) -> None:
        self._llama_cpp = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self._sampler:
            raise BackendError("the grammar does not parse (llama.cpp's GBNF parser refused it)")
        self._one = np.zeros(1, dtype=TOKEN_DATA)

    def _apply(self, data: np.ndarray) -> None:
        llama_cpp = self._llama_cpp
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=data.size, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(array))

    def allows(self, token: int) -> bool:
        self._one[0] = (token, 0.0, 0.0)
        self._apply(self._one)
        return bool(np.isfinite(self._one["logit"][0]))

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """``logits`` with every token the grammar refuses at -inf (a new array)."""
        data = np.empty(logits.size, dtype=TOKEN_DATA)
        data["id"] = np.arange(logits.size, dtype=np.int32)
        data["logit"] = logits
        data["p"] = 0.0
        self._apply(data)
        return data["logit"].copy()

    def accept(self, token: int) -> None:
        self._llama_cpp.llama_sampler_accept(self._sampler, token)

    def __del__(self) -> None:
        sampler = getattr(self, "_sampler", None)
        if sampler:
            self._llama_cpp.llama_sampler_free(sampler)
            self._sampler = None


def check_grammar(llama_cpp: Any, vocab: Any, constraint: Constraint) -> bool:
    """Whether llama.cpp parses the constraint's grammars (checked when a request is submitted:
    a grammar it refuses leaves that request to sample freely, its answers checked afterwards,
    rather than failing it or the batch)."""
    for grammar in {constraint.from_trigger(), *(constraint.after(t)
                                                  for t, _ in constraint.triggers)}:
        if grammar in _REFUSED:
            return False
        if grammar not in _PARSED:
            try:
                TokenGrammar(llama_cpp, vocab, grammar)
            except (BackendError, UnicodeEncodeError):
                _remember(_REFUSED, grammar)
                log.warning("llama.cpp refused a grammar (%s): sampling freely", constraint.name)
                return False
            _remember(_PARSED, grammar)
    return True


def _remember(seen: dict[str, None], grammar: str) -> None:
    seen[grammar] = None
    while len(seen) > 64:
        seen.pop(next(iter(seen)))


_PARSED: dict[str, None] = {}  # grammars llama.cpp parsed, most recent last
_REFUSED: dict[str, None] = {}  # ... and refused


class ConstrainedSampling:
    """A sequence's constraint as it decodes: waiting for a trigger (lazy), then under the
    grammar of what follows that trigger. A trigger that ends inside a token (``{"name"`` in
    ``":``) leaves the rest of the token's text, which the grammar takes as the tokens
    ``tokenize`` makes of it (a grammar reads text, not token ids). ``broken``: that text does
    not fit the grammar; the rest of that sample stays free (its answer is checked afterwards)."""

    def __init__(self, llama_cpp: Any, vocab: Any, constraint: Constraint,
                 tokenize: Callable[[str], list[int]]) -> None:
        self._llama_cpp, self._vocab, self.constraint = llama_cpp, vocab, constraint
        self._tokenize = tokenize
        self.grammar: TokenGrammar | None = None
        self.broken = False
        if not constraint.lazy:  # the reply starts with the trigger
            self.grammar = TokenGrammar(llama_cpp, vocab, constraint.from_trigger())

    def choose(self, token: int, logits: np.ndarray, draw: Any) -> int:
        """The token to emit: ``token`` when the grammar allows it (or is not active), else
        ``draw(masked_logits)``."""
        if self.grammar is None or self.grammar.allows(token):
            return token
        masked = self.grammar.mask(logits)
        if not np.isfinite(masked).any():  # a dead end (no grammar of ponder's has one)
            self.grammar, self.broken = None, True
            return token
        return draw(masked)

    def accepted(self, token: int, text: str, previous: int) -> None:
        """After ``token`` was emitted (``text``: the sample so far, ``previous``: its length
        before the token): feed the grammar, or start it when the trigger has just appeared."""
        if self.grammar is not None:
            self.grammar.accept(token)
            return
        if self.broken:
            return
        found = []  # (where it ends, the trigger) of each trigger this token completed
        for trigger, _ in self.constraint.triggers:
            at = text.find(trigger, max(0, previous - len(trigger) + 1)) if trigger else -1
            if at >= 0:
                found.append((at + len(trigger), trigger))
        if not found:
            return
        end, trigger = min(found)
        grammar = TokenGrammar(self._llama_cpp, self._vocab, self.constraint.after(trigger))
        for rest in self._tokenize(text[end:]) if end < len(text) else ():
            if not grammar.allows(rest):
                self.broken = True
                return
            grammar.accept(rest)
        self.grammar = grammar
