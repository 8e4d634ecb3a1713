"""The PNG of an ``overhead.py`` result: RPS and server CPU per request, per scenario and target."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(result["scenarios"])
    targets = result["targets"]
    fig, (ax_rps, ax_cpu) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(targets)
    for i, target in enumerate(targets):
        xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(scenarios))]
        rows = [result["scenarios"][s][target] for s in scenarios]
        ax_rps.bar(xs, [r["rps"] for r in rows], width, label=target)
        ax_cpu.bar(xs, [r["cpu_ms_per_req"] for r in rows], width, label=target)
    for ax, title in (
        (ax_rps, "requests per second (higher is better)"),
        (ax_cpu, "server CPU ms per request (lower is better)"),
    ):
        ax.set_title(title)
        ax.set_xticks(range(len(scenarios)))
        ax.set_xticklabels(scenarios)
        ax.grid(axis="y", alpha=0.3)
    ax_cpu.legend(fontsize="small")
    fig.suptitle(f"bench/overhead.py, {result['machine']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
