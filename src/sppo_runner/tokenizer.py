"""The character-level tokenizer of the embedded starter policy and critic.

One token per character of :data:`string.printable` (digits, letters,
punctuation and whitespace, newlines included) plus three special tokens:
``<pad>`` (id 0), ``<eos>`` (id 1) and ``<unk>`` (id 2).  There is no BOS
token and no chat template: a prompt string is fed to the model as is.

It is a byte-level BPE with *no merges* whose vocabulary holds only the
printable-ASCII bytes, so every character is its own token and
``decode(encode(s)) == s`` for any printable-ASCII string.  The pipeline
(NFC normalizer, the Qwen2 split regex + byte-level pre-tokenizer, byte-level
decoder) is exactly the one ``Qwen2Tokenizer`` builds: transformers 5 loads a
folder whose ``config.json`` says ``model_type: qwen2`` with ``Qwen2Tokenizer``
whatever ``tokenizer_config.json`` declares, and with this layout it yields the
same ids as :func:`build_char_tokenizer`.  (Only for characters outside
printable ASCII do the two differ: this tokenizer maps each of their UTF-8
bytes to ``<unk>``, ``Qwen2Tokenizer`` drops them.)
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

__all__ = [
    "PAD",
    "EOS",
    "UNK",
    "SPECIAL_TOKENS",
    "CHARSET",
    "build_char_tokenizer",
    "save_char_tokenizer",
]

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)
#: Every character the tokenizer knows, in id order after the special tokens.
CHARSET = string.printable

# The split regex of Qwen2Tokenizer (GPT-style words / single digits / punctuation /
# whitespace runs); with no merges it only decides pre-token boundaries.
_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _byte_symbol(b: int) -> str:
    """The printable stand-in a byte-level pre-tokenizer uses for byte ``b``.

    Bytes that are visible Latin-1 characters stand for themselves; the others
    (controls, space, 0x7f-0xa0, 0xad) are numbered in order from U+0100.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    if b in visible:
        return chr(b)
    others = [x for x in range(256) if x not in visible]
    return chr(256 + others.index(b))


def build_char_tokenizer(model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """Returns the char-level tokenizer (``padding_side="left"``, pad != eos, no BOS).

    Args:
        model_max_length: Recorded as the tokenizer's maximum sequence length.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARSET:
        vocab.setdefault(_byte_symbol(ord(ch)), len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, fuse_unk=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        truncation_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )
    # The specials are in the base vocab already; registering them keeps their ids.
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1 and tok.unk_token_id == 2
    return tok


def save_char_tokenizer(tok: PreTrainedTokenizerFast, path: str | Path) -> None:
    """``save_pretrained`` that stays loadable by ``AutoTokenizer`` on transformers 4.x.

    transformers 5 records ``"tokenizer_class": "TokenizersBackend"``, a name
    4.x does not know; ``PreTrainedTokenizerFast`` loads the same
    ``tokenizer.json`` identically on both.
    """
    path = Path(path)
    tok.save_pretrained(path)
    cfg_file = path / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
