"""Grammar-constrained decoding: the grammars ponder writes from schemas (checked with llama.cpp's
own grammar engine over the bundled model's vocabulary), which requests carry them, and both
llama.cpp engines decoding under them on the bundled model."""

import asyncio
import json

import pytest

from ponder import Capabilities, GenerationRequest, Message, SamplingParams, ScriptedBackend
from ponder.domains.chat import CHAT, chat_problem
from ponder.domains.grammar import (
    MAX_GRAMMAR_CHARS,
    json_answer_constraint,
    json_block_grammar,
    schema_grammar,
    tool_constraint,
)
from ponder.runner import build_strategy as get_strategy
from ponder.runner import run_strategy
from ponder.types import Constraint

CALC = {"name": "calculator", "parameters": {
    "type": "object", "properties": {"expression": {"type": "string"}},
    "required": ["expression"]}}
WEATHER = {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]},
                                     "days": {"type": "integer"},
                                     "unit": {"enum": ["C", "F"]}},
    "required": ["city"], "additionalProperties": False}}
ASK = [{"role": "user", "content": "What is 3847 * 29?"}]


# -- the grammars, run by llama.cpp's grammar engine -------------------------------------------

@pytest.fixture(scope="module")
def vocab(model_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    import llama_cpp._internals as internals

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = internals.LlamaModel(path_model=str(model_path), params=params, verbose=False)
    yield llama_cpp, model
    model.close()


def accepts(vocab, grammar: str, text: str) -> bool:
    """llama.cpp's grammar engine takes ``text`` token by token and may end there."""
    from ponder.backends.grammars import TokenGrammar

    llama_cpp, model = vocab
    g = TokenGrammar(llama_cpp, model.vocab, grammar)
    for token in model.tokenize(text.encode(), False, False):
        if not g.allows(token):
            return False
        g.accept(token)
    return g.allows(model.token_eos())


def test_a_schema_grammar_reads_as_written():
    grammar = schema_grammar({"type": "object", "properties": {"x": {"type": "integer"}},
                              "required": ["x"]})
    assert grammar.splitlines()[:3] == ['root ::= r2-root',
                                        'r1-root-x ::= "\\"x\\"" ws ":" ws integer',
                                        'r2-root ::= "{" ws r1-root-x ws "}"']


def tagged(tools, parallel=True):
    """The grammar of what follows ``<tool_call>``."""
    return tool_constraint(tools, required=False, parallel=parallel).after("<tool_call>")


def test_tool_calls_take_a_known_name_and_arguments_in_their_shape(vocab):
    grammar = tagged([CALC, WEATHER])
    ok = [' {"name": "calculator", "arguments": {"expression": "3847 * 29"}}\n</tool_call>',
          '{"name": "weather", "arguments": {"city": "Rome"}}</tool_call>',
          '{"name": "weather", "arguments": {"city": "Paris", "days": 2, "unit": "C"}}'
          '</tool_call>',
          '{"name": "weather", "arguments": {"city": "Paris", "unit": "F"}}</tool_call>\n'
          '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1"}}\n</tool_call>']
    for text in ok:
        assert accepts(vocab, grammar, text), text
    bad = ['{"name": "search", "arguments": {"q": "x"}}</tool_call>',  # unknown function
           '{"name": "weather", "arguments": {"days": 2}}</tool_call>',  # city is required
           '{"name": "weather", "arguments": {"city": "Oslo"}}</tool_call>',  # not in the enum
           '{"name": "weather", "arguments": {"city": "Rome", "days": "two"}}</tool_call>',
           '{"name": "weather", "arguments": {"city": "Rome"}}',  # the call never ends
           '{"name": "weather", "arguments": {"city": "Rome"}}</tool_call> Done.']  # text after
    for text in bad:
        assert not accepts(vocab, grammar, text), text
    single = tagged([CALC], parallel=False)
    assert not accepts(vocab, single, '{"name": "calculator", "arguments": {"expression": "1"}}'
                       '</tool_call><tool_call>{"name": "calculator", "arguments": '
                       '{"expression": "2"}}</tool_call>')


def test_a_call_written_without_tags_is_held_to_the_same_shape(vocab):
    """The benchmark model often writes a call as a bare JSON object: after its ``{"name":
    "TOOL"``, the rest of the object, further calls (parallel), and nothing else. A JSON object
    whose name is no tool's is not a call: no trigger, the text stays free."""
    constraint = tool_constraint([CALC, WEATHER], required=False)
    triggers = [t for t, _ in constraint.triggers]
    assert triggers == ["<tool_call>", '{"name": "calculator"', '{"name":"calculator"',
                        '{"name": "weather"', '{"name":"weather"']
    bare = constraint.after('{"name": "weather"')
    assert accepts(vocab, bare, ', "arguments": {"city": "Rome"}}')
    assert accepts(vocab, bare, ', "arguments": {"city": "Rome"}}\n'
                   '{"name": "calculator", "arguments": {"expression": "1+1"}}')
    assert not accepts(vocab, bare, ', "arguments": {"town": "Rome"}}')
    assert not accepts(vocab, bare, ', "arguments": {"city": "Rome"}}\n'
                       '{"name": "inventory", "arguments": {}}')
    assert not accepts(vocab, bare, ', "arguments": {"city": "Rome"}} Done.')
    single = tool_constraint([CALC], required=False, parallel=False).after(
        '{"name": "calculator"')
    assert not accepts(vocab, single, ', "arguments": {"expression": "1"}}\n'
                       '{"name": "calculator", "arguments": {"expression": "2"}}')


def test_a_required_call_starts_at_once_and_an_optional_one_waits_for_its_trigger(vocab):
    required = tool_constraint([CALC], required=True)
    optional = tool_constraint([CALC], required=False)
    assert (required.lazy, optional.lazy) == (False, True)
    assert required.triggers == optional.triggers
    assert required.triggers[0] == ("<tool_call>", "tagged")
    call = '{"name": "calculator", "arguments": {"expression": "2+2"}}'
    assert accepts(vocab, required.from_trigger(), "<tool_call>" + call + "</tool_call>")
    assert accepts(vocab, required.from_trigger(), call)
    assert not accepts(vocab, required.from_trigger(), "Let me see. <tool_call>" + call)


def test_a_json_answer_follows_its_fence_and_nothing_comes_after(vocab):
    person = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"]}
    grammar = json_answer_constraint(person).after("```json")
    assert accepts(vocab, grammar, '\n{"name": "Ada", "age": 36}\n```')
    assert not accepts(vocab, grammar, '\n{"name": "Ada"}\n```')
    assert not accepts(vocab, grammar, '\n{"name": "Ada", "age": 36}\n``` and more')
    constraint = json_answer_constraint(person)
    assert (constraint.triggers, constraint.lazy) == ((("```json", "fenced"),), True)
    assert "fenced ::= " in json_block_grammar(person)


def test_references_recursion_and_relaxed_keywords(vocab):
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "number"}, "children": {"type": "array",
                                                  "items": {"$ref": "#/$defs/node"}}},
        "required": ["value"]}}, "$ref": "#/$defs/node"}
    grammar = schema_grammar(tree)
    assert accepts(vocab, grammar, '{"value": 1, "children": [{"value": 2.5}, '
                   '{"value": -3, "children": []}]}')
    assert not accepts(vocab, grammar, '{"value": 1, "children": [{"children": []}]}')
    # a pattern and bounds are left to the validation every candidate gets afterwards
    loose = schema_grammar({"type": "string", "pattern": "^a+$", "maxLength": 2})
    assert accepts(vocab, loose, '"bbbb"')
    assert not accepts(vocab, loose, "12")


def test_a_schema_from_a_stranger_cannot_make_a_huge_grammar(vocab):
    many = {"enum": [f"value number {i} " * 20 for i in range(400)]}
    assert len(json.dumps(many)) > MAX_GRAMMAR_CHARS
    grammar = schema_grammar({"type": "object", "properties": {"a": many}})
    assert grammar.startswith("root ::= object\n") and len(grammar) < 2_000
    # each nesting level names its child: the text grows with the nodes, not 4x per level
    nested: dict = {"type": "integer"}
    for _ in range(40):
        nested = {"type": "object", "additionalProperties": nested}
    grammar = schema_grammar(nested)
    half = schema_grammar(nested["additionalProperties"]["additionalProperties"])
    assert len(grammar) < 12_000 and len(grammar) - len(half) < 500  # 2 levels: 2 rules more
    assert accepts(vocab, grammar, '{"a": {"b": {}}}')
    # so do optional properties beside each other
    wide = {"type": "object", "properties": {f"p{i}": {"type": "object", "properties": {
        f"q{j}": {"type": "integer"} for j in range(20)}} for i in range(20)}}
    assert len(schema_grammar(wide)) < 160 * 420  # 420 properties, about 140 characters each
    deep: dict = {"type": "integer"}
    for _ in range(200):
        deep = {"type": "array", "items": deep}
    assert len(schema_grammar(deep)) < 20_000


def test_what_a_grammar_cannot_intersect_falls_back_to_the_generic_type(vocab):
    """A schema whose keywords a grammar would have to intersect gets a looser grammar, never
    one that no valid value matches; left recursion and lone surrogates still parse."""
    both = {"type": "object", "properties": {"kind": {"type": "string"}}, "required": ["kind"],
            "anyOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}]}
    assert accepts(vocab, schema_grammar(both), '{"kind": "x", "a": 1}')
    beside = {"$ref": "#/$defs/base", "properties": {"x": {"type": "integer"}},
              "required": ["x"], "$defs": {"base": {"type": "object"}}}
    assert accepts(vocab, schema_grammar(beside), '{"x": 1}')
    undeclared = {"type": "object", "properties": {"a": {"type": "integer"}},
                  "required": ["a", "b"]}
    assert accepts(vocab, schema_grammar(undeclared), '{"a": 1, "b": 2}')
    looping = {"anyOf": [{"type": "object"}, {"$ref": "#"}]}
    assert accepts(vocab, schema_grammar(looping), "{}")
    odd = {"type": "object", "properties": {"k": {"enum": ["\ud800", "ok"]}}, "required": ["k"]}
    assert accepts(vocab, schema_grammar(odd), '{"k": "ok"}')


def test_a_grammar_llama_cpp_cannot_parse_is_refused(vocab):
    from ponder.backends.grammars import TokenGrammar
    from ponder.errors import BackendError

    llama_cpp, model = vocab
    with pytest.raises(BackendError, match="does not parse"):
        TokenGrammar(llama_cpp, model.vocab, "root ::= undefined-rule")


# -- which requests carry the constraint -------------------------------------------------------

GRAMMAR_CAPS = Capabilities(parallel_n=True, logprobs=True, prefill=True, early_stop=True,
                            grammar=True, max_context=4096)
CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "3847 * 29"}}\n</tool_call>'


def test_the_answers_to_a_chat_problem_decode_under_its_tools_grammar():
    problem = chat_problem(ASK, tools=[CALC])
    backend = ScriptedBackend([CALL] * 3, capabilities=GRAMMAR_CAPS)
    result = asyncio.run(run_strategy(get_strategy("self-consistency", n=3), problem, backend))
    [request] = backend.history
    assert request.constraint == tool_constraint([CALC], required=False)
    assert request.constraint.lazy and request.constraint.name == "tool calls"
    generated = [n for n in result.trace.nodes if n.kind == "generate"]
    assert [n.data.get("constrained") for n in generated] == ["tool calls"] * 3
    required = chat_problem(ASK, tools=[CALC], tool_choice="required")
    backend = ScriptedBackend([CALL], capabilities=GRAMMAR_CAPS)
    asyncio.run(run_strategy(get_strategy("self-consistency", n=1), required, backend))
    assert backend.history[0].constraint.lazy is False


def test_no_grammar_without_the_capability_for_math_or_when_turned_off():
    problem = chat_problem(ASK, tools=[CALC])
    plain = ScriptedBackend([CALL])  # the default capabilities: no grammar
    asyncio.run(run_strategy(get_strategy("self-consistency", n=1), problem, plain))
    assert plain.history[0].constraint is None
    off = ScriptedBackend([CALL], capabilities=GRAMMAR_CAPS)
    asyncio.run(run_strategy(get_strategy("self-consistency", n=1), problem, off,
                             grammar=False))
    assert off.history[0].constraint is None
    from ponder.types import Problem

    math = ScriptedBackend(["The answer is: 4"], capabilities=GRAMMAR_CAPS)
    asyncio.run(run_strategy(get_strategy("self-consistency", n=1), Problem("2+2?"), math))
    assert math.history[0].constraint is None


def test_a_critique_of_an_answer_is_not_forced_into_a_call():
    """self-refine drafts (a reply to the conversation: constrained), critiques (a prompt of its
    own: free) and revises: only the requests that pose the problem carry the grammar."""
    problem = chat_problem(ASK, tools=[CALC], tool_choice="required")
    backend = ScriptedBackend([CALL, "The call is right. NO ERRORS"] * 2,
                              capabilities=GRAMMAR_CAPS)
    asyncio.run(run_strategy(get_strategy("self-refine", rounds=1), problem, backend))
    posed = tuple(CHAT.posed(problem))
    kinds = [(tuple(m for m in r.messages if m.role != "system") == posed,
              r.constraint is not None) for r in backend.history]
    assert kinds[0] == (True, True)
    assert all(constrained == poses for poses, constrained in kinds)
    assert any(not poses for poses, _ in kinds)


def test_json_answers_and_the_json_object_format():
    person = {"type": "object", "properties": {"name": {"type": "string"}}}
    problem = chat_problem(ASK, response_format={"type": "json_schema", "schema": person})
    assert CHAT.constraint(problem) == json_answer_constraint(person)
    any_object = chat_problem(ASK, response_format={"type": "json_object"})
    assert CHAT.constraint(any_object) == json_answer_constraint({"type": "object"})
    assert CHAT.constraint(chat_problem(ASK)) is None


# -- both engines, on the bundled model --------------------------------------------------------

@pytest.mark.model
def test_both_engines_write_only_valid_calls_under_the_grammar(engine):
    problem = chat_problem([{"role": "user", "content": "Weather in Rome for 3 days?"}],
                           tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    messages = tuple(CHAT.messages(problem, "You are a helpful assistant.", ""))
    request = GenerationRequest(messages, SamplingParams(temperature=1.0, max_tokens=80, seed=5),
                                n=4, constraint=CHAT.constraint(problem))
    [samples] = asyncio.run(engine.generate([request]))
    for sample in samples:
        assert sample.finish_reason == "stop", sample.text
        answer = CHAT.extract(problem, sample.text)
        assert answer is not None, sample.text
        [call] = json.loads(answer.removeprefix("tool_calls: "))
        assert call["name"] == "weather" and call["arguments"]["city"] in ("Paris", "Rome")


@pytest.mark.model
def test_both_engines_wait_for_a_lazy_grammars_trigger(engine):
    """Free text until the trigger, then exactly the grammar: here ' is: ' and digits."""
    constraint = Constraint('after ::= " is: " [0-9]{1,3} "."', (("The answer", "after"),),
                            lazy=True)
    messages = (Message("system", "End with a line 'The answer is: N'."),
                Message("user", "A farmer has 17 sheep and buys 5 more. How many sheep?"))
    request = GenerationRequest(messages, SamplingParams(temperature=0.9, max_tokens=160, seed=2),
                                n=4, constraint=constraint)
    [samples] = asyncio.run(engine.generate([request]))
    triggered = [s for s in samples if "The answer" in s.text]
    assert triggered, [s.text for s in samples]
    for sample in triggered:
        after = sample.text.split("The answer", 1)[1]
        assert sample.finish_reason == "stop"
        head, _, digits = after.partition(" is: ")
        assert head == "" and digits[:-1].isdigit() and digits.endswith("."), sample.text


# -- ponder serve ------------------------------------------------------------------------------

def test_the_server_constrains_pass_through_and_search_unless_told_not_to():
    openai = pytest.importorskip("openai")
    from test_server import Live

    tool = {"type": "function", "function": {"name": "calculator",
                                             "parameters": CALC["parameters"]}}
    for grammar, model in ((True, "scripted"), (True, "ponder-self-consistency"),
                           (False, "scripted"), (False, "ponder-self-consistency")):
        backend = ScriptedBackend([CALL] * 4, capabilities=GRAMMAR_CAPS)
        with Live(backend, grammar=grammar) as live, openai.OpenAI(
                base_url=live.url + "/v1", api_key="-", max_retries=0) as client:
            reply = client.chat.completions.create(
                model=model, messages=ASK, tools=[tool], tool_choice="required",
                extra_body={"ponder": {"n": 2}} if model != "scripted" else None)
        assert reply.choices[0].message.tool_calls[0].function.name == "calculator"
        expected = tool_constraint([CALC], required=True) if grammar else None
        assert [r.constraint for r in backend.history] == [expected], (grammar, model)
