"""From texts to token ids: a word per token with the config's vocabulary, or a checkpoint's BPE tokenizer.

Every text becomes `[bos] + tokens`; the inputs are that minus its last token and the targets minus its first,
so position t predicts token t + 1. A batch of texts of different lengths is right-padded: inputs with the pad
token (`<pad>`, or a checkpoint's EOS token, as GPT-2 has no pad), targets with -100, which the loss ignores.
"""

from __future__ import annotations

import numpy as np

from . import checkpoint
from .config import Config

IGNORE = -100  # Hugging Face's label for "no target here"


def sequences(cfg: Config) -> list[list[int]]:
    """Each text's token ids, starting with the BOS token."""
    if cfg.model.checkpoint_dir:
        ck = checkpoint.load(cfg.model.checkpoint_dir, cfg.source)
        return [[ck.bos, *ck.encode(t)] for t in cfg.data.texts]
    vocab = {w: i for i, w in enumerate(cfg.model.vocab)}
    return [[vocab["<bos>"]] + [vocab[w] for w in t.split()] for t in cfg.data.texts]


def pad_id(cfg: Config) -> int:
    if cfg.model.checkpoint_dir:
        return checkpoint.load(cfg.model.checkpoint_dir, cfg.source).eos
    return cfg.model.vocab.index("<pad>")


def tokenize(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(input ids, targets), each (B, T) with T the longest text's token count."""
    seqs = sequences(cfg)
    T = max(len(s) for s in seqs) - 1
    ids = np.full((len(seqs), T), pad_id(cfg), dtype=np.int64)  # (B, T)
    targets = np.full((len(seqs), T), IGNORE, dtype=np.int64)  # (B, T)
    for b, s in enumerate(seqs):
        ids[b, : len(s) - 1] = s[:-1]
        targets[b, : len(s) - 1] = s[1:]
    return ids, targets


def labels(cfg: Config, ids: np.ndarray, targets: np.ndarray) -> dict:
    """What the pages call each token: the word, or a checkpoint token's readable text (`Ġcat` -> `␣cat`)."""
    v = list(cfg.model.vocab)
    if cfg.model.checkpoint_dir:
        v = [checkpoint.readable(t) for t in v]
    return {"vocab": v,
            "inputs": [[v[i] for i in row] for row in ids.tolist()],
            "targets": [[v[i] if i >= 0 else "<ignored>" for i in row] for row in targets.tolist()]}
