"""ponder's graders as RL rewards (TRL's reward-function contract), on hand-made completions."""

import asyncio
import pickle

import pytest

from ponder.backends.base import Capabilities
from ponder.backends.fake import ScriptedBackend
from ponder.errors import ConfigError
from ponder.rewards import (
    CodeReward,
    FormatReward,
    JudgeReward,
    MathReward,
    OverlongPenalty,
    StepReward,
    gold_answer,
)
from ponder.sandbox import Limits


def chat(text):
    return [{"role": "assistant", "content": text}]


# -- math ------------------------------------------------------------------------------------

def test_math_reward_right_wrong_and_unparseable_gold():
    reward = MathReward()
    completions = ["4 + 3 = 7. The answer is 7.", "4 + 3 = 8. The answer is 8.",
                   "The answer is 7.", "I am not sure.", "So x = \\boxed{\\frac{1}{2}}"]
    answers = ["7", "7", "see the figure", "7", "0.5"]
    assert reward(prompts=["q"] * 5, completions=completions, answer=answers) == [
        1.0, 0.0, None, 0.0, 1.0]


def test_math_reward_reads_gsm8k_and_math_solutions_as_gold():
    reward = MathReward()
    gsm8k = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    math = "We get $x = 3$, so the sum is $\\boxed{6}$."
    assert reward(completions=["The answer is 72", "#### 6", "The answer is 5"],
                  answer=[gsm8k, math, math]) == [1.0, 1.0, 0.0]
    # open-r1's column name, and numbers as gold
    assert reward(completions=["\\boxed{3}"], solution=[3]) == [1.0]


def test_math_reward_conversational_completions_and_multipart_content():
    reward = MathReward()
    completions = [chat("Twice 21 is 42. The answer is 42."),
                   [{"role": "assistant", "content": [{"type": "text", "text": "#### 41"}]}]]
    assert reward(prompts=[[{"role": "user", "content": "2 * 21?"}]] * 2,
                  completions=completions, answer=["42", "42"]) == [1.0, 0.0]


def test_math_reward_async_equals_sync_and_pickles():
    reward = MathReward()
    args = dict(prompts=["q", "q"], completions=["The answer is 3.", "2"], answer=["3", "3"],
                trainer_state=object(), log_metric=lambda *a: None)
    assert asyncio.run(reward.as_async()(**args)) == reward(**args) == [1.0, 0.0]
    again = pickle.loads(pickle.dumps(reward))
    assert again(**args) == [1.0, 0.0] and again.__name__ == "math_correctness"
    assert pickle.loads(pickle.dumps(reward.as_async())).__name__ == "math_correctness"


def test_math_reward_without_an_answer_column_says_which_it_needs():
    with pytest.raises(ConfigError, match="'answer' or 'solution' or 'gold'.*has: level"):
        MathReward()(completions=["7"], level=[1])


@pytest.mark.parametrize("gold,expected", [
    ("72", "72"), ("$1,000", "$1,000"), ("\\frac{1}{2}", "\\frac{1}{2}"), ("x^2+1", "x^2+1"),
    ("B", "B"), ("Step one.\nStep two.\n#### 5", "5"), (None, None), ("", None),
    ("see the figure", None), ("Step one.\nStep two.", None), (float("nan"), None),
])
def test_gold_answer(gold, expected):
    assert gold_answer(gold) == expected


def test_format_reward():
    completions = ["... \\boxed{4}", "#### 4", "So the answer is 4.", "It is 4", chat("4"),
                   "The answer is:"]
    assert FormatReward()(completions=completions) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_overlong_penalty_from_completion_ids_or_a_counter():
    reward = OverlongPenalty(max_tokens=100, cache=20)
    ids = [[1] * 50, [1] * 80, [1] * 90, [1] * 100, [1] * 130]
    assert reward(completions=["x"] * 5, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0]
    words = OverlongPenalty(max_tokens=4, cache=2, count_tokens=lambda t: len(t.split()))
    assert words(completions=["a b", "a b c", chat("a b c d e")]) == [0.0, -0.5, -1.0]
    with pytest.raises(ConfigError, match="no completion_ids"):
        reward(completions=["x"])
    with pytest.raises(ConfigError, match="cache"):
        OverlongPenalty(max_tokens=10, cache=0)


class _WordTokenizer:
    """What OverlongPenalty asks of a Hugging Face tokenizer: ``encode`` (its special tokens
    left out: a BOS would make every completion one token longer)."""

    def encode(self, text, add_special_tokens=True):
        return [0] * add_special_tokens + [1] * len(text.split())


def test_overlong_penalty_counts_with_a_tokenizer_or_says_it_needs_one():
    import pickle

    reward = OverlongPenalty(max_tokens=4, cache=2, tokenizer=_WordTokenizer())
    assert reward(completions=["a b", "a b c", chat("a b c d e")]) == [0.0, -0.5, -1.0]
    assert pickle.loads(pickle.dumps(reward))(completions=["a b c"]) == [-0.5]  # picklable
    with pytest.raises(ConfigError) as error:
        OverlongPenalty(max_tokens=4, cache=2)(completions=["a b"])
    assert str(error.value) == (
        "OverlongPenalty needs each completion's length in tokens: no completion_ids were "
        "given (TRL's trainers pass them), so build it with the model's tokenizer, e.g. "
        "OverlongPenalty(max_tokens=1024, cache=256, "
        "tokenizer=AutoTokenizer.from_pretrained(MODEL))")
    with pytest.raises(ConfigError, match="tokenizer must have an encode"):
        OverlongPenalty(max_tokens=4, cache=2, tokenizer="gpt2")


# -- code ------------------------------------------------------------------------------------

TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(-1, 0) == -2"]
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
LOOPS = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
FAST = Limits(wall_seconds=4.0, test_seconds=1.0, cpu_seconds=4)


def test_code_reward_fraction_of_tests_passed_in_the_sandbox():
    reward = CodeReward(limits=FAST)
    metrics = {}
    values = reward(
        prompts=["Write add(a, b).", [{"role": "user", "content": "Write add(a, b)."}],
                 "Write add.", "Write add.", "Write add."],
        completions=[RIGHT, chat(RIGHT), LOOPS, "no code here, sorry", RIGHT],
        tests=[TESTS, TESTS, TESTS, TESTS, None],
        log_metric=lambda name, value: metrics.__setitem__(name, value))
    # add passes 2 of the 3 tests (the third test is wrong); the loop passes none, in time
    assert values == [pytest.approx(2 / 3), pytest.approx(2 / 3), 0.0, 0.0, None]
    assert metrics["code_correctness/seconds"] < 8.0
    assert metrics["code_correctness/completions_per_second"] > 0
    assert reward.sandbox.runs == 3  # the program-less and the test-less rows never ran


def test_code_reward_humaneval_columns_async_and_pickled():
    reward = pickle.loads(pickle.dumps(CodeReward(limits=FAST)))
    prompt = 'def add(a, b):\n    """Add two numbers."""\n'
    check = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    values = asyncio.run(reward.as_async()(
        prompts=[prompt, prompt],
        completions=["```python\n    return a + b\n```", "```python\n    return a - b\n```"],
        entry_point=["add", "add"], test=[check, check]))
    assert values == [1.0, 0.0]  # a fenced body alone is completed with the prompt's signature


# -- model-graded ----------------------------------------------------------------------------

def test_judge_reward_scores_with_the_judge_and_logs_its_cost():
    backend = ScriptedBackend(["Yes", "No", "maybe"], capabilities=Capabilities(
        parallel_n=True, logprobs=False, prefill=True, early_stop=True, max_context=4096))
    reward = JudgeReward(backend=backend)
    metrics = {}
    values = reward(prompts=["2+2?"] * 3,
                    completions=["The answer is 4.", "The answer is 5.", chat("4")],
                    log_metric=lambda name, value: metrics.__setitem__(name, value))
    assert values == [1.0, 0.0, None]
    assert backend.calls == 3 and "The answer is 5." in backend.history[1].messages[-1].content
    assert metrics["judge/prompt_tokens"] > 0 and metrics["judge/completion_tokens"] == 3
    with pytest.raises(TypeError, match="model="):
        pickle.dumps(reward)
    assert pickle.loads(pickle.dumps(JudgeReward(model="some.gguf"))).model == "some.gguf"


def test_step_reward_splits_steps_and_aggregates():
    reward = StepReward("confidence", aggregate="min")
    assert reward.steps("a = 1\n\n b = 2 \n\n\n\nso 3") == [
        reward.steps("a = 1")[0], reward.steps("b = 2")[0], reward.steps("so 3")[0]]
    # without logprobs the confidence scorer cannot judge a step: 0.5 each; no steps: None
    assert reward(prompts=["q", "q"], completions=["a\n\nb", "   "]) == [0.5, None]
    with pytest.raises(ConfigError, match="aggregation"):
        StepReward("confidence", aggregate="max")
    with pytest.raises(ConfigError, match="give StepReward a model"):
        StepReward("self-judge")(prompts=["q"], completions=["a\n\nb"])


def test_rewards_run_in_worker_processes():
    """A trainer may ship rewards to other processes: each one pickles across and, there, opens
    its own sandbox."""
    import concurrent.futures
    import multiprocessing

    math, code = MathReward(), CodeReward(limits=FAST)
    with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context("spawn")) as pool:
        graded = [pool.submit(math, completions=["The answer is 7.", "8"], answer=["7", "7"]),
                  pool.submit(code, prompts=["Write add."], completions=[RIGHT], tests=[TESTS])]
        assert graded[0].result(timeout=60) == [1.0, 0.0]
        assert graded[1].result(timeout=60) == [pytest.approx(2 / 3)]
    assert code._sandbox is None  # the parent never ran anything
