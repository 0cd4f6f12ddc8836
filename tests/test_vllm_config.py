"""``rollout.backend=vllm`` configuration, start-up refusals and old-log-prob recomputation.

Nothing here needs vLLM: these run in the main venv and in .venv-vllm (``make test-vllm``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO, make_config, small_run_overrides
from sppo_runner.config import ConfigError
from sppo_runner.rollout import recompute_old_logprobs, sync_weights
from sppo_runner.rollout import vllm_engine
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.rollout.vllm_engine import config_problems, live_weights, request_kwargs
from sppo_runner.rollout.vllm_setup import llm_kwargs


@pytest.fixture
def no_vllm(monkeypatch):
    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)


@pytest.fixture
def with_vllm(monkeypatch):
    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: True)


def test_missing_vllm_fails_at_start_with_the_install_command(no_vllm):
    with pytest.raises(ConfigError, match=r"rollout.backend.*pip install 'sppo-runner\[vllm\]'.*make vllm-venv"):
        make_config("sppo", ["rollout.backend=vllm"])


@pytest.mark.skipif(vllm_engine.vllm_available(), reason="vLLM is installed in this venv (.venv-vllm)")
def test_cli_without_vllm_prints_the_install_command():
    out = subprocess.run([sys.executable, "-c", "from sppo_runner.cli import train_main; train_main()",
                          "rollout.backend=vllm", "hydra.run.dir=/tmp/sppo-vllm-cli-test"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "pip install 'sppo-runner[vllm]'" in out.stderr and "make vllm-venv" in out.stderr


def test_sleep_mode_refused_on_cpu(with_vllm):
    with pytest.raises(ConfigError, match=r"rollout.vllm.sleep_level.*needs a CUDA GPU"):
        make_config("sppo", ["rollout.backend=vllm", "rollout.vllm.sleep_level=1", "trainer.device=cpu"])
    cfg = make_config("sppo", ["rollout.backend=vllm", "trainer.device=cpu"])
    assert config_problems(cfg, cuda=True) == []
    cfg.rollout.vllm.sleep_level = 2
    assert config_problems(cfg, cuda=True) == []  # GPUs may sleep
    assert [k for k, _ in config_problems(cfg, cuda=False)] == ["rollout.vllm.sleep_level"]


def test_bad_vllm_values_name_the_key(with_vllm):
    cfg = make_config("sppo", ["rollout.backend=vllm", "trainer.device=cpu"])
    cfg.rollout.vllm.tensor_parallel_size = 2
    cfg.rollout.vllm.gpu_memory_utilization = 1.5
    cfg.rollout.vllm.dtype = "int8"
    keys = [k for k, _ in config_problems(cfg, world_size=3, cuda=True)]
    assert keys == ["rollout.vllm.gpu_memory_utilization", "rollout.vllm.tensor_parallel_size", "rollout.vllm.dtype"]
    assert "rollout.vllm.tensor_parallel_size" not in [k for k, _ in config_problems(cfg, world_size=4, cuda=True)]
    with pytest.raises(Exception, match="recompute_old_logprobs"):
        make_config("sppo", ["algorithm.recompute_old_logprobs=sometimes"])


@pytest.mark.parametrize("mode,backend,float32,expect", [
    ("auto", "native", True, False), ("auto", "hf", True, False), ("auto", "vllm", True, True),
    ("auto", "native", False, True),  # bf16: the engine's bf16 kernels are not the learner's
    ("on", "native", True, True), ("off", "vllm", False, False),
])
def test_recompute_modes(mode, backend, float32, expect):
    assert recompute_old_logprobs(mode, backend, float32) is expect


def test_sampling_params_mapping():
    sampled = request_kwargs(SamplingParams(temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=9), [1, 5], 42)
    assert sampled == dict(n=1, max_tokens=9, logprobs=0, seed=42, stop_token_ids=[1, 5], detokenize=False,
                           skip_special_tokens=False, temperature=0.7, top_p=0.9, top_k=20)
    greedy = request_kwargs(SamplingParams(temperature=0.0, top_k=0, max_new_tokens=4, ignore_eos=True), [1], None)
    assert greedy["temperature"] == 0.0 and "top_p" not in greedy
    assert greedy["ignore_eos"] and greedy["min_tokens"] == 4  # EOS masked out, like the other backends


def test_engine_arguments(monkeypatch):
    from sppo_runner.rollout.tiny import tiny_causal_lm

    model = tiny_causal_lm("qwen2", seed=0)
    common = dict(sleep=False, tensor_parallel_size=1, gpu_memory_utilization=0.5, kv_cache_gib=0.0,
                  enforce_eager=None, enable_prefix_caching=True, max_model_len=0, max_num_seqs=0)
    kw = llm_kwargs(model, "/x", torch.device("cpu"), torch.float32, **common)
    assert kw["enforce_eager"] and kw["enable_chunked_prefill"] is False
    assert kw["kv_cache_memory_bytes"] == 2**30 and kw["distributed_executor_backend"] == "uni"
    assert kw["load_format"] == "dummy" and kw["skip_tokenizer_init"] and kw["dtype"] == "float32"
    assert kw["max_model_len"] == model.config.max_position_embeddings
    monkeypatch.setenv("WORLD_SIZE", "4")
    gpu = llm_kwargs(model, "/x", torch.device("cuda", 0), torch.bfloat16, **{**common, "sleep": True})
    assert gpu["distributed_executor_backend"] == "external_launcher" and gpu["enable_sleep_mode"]
    assert not gpu["enforce_eager"] and "kv_cache_memory_bytes" not in gpu and gpu["dtype"] == "bfloat16"


def test_live_weights_skip_tied_copies():
    from sppo_runner.rollout.tiny import tiny_causal_lm

    model = tiny_causal_lm("qwen2", seed=0)
    model.lm_head.weight = model.model.embed_tokens.weight  # tie them
    names = [n for n, _ in live_weights(model)]
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    assert names == [n for n in model.state_dict() if n != "lm_head.weight"]
    assert all(isinstance(t, torch.Tensor) and not t.requires_grad for _, t in live_weights(model))


@pytest.mark.parametrize("mode,present", [("on", True), ("off", False)])
def test_learner_recomputes_old_logprobs(tiny_models, tmp_path, mode, present):
    """The hf backend equals the learner to 1e-4, so the logged mismatch is tiny when recomputed."""
    from sppo_runner.run import train_step
    from sppo_runner.session import build_session

    cfg = make_config("grpo", small_run_overrides(tiny_models) + ["algorithm.samples_per_prompt=2",
                                                                   f"algorithm.recompute_old_logprobs={mode}"])
    s = build_session(cfg, tmp_path)
    try:
        assert s.learner.recompute_old is present
        assert sync_weights(s.engine, s.policy) == {}  # hf reads the live weights
        metrics = train_step(s)
    finally:
        s.close()
    assert ("rollout/logprob_abs_diff_mean" in metrics) is present
    if present:
        assert 0 <= metrics["rollout/logprob_abs_diff_mean"] <= metrics["rollout/logprob_abs_diff_max"] < 1e-4
    assert "perf/weight_sync_seconds" not in metrics
