"""ponder distill: SFT rows, preference pairs and PRM step labels from a stored evaluation made
with the scripted backend, and TRL's / datasets' loaders reading them."""

import asyncio
import json

import pytest

from ponder.backends.fake import ScriptedBackend
from ponder.cli.main import main
from ponder.eval.distill import Item, StepPath, Trace, distill, step_paths
from ponder.eval.harness import Harness
from ponder.eval.report import write_reports
from ponder.eval.store import Store
from ponder.strategies.base import DEFAULT_SYSTEM
from ponder.types import Problem

Q1 = "Tom has 2 apples and buys 3. How many?"
Q2 = "What is 4 + 5?"
PROBLEMS = [Problem(Q1, "5", id="p1"), Problem(Q2, "9", id="p2"),
            Problem(Q1, "5", id="p1-again")]  # the same question twice: its rows dedupe
BEAM = "beam-search[budgets=2,m=2,max_steps=2,scorer=confidence]"

# self-consistency samples (no stop sequence), by problem and sample index
SAMPLES = {Q1: ["3 + 2 = 5.\nThe answer is 5.", "3 - 2 = 1.\nThe answer is 1.",
                "Tom has 5.\nThe answer is 5", "I cannot say."],
           Q2: ["4 + 5 = 8.\nThe answer is 8.", "The answer is 10.", "The answer is 8.", "?"]}


def respond(request, index):
    question = request.messages[-1].content
    if not request.params.stop:  # a sample, or a path's final step
        if request.prefill:  # beam search's last step: the answer after step s0 / s1
            first = request.prefill.split()[0]  # "s0" of "s0 step\n\n"
            return {("s0", 0): "The answer is 5.", ("s0", 1): "The answer is 7.",
                    ("s1", 0): "The answer is 7.", ("s1", 1): "The answer is 8."}[
                (first, index)] if question == Q1 else f"The answer is {index + 1}."
        return SAMPLES[question][index]
    return f"s{index} step\n\nignored"  # beam search's first step (stops at the delimiter)


@pytest.fixture
def folder(tmp_path):
    """An evaluation folder as `ponder eval` leaves it: store, traces, report.json."""
    store = Store(tmp_path / "samples.sqlite")
    harness = Harness(ScriptedBackend(respond), store, PROBLEMS, ["self-consistency", BEAM],
                      [4], greedy=False, traces=tmp_path)
    asyncio.run(harness.run())
    data = harness.curves(draws=5)
    config = {"dataset": "d", "model": "scripted", "model_sha256": "0" * 64, "problems": 3,
              "seed": 0, "ponder_version": "test",
              "strategies": {p.label: {"name": p.name, "key": p.key, "mode": p.mode,
                                       "budgets": p.budgets,
                                       "pools": [pool.key for pool in p.pools],
                                       "config": p.build().config.model_dump()}
                             for p in harness.plans}}
    write_reports(tmp_path, data, config)
    store.close()
    return tmp_path


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def conversation(question, answer):
    return [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": question},
            {"role": "assistant", "content": answer}]


def test_distill_from_a_stored_eval_writes_exactly_the_expected_rows(folder, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["distill", str(folder), "--out", str(out), "--pairs-per-problem", "3",
                 "--coverage", "1,2,4"]) == 0
    printed = capsys.readouterr().out
    prompt = conversation(Q1, "")[:2]
    # SFT: p1's best verified trace, the shortest correct one: the beam's path (6 tokens; the
    # scripted backend counts a word a token, plus the end of a finished sample: the correct
    # samples have 7 and 9); p2 has no correct trace; p1-again is p1 again (one prompt: its 6
    # traces and 2 paths are the 8 duplicates)
    assert rows(out / "sft.jsonl") == [
        {"messages": conversation(Q1, "s0 step\n\nThe answer is 5.")}]
    # pairs: the best chosen first; rejected: wrong answers (in order) before none
    chosen = "s0 step\n\nThe answer is 5."
    rejected = ["3 - 2 = 1.\nThe answer is 1.", "s0 step\n\nThe answer is 7.", "I cannot say."]
    pairs = rows(out / "preference.jsonl")
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        (chosen, rejected[0]), (chosen, rejected[1]), (chosen, rejected[2])]
    assert all(p["prompt"] == prompt and p["chosen"][0]["role"] == "assistant" for p in pairs)
    # PRM: beam search kept both finished paths under step s0 (ties keep the first); s0 led to
    # the correct 5, so it is labelled good on both paths; the wrong final step is not
    prm = rows(out / "prm.jsonl")
    assert prm == [
        {"prompt": Q1, "completions": ["s0 step", "The answer is 5."], "labels": [True, True]},
        {"prompt": Q1, "completions": ["s0 step", "The answer is 7."], "labels": [True, False]},
        {"prompt": Q2, "completions": ["s0 step", "The answer is 1."],
         "labels": [False, False]},
        {"prompt": Q2, "completions": ["s0 step", "The answer is 2."],
         "labels": [False, False]}]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {"problems": 3, "prompts": 2, "traces": 18, "verified": 1, "sft": 1,
                       "pairs": 3, "prm": 4, "sft_tokens": 6, "duplicates": 8}
    assert "sft       1 rows kept, 6 completion tokens" in printed
    assert "N=1: 2/3 · N=2: 2/3 · N=4: 2/3" in printed


def test_trl_and_datasets_read_the_distilled_files(folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    trl_data = pytest.importorskip("trl.data_utils")
    out = tmp_path / "data"
    assert main(["distill", str(folder), "--out", str(out), "--pairs-per-problem", "2"]) == 0
    sft = datasets.load_dataset("json", data_files=str(out / "sft.jsonl"), split="train")
    assert trl_data.is_conversational(sft[0]) and sft.column_names == ["messages"]
    prefs = datasets.load_dataset("json", data_files=str(out / "preference.jsonl"),
                                  split="train")
    assert set(prefs.column_names) == {"prompt", "chosen", "rejected"}
    assert trl_data.is_conversational(prefs[0]) and len(prefs) == 2
    prm = datasets.load_dataset("json", data_files=str(out / "prm.jsonl"), split="train")
    assert prm.features["labels"].feature.dtype == "bool"  # TRL's stepwise supervision
    assert prm.features["completions"].feature.dtype == "string"
    assert len(prm) == 4


# TRL asks transformers a deprecated question while it generates; nothing of ponder's warns
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_sft_and_dpo_trainers_take_the_distilled_files(folder, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    out = tmp_path / "data"
    assert main(["distill", str(folder), "--out", str(out), "--pairs-per-problem", "2"]) == 0
    text = [json.dumps(r) for r in rows(out / "sft.jsonl") + rows(out / "preference.jsonl")]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                                eos_token="<eos>", unk_token="<unk>")
    fast.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                          "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=1, max_position_embeddings=512,
                                      pad_token_id=0, eos_token_id=1, bos_token_id=None)
    common = dict(max_steps=1, per_device_train_batch_size=1, report_to="none",
                  activation_checkpointing=False,
                  save_strategy="no", use_cpu=True, bf16=False, disable_tqdm=True, logging_steps=1)
    sft = trl.SFTTrainer(
        model=transformers.LlamaForCausalLM(config), processing_class=fast,
        args=trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_length=256, **common),
        train_dataset=datasets.load_dataset("json", data_files=str(out / "sft.jsonl"),
                                            split="train"))
    assert sft.train().global_step == 1
    dpo = trl.DPOTrainer(
        model=transformers.LlamaForCausalLM(config), processing_class=fast,
        ref_model=transformers.LlamaForCausalLM(config),
        args=trl.DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=256, **common),
        train_dataset=datasets.load_dataset("json", data_files=str(out / "preference.jsonl"),
                                            split="train"))
    assert dpo.train().global_step == 1


def test_distill_without_gold_uses_a_confident_winner():
    def item(answers):
        return Item("x", "q", None, [{"role": "user", "content": "q"}],
                    [Trace(f"so {a}", a, False, 2) for a in answers])

    confident = distill([item(["4", "4", "5"])], min_confidence=0.6)
    assert [r["messages"][-1]["content"] for r in confident.sft] == ["so 4"]
    assert confident.pairs[0]["rejected"][0]["content"] == "so 5"
    assert distill([item(["4", "5", None])], min_confidence=0.6).sft == []


def test_step_labels_follow_the_paths_that_reached_a_correct_answer():
    nodes = [{"id": 0, "kind": "strategy", "parent": None},
             {"id": 1, "kind": "generate", "parent": 0, "data": {"text": "a"}},
             {"id": 2, "kind": "generate", "parent": 0, "data": {"text": "b"}},
             {"id": 3, "kind": "generate", "parent": 1, "data": {"text": "a1"}},
             {"id": 4, "kind": "generate", "parent": 1, "data": {"text": "a2"}},
             {"id": 5, "kind": "generate", "parent": 2, "data": {"text": "b1"}}]
    candidates = [{"metadata": {"node": 3}, "correct": False},
                  {"metadata": {"node": 4}, "correct": True},
                  {"metadata": {"node": 5}, "correct": False}]
    assert step_paths({"trace": {"nodes": nodes}}, candidates) == [
        StepPath(("a", "a1"), (True, False)), StepPath(("a", "a2"), (True, True)),
        StepPath(("b", "b1"), (False, False))]


@pytest.mark.parametrize("argv,message", [
    (["distill", "--out", "x"], "either an evaluation folder or --dataset"),
    (["distill", "nowhere", "--out", "x"], "holds no samples.sqlite"),
])
def test_distill_bad_input(capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_distill_bad_confidence(folder, tmp_path, capsys):
    assert main(["distill", str(folder), "--out", str(tmp_path / "d"),
                 "--min-confidence", "0"]) == 1
    assert "min confidence must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.model
def test_distill_runs_a_strategy_over_a_dataset_and_resumes(tmp_path, capsys):
    dataset = tmp_path / "tiny.jsonl"
    dataset.write_text("\n".join(json.dumps({"question": f"What is {a} + {a}?",
                                             "answer": f"#### {2 * a}"}) for a in (1, 2)) + "\n")
    out = tmp_path / "data"
    argv = ["distill", "--dataset", str(dataset), "-n", "2", "--max-tokens", "16", "--out",
            str(out), "--concurrency", "1"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "problems  2 (2 distinct prompts, 4 traces;" in first
    store = Store(out / "run" / "samples.sqlite")
    assert store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 4
    store.close()
    assert main(argv) == 0  # everything is stored: the rerun generates nothing, writes the same
    assert capsys.readouterr().out == first
