"""Tiny in-process tokenizer and random causal LMs for tests and benchmarks.

Nothing here downloads anything: the tokenizer is a character-level vocabulary
(``string.printable`` plus three special tokens, 103 ids) and the models are
randomly initialized from a config.
"""

from __future__ import annotations

import string

import torch

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def tiny_tokenizer():
    """A 103-token character-level fast tokenizer (pad=0, eos=1, unk=2).

    Returns:
        A ``PreTrainedTokenizerFast`` whose ids 3..102 are ``string.printable``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # One token per character, whitespace included, so any text round-trips.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK
    )


def tiny_causal_lm(
    family: str = "qwen2",
    vocab_size: int = 103,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 512,
    seed: int = 0,
    eos_token_id: int = 1,
    pad_token_id: int = 0,
    init_std: float = 0.02,
) -> torch.nn.Module:
    """A randomly initialized float32 causal LM in eval mode.

    Args:
        family: ``"qwen2"``, ``"llama"`` or ``"mistral"``.
        vocab_size: Vocabulary size (103 matches :func:`tiny_tokenizer`).
        hidden: Hidden size.
        layers: Number of decoder layers.
        heads: Attention heads.
        kv_heads: Key/value heads (grouped-query attention when < heads).
        intermediate: MLP width.
        seed: Seed of the weight initialization (global RNG state is restored).
        eos_token_id: EOS id written into the config.
        pad_token_id: Pad id written into the config.
        init_std: Weight init std; larger values give peakier next-token
            distributions (fewer near-ties between the top logits).

    Returns:
        The model, float32, eval mode, on CPU.
    """
    import transformers as tf

    classes = {
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
    }
    config_cls, model_cls = classes[family]
    config = config_cls(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        max_position_embeddings=4096,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        initializer_range=init_std,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.float().eval()


def with_eos_bias(model: torch.nn.Module, eos_id: int, bias: float) -> torch.nn.Module:
    """Gives the LM head a bias on EOS so some sampled responses end early (tests, benches)."""
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[eos_id] = bias
    model.lm_head = head
    return model
