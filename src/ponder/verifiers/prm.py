"""``prm``: a process reward model run in this process with transformers (``ponder[torch]``).

Public PRMs differ in how steps are marked and where the score is read; ``convention`` picks one:

- ``qwen`` (Qwen2.5-Math-PRM-7B/72B): the chat template with the question as the user turn and
  the steps joined and ended by ``<extra_0>``; a 2-label token head, score = softmax(...)[1] at
  each ``<extra_0>``. Load with ``trust_remote_code=true`` for the released checkpoints.
- ``math-shepherd`` (peiyi9979/math-shepherd-mistral-7b-prm): ``question Step 1: ... ки\\nStep 2:
  ... ки``; a causal LM, score = P("+") / (P("+") + P("-")) at each ``ки``.
- ``value-head`` (Skywork-o1-Open-PRM style): question and steps separated by ``\\n``; a
  1-label token head (a value head), score = sigmoid at each separator.

``separator``, ``good_token`` and ``bad_token`` override a convention's markers. Point ``model``
at a local directory or a hub id (the hub needs a network), e.g.
``-o scorer=prm -o scorer_options='{"model": "Qwen/Qwen2.5-Math-PRM-7B", "convention": "qwen",
"trust_remote_code": true}'``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from ponder.core.context import Context
from ponder.errors import ConfigError, MissingDependency, ModelError
from ponder.types import Problem, Step, Usage
from ponder.verifiers.steps import NEUTRAL, known_scores

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
CONVENTIONS: dict[str, dict[str, Any]] = {
    "qwen": {"separator": "<extra_0>", "head": "token-2"},
    "math-shepherd": {"separator": "ки", "head": "lm", "good_token": "+", "bad_token": "-"},
    "value-head": {"separator": "\n", "head": "token-1"},
}


def convention_spec(convention: str) -> dict[str, Any]:
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown PRM convention {convention!r}; valid: "
                          f"{', '.join(CONVENTIONS)}")
    return CONVENTIONS[convention]


def step_pieces(convention: str, separator: str, question: str, steps: Sequence[Step],
                qwen_head: str) -> tuple[str, list[str]]:
    """What a PRM of ``convention`` reads: the text before the first step, then each step's text,
    each to be followed by the separator. ``qwen_head`` is the chat up to the assistant turn."""
    clean = [s.text.replace(separator, " ").strip() for s in steps]
    if convention == "qwen":
        return qwen_head, clean
    if convention == "math-shepherd":
        return f"{question} ", [("\n" if k > 1 else "") + f"Step {k}: {c} "
                                for k, c in enumerate(clean, 1)]
    return question + "\n", clean


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependency("torch and transformers", "torch") from exc
    return torch, transformers


class PrmScorer:
    """Scores every step of each partial solution with one forward pass per batch."""

    name: ClassVar[str] = "prm"
    description: ClassVar[str] = "a process reward model run with transformers (ponder[torch])"
    needs_logprobs: ClassVar[bool] = False

    def __init__(self, model: str = "", convention: str = "qwen", *, separator: str | None = None,
                 good_token: str | None = None, bad_token: str | None = None,
                 device: str = "cpu", dtype: str = "float32", batch_size: int = 4,
                 max_length: int = 4096, trust_remote_code: bool = False) -> None:
        if not model:
            raise ConfigError("the prm scorer needs a model: -o scorer_options='{\"model\": "
                              "\"PATH or HUB ID\", \"convention\": \"qwen\"}'")
        spec = convention_spec(convention)
        self.convention = convention
        self.separator = separator or spec["separator"]
        self.head = spec["head"]
        self.batch_size = max(1, batch_size)
        self.max_length = max_length
        torch, transformers = _import_torch()
        self._torch = torch
        if not hasattr(torch, dtype):
            raise ConfigError(f"unknown torch dtype {dtype!r}")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                model, trust_remote_code=trust_remote_code)
            loader = (transformers.AutoModelForCausalLM if self.head == "lm"
                      else transformers.AutoModelForTokenClassification)
            if trust_remote_code and self.head != "lm":
                loader = transformers.AutoModel  # released Qwen PRMs bring their own class
            dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 \
                else "torch_dtype"
            self.model = loader.from_pretrained(model, trust_remote_code=trust_remote_code,
                                                **{dtype_key: getattr(torch, dtype)})
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the reward model {model!r}: {exc}") from None
        self.model.to(device).eval()
        self.device = device
        self.separator_id = self._single_id(self.separator, "separator")
        self.label_ids: tuple[int, int] | None = None
        if self.head == "lm":
            self.label_ids = (self._single_id(good_token or spec["good_token"], "good token"),
                              self._single_id(bad_token or spec["bad_token"], "bad token"))

    def _single_id(self, text: str, what: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise ConfigError(f"the PRM's {what} {text!r} is not in its vocabulary")
        return int(ids[-1])

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False)) if text else []

    def encode(self, problem: Problem, steps: Sequence[Step]) -> tuple[list[int], list[int]]:
        """The token ids the PRM reads and the positions of the step separators in them. Each
        step is tokenized on its own and followed by the separator's id, so a separator never
        merges with the text around it."""
        chat = [{"role": "system", "content": QWEN_SYSTEM},
                {"role": "user", "content": problem.question}]
        qwen_head = (self.tokenizer.apply_chat_template(chat, tokenize=False,
                                                        add_generation_prompt=True)
                     if self.convention == "qwen" and getattr(self.tokenizer, "chat_template", None)
                     else f"{QWEN_SYSTEM}\n{problem.question}\n")
        head, pieces = step_pieces(self.convention, self.separator, problem.question, steps,
                                   qwen_head)
        ids = self._encode(head)
        positions = []
        for piece in pieces:
            ids += self._encode(piece)
            positions.append(len(ids))
            ids.append(self.separator_id)
        return ids, positions

    def _scores(self, encoded: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        torch = self._torch
        out: list[list[float]] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = [(ids[: self.max_length], [p for p in pos if p < self.max_length])
                     for ids, pos in encoded[start:start + self.batch_size]]
            width = max(len(ids) for ids, _ in chunk)
            pad = self.tokenizer.pad_token_id or 0
            ids = torch.tensor([r + [pad] * (width - len(r)) for r, _ in chunk],
                               device=self.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in chunk],
                                device=self.device)
            with torch.no_grad():
                result = self.model(input_ids=ids, attention_mask=mask)
            logits = result.logits if hasattr(result, "logits") else result[0]
            if self.head == "lm":
                pair = logits[..., list(self.label_ids or ())].float()
                probs = pair.softmax(dim=-1)[..., 0]
            elif self.head == "token-2":
                probs = logits.float().softmax(dim=-1)[..., 1]
            else:
                probs = logits.float()[..., 0].sigmoid()
            out.extend([float(probs[b, p]) for p in pos] for b, (_, pos) in enumerate(chunk))
        return out

    async def score_steps(self, problem: Problem, partials: Sequence[Sequence[Step]],
                          ctx: Context, parent: int | None = None,
                          known: Sequence[Sequence[float]] | None = None) -> list[list[float]]:
        todo = [i for i, steps in enumerate(partials)
                if len(known_scores(known, i, len(steps))) < len(steps)]
        out = [known_scores(known, i, len(steps)) for i, steps in enumerate(partials)]
        if not todo:
            return out
        encoded = [self.encode(problem, partials[i]) for i in todo]
        started = time.monotonic()
        scores = await asyncio.to_thread(self._scores, encoded)
        for i, row in zip(todo, scores, strict=True):
            n = len(partials[i])
            row = [s if math.isfinite(s) else NEUTRAL for s in row[:n]]
            out[i] = row + [NEUTRAL] * (n - len(row))  # steps cut by max_length: unjudged
        tokens = sum(min(len(ids), self.max_length) for ids, _ in encoded)
        seconds = time.monotonic() - started
        ctx.account("score", f"prm x{len(todo)}", Usage(prompt_tokens=tokens, calls=1,
                                                           seconds=seconds),
                    parent=parent, scorer=self.name, tokens=tokens, seconds=round(seconds, 3),
                    scores=[[round(s, 4) for s in out[i]] for i in todo])
        return out
