"""Incremental forward passes with a KV cache, for the native sampler.

Two implementations of one small interface (``prefill``, ``step``, ``keep``):

* :class:`FusedDecoder` re-implements the Llama-family decoder (Llama, Qwen2,
  Mistral) on the model's own weights with a preallocated cache, fused q/k/v and
  gate/up projections and RoPE rotation folded into the projection. It skips the
  per-call work transformers does for generality (mask building, cache objects,
  kwargs plumbing), which dominates the cost of small models.
* :class:`HFDecoder` calls the model's own forward with a transformers cache;
  it serves every other architecture.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

FUSED_FAMILIES = ("llama", "qwen2", "mistral")
_STATIC_ROPE = ("default", "linear", "llama3", "yarn")


def _rope_type(config) -> str:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
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
    windowed = any(t != "full_attention" for t in layer_types) or cfg.model_type == "mistral"
    if windowed and window is not None and total_len > window:
        return f"sequence of {total_len} tokens exceeds the sliding window {window}"
    attn = model.model.layers[0].self_attn
    if any(hasattr(attn, name) for name in ("q_norm", "k_norm")):
        return "per-head q/k norms"
    return None


def _rotated_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of ``weight`` (or a bias) that compute ``rotate_half`` of its output per head."""
    w = weight.reshape(heads, weight.shape[0] // heads, *weight.shape[1:])
    half = w.shape[1] // 2
    return torch.cat([-w[:, half:], w[:, :half]], dim=1).reshape(weight.shape)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # One fused call; bit-identical to transformers' RMSNorm in float32 (in bf16 it
    # rounds once instead of twice, within bf16 noise).
    return F.rms_norm(x, weight.shape, weight, eps)


def _linear_add(x: torch.Tensor, a: torch.Tensor, w_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x + a @ w_t (+ bias)``: a residual add fused into the matmul when there is no bias."""
    if bias is None and a.dim() == 2:
        return torch.addmm(x, a, w_t)
    return x + F.linear(a, w_t.t(), bias)


class _Layer:
    """Fused weights of one decoder layer."""

    def __init__(self, layer: torch.nn.Module, heads: int, kv_heads: int) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        parts = [attn.q_proj, attn.k_proj, attn.v_proj]
        w = [p.weight for p in parts]
        # Extra rows output rotate_half(q) and rotate_half(k): RoPE then needs no gather/cat.
        w += [_rotated_rows(w[0], heads), _rotated_rows(w[1], kv_heads)]
        self.wqkv = torch.cat(w).contiguous()
        if attn.q_proj.bias is not None:
            b = [p.bias for p in parts]
            b += [_rotated_rows(b[0], heads), _rotated_rows(b[1], kv_heads)]
            self.bqkv = torch.cat(b).contiguous()
        else:
            self.bqkv = None
        self.wo_t, self.bo = attn.o_proj.weight.t(), attn.o_proj.bias
        self.wgu = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).contiguous()
        gb = mlp.gate_proj.bias
        self.bgu = torch.cat([gb, mlp.up_proj.bias]).contiguous() if gb is not None else None
        self.wd_t, self.bd = mlp.down_proj.weight.t(), mlp.down_proj.bias
        self.ln1, self.eps1 = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.ln2, self.eps2 = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        self.k: torch.Tensor | None = None  # [b, kv_heads, L, d] cache
        self.v: torch.Tensor | None = None


def length_buckets(lengths: torch.Tensor, max_buckets: int = 4, min_rows: int = 16) -> list[torch.Tensor]:
    """Splits rows into groups of similar prompt length, so prefill skips most padding.

    Args:
        lengths: ``[b]`` prompt lengths.
        max_buckets: Most groups.
        min_rows: Fewest rows per group (small groups waste matmul efficiency).

    Returns:
        Row-index tensors, shortest prompts first; together they cover every row once.
    """
    order = torch.argsort(lengths, stable=True)
    k = max(1, min(max_buckets, lengths.numel() // min_rows))
    return [chunk for chunk in torch.tensor_split(order, k) if chunk.numel()]


class FusedDecoder:
    """Llama-family forward with a preallocated KV cache (build inside inference mode).

    Rows are left-padded: the prompt fills cache columns ``0..P-1`` and the t-th
    generated token column ``P+t`` in every row, so one column index serves the
    whole batch; an additive mask hides the padding and positions count from
    each row's first real token, as in the learner.

    Decode attends over the whole allocated cache (unwritten columns are zero
    and masked): batched matmuls over contiguous ``[b * kv_heads, cap, d]``
    blocks run 2-3x faster on CPU than over a growing strided slice. The cache
    grows by ``block`` columns at a time, so the masked waste stays small.

    Args:
        model: A transformers LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM.
    """

    def __init__(self, model: torch.nn.Module, block: int = 32) -> None:
        self.block = block
        cfg, base = model.config, model.model
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        attn = base.layers[0].self_attn
        self.head_dim, self.scale = attn.head_dim, attn.scaling
        self.layers = [_Layer(layer, self.heads, self.kv_heads) for layer in base.layers]
        self.embed = base.embed_tokens.weight
        self.norm, self.norm_eps = base.norm.weight, base.norm.variance_epsilon
        self.head_w, self.head_b = model.lm_head.weight, getattr(model.lm_head, "bias", None)
        self.rotary = base.rotary_emb
        self.dtype, self.device = self.embed.dtype, self.embed.device

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_new: int, repeat: int = 1) -> torch.Tensor:
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
        self.total = width + max_new
        table = torch.arange(self.total, device=self.device)[None]
        cos, sin = self.rotary(self.embed[:1], table)
        self.cos, self.sin = cos[0], sin[0]  # [total, d]
        self.col = width  # cache column of the next token
        cap = min(self.total, width + self.block)
        for layer in self.layers:
            # Zeros, not empty: masked columns still enter the matmuls and must be finite.
            layer.k = torch.zeros(b, self.kv_heads, cap, self.head_dim, dtype=self.dtype, device=self.device)
            layer.v = torch.zeros_like(layer.k)
        lengths = mask.sum(1)
        logits = None
        for rows in length_buckets(lengths):
            part = self._prefill_rows(ids, mask, rows, int(lengths[rows].max()))
            logits = part.new_empty(b, part.shape[-1]) if logits is None else logits
            logits[rows] = part
        # Additive key mask (padding and not-yet-written columns), one copy per kv
        # head so that it views as [b * kv_heads, 1, cap].
        self.mask = torch.full((b, self.kv_heads, 1, cap), float("-inf"), dtype=self.dtype, device=self.device)
        self.mask[:, :, :, :width].masked_fill_(mask.bool()[:, None, None], 0.0)
        self.pos = lengths  # position of the next token, [b]
        if repeat > 1:
            self.keep(torch.arange(b, device=self.device).repeat_interleave(repeat))
            logits = logits.repeat_interleave(repeat, dim=0)
        return logits

    def _prefill_rows(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, width: int) -> torch.Tensor:
        """Prefills ``rows`` over their last ``width`` columns; returns their last logits."""
        end = ids.shape[1]
        start = end - width
        ids, mask = ids[rows, start:], mask[rows, start:]
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        # Pad queries may see themselves, so no softmax row is empty (their output is never used).
        eye = torch.eye(width, dtype=torch.bool, device=self.device)
        allowed = ((causal & mask.bool()[:, None, :]) | eye)[:, None]
        cs = (self.cos[pos].unsqueeze(2), self.sin[pos].unsqueeze(2))  # [b, P, 1, d]
        x = F.embedding(ids, self.embed)
        group = self.heads // self.kv_heads
        for layer in self.layers:
            q, k, v = self._qkv(layer, _rms_norm(x, layer.ln1, layer.eps1), *cs)
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # [b, kvH, P, d]
            layer.k[rows, :, start:end] = k
            layer.v[rows, :, start:end] = v
            kk, vv = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            a = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, attn_mask=allowed, scale=self.scale)
            x = _linear_add(x, a.transpose(1, 2).reshape(*x.shape[:2], -1), layer.wo_t, layer.bo)
            x = self._mlp(layer, x)
        return self._logits(x[:, -1])

    def _qkv(self, layer: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Projects and rotates; returns q ``[..., H, d]``, k and v ``[..., kvH, d]``."""
        nh, nkv, d = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(h, layer.wqkv, layer.bqkv)
        n_qk = (nh + nkv) * d
        lead = qkv.shape[:-1]
        qk = qkv[..., :n_qk].view(*lead, nh + nkv, d)
        qk_rot = qkv[..., n_qk + nkv * d :].view(*lead, nh + nkv, d)
        qk = torch.addcmul(qk * cos, qk_rot, sin)
        v = qkv[..., n_qk : n_qk + nkv * d].view(*lead, nkv, d)
        return qk[..., :nh, :], qk[..., nh:, :], v

    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        h = _rms_norm(x, layer.ln2, layer.eps2)
        gu = F.linear(h, layer.wgu, layer.bgu)
        half = gu.shape[-1] // 2
        return _linear_add(x, F.silu(gu[..., :half]) * gu[..., half:], layer.wd_t, layer.bd)

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
        nkv, group, d = self.kv_heads, self.heads // self.kv_heads, self.head_dim
        cos, sin = self.cos[self.pos].unsqueeze(1), self.sin[self.pos].unsqueeze(1)  # [b, 1, d]
        self.mask.select(3, col).fill_(0.0)
        mask = self.mask.view(b * nkv, 1, cap)
        x = F.embedding(tokens, self.embed)
        for layer in self.layers:
            q, k, v = self._qkv(layer, _rms_norm(x, layer.ln1, layer.eps1), cos, sin)
            layer.k.select(2, col).copy_(k)
            layer.v.select(2, col).copy_(v)
            # One query per row: the query heads sharing a kv head form a [group, d]
            # matrix against that head's cache, so no repeat of the cache is needed.
            # Explicit bmm beats CPU SDPA several times for one-token queries.
            keys = layer.k.view(b * nkv, cap, d)
            scores = torch.baddbmm(mask, q.reshape(b * nkv, group, d), keys.transpose(1, 2), alpha=self.scale)
            probs = scores.softmax(dim=-1, dtype=torch.float32).to(self.dtype)
            a = torch.bmm(probs, layer.v.view(b * nkv, cap, d))
            x = _linear_add(x, a.view(b, -1), layer.wo_t, layer.bo)
            x = self._mlp(layer, x)
        self.col += 1
        self.pos = self.pos + 1
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_rms_norm(x, self.norm, self.norm_eps), self.head_w, self.head_b).float()

    def _grow(self) -> None:
        """Adds up to ``block`` columns to the cache and the mask (one copy per block)."""
        cap = self.mask.shape[-1]
        extra = min(self.block, self.total - cap)
        if extra <= 0:
            raise RuntimeError("decoded past the length given to prefill")
        for layer in self.layers:
            layer.k = F.pad(layer.k, (0, 0, 0, extra))
            layer.v = F.pad(layer.v, (0, 0, 0, extra))
        self.mask = F.pad(self.mask, (0, extra), value=float("-inf"))

    def keep(self, rows: torch.Tensor) -> None:
        """Keeps cache and state rows ``rows`` (``[b']`` indices, repeats allowed) in that order."""
        for layer in self.layers:
            layer.k, layer.v = layer.k[rows], layer.v[rows]
        self.mask, self.pos = self.mask[rows], self.pos[rows]


class HFDecoder:
    """The model's own forward with a transformers cache (any causal LM).

    Args:
        model: A transformers causal LM.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def _forward(self, **kw) -> torch.Tensor:
        out = self.model(**kw, use_cache=True, **self.extra)
        self.cache = out.get("cache", None) or out.get("past_key_values", None)
        return out.logits[:, -1].float()

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_new: int, repeat: int = 1) -> torch.Tensor:
        """See :meth:`FusedDecoder.prefill`."""
        b = ids.shape[0]
        self.mask = torch.cat([mask, mask.new_ones(b, max_new)], 1)
        self.col = ids.shape[1]
        self.pos = mask.sum(1, keepdim=True)  # [b, 1]
        logits = self._forward(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0))
        if repeat > 1:
            self.cache.batch_repeat_interleave(repeat)
            self.mask = self.mask.repeat_interleave(repeat, dim=0)
            self.pos = self.pos.repeat_interleave(repeat, dim=0)
            logits = logits.repeat_interleave(repeat, dim=0)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """See :meth:`FusedDecoder.step`."""
        kw = {self.cache_arg: self.cache}
        logits = self._forward(
            input_ids=tokens[:, None], attention_mask=self.mask[:, : self.col + 1], position_ids=self.pos, **kw
        )
        self.col += 1
        self.pos = self.pos + 1
        return logits

    def keep(self, rows: torch.Tensor) -> None:
        """See :meth:`FusedDecoder.keep`."""
        self.cache.batch_select_indices(rows)
        self.mask, self.pos = self.mask[rows], self.pos[rows]
