"""Incremental forward passes with a KV cache, for the native sampler.

Two implementations of one small interface (``prefill``, ``step``, ``keep``):

* :class:`FusedDecoder` re-implements the Llama-family decoder (Llama, Qwen2,
  Mistral) on the model's own weights, with a preallocated cache and fused
  q/k/v and gate/up projections. It skips the per-call work transformers does
  for generality (mask building, cache objects, kwargs plumbing) and the
  per-step cache concatenation, which dominate the cost of small models.
* :class:`~sppo_runner.rollout.hf_decoder.HFDecoder` calls the model's own
  forward with a transformers cache; it serves every other architecture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FUSED_FAMILIES = ("llama", "qwen2", "mistral")
_STATIC_ROPE = ("default", "linear", "llama3", "yarn")


def _rope_type(config) -> str:
    params = (
        getattr(config, "rope_parameters", None)
        or getattr(config, "rope_scaling", None)
        or {}
    )
    return params.get("rope_type", params.get("type", "default")) or "default"


def fused_unsupported(model: torch.nn.Module, total_len: int) -> str | None:
    """Why :class:`FusedDecoder` cannot run ``model`` (None when it can).

    Args:
        model: A transformers causal LM.
        total_len: Prompt plus response length the cache must hold.
    """
    cfg = model.config
    if getattr(cfg, "model_type", None) not in FUSED_FAMILIES:
        return f"model_type {getattr(cfg, 'model_type', None)!r} is not one of {FUSED_FAMILIES}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r}"
    if _rope_type(cfg) not in _STATIC_ROPE:
        return f"rope type {_rope_type(cfg)!r} depends on the sequence length"
    layer_types = getattr(cfg, "layer_types", None) or []
    window = getattr(cfg, "sliding_window", None)
    windowed = (
        cfg.model_type == "mistral"
        or getattr(cfg, "use_sliding_window", False)
        or any(t != "full_attention" for t in layer_types)
    )
    if windowed and window is not None and total_len > window:
        return f"sequence of {total_len} tokens exceeds the sliding window {window}"
    attn = model.model.layers[0].self_attn
    if any(hasattr(attn, name) for name in ("q_norm", "k_norm")):
        return "per-head q/k norms"
    return None


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if x.dtype == torch.float32:
        # One fused call, bit-identical to transformers' RMSNorm in float32.
        return F.rms_norm(x, weight.shape, weight, eps)
    # Low precision: transformers' exact op order and roundings, so that sampled
    # log-probs stay as close as possible to the learner's recomputation.
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _linear_add(
    x: torch.Tensor, a: torch.Tensor, w_t: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x + a @ w_t (+ bias)``; in float32 the residual add rides on the matmul."""
    if bias is None and x.dtype == torch.float32:
        return torch.addmm(x, a, w_t)
    return x + F.linear(a, w_t.t(), bias)


class _Layer:
    """Fused weights of one decoder layer (q/k/v and gate/up concatenated)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        parts = [attn.q_proj, attn.k_proj, attn.v_proj]
        self.wqkv = torch.cat([p.weight for p in parts])
        self.bqkv = (
            torch.cat([p.bias for p in parts]) if attn.q_proj.bias is not None else None
        )
        self.wo_t, self.bo = attn.o_proj.weight.t(), attn.o_proj.bias
        self.wgu = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
        gb = mlp.gate_proj.bias
        self.bgu = torch.cat([gb, mlp.up_proj.bias]) if gb is not None else None
        self.wd_t, self.bd = mlp.down_proj.weight.t(), mlp.down_proj.bias
        self.ln1, self.eps1 = (
            layer.input_layernorm.weight,
            layer.input_layernorm.variance_epsilon,
        )
        self.ln2, self.eps2 = (
            layer.post_attention_layernorm.weight,
            layer.post_attention_layernorm.variance_epsilon,
        )


class FusedWeights:
    """The fused weights of a whole model, shared read-only by concurrent decoders.

    Args:
        model: A transformers LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        cfg, base = model.config, model.model
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        attn = base.layers[0].self_attn
        self.head_dim, self.scale = attn.head_dim, attn.scaling
        self.layers = [_Layer(layer) for layer in base.layers]
        self.embed = base.embed_tokens.weight
        self.norm, self.norm_eps = base.norm.weight, base.norm.variance_epsilon
        self.head_w, self.head_b = (
            model.lm_head.weight,
            getattr(model.lm_head, "bias", None),
        )
        self.rotary = base.rotary_emb


class FusedDecoder:
    """Llama-family forward with a preallocated KV cache (build inside inference mode).

    Rows are left-padded: the prompt fills cache columns ``0..P-1`` and the t-th
    generated token column ``P+t`` in every row, so one column index serves the
    whole batch; an additive mask hides the padding and positions count from
    each row's first real token, as in the learner.

    Prefill runs the row-wise layers (norms, projections, MLP) on the real
    prompt tokens only, packed; just attention sees the padded layout.

    Decode attends over the whole allocated cache (unwritten columns are zero
    and masked), so the per-step work is a few fixed-shape kernels with no
    slicing; the cache grows by ``block`` columns at a time, so the masked
    waste stays small and the growth copies are rare.

    Args:
        model: A supported transformers model, or its :class:`FusedWeights`.
        block: Cache growth step in columns.
    """

    def __init__(self, model: torch.nn.Module | FusedWeights, block: int = 32) -> None:
        w = model if isinstance(model, FusedWeights) else FusedWeights(model)
        self.heads, self.kv_heads, self.head_dim, self.scale = (
            w.heads,
            w.kv_heads,
            w.head_dim,
            w.scale,
        )
        self.layers, self.embed, self.rotary = w.layers, w.embed, w.rotary
        self.norm, self.norm_eps, self.head_w, self.head_b = (
            w.norm,
            w.norm_eps,
            w.head_w,
            w.head_b,
        )
        self.block = block
        self.dtype, self.device = self.embed.dtype, self.embed.device
        self.ks: list[torch.Tensor] = []  # per layer [b, kv_heads, cap, d]
        self.vs: list[torch.Tensor] = []
        self.cpu_fp32 = self.device.type == "cpu" and self.dtype == torch.float32

    def _rope_tables(self, total: int) -> None:
        """cos and a signed sin, ``[total, d]``: rope(x) = x*cos + roll(x, d/2)*sin_signed."""
        cos, sin = self.rotary(
            self.embed[:1], torch.arange(total, device=self.device)[None]
        )
        half = self.head_dim // 2
        self.cos = cos[0]
        # roll(x) is cat(x2, x1); transformers' rotate_half is cat(-x2, x1): the sign moves to sin.
        self.sin = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)

    def _rope(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        rolled = torch.roll(x, self.head_dim // 2, dims=-1)
        if x.dtype == torch.float32:
            return torch.addcmul(x * cos, rolled, sin)
        return x * cos + rolled * sin  # transformers' roundings in low precision

    def _qkv(
        self, layer: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ):
        """Projects and rotates ``h [N, hidden]``; returns q ``[N, H, d]``, k and v ``[N, kvH, d]``."""
        nh, nkv, d = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(h, layer.wqkv, layer.bqkv)
        qk = self._rope(qkv[:, : (nh + nkv) * d].view(-1, nh + nkv, d), cos, sin)
        v = qkv[:, (nh + nkv) * d :].view(-1, nkv, d)
        return qk[:, :nh], qk[:, nh:], v

    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        gu = F.linear(_rms_norm(x, layer.ln2, layer.eps2), layer.wgu, layer.bgu)
        half = gu.shape[-1] // 2
        return _linear_add(x, F.silu(gu[:, :half]) * gu[:, half:], layer.wd_t, layer.bd)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(
            _rms_norm(x, self.norm, self.norm_eps), self.head_w, self.head_b
        ).float()

    def prefill(
        self, ids: torch.Tensor, mask: torch.Tensor, max_new: int, repeat: int = 1
    ) -> torch.Tensor:
        """Runs the prompts and allocates the cache for ``max_new`` more tokens.

        Args:
            ids: ``[b, P]`` left-padded prompt ids.
            mask: ``[b, P]`` 1 for real tokens.
            max_new: Tokens that will be generated at most.
            repeat: Each prompt is sampled ``repeat`` times: its cache is computed
                once and copied to ``repeat`` adjacent rows.

        Returns:
            ``[b * repeat, V]`` float32 logits of the last prompt position.
        """
        b, width = ids.shape
        self.total, self.col = (
            width + max_new,
            width,
        )  # col: cache column of the next token
        self._rope_tables(self.total)
        cap = min(self.total, width + self.block)
        shape = (b, self.kv_heads, cap, self.head_dim)
        # Zeros, not empty: masked columns still enter the matmuls and must be finite.
        self.ks = [
            torch.zeros(shape, dtype=self.dtype, device=self.device)
            for _ in self.layers
        ]
        self.vs = [
            torch.zeros(shape, dtype=self.dtype, device=self.device)
            for _ in self.layers
        ]
        real = mask.bool()
        x = self._prefill_packed(ids, real)
        # Left padding: every row's last real token is its last column.
        last = real.sum(1).cumsum(0) - 1
        logits = self._logits(x[last])
        # Additive key mask (padding and unwritten columns), one copy per kv head
        # so that it views as [b * kv_heads, 1, cap].
        self.mask = torch.full(
            (b, self.kv_heads, 1, cap),
            float("-inf"),
            dtype=self.dtype,
            device=self.device,
        )
        self.mask[:, :, :, :width].masked_fill_(real[:, None, None], 0.0)
        self.pos = real.sum(1)  # position of the next token, [b]
        if repeat > 1:
            self.keep(torch.arange(b, device=self.device).repeat_interleave(repeat))
            logits = logits.repeat_interleave(repeat, dim=0)
        return logits

    def _prefill_packed(self, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """All layers over the prompts; returns the packed final hidden states ``[N, hidden]``."""
        b, width = ids.shape
        nh, nkv, d = self.heads, self.kv_heads, self.head_dim
        flat = real.flatten().nonzero().squeeze(1)  # [N] real tokens in row-major order
        pos = (real.cumsum(1) - 1).flatten()[flat]
        cos, sin = self.cos[pos].unsqueeze(1), self.sin[pos].unsqueeze(1)  # [N, 1, d]
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        # Pad queries may see themselves, so no softmax row is empty (their output is dropped).
        eye = torch.eye(width, dtype=torch.bool, device=self.device)
        allowed = ((causal & real[:, None, :]) | eye)[:, None]  # [b, 1, P, P]
        x = F.embedding(ids.flatten()[flat], self.embed)
        # Pad slots stay zero across layers; only the real rows are overwritten.
        buffer = torch.zeros(
            b * width, nh + 2 * nkv, d, dtype=self.dtype, device=self.device
        )
        for layer, kc, vc in zip(self.layers, self.ks, self.vs):
            q, k, v = self._qkv(layer, _rms_norm(x, layer.ln1, layer.eps1), cos, sin)
            buffer.index_copy_(0, flat, torch.cat([q, k, v], dim=1))
            padded = buffer.view(b, width, nh + 2 * nkv, d).transpose(
                1, 2
            )  # [b, heads, P, d]
            qp, kp, vp = padded[:, :nh], padded[:, nh : nh + nkv], padded[:, nh + nkv :]
            kc[:, :, :width] = kp
            vc[:, :, :width] = vp
            group = nh // nkv
            kk, vv = (
                kp.repeat_interleave(group, dim=1),
                vp.repeat_interleave(group, dim=1),
            )
            a = F.scaled_dot_product_attention(
                qp, kk, vv, attn_mask=allowed, scale=self.scale
            )
            a = a.transpose(1, 2).reshape(b * width, nh * d)[flat]
            x = _linear_add(x, a, layer.wo_t, layer.bo)
            if self.cpu_fp32:
                # Row blocks keep the [rows, 2 * intermediate] activations in cache.
                x = torch.cat([self._mlp(layer, part) for part in x.split(256)])
            else:
                x = self._mlp(layer, x)
        return x

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feeds one token per row and returns the next-token logits.

        Args:
            tokens: ``[b]`` the latest token of every row.

        Returns:
            ``[b, V]`` float32 logits.
        """
        if self.col == self.mask.shape[-1]:
            self._grow()
        b, col, cap = tokens.shape[0], self.col, self.mask.shape[-1]
        cos, sin = (
            self.cos[self.pos].unsqueeze(1),
            self.sin[self.pos].unsqueeze(1),
        )  # [b, 1, d]
        self.mask.select(3, col).fill_(0.0)
        mask = self.mask.view(b * self.kv_heads, 1, cap) if self.cpu_fp32 else self.mask
        x = F.embedding(tokens, self.embed)
        for layer, kc, vc in zip(self.layers, self.ks, self.vs):
            q, k, v = self._qkv(layer, _rms_norm(x, layer.ln1, layer.eps1), cos, sin)
            kc.select(2, col).copy_(k)
            vc.select(2, col).copy_(v)
            a = self._decode_attention(q, kc, vc, mask)
            x = self._mlp(layer, _linear_add(x, a, layer.wo_t, layer.bo))
        self.col += 1
        self.pos = self.pos + 1
        return self._logits(x)

    def _decode_attention(
        self, q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, mask: torch.Tensor
    ):
        """One-token attention over the whole cache; ``q [b, H, d]`` -> ``[b, H * d]``.

        The query heads sharing a kv head act as a short query sequence against
        that head's cache, so the cache is never repeated per query head.
        """
        b, nkv, d = q.shape[0], self.kv_heads, self.head_dim
        group, cap = self.heads // nkv, kc.shape[2]
        if self.cpu_fp32:
            # CPU float32: batched matmuls beat CPU SDPA several times for one query.
            keys = kc.view(b * nkv, cap, d).transpose(1, 2)
            scores = torch.baddbmm(
                mask, q.reshape(b * nkv, group, d), keys, alpha=self.scale
            )
            a = torch.bmm(scores.softmax(dim=-1), vc.view(b * nkv, cap, d))
        else:
            # Fused kernels keep scores and probabilities in float32 for bf16/fp16.
            a = F.scaled_dot_product_attention(
                q.reshape(b, nkv, group, d), kc, vc, attn_mask=mask, scale=self.scale
            )
        return a.reshape(b, self.heads * d)

    def _grow(self) -> None:
        """Adds up to ``block`` columns to the cache and the mask (one copy per block)."""
        extra = min(self.block, self.total - self.mask.shape[-1])
        if extra <= 0:
            raise RuntimeError("decoded past the length given to prefill")
        self.ks = [F.pad(k, (0, 0, 0, extra)) for k in self.ks]
        self.vs = [F.pad(v, (0, 0, 0, extra)) for v in self.vs]
        self.mask = F.pad(self.mask, (0, extra), value=float("-inf"))

    def keep(self, rows: torch.Tensor) -> None:
        """Keeps cache and state rows ``rows`` (``[b']`` indices, repeats allowed) in that order."""
        self.ks = [k[rows] for k in self.ks]
        self.vs = [v[rows] for v in self.vs]
        self.mask, self.pos = self.mask[rows], self.pos[rows]
