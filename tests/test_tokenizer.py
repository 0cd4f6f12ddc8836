"""The char-level tokenizer of the embedded models."""

from __future__ import annotations

import string

from transformers import AutoTokenizer

from sppo_runner.tokenizer import build_char_tokenizer, save_char_tokenizer


def test_round_trip_all_printable():
    tok = build_char_tokenizer()
    for text in [string.printable, "Ann has 12 apples,\n\tbuys  5 bags of 3.\r\n", "  lead and trail  ",
                 "3*4=12. 7+12=19. \\boxed{19}", ""]:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        assert len(ids) == len(text)  # one token per character, no BOS/EOS added
        assert tok.decode(ids) == text
        assert tok.unk_token_id not in ids
    # Every printable character has its own id.
    ids = tok(string.printable)["input_ids"]
    assert len(set(ids)) == len(string.printable)


def test_special_tokens():
    tok = build_char_tokenizer()
    assert len(tok) == 3 + len(string.printable)
    assert len({tok.pad_token_id, tok.eos_token_id, tok.unk_token_id}) == 3
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.bos_token_id is None
    assert tok.padding_side == "left"
    assert tok("\u00e9")["input_ids"] == [tok.unk_token_id] * 2  # one per UTF-8 byte
    ids = tok("12")["input_ids"] + [tok.eos_token_id]
    assert tok.decode(ids, skip_special_tokens=True) == "12"


def test_left_padding():
    tok = build_char_tokenizer()
    enc = tok(["ab", "abcd"], padding=True)
    assert enc["input_ids"][0][:2] == [tok.pad_token_id] * 2
    assert enc["attention_mask"][0] == [0, 0, 1, 1]


def test_save_load_identical(tmp_path):
    tok = build_char_tokenizer()
    text = string.printable + " 3*4=12. \\boxed{12}"
    for i, save in enumerate((save_char_tokenizer, lambda t, p: t.save_pretrained(p))):
        path = tmp_path / str(i)
        save(tok, path)
        loaded = AutoTokenizer.from_pretrained(path)
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
        assert loaded.get_vocab() == tok.get_vocab()
        assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
        assert loaded.padding_side == "left"
        assert loaded.decode(loaded(text)["input_ids"]) == text


def test_same_ids_when_loaded_next_to_a_qwen2_config(tmp_path):
    # transformers 5 picks Qwen2Tokenizer for a folder whose config says model_type
    # qwen2 (the embedded models); the tokenizer's layout must give the same ids.
    from transformers import Qwen2Config

    Qwen2Config(vocab_size=103, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, intermediate_size=32).save_pretrained(tmp_path)
    tok = build_char_tokenizer()
    save_char_tokenizer(tok, tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in [string.printable, "Ann has 12 apples,\n\tbuys  5 bags of 3.\r\n  ", "3*4=12. \\boxed{12}"]:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
        assert loaded.decode(loaded(text)["input_ids"]) == text
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.bos_token_id) == (0, 1, None)
    assert loaded.padding_side == "left"
    batch = loaded(["ab", "abcd"], padding=True)["input_ids"]
    assert batch[0] == [0, 0] + tok("ab")["input_ids"]
