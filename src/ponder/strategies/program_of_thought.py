"""program-of-thought: the model writes Python that prints the answer; the sandbox runs it;
N programs vote (PAL, Gao et al. 2023; the tool-integrated mode of Qwen2.5-Math).

It is self-consistency sampling programs (``mode=program``): the same vote, the same
equivalence of answers, the same options — ``-o mode=mixed`` lets chains of thought and
programs vote together."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ponder.strategies.base import StrategyConfig
from ponder.strategies.samplers import Mode
from ponder.strategies.self_consistency import SelfConsistency, SelfConsistencyConfig


class ProgramOfThoughtConfig(SelfConsistencyConfig):
    mode: Mode = Field("program", description="chain, program (program-of-thought) or mixed")
    n: int = Field(4, ge=1, le=1024, description="number of sampled programs")


class ProgramOfThought(SelfConsistency):
    name: ClassVar[str] = "program-of-thought"
    description: ClassVar[str] = ("N Python programs run in the sandbox; their printed answers "
                                  "vote (repairs failed programs)")
    Config: ClassVar[type[StrategyConfig]] = ProgramOfThoughtConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"n": 1, "repairs": 1},
        "medium": {"n": 4, "repairs": 1},
        "high": {"n": 8, "repairs": 2},
    }
