"""Deterministic (batch-invariant) decoding: a sample depends on its prompt, seed and index only,
never on what decoded beside it, so the same ``ponder eval`` gives the same store.

The bundled SmolLM2 file is Q4_1, whose kernels happen to be batch-invariant here. The same
weights requantized to Q4_K_M (one second, in-process) are not: like the benchmark model, their
logits change with the number of rows in a call and, repacked, with a row's place among them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from ponder.backends.llamacpp import LlamaCppBackend
from ponder.errors import ConfigError
from ponder.types import GenerationRequest, Message, SamplingParams

pytestmark = pytest.mark.model

QUESTIONS = ["What is 17 + 5?", "Name three colours.", "Write a haiku about rain.",
             "What is the capital of France?", "Count from 1 to 10.", "Why is the sky blue?"]


@pytest.fixture(scope="module")
def deterministic(kquant):
    backend = LlamaCppBackend(kquant, n_seq_max=16, n_ctx=16 * 512, deterministic=True)
    yield backend
    backend.close()


def request(question: str, n: int, seed: int, temperature: float = 0.8) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", question),),
                             params=SamplingParams(max_tokens=40, temperature=temperature,
                                                   seed=seed, logprobs=1), n=n)


def trail(completion) -> tuple[str, list[float]]:
    """What a person compares: the text, and every token's logprob bit for bit."""
    return completion.text, [t.logprob for t in completion.logprobs]


def test_a_sample_is_the_same_alone_beside_others_and_arriving_late(deterministic):
    async def runs():
        greedy = (await deterministic.generate([request(QUESTIONS[0], 1, 7, 0.0)]))[0][0]
        sampled = (await deterministic.generate([request(QUESTIONS[0], 3, 7)]))[0]
        # the same requests packed with five other prompts, in the middle of the batch
        mixed = await deterministic.generate(
            [request(q, 3, 7) for q in QUESTIONS[1:3]] + [request(QUESTIONS[0], 1, 7, 0.0)]
            + [request(q, 2, 7) for q in QUESTIONS[3:]] + [request(QUESTIONS[0], 3, 7)])

        async def later(delay, r):
            await asyncio.sleep(delay)
            return await deterministic.generate([r])
        # others arrive while it decodes: the batch grows and shrinks around it
        concurrent = await asyncio.gather(
            later(0, request(QUESTIONS[0], 1, 7, 0.0)),
            *(later(0.03 * i, request(q, 2, 3)) for i, q in enumerate(QUESTIONS[1:])))
        return greedy, sampled, mixed, concurrent

    greedy, sampled, mixed, concurrent = asyncio.run(runs())
    assert greedy.logprobs and len(greedy.logprobs) > 5
    assert trail(mixed[2][0]) == trail(greedy)
    assert trail(concurrent[0][0][0]) == trail(greedy)
    assert [trail(c) for c in mixed[-1]] == [trail(c) for c in sampled]
    assert len({c.text for c in sampled}) > 1  # three different samples, each reproduced


def test_the_probe_finds_the_padded_kernels_batch_invariant(deterministic, kquant):
    assert deterministic.batch_invariant() is True
    plain = LlamaCppBackend(kquant, n_seq_max=16, n_ctx=16 * 512)
    try:
        assert plain.batch_invariant() is False  # not checked: not deterministic
        assert plain.pad_rows == 1 and deterministic.pad_rows == 8
    finally:
        plain.close()


def test_deterministic_decoding_refuses_a_unified_cache(kquant):
    with pytest.raises(ConfigError, match="kv_unified=False"):
        LlamaCppBackend(kquant, n_seq_max=4, kv_unified=True, deterministic=True)


def test_a_padded_decode_step_leaves_no_cells_behind(deterministic):
    """The throwaway rows' cells are cleared: a later sample still fits its whole context."""
    import llama_cpp

    asyncio.run(deterministic.generate([request(QUESTIONS[1], 2, 1)]))
    memory = deterministic._memory
    for seq_id in range(deterministic.n_seq_max):
        assert llama_cpp.llama_memory_seq_pos_max(memory, seq_id) == -1


def samples(store) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT sample_key, problem_id, idx, text, answer, correct, "
                          "prompt_tokens, completion_tokens, finish_reason FROM samples "
                          "ORDER BY 1, 2, 3").fetchall()


def test_two_evals_give_the_same_store_whatever_ran_beside(kquant, tmp_path):
    """The same command twice, and once with another number of problems in flight (so other
    batch mates): identical samples, the same fingerprint, and the report says so."""
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} + {b}?",
                                        "answer": f"#### {a + b}"}) + "\n"
                            for a, b in [(17, 5), (4, 9), (12, 30), (7, 8)]))

    def run(out, concurrency):
        proc = subprocess.run(
            [sys.executable, "-m", "ponder", "eval", "--dataset", str(data), "--model",
             str(kquant), "--strategies", "self-consistency", "--budgets", "1,4",
             "--max-tokens", "32", "--temperature", "0.8", "--seed", "5", "--concurrency",
             str(concurrency), "-B", "n_seq_max=8", "--out", str(out)],
            capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return json.loads((out / "report.json").read_text())["config"]["determinism"]

    first, second, wider = (run(tmp_path / "a", 2), run(tmp_path / "b", 2),
                            run(tmp_path / "c", 4))
    rows = samples(tmp_path / "a" / "samples.sqlite")
    assert len(rows) == 4 * 4  # four samples per problem (greedy is kept as a result)
    assert samples(tmp_path / "b" / "samples.sqlite") == rows
    assert samples(tmp_path / "c" / "samples.sqlite") == rows
    assert first["deterministic"] is True
    assert first["why"] == "batch-invariant decoding, checked on this CPU"
    assert first["samples_sha256"] == second["samples_sha256"] == wider["samples_sha256"]
    report = (tmp_path / "a" / "report.md").read_text()
    assert ("Deterministic: batch-invariant decoding, checked on this CPU; samples sha256 "
            f"{first['samples_sha256'][:16]}.") in report


def test_a_run_without_it_says_it_is_not_deterministic(kquant, tmp_path):
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "#### 4"}) + "\n")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "ponder", "eval", "--dataset", str(data), "--model", str(kquant),
         "--strategies", "cot", "--budgets", "1", "--max-tokens", "8", "--no-deterministic",
         "-B", "n_seq_max=4", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    determinism = json.loads((out / "report.json").read_text())["config"]["determinism"]
    assert determinism["deterministic"] is False
    assert determinism["why"].startswith("--no-deterministic")
    # a resumed run may not switch: its samples would mix both kinds
    again = subprocess.run(
        [sys.executable, "-m", "ponder", "eval", "--dataset", str(data), "--model", str(kquant),
         "--strategies", "cot", "--budgets", "1", "--max-tokens", "8", "-B", "n_seq_max=4",
         "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert again.returncode != 0
    assert "deterministic 'false' (now 'true')" in again.stderr
    assert "Traceback" not in again.stderr


def test_the_digest_leaves_out_wall_times(tmp_path):
    from ponder.eval.store import SampleRow, Store

    def store_with(seconds: float) -> str:
        store = Store(tmp_path / f"s{seconds}-{len(list(tmp_path.iterdir()))}.sqlite")
        store.add_samples("k", "p1", [SampleRow(idx=0, text="22", answer="22", correct=True,
                                                prompt_tokens=10, completion_tokens=3,
                                                calls=1, seconds=seconds,
                                                finish_reason="stop")])
        digest = store.fingerprint()
        store.close()
        return digest

    assert store_with(0.5) == store_with(9.0)
    other = Store(tmp_path / "other.sqlite")
    other.add_samples("k", "p1", [SampleRow(idx=0, text="23", answer="23", correct=False,
                                            prompt_tokens=10, completion_tokens=3, calls=1,
                                            seconds=0.5, finish_reason="stop")])
    assert other.fingerprint() != store_with(0.5)
    other.close()


def test_the_digest_reads_text_inside_a_json_column_as_text(tmp_path):
    """A sample's meta and a result's candidates hold strings (a program, an answer such as
    ``$10``): they are part of the digest as they are, not parsed as JSON again."""
    from ponder.eval.store import ResultRow, SampleRow, Store

    def digest(program: str, seconds: float) -> str:
        store = Store(tmp_path / f"{len(list(tmp_path.iterdir()))}.sqlite")
        store.add_samples("k", "p1", [SampleRow(
            idx=0, text="x", answer="$10", correct=False, prompt_tokens=1,
            completion_tokens=1, calls=1, seconds=seconds, finish_reason="stop",
            meta={"mode": "program", "program": program, "seconds": seconds})])
        store.add_result("r", "p1", ResultRow(
            budget=1, answer="$10", correct=False, prompt_tokens=1, completion_tokens=1,
            calls=1, seconds=seconds,
            candidates=[{"answer": "$10", "text": "print(10)", "seconds": seconds}]))
        value = store.fingerprint()
        store.close()
        return value

    assert digest("print(10)", 0.1) == digest("print(10)", 7.0)
    assert digest("print(10)", 0.1) != digest("print(11)", 0.1)


def test_padding_changes_no_logits_of_a_batch_invariant_model(model_path):
    """On the bundled Q4_1 file (invariant kernels) deterministic mode gives the plain mode's
    logits exactly: the padding and the lone prompt calls change nothing a sample sees."""
    plain = LlamaCppBackend(model_path, n_seq_max=8, n_ctx=8 * 512)
    padded = LlamaCppBackend(model_path, n_seq_max=8, n_ctx=8 * 512, deterministic=True)
    try:
        reqs = [request(q, 2, 11) for q in QUESTIONS[:3]]
        a = asyncio.run(plain.generate(reqs))
        b = asyncio.run(padded.generate(reqs))
        assert [[trail(c) for c in row] for row in a] == [[trail(c) for c in row] for row in b]
        assert np.isfinite([lp for row in b for c in row for lp in trail(c)[1]]).all()
    finally:
        plain.close()
        padded.close()
