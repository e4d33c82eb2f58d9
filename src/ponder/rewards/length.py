"""The soft overlong penalty of DAPO (Yu et al. 2025, eq. 13): no penalty up to
``max_tokens - cache`` tokens, then a penalty growing linearly to -1 at ``max_tokens``, and -1
beyond it. Shorter answers are never rewarded, only overlong ones punished."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ponder.errors import ConfigError
from ponder.rewards.base import Reward, RewardValue, completion_text


def overlong_penalty(tokens: int, max_tokens: int, cache: int) -> float:
    """The penalty of a completion of ``tokens`` tokens.

    >>> overlong_penalty(80, 100, 20), overlong_penalty(90, 100, 20), overlong_penalty(101, 100, 20)
    (0.0, -0.5, -1.0)
    """
    if tokens > max_tokens:
        return -1.0
    start = max_tokens - cache
    if tokens <= start:
        return 0.0
    return (start - tokens) / cache


class OverlongPenalty(Reward):
    """:func:`overlong_penalty` of each completion. Tokens are counted from TRL's
    ``completion_ids`` (its trainers always pass them); called without them, with
    ``tokenizer`` (a Hugging Face tokenizer, or anything with ``encode(text)``) or
    ``count_tokens`` (text -> tokens). Cost: none beyond counting."""

    name = "overlong_penalty"

    def __init__(self, max_tokens: int, cache: int,
                 count_tokens: Callable[[str], int] | None = None, *,
                 tokenizer: Any = None) -> None:
        super().__init__()
        if max_tokens < 1 or not 0 < cache <= max_tokens:
            raise ConfigError(f"overlong penalty: need max_tokens >= 1 and 0 < cache <= "
                              f"max_tokens, got max_tokens={max_tokens}, cache={cache}")
        if tokenizer is not None and (isinstance(tokenizer, (str, bytes)) or
                                      not callable(getattr(tokenizer, "encode", None))):
            raise ConfigError("overlong penalty: tokenizer must have an encode(text) method, "
                              "e.g. AutoTokenizer.from_pretrained(MODEL), got "
                              f"{type(tokenizer).__name__}")
        self.max_tokens = max_tokens
        self.cache = cache
        self.count_tokens = count_tokens
        self.tokenizer = tokenizer

    def _tokens(self, text: str) -> int:
        if self.count_tokens is not None:
            return self.count_tokens(text)
        try:  # a Hugging Face tokenizer: the completion's own tokens, no BOS/EOS added
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        except TypeError:  # another encode(text)
            return len(self.tokenizer.encode(text))

    def score(self, prompts: Sequence[Any], completions: Sequence[Any],
              completion_ids: Sequence[Sequence[int]] | None, columns: Mapping[str, Any]
              ) -> list[RewardValue]:
        if completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        elif self.count_tokens is not None or self.tokenizer is not None:
            lengths = [self._tokens(completion_text(c)) for c in completions]
        else:
            raise ConfigError(
                "OverlongPenalty needs each completion's length in tokens: no completion_ids "
                "were given (TRL's trainers pass them), so build it with the model's "
                "tokenizer, e.g. OverlongPenalty(max_tokens=1024, cache=256, "
                "tokenizer=AutoTokenizer.from_pretrained(MODEL))")
        return [overlong_penalty(n, self.max_tokens, self.cache) for n in lengths]
