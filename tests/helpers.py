"""Shared test helpers."""

from ponder.verifiers.judge import JUDGE_SYSTEM


def judge_aware(answers, judge_scores):
    """A responder: chains come from ``answers`` in order; judge calls answer Yes with the
    probability ``judge_scores[answer]`` given by the first-token logprobs."""
    import math

    from ponder.types import Completion, TokenLogprob

    queue = list(answers)

    def respond(request, index):
        if request.messages[0].content == JUDGE_SYSTEM:
            proposed = request.messages[1].content.split("Proposed final answer: ")[1]
            p = judge_scores[proposed.split("\n")[0]]
            top = (("Yes", math.log(p)), ("No", math.log(1 - p)))
            verdict = "Yes" if p >= 0.5 else "No"
            return Completion(verdict, logprobs=(TokenLogprob(verdict, 0.0, top),))
        return queue.pop(0)

    return respond


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A /metrics page parsed by prometheus_client's own parser: every sample's value by its
    name and sorted labels (``("ponder_requests_total", (("status", "200"),))``)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
