"""File / hub data sources on literal rows and temporary files (nothing is downloaded)."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace

import pytest

from sppo_runner.config import DataConfig
from sppo_runner.data import load_eval_problems, load_train_problems
from sppo_runner.data.prompts import render, with_suffix
from sppo_runner.data.sources import (
    BadRowError,
    boxed_answer,
    get_key,
    gsm8k_answer,
    load_benchmark,
    prompt_text,
    resolve_file,
    to_ground_truth,
)

SUFFIX = "Please output the final answer within \\boxed{}."


def verl_row(i: int, answer: str = "7") -> dict:
    return {"data_source": "toy", "prompt": [{"role": "system", "content": "be brief"},
                                             {"role": "user", "content": f"What is {i}+{i}? {SUFFIX}"}],
            "reward_model": {"ground_truth": answer, "style": "rule"}, "extra_info": {"index": i}}


def file_cfg(path, **kw) -> DataConfig:
    return DataConfig(source="file", path=str(path), data_dir=str(path.parent), **kw)


def test_gsm8k_answer_conversion():
    sol = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72.\n#### 72"
    assert gsm8k_answer(sol) == "72"
    assert gsm8k_answer("so the total is\n#### 1,234") == "1234"
    assert gsm8k_answer("#### -3.5") == "-3.5"
    assert gsm8k_answer("no marker here") is None


def test_boxed_answer_conversion():
    sol = "We get $x=\\frac{1}{2}$, hence $\\boxed{\\frac{1}{2}}$. Also \\boxed{wrong} earlier? No:"
    assert boxed_answer(sol) == "wrong"  # the *last* box is the final answer
    assert boxed_answer("Thus $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert boxed_answer("The answer is \\boxed{\\{1, 2\\}}") == "\\{1, 2\\}"
    assert boxed_answer("no box") is None


def test_to_ground_truth_formats():
    assert to_ground_truth("step\n#### 18") == "18"  # auto -> gsm8k
    assert to_ground_truth("so $\\boxed{4.5e33}$") == "4.5e33"  # auto -> boxed
    assert to_ground_truth(" p - q ") == "p - q"  # auto -> raw
    assert to_ground_truth(113) == "113"
    assert to_ground_truth("#### 5", "raw") == "#### 5"
    with pytest.raises(ValueError, match="no boxed answer"):
        to_ground_truth("42", "boxed")
    with pytest.raises(ValueError, match="missing"):
        to_ground_truth(None)


def test_get_key_and_prompt_text():
    row = verl_row(3)
    assert get_key(row, "reward_model.ground_truth") == "7"
    assert get_key(row, "prompt.0.role") == "system"
    with pytest.raises(KeyError):
        get_key(row, "reward_model.missing")
    assert prompt_text(row["prompt"]).startswith("What is 3+3?")  # the user turn, not the system turn
    assert prompt_text("plain") == "plain"
    assert prompt_text({"role": "user", "content": "c"}) == "c"
    with pytest.raises(ValueError):
        prompt_text([{"role": "assistant", "content": "x"}])


def test_suffix_not_doubled(tiny_tok):
    assert with_suffix(f"Q? {SUFFIX}", SUFFIX) == f"Q? {SUFFIX}"
    assert with_suffix(f"Q? {SUFFIX}\n", SUFFIX) == f"Q? {SUFFIX}\n"
    assert with_suffix("Q?", SUFFIX) == f"Q? {SUFFIX}"
    assert with_suffix("Q?\n", " " + SUFFIX) == "Q?\n " + SUFFIX
    assert with_suffix("Q?", "") == "Q?"
    from sppo_runner.data.problem import Problem

    # The char tokenizer has no chat template: the text is fed as is.
    assert render(Problem("Q?", "1", "s", "u"), tiny_tok, True, SUFFIX) == f"Q? {SUFFIX}"


@pytest.fixture(scope="module")
def tiny_tok():
    from sppo_runner.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


def test_parquet_verl_rows_and_heldout_split(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist([verl_row(i, str(2 * i)) for i in range(40)]), path)
    cfg = file_cfg(path, heldout_size=5)
    train, held = load_train_problems(cfg), load_eval_problems(cfg, 3)
    assert len(train) == 35 and len(held) == 3
    assert not {p.prompt for p in held} & {p.prompt for p in train}
    assert held == load_eval_problems(cfg, 3)  # deterministic
    p = train[0]
    assert p.prompt.endswith(SUFFIX) and p.answer == str(2 * p.extra["index"]) and p.source == "toy"
    # Row order does not move a problem across the split.
    pq.write_table(pa.Table.from_pylist([verl_row(i, str(2 * i)) for i in reversed(range(40))]), path)
    assert [q.prompt for q in load_eval_problems(cfg, 3)] == [q.prompt for q in held]
    assert len(load_train_problems(replace(cfg, max_rows=10, heldout_size=0))) == 10


def test_jsonl_csv_field_mapping(tmp_path):
    rows = [{"q": {"text": f"Add {i} and 1."}, "sol": f"It is {i + 1}.\n#### {i + 1}"} for i in range(6)]
    jl = tmp_path / "d.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = file_cfg(jl, prompt_key="q.text", answer_key="sol", heldout_size=2)
    train = load_train_problems(cfg)
    assert len(train) == 4 and all(p.answer == str(int(p.prompt.split()[1]) + 1) for p in train)
    assert train[0].source == "d"  # no data_source field: the file name
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("question,answer\nWhat is 2*3?,6\nWhat is 5-1?,4\n")
    csv_cfg = file_cfg(csv_path, prompt_key="question", answer_key="answer", heldout_size=0)
    assert [p.answer for p in load_train_problems(csv_cfg)] == ["6", "4"]


def test_bad_row_names_file_and_row_or_is_skipped(tmp_path):
    jl = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "ok?", "reward_model": {"ground_truth": "1"}})
    jl.write_text(good + "\n" + json.dumps({"prompt": "no answer"}) + "\n{not json\n" + good + "\n")
    cfg = file_cfg(jl, heldout_size=0)
    with pytest.raises(BadRowError, match=r"bad\.jsonl, row 1: missing key 'reward_model.ground_truth'"):
        load_train_problems(cfg)
    assert len(load_train_problems(replace(cfg, bad_rows="skip"))) == 2


def test_heldout_path_and_data_dir(tmp_path, monkeypatch):
    (tmp_path / "h.jsonl").write_text(json.dumps(verl_row(99)) + "\n")
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(verl_row(i)) + "\n" for i in range(4)))
    monkeypatch.chdir(tmp_path.parent)
    cfg = DataConfig(source="file", path="t.jsonl", heldout_path="h.jsonl", data_dir=str(tmp_path))
    assert len(load_train_problems(cfg)) == 4  # an explicit held-out file keeps every training row
    assert [p.extra["index"] for p in load_eval_problems(cfg, 10)] == [99]
    with pytest.raises(FileNotFoundError, match="data.data_dir"):
        resolve_file("nope.parquet", cfg)


def test_eval_files_read_with_data_keys_else_as_verl_rows(tmp_path):
    (tmp_path / "b.jsonl").write_text(json.dumps(verl_row(1, "\\frac{1}{2}")) + "\n")
    (tmp_path / "g.jsonl").write_text(json.dumps({"question": "Q?", "answer": "w\n#### 12"}) + "\n")
    cfg = DataConfig(source="hub", name="x", prompt_key="question", answer_key="answer", answer_format="gsm8k",
                     data_dir=str(tmp_path))
    (p,) = load_benchmark("b.jsonl", cfg)
    assert p.answer == "\\frac{1}{2}" and p.prompt.startswith("What is 1+1?")
    (g,) = load_benchmark("g.jsonl", cfg)
    assert (g.prompt, g.answer) == ("Q?", "12")
    # A hub-trained run (e.g. DeepScaleR's problem/answer) validates on a verl file.
    assert load_eval_problems(replace(cfg, heldout_path="b.jsonl"), 5) == [p]


def test_hub_source_uses_datasets_without_download(monkeypatch):
    calls = []

    def fake_load_dataset(name, subset, split):
        calls.append((name, subset, split))
        n = 5 if split == "train" else 2
        return [{"question": f"{split} q{i}?", "answer": f"work\n#### {i + 1},000"} for i in range(n)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    cfg = DataConfig(source="hub", name="openai/gsm8k", subset="main", heldout_split="test",
                     prompt_key="question", answer_key="answer", answer_format="gsm8k")
    train, held = load_train_problems(cfg), load_eval_problems(cfg, 10)
    assert calls == [("openai/gsm8k", "main", "train"), ("openai/gsm8k", "main", "test")]
    assert len(train) == 5 and [p.answer for p in held] == ["1000", "2000"]
    assert train[0].source == "openai/gsm8k"


# ---- bad data that got through or failed without a location (issue #12, item 5) -------------
def _good(i: int) -> bytes:
    return json.dumps({"prompt": f"q{i}?", "answer": str(i)}).encode() + b"\n"


def test_non_utf8_bytes_name_the_file_and_row_and_can_be_skipped(tmp_path):
    jl = tmp_path / "latin1.jsonl"
    jl.write_bytes(_good(0) + '{"prompt": "caf\u00e9?", "answer": "1"}\n'.encode("latin-1") + _good(2))
    cfg = file_cfg(jl, answer_key="answer", heldout_size=0)
    with pytest.raises(BadRowError, match=r"latin1\.jsonl, row 1: not valid UTF-8 \(byte 15 of line 2\)"):
        load_train_problems(cfg)
    assert [p.answer for p in load_train_problems(replace(cfg, bad_rows="skip"))] == ["0", "2"]
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"prompt,answer\nq0?,0\n" + "caf\u00e9?,1\n".encode("latin-1") + b"q2?,2\n")
    csv_cfg = file_cfg(csv_path, answer_key="answer", heldout_size=0)
    with pytest.raises(BadRowError, match=r"latin1\.csv, row 1: not valid UTF-8"):
        load_train_problems(csv_cfg)
    assert [p.answer for p in load_train_problems(replace(csv_cfg, bad_rows="skip"))] == ["0", "2"]


@pytest.mark.parametrize("content", [b"", b"prompt,answer\nq?,1\n"], ids=["empty", "text"])
def test_a_parquet_file_that_is_not_parquet_is_named(tmp_path, content):
    from sppo_runner.errors import DataFileError

    path = tmp_path / "train.parquet"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=rf"{path}: not a readable parquet file \({len(content)} bytes"):
        load_train_problems(file_cfg(path))
    with pytest.raises(DataFileError, match=str(path)):
        load_benchmark(str(path), file_cfg(path))


def test_nan_and_structured_answers_are_bad_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jl = tmp_path / "odd.jsonl"
    jl.write_bytes(_good(0) + b'{"prompt": "q1?", "answer": NaN}\n' + b'{"prompt": "q2?", "answer": {"v": 2}}\n'
                   + b'{"prompt": "q3?", "answer": true}\n' + b"[1, 2]\n" + _good(5))
    cfg = file_cfg(jl, answer_key="answer", heldout_size=0)
    with pytest.raises(BadRowError, match=r"odd\.jsonl, row 1: answer is nan"):
        load_train_problems(cfg)
    assert [p.answer for p in load_train_problems(replace(cfg, bad_rows="skip"))] == ["0", "5"]
    for value, message in ((float("nan"), "answer is nan"), ({"v": 2}, "answer is a dict"), (True, "answer is a bool")):
        with pytest.raises(ValueError, match=message):
            to_ground_truth(value)
    # A pandas-style parquet with a missing float answer: the row is named, not graded as "nan".
    path = tmp_path / "num.parquet"
    pq.write_table(pa.table({"prompt": ["a?", "b?"], "answer": [1.5, float("nan")]}), path)
    with pytest.raises(BadRowError, match=r"num\.parquet, row 1: answer is nan"):
        load_train_problems(file_cfg(path, answer_key="answer", heldout_size=0))
