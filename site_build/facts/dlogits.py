"""The loss gradient: ∇logits = (p − onehot(y))/N, the entries and rows the loss-gradient page reads."""

from __future__ import annotations

from typing import Any

import numpy as np

from site_build.facts import grads


def padding(trace: Any) -> str:
    """What the count of positions leaves out: ', 12 in all, of which 3 are padding whose target is ignored', or
    nothing when every position has a target."""
    n = grads.ignored(trace)
    if not n:
        return ""
    slots = grads.texts(trace) * grads.positions(trace)
    in_all = f", {slots} in all" if grads.texts(trace) > 1 else ""
    return f"{in_all}, of which {n} {'is' if n == 1 else 'are'} padding whose target is ignored"


def target(trace: Any) -> int:
    """The target of the first position of the first text (a vocabulary index)."""
    return int(trace["targets"][0][0])


def target_word(trace: Any) -> str:
    """That target, as a word."""
    return grads.word(trace, target(trace))


def rival(trace: Any) -> int:
    """The word of largest gradient in the first row: the wrong word the model believed most there."""
    return int(np.asarray(trace["grad.logits"][0][0]).argmax())


def rival_word(trace: Any) -> str:
    """That word, as a word."""
    return grads.word(trace, rival(trace))


def weakest(trace: Any) -> int:
    """The position of the first text whose target got the smallest probability (the first such, on a tie)."""
    targets, probs = trace["targets"][0], trace["loss.target_prob"][0]
    best, low = 0, 2.0
    for t in range(len(targets)):
        if targets[t] >= 0 and probs[t] < low:
            best, low = t, probs[t]
    return best


def weakest_target(trace: Any) -> int:
    """The target at the weakest position (a vocabulary index)."""
    return int(trace["targets"][0][weakest(trace)])


def weakest_word(trace: Any) -> str:
    """That target, as a word."""
    return grads.word(trace, weakest_target(trace))


def largest_row_sum(trace: Any) -> float:
    """The largest row sum in size of the first text's gradient, which the algebra says is zero."""
    return float(max([abs(row.sum()) for row in np.asarray(trace["grad.logits"][0])], default=0))
