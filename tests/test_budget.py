import pytest

from ponder import Budget, BudgetExhausted, ConfigError, Trace, Usage


def test_token_call_and_time_limits():
    b = Budget(max_tokens=100)
    b.charge(Usage(prompt_tokens=30, completion_tokens=20, calls=1))
    assert b.remaining_tokens == 50 and not b.exhausted
    assert b.completion_cap(n_samples=4, prompt_tokens=10) == 10
    b.charge(Usage(completion_tokens=50))
    with pytest.raises(BudgetExhausted, match=r"\(tokens\) after 100 tokens, 1 calls") as hit:
        b.check()
    assert hit.value.limit == "tokens"
    calls = Budget(max_calls=2)
    calls.charge(Usage(calls=2))
    assert calls.exhausted and calls.spent_limit() == "calls"
    clock = Budget(max_seconds=5, started=0.0)  # started long ago on the monotonic clock
    assert clock.exhausted and clock.spent_limit() == "time"
    assert Budget().completion_cap(4, 10) is None


@pytest.mark.parametrize("field", ["max_tokens", "max_calls", "max_seconds"])
def test_limits_must_be_positive(field):
    with pytest.raises(ConfigError, match="must be positive"):
        Budget(**{field: 0})


def test_trace_tree_and_usage(tmp_path):
    t = Trace()
    root = t.add("strategy", "s")
    a = t.add("generate", "one", parent=root, usage=Usage(5, 7, 1), text="x")
    t.add("generate", "two", parent=root, usage=Usage(0, 3, 0))
    t.add("score", "judge", parent=a, score=0.5)
    assert [n.label for n in t.children(root)] == ["one", "two"]
    assert t.usage == Usage(5, 10, 1)
    t.write_jsonl(tmp_path / "t.jsonl")
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 4
