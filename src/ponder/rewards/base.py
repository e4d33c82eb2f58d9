"""What every reward shares: TRL's reward-function contract, sync and async.

TRL's ``GRPOTrainer`` calls each reward function as ``f(prompts=..., completions=...,
completion_ids=..., **columns)``, where ``columns`` are the dataset's other columns (one value
per completion) plus the trainer's own keywords (``trainer_state``, ``log_metric``,
``log_extra``...), and wants one ``float`` per completion back, ``None`` where the reward does not
apply. A completion is a plain string, or (conversational datasets) a list of messages.

A :class:`Reward` is a plain object with a synchronous ``__call__``; ``reward.as_async()`` is the
same reward with an ``async`` ``__call__`` (TRL awaits those together on its event loop). Both
pickle (no closures, no open handles: what a process needs, such as a sandbox, is made on first
use in that process), so a trainer may ship them to worker processes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ponder.errors import ConfigError

T = TypeVar("T")
RewardValue = float | None
# Keywords TRL passes that are not dataset columns.
TRAINER_KEYWORDS = frozenset({"trainer_state", "log_metric", "log_extra", "environments"})


def content_text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") if isinstance(p, Mapping) else str(p)
                       for p in content)
    return str(content)


def completion_text(completion: Any) -> str:
    """The text a completion proposes: a string as it is; for a list of messages, the
    assistant messages' contents joined (all messages when none says its role)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, Mapping)]
        said = [m for m in messages if m.get("role") == "assistant"] or messages
        return "\n".join(content_text(m.get("content")) for m in said)
    raise ConfigError(f"a completion must be a string or a list of messages, not "
                      f"{type(completion).__name__}")


def prompt_text(prompt: Any) -> str:
    """The question in a prompt: a string as it is; for a list of messages, the last user
    message's content."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        users = [m for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        if users:
            return content_text(users[-1].get("content"))
        return "\n".join(content_text(m.get("content")) for m in prompt
                         if isinstance(m, Mapping))
    return str(prompt)


def column(columns: Mapping[str, Any], names: Sequence[str], n: int, *, required: bool = True
           ) -> list[Any]:
    """The first of ``names`` the dataset has, one value per completion; ``required``: a clear
    error when it has none of them (else a column of Nones)."""
    for name in names:
        if name in columns:
            values = list(columns[name])
            if len(values) != n:
                raise ConfigError(f"column {name!r} has {len(values)} values for {n} completions")
            return values
    if not required:
        return [None] * n
    given = sorted(k for k in columns if k not in TRAINER_KEYWORDS)
    raise ConfigError(f"the reward needs a dataset column named {' or '.join(map(repr, names))}"
                      f"; the dataset has: {', '.join(given) or 'no other columns'}")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, also when this thread already runs
    an event loop (then in a worker thread with its own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class Reward:
    """A reward function with TRL's contract. Subclasses implement :meth:`score` (pure, quick)
    or :meth:`ascore` (waits on a sandbox or a model); each gets the other for free."""

    name = "reward"

    def __init__(self) -> None:
        self.__name__ = self.name  # what TRL logs it as: rewards/<name>/mean

    def score(self, prompts: Sequence[Any], completions: Sequence[Any],
              completion_ids: Sequence[Sequence[int]] | None, columns: Mapping[str, Any]
              ) -> list[RewardValue]:
        return run_sync(lambda: self.ascore(prompts, completions, completion_ids, columns))

    async def ascore(self, prompts: Sequence[Any], completions: Sequence[Any],
                     completion_ids: Sequence[Sequence[int]] | None, columns: Mapping[str, Any]
                     ) -> list[RewardValue]:
        if type(self).score is Reward.score:
            raise NotImplementedError(f"{type(self).__name__} implements neither score nor ascore")
        return self.score(prompts, completions, completion_ids, columns)

    def __call__(self, prompts: Sequence[Any] | None = None,
                 completions: Sequence[Any] | None = None,
                 completion_ids: Sequence[Sequence[int]] | None = None, **columns: Any
                 ) -> list[RewardValue]:
        completions = list(completions or [])
        prompts = list(prompts) if prompts is not None else [None] * len(completions)
        return self.score(prompts, completions, completion_ids, columns)

    def as_async(self) -> AsyncReward:
        """This reward with an ``async`` ``__call__`` (TRL runs async rewards concurrently)."""
        return AsyncReward(self)

    def __repr__(self) -> str:
        return f"<ponder reward {self.__name__}>"


class AsyncReward:
    """A :class:`Reward` called with ``await``: same arguments, same values."""

    def __init__(self, reward: Reward) -> None:
        self.reward = reward
        self.__name__ = reward.__name__

    async def __call__(self, prompts: Sequence[Any] | None = None,
                       completions: Sequence[Any] | None = None,
                       completion_ids: Sequence[Sequence[int]] | None = None, **columns: Any
                       ) -> list[RewardValue]:
        completions = list(completions or [])
        prompts = list(prompts) if prompts is not None else [None] * len(completions)
        return await self.reward.ascore(prompts, completions, completion_ids, columns)

    def __repr__(self) -> str:
        return f"<ponder async reward {self.__name__}>"


def log_metric(columns: Mapping[str, Any], name: str, value: float) -> None:
    """Report a figure (a cost, a throughput) through TRL's ``log_metric`` when it passes one."""
    log = columns.get("log_metric")
    if callable(log):
        log(name, float(value))
