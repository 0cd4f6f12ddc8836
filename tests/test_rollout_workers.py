"""CPU rollout worker processes: shared weights, failures, and use from plain scripts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import assert_greedy_agrees
from sppo_runner.rollout import SamplingParams
from sppo_runner.rollout.native import NativeEngine
from sppo_runner.rollout.tiny import tiny_causal_lm, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
GREEDY = SamplingParams(n=2, max_new_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def prompts(tok):
    return [tok(f"{i}*{i + 3}=")["input_ids"] for i in range(12)]


@pytest.fixture
def engine(tok):
    engine = NativeEngine(tok, workers=2, parallel="processes")
    yield engine
    engine.close()


def greedy_batch(engine, model, prompts):
    return engine.generate(model, prompts, GREEDY, torch.Generator().manual_seed(0))


def greedy(engine, model, prompts):
    return greedy_batch(engine, model, prompts).response_ids


def test_workers_follow_in_place_updates_and_replaced_weights(tok, prompts, engine):
    model = tiny_causal_lm("qwen2", seed=3, init_std=0.1)
    reference = NativeEngine(tok, workers=1)

    def agrees():  # one chunk vs two: other matmul shapes, so compared up to near-ties
        return assert_greedy_agrees(model, greedy_batch(engine, model, prompts), greedy_batch(reference, model, prompts))

    agrees()
    with torch.no_grad():  # what an optimizer step does: same storage, new values
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    expected = greedy(reference, model, prompts)
    agrees()
    other = tiny_causal_lm("qwen2", seed=4, init_std=0.1)
    with torch.no_grad():  # new storage: the pool must send the weights again
        for p, q in zip(model.parameters(), other.parameters()):
            p.data = q.detach().clone()
    agrees()
    assert not torch.equal(greedy(engine, model, prompts), expected)


def test_failed_worker_falls_back_to_threads_and_the_pool_recovers(tok, prompts, engine, caplog):
    model = tiny_causal_lm("qwen2", seed=3)
    bad = [*prompts, [model.config.vocab_size + 5] * 3]  # an id past the embedding
    with pytest.raises(IndexError):  # rerun in this process: the genuine error, its own traceback
        greedy(engine, model, bad)
    assert "IndexError" in caplog.text and "runs its chunks in threads" in caplog.text
    assert greedy(engine, model, prompts).shape[0] == 2 * len(prompts)
    assert engine._pool._procs, "the pool restarted"


def test_killed_worker_loses_nothing(tok, prompts, engine, caplog):
    model = tiny_causal_lm("qwen2", seed=3)
    first = greedy(engine, model, prompts)
    os.kill(engine._pool._procs[0].proc.pid, signal.SIGKILL)
    assert torch.equal(greedy(engine, model, prompts), first)  # rerun in threads
    assert "exited with code" in caplog.text or "failed" in caplog.text
    assert torch.equal(greedy(engine, model, prompts), first)  # fresh workers


def test_script_without_main_guard(tmp_path):
    """Workers are fresh interpreters: the caller's ``__main__`` is never re-imported."""
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent("""
        import torch
        from sppo_runner.rollout import SamplingParams
        from sppo_runner.rollout.native import NativeEngine
        from sppo_runner.rollout.tiny import tiny_causal_lm, tiny_tokenizer
        tok = tiny_tokenizer()
        engine = NativeEngine(tok, workers=2)
        prompts = [tok(f"{i}+1=")["input_ids"] for i in range(20)]
        out = engine.generate(tiny_causal_lm("qwen2"), prompts, SamplingParams(max_new_tokens=4),
                              torch.Generator().manual_seed(0))
        print("rows", out.size)
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "rows 20" in done.stdout


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_workers_keep_freed_memory_mapped_and_use_one_thread(tok, prompts, engine):
    # Worker start-up settings the benchmark depends on (README: 4-8% at batch 256).
    greedy(engine, tiny_causal_lm("qwen2", seed=3), prompts)
    for worker in engine._pool._procs:
        raw = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        assert env["MALLOC_TRIM_THRESHOLD_"] == "4294967296"
        assert env["MALLOC_MMAP_THRESHOLD_"] == "1073741824"
        assert env["OMP_NUM_THREADS"] == "1"
