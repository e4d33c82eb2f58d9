"""ponder's graders as reward functions for reinforcement learning, with TRL's contract.

Each reward is called as ``reward(prompts=..., completions=..., completion_ids=..., **columns)``
(what ``trl.GRPOTrainer`` passes: the dataset's other columns as keywords, one value per
completion) and returns one ``float`` per completion, ``None`` where it does not apply.
Completions may be strings or lists of chat messages. ``reward.as_async()`` is the same reward
with an ``async`` ``__call__``. Rewards pickle, and each process opens what it needs (a sandbox,
a model) on first use.

>>> from ponder.rewards import MathReward
>>> MathReward()(completions=[[{"role": "assistant", "content": "\\\\boxed{7}"}]], answer=["7"])
[1.0]

- :class:`MathReward`: the final answer against the ``answer`` column (ponder's extraction and
  equivalence); None where the gold answer cannot be read.
- :class:`CodeReward`: the fraction of the row's hidden tests passed, in the sandbox.
- :class:`FormatReward`: the answer is stated the way ponder reads it (boxed, ####, "the answer
  is").
- :class:`OverlongPenalty`: DAPO's soft overlong penalty.
- :class:`JudgeReward`, :class:`StepReward`: an LLM judge's / a step scorer's (PRM) score, their
  cost logged per batch.
"""

from ponder.rewards.base import AsyncReward, Reward, completion_text, prompt_text
from ponder.rewards.code import REWARD_LIMITS, CodeReward
from ponder.rewards.length import OverlongPenalty, overlong_penalty
from ponder.rewards.math import FormatReward, MathReward, gold_answer
from ponder.rewards.models import JudgeReward, StepReward

__all__ = ["REWARD_LIMITS", "AsyncReward", "CodeReward", "FormatReward", "JudgeReward",
           "MathReward", "OverlongPenalty", "Reward", "StepReward", "completion_text",
           "gold_answer", "overlong_penalty", "prompt_text"]
