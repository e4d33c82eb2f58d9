"""``ponder mcp``: ponder's search as tools for agents and editors, over the Model Context
Protocol (the official ``mcp`` SDK: stdio for desktop agents and editors, streamable HTTP for
remote ones).

Tools:

- ``think(question, effort?, strategy?, n?, max_tokens?, budget_tokens?, verifier?, tests?,
  entry_point?, options?, seed?)``: the answer, then a short account of the search (each
  candidate's answer, votes, score and tokens, what won, what it cost) and links to its trace;
  the same as structured content (:class:`ThinkOutput`).
- ``solve_code(task, tests, entry_point?, ...)``: a program that passed the given tests in the
  jail, or the best one found and how many it passed (:class:`CodeOutput`).

While a search runs the tool sends progress notifications when the client gave a progress token
(:mod:`ponder.mcp.progress`). A call the client cancels stops its search: its backend calls are
cancelled (the llama.cpp backend drops their sequences at the next decoding step) and the server
goes on serving. Resources: ``ponder://trace/{run_id}`` (the run as JSON, its trace included),
``ponder://page/{run_id}`` (the ``ponder view`` page, HTML) for the last ``max_runs`` runs, under
unguessable ids a call's result gives; ``ponder://status`` (what the server offers and how many
calls ran, failed, were refused or cancelled — counts only).

Trust is ``ponder serve``'s: the model, its URL and every file are the operator's (``ponder mcp``
flags); a client chooses among the operator's strategies and capped knobs
(:mod:`ponder.mcp.checks`), and an argument a tool does not have is refused by name (a
middleware, before the SDK would drop it). Model-written code and the client's tests run only in
the jail, whatever ``PONDER_SANDBOX`` says. What the client reads of a configuration or a trace
leaves out the operator's options (:func:`ponder.server.policy.public_trace`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.types import CallToolResult, ResourceLink, TextContent
from pydantic import BaseModel, Field

from ponder.api import GivenTests, check_given_tests
from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.errors import BackendError, ConfigError, SandboxUnavailable
from ponder.mcp.checks import EFFORTS, MAX_SEED, CallPlan, CallRules, Refused, plan_call
from ponder.mcp.progress import ProgressRelay
from ponder.runner import run_strategy
from ponder.sandbox import Sandbox
from ponder.server.narrator import search_summary
from ponder.server.policy import public_config, public_trace
from ponder.types import Result
from ponder.version import __version__
from ponder.view import render_page, view_of_result

log = logging.getLogger("ponder.mcp")
RUN_ID_BYTES = 16  # 128 random bits: a run's resources are read only by whoever was told its id


class Failed(Refused):
    """A checked call that failed while it ran (counted as failed, not refused)."""


class CandidateOut(BaseModel):
    answer: str | None
    votes: float
    score: float | None
    tokens: int = Field(description="completion tokens of this candidate")
    finish_reason: str


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    calls: int
    seconds: float


class TestsOut(BaseModel):
    passed: int
    total: int
    passing_candidate: int | None = Field(
        None, description="1-based: a candidate passing them all when the answer does not")


class ThinkOutput(BaseModel):
    """What ``think`` returns as structured content."""

    answer: str | None
    strategy: str
    model: str
    stop_reason: str = Field(description="done, or budget when the search stopped on its budget")
    candidates: list[CandidateOut]
    chosen: int | None = Field(description="1-based: the first candidate giving the answer")
    usage: UsageOut
    tests: TestsOut | None = Field(None, description="the answer's program on the given tests")
    run_id: str
    trace: str = Field(description="the run as JSON, an MCP resource")
    page: str = Field(description="the run's ponder view page (HTML), an MCP resource")


class CodeOutput(ThinkOutput):
    """What ``solve_code`` returns as structured content."""

    program: str | None = Field(description="a program passing every given test, else the best")
    passed: int = Field(description="given tests the program passes, run in the jail")
    total: int


@dataclass
class Run:
    question: str
    result: dict[str, Any]  # as a client may read it (public_config, public_trace)


class Runs:
    """The last ``most`` runs by id (the oldest are forgotten first)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._runs: OrderedDict[str, Run] = OrderedDict()

    def add(self, question: str, result: Result) -> str:
        data = result.to_dict()
        data["config"] = public_config(result.strategy, data["config"])
        if data.get("trace") is not None:
            data["trace"] = public_trace(data["trace"])
        run_id = secrets.token_hex(RUN_ID_BYTES)
        self._runs[run_id] = Run(question, data)
        while len(self._runs) > self.most:
            self._runs.popitem(last=False)
        return run_id

    def get(self, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise ResourceNotFoundError(f"no run {run_id[:40]!r} here: the server keeps the "
                                        f"last {self.most} runs, by the id a call returned")
        return run


def tool_arguments(function: Any) -> tuple[str, ...]:
    """The arguments a tool function takes from a client (not its context)."""
    return tuple(name for name, p in inspect.signature(function).parameters.items()
                 if p.annotation not in ("Context", Context) and name != "ctx")


def _candidates(result: Result) -> list[CandidateOut]:
    return [CandidateOut(answer=c.answer, votes=c.votes, score=c.score,
                         tokens=c.usage.completion_tokens, finish_reason=c.finish_reason)
            for c in result.candidates]


def _cost(result: Result) -> str:
    u = result.usage
    return (f"cost: {u.calls} call(s) · {u.prompt_tokens:,} prompt + {u.completion_tokens:,} "
            f"completion tokens · {u.seconds:.2f}s · model {result.model}")


Effort = Annotated[Literal[EFFORTS] | None, Field(  # type: ignore[valid-type]
    description="minimal: one chain of thought; low/medium/high: the strategy's preset")]
Strategy = Annotated[str | None, Field(
    description="the search, e.g. self-consistency, best-of-n, beam-search (see "
    "ponder://status for what this server offers)")]
Samples = Annotated[int | None, Field(ge=1, description="samples / candidates / beams (capped)")]
MaxTokens = Annotated[int | None, Field(ge=1, description="new tokens per generation (capped)")]
BudgetTokens = Annotated[int | None, Field(
    ge=1, description="prompt + completion tokens over the whole search (capped)")]
Tests = Annotated[list[str] | None, Field(
    description="Python statements, e.g. \"assert add(2, 3) == 5\"; run in the jail")]
EntryPoint = Annotated[str | None, Field(description="the function the tests call")]
Options = Annotated[dict[str, str | int | float | bool] | None, Field(
    description="other knobs of the strategy, e.g. {\"temperature\": 0.7, \"m\": 4}; models, "
    "scorers, files and URLs are the operator's")]
Seed = Annotated[int | None, Field(ge=0, le=MAX_SEED, description="reproducible sampling")]


class PonderMCP:
    """The MCP server over one backend, which the operator chose and loaded."""

    def __init__(self, backend: Backend, rules: CallRules | None = None, *,
                 sandbox: Sandbox | None = None,
                 models: Mapping[str, Backend] | None = None) -> None:
        """``models``: the operator's other models by role (``strong``, ...), for the
        strategies that use several (the rules' strategies should offer only those whose
        roles are here: :func:`~ponder.mcp.checks.usable_strategies`)."""
        self.backend = backend
        self.models = dict(models or {})
        self.rules = rules or CallRules()
        # the jail, whatever PONDER_SANDBOX says: a client's tests and the model's code run in it
        self.sandbox = sandbox or Sandbox(isolation="jail")
        self.model_id = str(getattr(backend, "model", "") or backend.name)
        self.runs = Runs(self.rules.limits.max_runs)
        self.counts: Counter[str] = Counter()
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._admitted = 0
        self._pumps: set[asyncio.Task[None]] = set()
        self.arguments = {"think": tool_arguments(self.think),
                          "solve_code": tool_arguments(self.solve_code)}

    # -- the MCP server ----------------------------------------------------------------------

    def server(self) -> MCPServer:
        """The MCP server: the tools, the resources and the argument guard."""
        app: MCPServer = MCPServer(
            "ponder", version=__version__, log_level="WARNING",
            instructions="ponder makes a language model think before it answers: call think "
            "for a question that deserves a search (several chains and a vote, a verifier, "
            "tree search), solve_code for a program that must pass tests. Results link the "
            "search's trace (ponder://trace/ID) and page (ponder://page/ID).")
        app.middleware.append(self._guard)
        app.add_tool(self.think, name="think", title="Think before answering", description=(
            "Answer a question by a search over several chains of thought (a vote, a verifier, "
            "tree search; see strategy), on the model this server's operator chose. Returns "
            "the answer and an account of the search: the candidates, their votes, what won "
            "and what it cost. Give tests (Python assert statements) to make it a coding task "
            "whose programs run in a jail."))
        app.add_tool(self.solve_code, name="solve_code", title="Write code that passes tests",
                     description=(
            "Write a Python program for a task that passes the given tests: programs are "
            "written, run against the tests in a jail and repaired. Returns a program that "
            "passed them all, or the best found and how many it passed."))
        app.resource("ponder://trace/{run_id}", name="trace", mime_type="application/json",
                     description="a run of think or solve_code: the answer, the candidates, "
                     "the usage and the whole trace")(self.trace)
        app.resource("ponder://page/{run_id}", name="page", mime_type="text/html",
                     description="a run's ponder view page: answer groups, the search tree, "
                     "rounds, programs (one self-contained HTML file)")(self.page)
        app.resource("ponder://status", name="status", mime_type="application/json",
                     description="the model, strategies, limits, and how many calls ran")(
            self.status)
        return app

    async def _guard(self, ctx: Any, call_next: Any) -> Any:
        """Refuse a tool argument the tool does not have, naming it (the SDK would drop it
        silently, and a client naming a model or a file should hear that it cannot)."""
        if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
            name = ctx.params.get("name")
            arguments = ctx.params.get("arguments") or {}
            allowed = self.arguments.get(name) if isinstance(name, str) else None
            if allowed is not None and isinstance(arguments, Mapping):
                extra = sorted(str(k) for k in arguments if k not in allowed)
                if extra:
                    self.counts["refused"] += 1
                    return self._refusal(
                        f"{name}: unknown argument {extra[0][:64]!r}: the model, its URL and "
                        "every file are chosen by this server's operator (ponder mcp --model, "
                        f"--base-url, --config); {name} takes {', '.join(allowed)}")
        return await call_next(ctx)

    @staticmethod
    def _refusal(message: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)

    # -- tools -------------------------------------------------------------------------------

    async def think(self, question: Annotated[str, Field(description="the question")],
                    ctx: Context, effort: Effort = None, strategy: Strategy = None,
                    n: Samples = None, max_tokens: MaxTokens = None,
                    budget_tokens: BudgetTokens = None,
                    verifier: Annotated[str | None, Field(
                        description="judge, logprob or code-tests")] = None,
                    tests: Tests = None, entry_point: EntryPoint = None,
                    options: Options = None, seed: Seed = None
                    ) -> Annotated[CallToolResult, ThinkOutput]:
        """Think before answering."""
        try:
            plan = plan_call(self.rules, question=question, strategy=strategy, effort=effort,
                             n=n, max_tokens=max_tokens, budget_tokens=budget_tokens,
                             verifier=verifier, tests=tests, entry_point=entry_point,
                             options=options, seed=seed)
            result, given = await self._run(plan, ctx)
        except Refused as exc:
            self.counts["refused"] += not isinstance(exc, Failed)
            return self._refusal(f"think: {exc.message}")
        run_id = self.runs.add(question, result)
        out = self._output(result, run_id, given)
        text = [result.answer if result.answer is not None else "(no answer)", ""]
        if given is not None:
            text.append(given.line() + " (run in the jail)")
        text += [search_summary(result), _cost(result), self._links_line(run_id)]
        return self._result("\n".join(text), out, run_id)

    async def solve_code(self, task: Annotated[str, Field(
                             description="what the program must do, e.g. \"Write add(a, b) "
                             "that returns the sum\"")],
                         tests: Annotated[list[str], Field(
                             description="Python statements the program must pass, e.g. "
                             "\"assert add(2, 3) == 5\"; run in the jail")],
                         ctx: Context, entry_point: EntryPoint = None,
                         strategy: Strategy = None, effort: Effort = None, n: Samples = None,
                         max_tokens: MaxTokens = None, budget_tokens: BudgetTokens = None,
                         options: Options = None, seed: Seed = None
                         ) -> Annotated[CallToolResult, CodeOutput]:
        """Write a program that passes the tests."""
        try:
            plan = plan_call(self.rules, question=task, param="task", strategy=strategy,
                             effort=effort, n=n, max_tokens=max_tokens,
                             budget_tokens=budget_tokens, tests=tests, entry_point=entry_point,
                             options=options, seed=seed, code=True)
            result, given = await self._run(plan, ctx)
        except Refused as exc:
            self.counts["refused"] += not isinstance(exc, Failed)
            return self._refusal(f"solve_code: {exc.message}")
        assert given is not None  # solve_code always has tests
        program, passed = result.answer, given.passed
        run_id = self.runs.add(task, result)
        out = CodeOutput(**self._output(result, run_id, given).model_dump(), program=program,
                         passed=passed, total=given.total)
        if not given.ok and given.passing_candidate is not None:
            # the answer fails a test but another candidate passes them all: that one
            program = result.candidates[given.passing_candidate - 1].answer
            passed = given.total
            out = out.model_copy(update={"program": program, "passed": passed,
                                         "chosen": given.passing_candidate})
        head = (f"A program that passes all {given.total} given tests (run in the jail):"
                if passed == given.total else
                f"No program found passes all {given.total} given tests; the best passes "
                f"{passed} (run in the jail):")
        text = [head, f"```python\n{(program or '').rstrip()}\n```", "", search_summary(result),
                _cost(result), self._links_line(run_id)]
        return self._result("\n".join(text), out, run_id)

    # -- resources ---------------------------------------------------------------------------

    def trace(self, run_id: str) -> str:
        run = self.runs.get(run_id)
        return json.dumps({"run_id": run_id, "question": run.question, **run.result},
                          ensure_ascii=False)

    def page(self, run_id: str) -> str:
        run = self.runs.get(run_id)
        return render_page([view_of_result(run.result, question=run.question)])

    def status(self) -> str:
        limits = self.rules.limits
        return json.dumps({
            "model": self.model_id, "version": __version__,
            "models": {role: str(getattr(b, "model", "") or b.name)
                       for role, b in self.models.items()},
            "strategies": list(self.rules.strategies),
            "default_strategy": self.rules.default_strategy,
            "code_strategy": self.rules.code_strategy,
            "efforts": list(EFFORTS),
            "caps": limits.caps.model_dump(),
            "limits": {"max_question_chars": limits.max_question_chars,
                       "max_tests": limits.max_tests, "max_test_chars": limits.max_test_chars,
                       "max_request_tokens": limits.max_request_tokens,
                       "max_request_seconds": limits.max_request_seconds,
                       "max_concurrent": limits.max_concurrent,
                       "max_queue": limits.max_queue, "max_runs": limits.max_runs},
            "calls": {"running": self.counts["running"], "waiting": self.counts["waiting"],
                      **{k: self.counts[k] for k in ("done", "failed", "refused",
                                                     "cancelled")}},
        })

    # -- running -----------------------------------------------------------------------------

    async def _run(self, plan: CallPlan, ctx: Context) -> tuple[Result, GivenTests | None]:
        """Run a checked call on the backend, within the limits, sending progress, then its
        answer on the given tests (if any) in the jail; a cancelled call stops its search.
        Failures become :class:`Failed` (an upstream's detail goes to the log, never to the
        client)."""
        limits = self.rules.limits
        if self._admitted >= limits.max_concurrent + limits.max_queue:
            raise Refused(f"the server is busy ({self._admitted} calls running or waiting); "
                          "try again shortly")
        slots = self._slots_of(asyncio.get_running_loop())
        relay = ProgressRelay(plan.problem, ctx.report_progress)
        pump = asyncio.create_task(relay.pump())
        self._pumps.add(pump)  # held until it ends (the loop holds tasks weakly)
        pump.add_done_callback(self._pumps.discard)
        self._admitted += 1
        self.counts["waiting"] += 1
        waiting = True
        try:
            async with slots:
                self.counts["waiting"] -= 1
                self.counts["running"] += 1
                waiting = False
                try:
                    budget = Budget(max_tokens=plan.budget_tokens,
                                    max_seconds=limits.max_request_seconds)
                    result, given = await asyncio.wait_for(
                        self._search(plan, budget, relay), limits.max_request_seconds + 5)
                finally:
                    self.counts["running"] -= 1
        except asyncio.CancelledError:
            self.counts["cancelled"] += 1
            log.info("a %s call was cancelled by its client", plan.strategy.name)
            raise
        except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
            self.counts["failed"] += 1
            raise Failed(f"the search exceeded this server's time limit of "
                          f"{limits.max_request_seconds:g} s") from None
        except SandboxUnavailable as exc:
            self.counts["failed"] += 1
            log.error("cannot run model-written code: %s", exc)
            raise Failed("this server cannot run model-written code: no jail can be made on "
                          "its host") from None
        except BackendError:
            self.counts["failed"] += 1
            log.exception("the model failed")
            raise Failed("the model failed to answer (the server's log says why)") from None
        except ConfigError as exc:
            self.counts["failed"] += 1
            raise Failed(str(exc)) from None
        except Exception:
            self.counts["failed"] += 1
            incident = uuid.uuid4().hex[:12]
            log.exception("internal error %s running %s", incident, plan.strategy.name)
            raise Failed(f"internal error (incident {incident})") from None
        finally:
            self._admitted -= 1
            if waiting:
                self.counts["waiting"] -= 1
            relay.close()  # the pump ends once it has sent what is queued
        self.counts["done"] += 1
        await asyncio.wait([pump], timeout=1.0)  # the last notifications go out first
        return result, given

    async def _search(self, plan: CallPlan, budget: Budget, relay: ProgressRelay
                      ) -> tuple[Result, GivenTests | None]:
        result = await run_strategy(plan.strategy, plan.problem, self.backend,
                                    verifier=plan.verifier, budget=budget, seed=plan.seed,
                                    events=relay, sandbox=self.sandbox, models=self.models)
        return result, await check_given_tests(plan.problem, result, self.sandbox)

    def _slots_of(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        """The semaphore of ``max_concurrent`` searches (one per event loop: a semaphore
        belongs to the loop it first waited on)."""
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.rules.limits.max_concurrent))
        return self._slots[1]

    def _output(self, result: Result, run_id: str, given: GivenTests | None) -> ThinkOutput:
        chosen = next((i for i, c in enumerate(result.candidates, 1)
                       if result.answer is not None and c.answer == result.answer), None)
        u = result.usage
        return ThinkOutput(
            answer=result.answer, strategy=result.strategy, model=result.model,
            stop_reason=result.stop_reason, candidates=_candidates(result), chosen=chosen,
            usage=UsageOut(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                           calls=u.calls, seconds=round(u.seconds, 3)),
            tests=TestsOut(**given.to_dict()) if given is not None else None,
            run_id=run_id, trace=f"ponder://trace/{run_id}", page=f"ponder://page/{run_id}")

    @staticmethod
    def _links_line(run_id: str) -> str:
        return f"trace: ponder://trace/{run_id} (JSON) · page: ponder://page/{run_id} (HTML)"

    @staticmethod
    def _result(text: str, out: BaseModel, run_id: str) -> CallToolResult:
        return CallToolResult(
            content=[TextContent(type="text", text=text),
                     ResourceLink(name="trace", uri=f"ponder://trace/{run_id}",
                                  mime_type="application/json",
                                  description="the search as JSON, its trace included"),
                     ResourceLink(name="page", uri=f"ponder://page/{run_id}",
                                  mime_type="text/html",
                                  description="the search's ponder view page")],
            structured_content=out.model_dump())
