"""The steps of one training step, in reading order: the one list the diagrams, the pages and the sidebar read.

    key    what a page names in its front matter (`step: attention`; it then opens with the map of the steps,
           this box highlighted) and what the boxes of both diagrams link to
    label  the box's text in the map of the steps (charts.diagram adds sizes from the config where it shows them)
    phase  forward, backward or the optimizer: the column of the map, and the sidebar section of the step's
           pages (pages.SECTIONS lists the phases between the introduction and the reference)
"""

from __future__ import annotations

from dataclasses import dataclass

FORWARD, BACKWARD, OPTIMIZER = "Forward pass", "Backward pass", "Optimization"
PHASES = (FORWARD, BACKWARD, OPTIMIZER)


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    phase: str


STEPS = (
    Step("embeddings", "embeddings", FORWARD),
    Step("layernorm", "LayerNorm", FORWARD),
    Step("qkv", "Q, K, V", FORWARD),
    Step("attention", "attention", FORWARD),
    Step("multihead", "merge heads", FORWARD),
    Step("feedforward", "feed-forward", FORWARD),
    Step("output", "output logits", FORWARD),
    Step("loss", "loss", FORWARD),
    Step("loss-gradient", "loss gradient", BACKWARD),
    Step("output-backward", "output backward", BACKWARD),
    Step("feedforward-backward", "feed-forward backward", BACKWARD),
    Step("attention-backward", "attention backward", BACKWARD),
    Step("embedding-gradients", "embedding gradients", BACKWARD),
    Step("optimizer", "update", OPTIMIZER),  # the map writes the configured optimizer's name before the label
)

STEP_KEYS = tuple(step.key for step in STEPS)


def in_phase(phase: str) -> list[Step]:
    """The steps of one phase, in reading order."""
    return [step for step in STEPS if step.phase == phase]

