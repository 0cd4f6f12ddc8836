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


def _linear_add_(
    x: torch.Tensor, a: torch.Tensor, w_t: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x += a @ w_t (+ bias)`` in place (no new residual tensor); returns ``x``."""
    if bias is None and x.dtype == torch.float32:
        return x.addmm_(a, w_t)
    return x.add_(F.linear(a, w_t.t(), bias))


def _pair_order(heads: int, d: int) -> torch.Tensor:
    """Row order that turns each head's halves ``[x1 | x2]`` into pairs ``(x1_j, x2_j)``."""
    half = torch.arange(d // 2)
    one = torch.stack([half, half + d // 2], dim=1).flatten()
    return (torch.arange(heads)[:, None] * d + one).flatten()


class _Layer:
    """Fused weights of one decoder layer (q/k/v and gate/up concatenated).

    With ``interleave`` the q and k rows of every head are reordered so that
    each rotary pair is adjacent: rotary embedding becomes one complex multiply,
    and attention scores are unchanged because q and k share the order.
    """

    def __init__(self, layer: torch.nn.Module, interleave: bool) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        parts = [attn.q_proj, attn.k_proj, attn.v_proj]
        self.wqkv = torch.cat([p.weight for p in parts])
        self.bqkv = (
            torch.cat([p.bias for p in parts]) if attn.q_proj.bias is not None else None
        )
        if interleave:
            d = attn.head_dim
            rotated = (attn.q_proj.weight.shape[0] + attn.k_proj.weight.shape[0]) // d
            order = _pair_order(rotated, d).to(self.wqkv.device)
            self.wqkv = torch.cat([self.wqkv[order], self.wqkv[rotated * d :]])
            if self.bqkv is not None:
                self.bqkv = torch.cat([self.bqkv[order], self.bqkv[rotated * d :]])
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

    Float32 models get the interleaved rotary layout (complex multiply); lower
    precisions keep transformers' layout and roundings.

    Args:
        model: A transformers LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        cfg, base = model.config, model.model
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        attn = base.layers[0].self_attn
        self.head_dim, self.scale = attn.head_dim, attn.scaling
        self.embed = base.embed_tokens.weight
        self.interleave = self.embed.dtype == torch.float32
        self.layers = [_Layer(layer, self.interleave) for layer in base.layers]
        self.norm, self.norm_eps = base.norm.weight, base.norm.variance_epsilon
        self.head_w, self.head_b = (
            model.lm_head.weight,
            getattr(model.lm_head, "bias", None),
        )
        self.rotary = base.rotary_emb

    def rope_tables(self, total: int) -> tuple[torch.Tensor, ...]:
        """Rotary tables for positions ``0..total-1``.

        Returns:
            Interleaved layout: ``(cis,)``, complex ``[total, d/2]``. Otherwise
            ``(cos, sin_signed)``, each ``[total, d]``, with
            rope(x) = x*cos + roll(x, d/2)*sin_signed.
        """
        device = self.embed.device
        cos, sin = self.rotary(self.embed[:1], torch.arange(total, device=device)[None])
        half = self.head_dim // 2
        cos, sin = cos[0], sin[0]
        if self.interleave:
            return (torch.complex(cos[:, :half].float(), sin[:, :half].float()),)
        # roll(x) is cat(x2, x1); transformers' rotate_half is cat(-x2, x1): the sign moves to sin.
        return cos, torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)


class FusedDecoder:
    """Llama-family forward with a preallocated KV cache (build inside inference mode).

    Prompts sit right-padded in the cache: row i's prompt fills columns
    ``0..len_i-1``, its padding is masked, and the t-th generated token of every
    row goes to column ``P+t`` (P: the widest prompt), so one column index serves
    the whole batch. Positions count from each row's first token, as in the
    learner. Right padding makes prefill attention plain causal (pad queries
    come after every real one and are dropped), and a decode step attends over
    the written columns ``0..P+t`` only.

    Prefill runs the row-wise layers (norms, projections, MLP) on the real
    prompt tokens only, packed; just attention sees the padded layout.

    Args:
        model: A supported transformers model, or its :class:`FusedWeights`.
    """

    def __init__(self, model: torch.nn.Module | FusedWeights, block: int = 32) -> None:
        self.w = model if isinstance(model, FusedWeights) else FusedWeights(model)
        self.block = block
        self.dtype, self.device = self.w.embed.dtype, self.w.embed.device
        # CPU float32: batched matmuls beat CPU SDPA several times for one query.
        self.bmm_attention = self.device.type == "cpu" and self.dtype == torch.float32
        self.ks: list[torch.Tensor] = []  # per layer [b, kv_heads, total, d]
        self.vs: list[torch.Tensor] = []

    def _qkv(
        self, layer: _Layer, x: torch.Tensor, rot: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """Normalizes, projects and rotates ``x [N, hidden]``; returns ``[N, H + 2 kvH, d]``."""
        w = self.w
        rotated = w.heads + w.kv_heads
        qkv = F.linear(_rms_norm(x, layer.ln1, layer.eps1), layer.wqkv, layer.bqkv)
        qkv = qkv.view(-1, rotated + w.kv_heads, w.head_dim)
        if w.interleave:
            (cis,) = rot
            torch.view_as_complex(qkv[:, :rotated].unflatten(-1, (-1, 2))).mul_(cis)
        else:
            cos, sin = rot
            x = qkv[:, :rotated]
            # transformers' op order, so low-precision roundings match the learner.
            qkv[:, :rotated] = x * cos + torch.roll(x, w.head_dim // 2, dims=-1) * sin
        return qkv

    def _rot(self, pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rotary tables at positions ``pos [N]``, each ``[N, 1, ...]``."""
        return tuple(t[pos].unsqueeze(1) for t in self.tables)

    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        """Adds the MLP output to ``x [N, hidden]`` in place; returns ``x``."""
        gu = F.linear(_rms_norm(x, layer.ln2, layer.eps2), layer.wgu, layer.bgu)
        half = gu.shape[-1] // 2
        act = F.silu(gu[:, :half]).mul_(gu[:, half:])
        return _linear_add_(x, act, layer.wd_t, layer.bd)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        w = self.w
        return F.linear(_rms_norm(x, w.norm, w.norm_eps), w.head_w, w.head_b).float()

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
        w = self.w
        self.total, self.col = width + max_new, width
        self.tables = w.rope_tables(self.total)
        cap = min(self.total, width + self.block)
        shape = (b, w.kv_heads, cap, w.head_dim)
        # Zeros, not empty: masked columns still enter the matmuls and must be finite.
        self.ks = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in w.layers]
        self.vs = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in w.layers]
        real = mask.bool()
        lens = real.sum(1)
        x = self._prefill_packed(ids, real)
        logits = self._logits(x[lens.cumsum(0) - 1])
        # Additive key mask hiding each row's padding, one copy per kv head so
        # that it views as [b * kv_heads, 1, total].
        hidden = torch.arange(cap, device=self.device) >= lens[:, None]
        self.mask = torch.zeros(
            (b, w.kv_heads, 1, cap), dtype=self.dtype, device=self.device
        ).masked_fill_(hidden[:, None, None], float("-inf"))
        self.pos = lens  # position of the next token, [b]
        if repeat > 1:
            self.keep(torch.arange(b, device=self.device).repeat_interleave(repeat))
            logits = logits.repeat_interleave(repeat, dim=0)
        return logits

    def _prefill_packed(self, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """All layers over the prompts; returns the packed final hidden states ``[N, hidden]``."""
        b, width = ids.shape
        w = self.w
        nh, nkv, d = w.heads, w.kv_heads, w.head_dim
        flat = real.flatten().nonzero().squeeze(1)  # [N] real tokens in row-major order
        pos = (real.cumsum(1) - 1).flatten()[flat]
        slots = flat // width * width + pos  # the same tokens, right-padded
        rot = self._rot(pos)
        x = F.embedding(ids.flatten()[flat], w.embed)
        # Pad slots stay zero across layers; only the real rows are overwritten.
        buffer = torch.zeros(b * width, nh + 2 * nkv, d, dtype=self.dtype, device=self.device)
        for layer, kc, vc in zip(w.layers, self.ks, self.vs):
            buffer.index_copy_(0, slots, self._qkv(layer, x, rot))
            padded = buffer.view(b, width, nh + 2 * nkv, d).transpose(1, 2)
            kc[:, :, :width] = padded[:, nh : nh + nkv]
            vc[:, :, :width] = padded[:, nh + nkv :]
            a = F.scaled_dot_product_attention(
                padded[:, :nh],
                kc[:, :, :width],
                vc[:, :, :width],
                is_causal=True,
                scale=w.scale,
                enable_gqa=True,
            )
            _linear_add_(x, a.transpose(1, 2).reshape(b * width, nh * d)[slots], layer.wo_t, layer.bo)
            # Row blocks keep the [rows, 2 * intermediate] activations in cache.
            for part in x.split(256) if self.bmm_attention else (x,):
                self._mlp(layer, part)
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
        w, col = self.w, self.col
        nh, nkv = w.heads, w.kv_heads
        self.mask.select(3, col).fill_(0.0)
        rot, mask = self._rot(self.pos), self.mask
        x = F.embedding(tokens, w.embed)
        for layer, kc, vc in zip(w.layers, self.ks, self.vs):
            qkv = self._qkv(layer, x, rot)
            kc.select(2, col).copy_(qkv[:, nh : nh + nkv])
            vc.select(2, col).copy_(qkv[:, nh + nkv :])
            a = self._decode_attention(qkv[:, :nh], kc, vc, mask)
            self._mlp(layer, _linear_add_(x, a, layer.wo_t, layer.bo))
        self.col += 1
        self.pos = self.pos + 1
        return self._logits(x)

    def _grow(self) -> None:
        """Adds up to ``block`` columns to the cache and the mask (one copy per block)."""
        extra = min(self.block, self.total - self.mask.shape[-1])
        if extra <= 0:
            raise RuntimeError("decoded past the length given to prefill")
        self.ks = [F.pad(k, (0, 0, 0, extra)) for k in self.ks]
        self.vs = [F.pad(v, (0, 0, 0, extra)) for v in self.vs]
        self.mask = F.pad(self.mask, (0, extra), value=float("-inf"))

    def _decode_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """One-token attention; ``q [b, H, d]``, ``k``/``v`` ``[b, kvH, L, d]`` -> ``[b, H * d]``.

        The query heads sharing a kv head act as a short query sequence against
        that head's keys, so the cache is never repeated per query head.
        """
        w = self.w
        b, nkv, length, d = k.shape
        group = w.heads // nkv
        if self.bmm_attention:
            scores = torch.baddbmm(
                mask.reshape(b * nkv, 1, length),
                q.reshape(b * nkv, group, d),
                k.reshape(b * nkv, length, d).transpose(1, 2),
                alpha=w.scale,
            )
            a = torch.bmm(scores.softmax(dim=-1), v.reshape(b * nkv, length, d))
        else:
            # Fused kernels keep scores and probabilities in float32 for bf16/fp16.
            a = F.scaled_dot_product_attention(
                q.reshape(b, nkv, group, d), k, v, attn_mask=mask, scale=w.scale
            )
        return a.reshape(b, w.heads * d)

    def keep(self, rows: torch.Tensor) -> None:
        """Keeps cache and state rows ``rows`` (``[b']`` indices, repeats allowed) in that order."""
        self.ks = [k[rows] for k in self.ks]
        self.vs = [v[rows] for v in self.vs]
        self.mask, self.pos = self.mask[rows], self.pos[rows]
