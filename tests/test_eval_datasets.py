import json

import pytest

from ponder import ConfigError
from ponder.eval.datasets import load_dataset


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return str(path)


def test_gsm8k_format(tmp_path):
    path = write(tmp_path, "g.jsonl", [
        {"question": "1 + 1?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"},
        {"question": "Big?", "answer": "#### 1,000"},
    ])
    problems = load_dataset(path)
    assert [(p.question, p.answer, p.id) for p in problems] == [("1 + 1?", "2", "0"),
                                                                ("Big?", "1000", "1")]
    assert len(load_dataset(path, limit=1)) == 1


def test_math_format(tmp_path):
    path = write(tmp_path, "m.jsonl", [
        {"problem": "Half?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "id": "p7"},
    ])
    [p] = load_dataset(path)
    assert (p.answer, p.id) == ("\\frac{1}{2}", "p7")


def test_field_mapping(tmp_path):
    path = write(tmp_path, "f.jsonl", [{"q": "Capital of France?", "a": "Paris"}])
    [p] = load_dataset(path, question_field="q", answer_field="a")
    assert (p.question, p.answer) == ("Capital of France?", "Paris")


@pytest.mark.parametrize("lines,message", [
    ([{"question": "ok", "answer": "#### 1"}, "{not json"], "g.jsonl:2: not valid JSON"),
    ([{"question": "ok", "answer": "#### 1"}, {"question": "x", "answer": "no hashes"}],
     "g.jsonl:2: no '#### answer' line"),
    ([{"question": "ok", "answer": "#### 1"}, {"answer": "#### 2"}],
     "g.jsonl:2: missing field 'question'"),
    ([{"question": "ok", "answer": "#### 1"}, {"question": " ", "answer": "#### 2"}],
     "g.jsonl:2: the question is empty"),
    ([{"question": "ok", "answer": "#### 1"}, [1, 2]], "g.jsonl:2: a record must be a JSON"),
    ([{"foo": 1}], "cannot tell the dataset format"),
    ([""], "holds no problems"),
])
def test_malformed_files_name_file_and_line(tmp_path, lines, message):
    path = write(tmp_path, "g.jsonl", lines)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_dataset(path)


def test_other_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="dataset not found"):
        load_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="unknown dataset format"):
        load_dataset("x.jsonl", "csv")
    with pytest.raises(ConfigError, match="--limit must be positive"):
        load_dataset("x.jsonl", limit=0)
    dup = write(tmp_path, "d.jsonl", [{"question": "a", "answer": "#### 1", "id": 1},
                                      {"question": "b", "answer": "#### 2", "id": 1}])
    with pytest.raises(ConfigError, match="duplicate problem ids"):
        load_dataset(dup)


def test_humaneval_ships_in_its_package():
    problems = load_dataset("humaneval", limit=3)
    assert [p.id for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert problems[0].metadata["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in problems[0].metadata["test"]


def test_hub_datasets_map_records_and_fail_clearly_offline(monkeypatch):
    import sys
    import types

    calls = []

    def load_ok(name, config, split):
        calls.append((name, config, split))
        return [{"question": "1 + 1?", "answer": "#### 2"}, {"question": "2 + 2?",
                                                              "answer": "#### 4"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_ok))
    problems = load_dataset("hf:openai/gsm8k:main:test", limit=1)
    assert calls == [("openai/gsm8k", "main", "test")]
    assert [(p.question, p.answer) for p in problems] == [("1 + 1?", "2")]

    def load_offline(name, config, split):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_offline))
    with pytest.raises(ConfigError, match="cannot load hub dataset 'openai/gsm8k'"):
        load_dataset("hf:openai/gsm8k")
