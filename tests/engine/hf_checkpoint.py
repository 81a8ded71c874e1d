"""A small Hugging Face GPT-2 checkpoint made on the spot, as `save_pretrained` leaves one: a random
GPT2LMHeadModel (safetensors) and a byte-level BPE tokenizer trained on a few sentences. The hub is out of reach
in the tests; the code path is the one the real `gpt2` folder takes."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers.implementations import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel

SENTENCES = ["the cat sat on the mat", "the dog ran after the cat", "a bird sang in the old tree",
             "the mat was red and the cat was grey", "dogs and cats and birds"]


def make_checkpoint(path: Path, tie: bool = True, dtype: torch.dtype | None = None) -> Path:
    """config.json, model.safetensors and tokenizer.json in `path` (12 wide, 3 heads, 2 blocks, 16 positions).

    `tie=False`: an untied output layer (GPT2Config(tie_word_embeddings=False)), saved as `lm_head.weight`;
    `dtype`: the weights saved in that dtype (torch.bfloat16, torch.float16), as a model cast before
    `save_pretrained` leaves them; float32 otherwise."""
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(SENTENCES, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok.save(str(path / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    conf = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=16, n_embd=12, n_layer=2, n_head=3,
                      activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=eot, eos_token_id=eot, tie_word_embeddings=tie)
    model = GPT2LMHeadModel(conf)
    with torch.no_grad():  # GPT-2's 0.02 makes attention uniform; a wider spread exercises every op
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model = model.to(dtype or torch.float32)  # float32 as published, whatever the tests' default dtype is
    model.save_pretrained(path, safe_serialization=True)
    return path
