"""PNG plots of a run's metrics (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def training_curves(metrics_path: Path, out_png: Path) -> Path:
    """Training reward and held-out accuracy against step, in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(metrics_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(r["step"], r["reward/mean"]) for r in rows if r.get("reward/mean") is not None]
    if train:
        ax.plot(*zip(*train), alpha=0.5, label="training reward (batch mean)")
    for key, label in (("eval/mean@k", "held-out mean@k"), ("eval/greedy_acc", "held-out greedy")):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy / reward")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
