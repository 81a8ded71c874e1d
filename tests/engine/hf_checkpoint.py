"""Small Hugging Face checkpoints made on the spot, as `save_pretrained` leaves them: a random GPT2LMHeadModel
(safetensors) with a byte-level BPE tokenizer, or a random LlamaForCausalLM in bfloat16 with a SentencePiece-style
(Metaspace) BPE tokenizer, each trained on a few sentences. The hub is out of reach in the tests; the code path is
the one a real `gpt2` or Llama-architecture folder takes."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tokenizers.implementations import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

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


def make_llama_checkpoint(path: Path, tie: bool = False, dtype: torch.dtype = torch.bfloat16,
                          kv_heads: int = 2) -> Path:
    """config.json, model.safetensors (in `dtype`, bfloat16 by default, as most Llama-architecture models are
    published) and tokenizer.json in `path`: 16 wide, 4 query heads sharing `kv_heads` key/value heads, 2 blocks, a
    SwiGLU of 24, rotary base 500, RMSNorm ε 1e-5; untied unless `tie`.

    The tokenizer is Llama 2's kind: BPE over Metaspace pieces (`▁cat`), with `<unk>`, `<s>` and `</s>`, and a
    post-processor that puts `<s>` before every text, as Llama's tokenizers do (handstep adds BOS itself)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(vocab_size=200, min_frequency=1,
                                                           special_tokens=["<unk>", "<s>", "</s>"]))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tok.save(str(path / "tokenizer.json"))
    torch.manual_seed(0)
    conf = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=32,
                       rms_norm_eps=1e-5, rope_theta=500.0, tie_word_embeddings=tie, bos_token_id=bos,
                       eos_token_id=eos, pad_token_id=None)
    model = LlamaForCausalLM(conf)
    with torch.no_grad():  # 0.02 makes attention uniform and every norm weight 1; spread them out
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.to(dtype).save_pretrained(path, safe_serialization=True)
    return path
