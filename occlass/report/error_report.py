"""Error analysis of test predictions: a markdown report with accuracy per SOC major group, the most
confused code pairs and the worst occupations, and four plots.

`predictions` has one row per test title: `title`, `codes` (the valid codes, first = gold),
`pred_code_1..k`, `pred_score_1..k` and `confidence` (probability that the top-1 is right).
A title counts as correct when its predicted code is any of its valid codes.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from occlass.data.taxonomy import CODE_COLUMN, Taxonomy, read_onet_table
from occlass.model.calibration import expected_calibration_error, reliability_bins
from occlass.runs import write_atomic

RELATED_FILE = "Related Occupations.txt"
REPORT_FILE = "error_analysis.md"
PLOTS = {"accuracy_by_major_group.png": "Accuracy by SOC major group",
         "major_group_confusion.png": "SOC major group confusion (rows normalised)",
         "reliability.png": "Reliability diagram",
         "coverage.png": "Coverage vs top-1 accuracy"}
TOP_N = 20
MIN_TITLES = 3
BINS = 15

MAJOR_GROUPS = {
    "11": "Management", "13": "Business and Financial Operations",
    "15": "Computer and Mathematical", "17": "Architecture and Engineering",
    "19": "Life, Physical, and Social Science", "21": "Community and Social Service",
    "23": "Legal", "25": "Educational Instruction and Library",
    "27": "Arts, Design, Entertainment, Sports, and Media",
    "29": "Healthcare Practitioners and Technical", "31": "Healthcare Support",
    "33": "Protective Service", "35": "Food Preparation and Serving Related",
    "37": "Building and Grounds Cleaning and Maintenance", "39": "Personal Care and Service",
    "41": "Sales and Related", "43": "Office and Administrative Support",
    "45": "Farming, Fishing, and Forestry", "47": "Construction and Extraction",
    "49": "Installation, Maintenance, and Repair", "51": "Production",
    "53": "Transportation and Material Moving", "55": "Military Specific",
}


def load_related(data_dir: Path) -> set[tuple[str, str]] | None:
    """(code, related code) pairs of O*NET's `Related Occupations.txt`; None without the file
    (older releases): the report then leaves the column blank."""
    if not (Path(data_dir) / RELATED_FILE).is_file():
        return None
    frame = read_onet_table(Path(data_dir) / RELATED_FILE, [CODE_COLUMN, "Related O*NET-SOC Code"])
    return set(zip(frame[CODE_COLUMN], frame["Related O*NET-SOC Code"]))


def _outcomes(predictions: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Per title: gold (first valid code), predicted code, top-1 and top-5 hits, and the target
    (the predicted code when it is valid, else the gold code)."""
    columns = sorted((c for c in predictions if re.fullmatch(re.escape(prefix) + r"\d+", c)),
                     key=lambda c: int(c[len(prefix):]))
    if not columns:
        raise ValueError(f"predictions have no {prefix}1.. columns")
    valid = [set(codes) for codes in predictions["codes"]]
    ranked = predictions[columns[:5]].to_numpy()
    top1 = np.array([row[0] in v for row, v in zip(ranked, valid)])
    top5 = np.array([any(code in v for code in row) for row, v in zip(ranked, valid)])
    gold = [next(iter(codes)) for codes in predictions["codes"]]
    return pd.DataFrame({
        "title": predictions["title"].to_numpy(), "gold": gold, "pred": ranked[:, 0],
        "top1": top1, "top5": top5, "target": np.where(top1, ranked[:, 0], gold),
        "confidence": predictions["confidence"].to_numpy(dtype=float)})


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _by_major_group(outcomes: pd.DataFrame) -> pd.DataFrame:
    groups = outcomes.assign(group=outcomes["gold"].str[:2]).groupby("group")
    return groups.agg(n=("top1", "size"), top1=("top1", "mean"), top5=("top5", "mean"))


def error_analysis_markdown(predictions: pd.DataFrame, taxonomy: Taxonomy,
                            related: set[tuple[str, str]] | None = None,
                            top_k_column_prefix: str = "pred_code_") -> str:
    """The text of `error_analysis.md`."""
    outcomes = _outcomes(predictions, top_k_column_prefix)
    title = dict(zip(taxonomy.codes, taxonomy.titles))
    ece = expected_calibration_error(outcomes["confidence"], outcomes["top1"], BINS)
    summary = (f"{len(outcomes)} test titles: top-1 accuracy {outcomes['top1'].mean():.4f}, "
               f"top-5 accuracy {outcomes['top5'].mean():.4f}, ECE {ece:.4f} ({BINS} bins).")
    lines = ["# Error analysis", "", summary, "",
             "## Accuracy by SOC major group", "", "Gold group: that of the first valid code.", "",
             "| Group | Name | n | Top-1 | Top-5 |", "|---|---|---:|---:|---:|"]
    for row in _by_major_group(outcomes).itertuples():
        lines.append(f"| {row.Index} | {MAJOR_GROUPS.get(row.Index, '?')} | {row.n} | "
                     f"{row.top1:.4f} | {row.top5:.4f} |")

    errors = outcomes[~outcomes["top1"]]
    pairs = Counter(zip(errors["gold"], errors["pred"]))
    lines += ["", f"## {TOP_N} most confused code pairs", "",
              "| Gold code | Gold title | Predicted code | Predicted title | Count | Related in O*NET |",
              "|---|---|---|---|---:|---|"]
    for (gold, pred), count in sorted(pairs.items(), key=lambda p: (-p[1], p[0]))[:TOP_N]:
        flag = "–" if related is None else (
            "yes" if (gold, pred) in related or (pred, gold) in related else "no")
        lines.append(f"| {gold} | {title.get(gold, '?')} | {pred} | {title.get(pred, '?')} | "
                     f"{count} | {flag} |")

    per_code = outcomes.groupby("gold").agg(n=("top1", "size"), top1=("top1", "mean"))
    worst = per_code[(per_code["n"] >= MIN_TITLES) & (per_code["top1"] < 1)]
    worst = worst.reset_index().sort_values(["top1", "n", "gold"], ascending=[True, False, True])
    lines += ["", f"## {TOP_N} worst occupations (at least {MIN_TITLES} test titles)", "",
              "| Code | Title | n | Top-1 | Example error |", "|---|---|---:|---:|---|"]
    for row in worst.head(TOP_N).itertuples():
        example = errors[errors["gold"] == row.gold].iloc[0]
        lines.append(f"| {row.gold} | {title.get(row.gold, '?')} | {row.n} | {row.top1:.4f} | "
                     f"{_cell(example['title'])} → {title.get(example['pred'], '?')} |")

    lines += ["", "## Plots"]
    for name, caption in PLOTS.items():
        lines += ["", f"![{caption}]({name})"]
    return "\n".join(lines) + "\n"


def write_error_report(out_dir: Path, predictions: pd.DataFrame, taxonomy: Taxonomy,
                       related: set[tuple[str, str]] | None = None,
                       top_k_column_prefix: str = "pred_code_") -> list[Path]:
    """Write `error_analysis.md` and its four plots into `out_dir` (atomically); return the paths."""
    from matplotlib.figure import Figure  # Agg rendering, no pyplot and no global backend

    out_dir = Path(out_dir)
    outcomes = _outcomes(predictions, top_k_column_prefix)
    report = out_dir / REPORT_FILE
    write_atomic(report, error_analysis_markdown(predictions, taxonomy, related,
                                                 top_k_column_prefix))
    figures = {name: Figure(figsize=(8, 6), layout="constrained") for name in PLOTS}
    for name, figure in figures.items():
        figure.add_subplot().set_title(PLOTS[name])

    ax = figures["accuracy_by_major_group.png"].axes[0]
    by_group = _by_major_group(outcomes)
    y = np.arange(len(by_group))
    ax.barh(y - 0.2, by_group["top1"], height=0.4, label="top-1")
    ax.barh(y + 0.2, by_group["top5"], height=0.4, label="top-5")
    ax.set_yticks(y, [f"{g} {MAJOR_GROUPS.get(g, '?')} (n={n})"
                      for g, n in zip(by_group.index, by_group["n"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.legend()

    ax = figures["major_group_confusion.png"].axes[0]
    # rows: the group of the target, so that a prediction of another valid code is no confusion
    confusion = pd.crosstab(outcomes["target"].str[:2], outcomes["pred"].str[:2])
    groups = sorted(set(confusion.index) | set(confusion.columns))
    confusion = confusion.reindex(index=groups, columns=groups, fill_value=0)
    shares = confusion.div(confusion.sum(axis=1).clip(lower=1), axis=0)
    image = ax.imshow(shares.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(groups)), groups, rotation=90)
    ax.set_yticks(range(len(groups)), groups)
    ax.set_xlabel("predicted major group")
    ax.set_ylabel("gold major group")
    figures["major_group_confusion.png"].colorbar(image, ax=ax, label="share of the gold group")

    ax = figures["reliability.png"].axes[0]
    _, accuracy, count = reliability_bins(outcomes["confidence"], outcomes["top1"], BINS)
    ece = expected_calibration_error(outcomes["confidence"], outcomes["top1"], BINS)
    edges = np.linspace(0, 1, BINS + 1)
    ax.bar(edges[:-1][count > 0], accuracy[count > 0], width=1 / BINS, align="edge",
           edgecolor="black", label="top-1 accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=f"Reliability diagram (ECE {ece:.4f}, {BINS} bins)")
    ax.legend()

    ax = figures["coverage.png"].axes[0]
    order = np.argsort(-outcomes["confidence"].to_numpy(), kind="stable")
    accepted = np.arange(1, len(order) + 1)
    ax.plot(accepted / len(order), np.cumsum(outcomes["top1"].to_numpy()[order]) / accepted)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="coverage (share of titles above the threshold)",
           ylabel="top-1 accuracy of the covered titles")
    ax.grid(True)

    paths = [report]
    for name, figure in figures.items():
        write_atomic(out_dir / name, lambda f, fig=figure: fig.savefig(f, format="png", dpi=100))
        paths.append(out_dir / name)
    return paths
