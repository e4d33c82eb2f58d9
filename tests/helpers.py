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
