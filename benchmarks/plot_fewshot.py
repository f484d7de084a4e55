"""Plot the few-shot curve: NDCG@k against the number of shots, one line per model.

Reads the JSON written by ``benchmarks/fewshot.py`` and writes a PNG next to it
(``fewshot_<dataset>.png``). Baselines are drawn dashed.

Usage::

    python benchmarks/plot_fewshot.py benchmarks/results/fewshot_ml-100k.json
    python benchmarks/plot_fewshot.py benchmarks/results/fewshot_*.json --metric recall
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BASELINES = ("most_popular", "implicit_foldin", "ease", "item_knn")


def plot(path, metric="ndcg", out=None):
    """Draw one results file; return the path of the PNG written."""
    path = Path(path)
    result = json.loads(path.read_text())
    k = result.get("k", 20)
    fig, ax = plt.subplots(figsize=(8, 5))
    # a re-ranker's ":candidates" row repeats its adapter's curve: drawn once
    models = {n: m for n, m in result["models"].items() if not n.endswith(":candidates")}
    colors = plt.get_cmap("tab20").colors
    for i, (name, model) in enumerate(models.items()):
        curve = [row for row in model["curve"] if row.get(metric) is not None]
        shots = [row["n_shots"] for row in curve]
        values = [row[metric] for row in curve]
        style = "--" if name in BASELINES else "-"
        ax.plot(
            shots,
            values,
            style,
            color=colors[i % len(colors)],
            marker="o",
            markersize=4,
            label=name,
        )
    ax.set_xscale("log")
    shots = result.get("n_shots") or sorted(
        {r["n_shots"] for m in result["models"].values() for r in m["curve"]}
    )
    ax.set_xticks(shots)
    ax.set_xticklabels([str(n) for n in shots])
    ax.minorticks_off()
    ax.set_xlabel("number of shots (support interactions per new user)")
    ax.set_ylabel(f"{'NDCG' if metric == 'ndcg' else metric.capitalize()}@{k}")
    ax.set_title(f"Few-shot curve on {result.get('dataset', path.stem)} (new users)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    out = Path(out) if out else path.with_suffix(".png" if metric == "ndcg" else f".{metric}.png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="JSON files written by fewshot.py")
    parser.add_argument("--metric", default="ndcg", choices=["ndcg", "recall"])
    args = parser.parse_args(argv)
    for path in args.results:
        print(f"wrote {plot(path, args.metric)}")


if __name__ == "__main__":
    main()
