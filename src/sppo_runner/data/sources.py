"""File and hub data sources: rows -> :class:`Problem` records.

Three kinds of rows are read the same way, through dotted keys of ``DataConfig``:

* verl-style parquet (``../shared/data``): ``prompt`` is a list of chat messages
  (the user message's content is the question), ``reward_model.ground_truth`` the
  answer, ``data_source`` the set's name;
* local JSONL / parquet / CSV with any field names (``data.prompt_key=question``);
* Hugging Face hub datasets (``data.source=hub data.name=openai/gsm8k
  data.subset=main``), read with ``datasets.load_dataset``.

Answers pass through :func:`to_ground_truth`: GSM8K's ``"... #### 72"`` gives
``"72"`` and a MATH solution gives the argument of its last ``\\boxed{}``.

Evaluation files (benchmarks, ``data.heldout_path``) are read with the data keys when
their rows have them, else as verl-style rows (:func:`load_benchmark`).

Held-out set (:func:`load_heldout`): ``data.heldout_path`` (a file) or
``data.heldout_split`` (a hub split) when set; otherwise the ``data.heldout_size``
rows whose prompts have the smallest hashes, which :func:`load_problems` then
removes from training. Hashing the prompt text (not the row number) keeps the
split stable when a file is reordered, and duplicates land on the same side.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import numbers
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from sppo_runner.data.problem import Problem
from sppo_runner.data.prompts import EmptyDataError
from sppo_runner.errors import DataFileError, UserError
from sppo_runner.verifier.extract import extract_boxed, extract_gsm8k

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "../shared/data"
FILE_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


class BadRowError(UserError, ValueError):
    """A row lacks a usable prompt or answer; the message names the file and row."""


def _value(v: Any) -> str:
    return v.value if hasattr(v, "value") else str(v)


# ---- field access and conversion ------------------------------------------------------------
def get_key(row: Any, dotted: str) -> Any:
    """``row["a"]["b"]`` for ``"a.b"``; integer parts index lists. Raises KeyError when absent."""
    node = row
    for part in dotted.split("."):
        if isinstance(node, (list, tuple)) and part.lstrip("-").isdigit():
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(dotted)
    return node


def prompt_text(value: Any) -> str:
    """The question text of a prompt field: a string, or a chat-message list's last user message."""
    if hasattr(value, "tolist"):  # numpy arrays from pandas-written parquet
        value = value.tolist()
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return str(value["content"])
    if isinstance(value, (list, tuple)):
        users = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return str(users[-1].get("content") or "")
    raise ValueError(f"prompt is neither text nor a list of chat messages with a user turn: {str(value)[:80]!r}")


def gsm8k_answer(text: str) -> str | None:
    """The final answer of a GSM8K solution (after ``####``), thousands separators removed."""
    ans = extract_gsm8k(text)
    if ans is not None and _THOUSANDS.match(ans):
        ans = ans.replace(",", "")
    return ans


def boxed_answer(text: str) -> str | None:
    """The argument of the last ``\\boxed{}`` (or ``\\fbox{}``) in a MATH-style solution."""
    return extract_boxed(text)


def to_ground_truth(value: Any, fmt: str = "auto") -> str:
    """Turns an answer field into the string the verifier compares against.

    Args:
        value: The raw field (string or number).
        fmt: ``raw``, ``gsm8k``, ``boxed``, or ``auto`` (GSM8K marker or a box when present).

    Raises:
        ValueError: The field is empty, or the requested format is not found in it.
    """
    if value is None:
        raise ValueError("answer is missing")
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Number)):
        # str() of a dict or list would become a ground truth that no response can match sensibly.
        raise ValueError(f"answer is a {type(value).__name__} ({str(value)[:60]!r}), not text or a number")
    if isinstance(value, numbers.Real) and not math.isfinite(value):
        raise ValueError(f"answer is {value} (a missing value in the file?)")
    text = str(value).strip()
    if fmt == "auto":
        fmt = "gsm8k" if "####" in text else "boxed" if ("\\boxed" in text or "\\fbox" in text) else "raw"
    if fmt == "gsm8k":
        out = gsm8k_answer(text)
    elif fmt == "boxed":
        out = boxed_answer(text)
    else:
        out = text
    if not out:
        raise ValueError(f"no {fmt} answer in {text[:80]!r}")
    return out


# ---- reading rows ---------------------------------------------------------------------------
def data_root(cfg: Any) -> Path:
    """``data.data_dir`` (an unresolved interpolation falls back to SPPO_DATA_DIR or the default)."""
    root = getattr(cfg, "data_dir", "") or ""
    if not root or root.startswith("${"):
        root = os.environ.get("SPPO_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(os.path.expanduser(root))


def resolve_file(path: str, cfg: Any) -> Path:
    """``path`` as given when it exists, else under ``data.data_dir``.

    Raises:
        FileNotFoundError: Naming both places looked at.
    """
    p = Path(os.path.expanduser(path))
    if p.exists():
        return p
    q = data_root(cfg) / p
    if not p.is_absolute() and q.exists():
        return q
    raise FileNotFoundError(f"data file {path!r} not found (also looked in data.data_dir={data_root(cfg)})")


def _columns(cfg: Any) -> list[str]:
    keys = (cfg.prompt_key, cfg.answer_key, cfg.source_key)
    return sorted({k.split(".")[0] for k in keys} | {"extra_info"})


def _parquet(path: Path, read):
    """Runs ``read(pyarrow.parquet)``; a file that is not parquet becomes a DataFileError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return read(pq)
    except (pa.ArrowException, OSError) as err:
        size = path.stat().st_size if path.exists() else 0
        raise DataFileError(f"{path}: not a readable parquet file ({size} bytes; {err})") from err


def _jsonl_row(raw: bytes, line: int) -> dict:
    """One JSONL line as a row, or an error row that :func:`rows_to_problems` reports or skips."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return {"__error__": f"not valid UTF-8 (byte {err.start} of line {line + 1})", "__line__": line}
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        return {"__error__": f"invalid JSON ({err.msg})", "__line__": line}
    return row if isinstance(row, dict) else {"__error__": "not a JSON object", "__line__": line}


def _csv_rows(path: Path) -> Iterator[dict]:
    # Undecodable bytes are kept as surrogates so that the one bad row can be reported or skipped.
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        try:
            for row in reader:
                if any(_SURROGATE.search(v) for v in row.values() if isinstance(v, str)):
                    row = {"__error__": f"not valid UTF-8 (line {reader.line_num})"}
                yield row
        except csv.Error as err:
            raise DataFileError(f"{path}, line {reader.line_num}: not readable as CSV ({err})") from err


def iter_file_rows(path: Path, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of a .parquet / .jsonl / .json / .csv file as dicts (parquet reads only ``columns``).

    A line that is not UTF-8 or not a JSON object yields an error row (reported or skipped with
    its row number by :func:`rows_to_problems`).

    Raises:
        DataFileError: The file as a whole cannot be read (an empty or non-parquet ``.parquet``).
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        names = _parquet(path, lambda pq: pq.read_schema(path).names)
        cols = [c for c in columns if c in names] if columns else None
        yield from _parquet(path, lambda pq: pq.read_table(path, columns=cols).to_pylist())
    elif suffix in (".jsonl", ".json"):
        with path.open("rb") as f:
            for i, line in enumerate(f):
                if line.strip():
                    yield _jsonl_row(line, i)
    elif suffix == ".csv":
        yield from _csv_rows(path)
    else:
        raise DataFileError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def iter_hub_rows(name: str, subset: str | None, split: str) -> Iterator[dict]:
    """Rows of a Hugging Face hub dataset (downloaded or cached by ``datasets``)."""
    import datasets

    yield from datasets.load_dataset(name, subset, split=split)


def rows_to_problems(rows: Iterator[dict], cfg: Any, origin: str, max_rows: int = 0) -> list[Problem]:
    """Converts rows; a bad row raises :class:`BadRowError` or is skipped (``data.bad_rows=skip``).

    Args:
        rows: Row dicts.
        cfg: A DataConfig (keys, answer format, bad-row policy).
        origin: File path or hub id, for messages and uids.
        max_rows: Stop after this many rows (0 = all).
    """
    out: list[Problem] = []
    skipped = 0
    tag = Path(origin).stem if Path(origin).suffix else origin
    for i, row in enumerate(rows):
        if max_rows and i >= max_rows:
            break
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            prompt = prompt_text(get_key(row, cfg.prompt_key))
            if not prompt.strip():
                raise ValueError("prompt is empty")
            answer = to_ground_truth(get_key(row, cfg.answer_key), _value(cfg.answer_format))
        except (KeyError, ValueError, IndexError, TypeError) as err:
            what = f"missing key {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
            if _value(cfg.bad_rows) == "skip":
                skipped += 1
                continue
            raise BadRowError(f"{origin}, row {i}: {what} (skip bad rows with data.bad_rows=skip)") from err
        try:
            source = str(get_key(row, cfg.source_key))
        except (KeyError, IndexError):
            source = tag
        extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
        out.append(Problem(prompt, answer, source, f"{tag}#{i}", {**extra, "row": i}))
    if skipped:
        log.warning("%s: skipped %d bad rows (data.bad_rows=skip)", origin, skipped)
    return out


def read_problems(cfg: Any, *, path: str | None = None, split: str | None = None,
                  max_rows: int = 0) -> list[Problem]:
    """Problems of the file ``path`` or of the hub dataset ``cfg.name`` at ``split``."""
    if path is not None:
        f = resolve_file(path, cfg)
        return rows_to_problems(iter_file_rows(f, _columns(cfg)), cfg, str(f), max_rows)
    return rows_to_problems(iter_hub_rows(cfg.name, cfg.subset, split or cfg.split), cfg, cfg.name, max_rows)


# ---- train / held-out -----------------------------------------------------------------------
def prompt_hash(problem: Problem) -> str:
    """Stable across runs and row order (a content hash, unlike Python's ``hash``)."""
    return hashlib.sha256(" ".join(problem.prompt.split()).encode()).hexdigest()


def _has_own_heldout(cfg: Any) -> bool:
    return bool(cfg.heldout_path) or (_value(cfg.source) == "hub" and bool(cfg.heldout_split))


def _read_train(cfg: Any) -> list[Problem]:
    path = cfg.path if _value(cfg.source) == "file" else None
    return read_problems(cfg, path=path, max_rows=cfg.max_rows)


def _split_off(problems: list[Problem], size: int) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out): held-out = rows whose hash is among the ``size`` smallest distinct hashes."""
    pairs = [(prompt_hash(p), p) for p in problems]
    cut = sorted({h for h, _ in pairs})[:size]
    order = {h: i for i, h in enumerate(cut)}
    train = [p for h, p in pairs if h not in order]
    heldout = [p for h, p in sorted((hp for hp in pairs if hp[0] in order), key=lambda hp: order[hp[0]])]
    return train, heldout


def _checked_train(problems: list[Problem], cfg: Any) -> list[Problem]:
    if not problems:
        raise EmptyDataError(f"no training problems left from {cfg.path or cfg.name} (check data.max_rows/heldout_size)")
    log.info("training set: %d problems from %s", len(problems), cfg.path or cfg.name)
    return problems


def load_problems(cfg: Any) -> list[Problem]:
    """Training problems of a file or hub source (``cfg``: a DataConfig)."""
    problems = _read_train(cfg)
    if not _has_own_heldout(cfg) and cfg.heldout_size > 0:
        problems, _ = _split_off(problems, cfg.heldout_size)
    return _checked_train(problems, cfg)


def load_split(cfg: Any, n: int) -> tuple[list[Problem], list[Problem]]:
    """:func:`load_problems` and :func:`load_heldout` together, reading the training source once."""
    if _has_own_heldout(cfg) or cfg.heldout_size <= 0:
        return load_problems(cfg), load_heldout(cfg, n)
    train, heldout = _split_off(_read_train(cfg), cfg.heldout_size)
    return _checked_train(train, cfg), heldout[:n]


def load_heldout(cfg: Any, n: int) -> list[Problem]:
    """Up to ``n`` held-out problems, disjoint from :func:`load_problems` (see module docstring)."""
    if cfg.heldout_path:
        return load_benchmark(cfg.heldout_path, cfg, n)
    if _value(cfg.source) == "hub" and cfg.heldout_split:
        return read_problems(cfg, split=cfg.heldout_split, max_rows=n)
    if cfg.heldout_size <= 0:
        raise ValueError("no held-out set: set data.heldout_path, data.heldout_split (hub) or data.heldout_size > 0")
    _, heldout = _split_off(_read_train(cfg), cfg.heldout_size)
    return heldout[:n]


def _top_level_keys(path: Path) -> set[str]:
    if path.suffix.lower() == ".parquet":
        return set(_parquet(path, lambda pq: pq.read_schema(path).names))
    first = next(iter_file_rows(path), {})
    return set(first)


def load_benchmark(path: str, cfg: Any, max_problems: int = 0) -> list[Problem]:
    """An evaluation file (benchmark or ``data.heldout_path``).

    It is read with ``data.prompt_key`` / ``answer_key`` / ``answer_format`` when its rows
    have those fields, else as verl-style rows (prompt / reward_model.ground_truth, raw
    answers), so a hub-trained run can still validate on the shared verl benchmark files.
    """
    f = resolve_file(path, cfg)
    keys = _top_level_keys(f)
    if not {cfg.prompt_key.split(".")[0], cfg.answer_key.split(".")[0]} <= keys:
        cfg = replace(cfg, prompt_key="prompt", answer_key="reward_model.ground_truth", source_key="data_source",
                      answer_format="raw")
    return rows_to_problems(iter_file_rows(f, _columns(cfg)), cfg, str(f), max_problems)
