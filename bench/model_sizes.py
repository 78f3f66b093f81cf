"""Model sizes: MiniLM-L6 against MPNet-base, written to BENCHMARKS.md (section `model_sizes`).

    .venv/bin/python bench/model_sizes.py [--models minilm-l6 mpnet-base] [--train-pairs 4096]
        [--batch-size 32] [--predict-rows 2000] [hydra overrides]

For each `model=` config, in one process, from the default config: test-split accuracy zero-shot
and after fine-tuning on the same `--train-pairs` training pairs (one pass, same order, batch
size and lr, no validation), training pairs/s over the fine-tune's steps after the first, and
prediction rows/s: encoding `--predict-rows` test titles (fp32, batches of 256) and ranking
every occupation for each. mpnet-base needs `make mpnet`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
from common import default_config, load, preamble, write_section
from hydra.utils import instantiate

from occlass.model.metrics import metric_label


class TrainTimer(L.Callback):
    """Wall time of the training steps after the first (which warms up)."""

    def __init__(self):
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)


def predict_rows_per_s(model, datamodule, rows: int) -> float:
    """Encode `rows` test titles (cycled) and rank the categories for each, in fp32."""
    ids = list(datamodule.datasets["test"]["input_ids"])
    ids = (ids * (rows // len(ids) + 1))[:rows]
    categories = model.category_cache.embeddings
    start = time.perf_counter()
    scores = model.encoder.encode_ids(ids, datamodule.tokenizer.pad_token_id) @ categories.T
    scores.topk(5, dim=1)
    return rows / (time.perf_counter() - start)


def measure(name: str, args, overrides: list[str]) -> dict:
    steps = args.train_pairs // args.batch_size
    cfg = default_config(f"model={name}", f"data.batch_size={args.batch_size}",
                         "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}",
                         "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false",
                         *overrides)
    if not Path(cfg.model.encoder.name).exists() and name == "mpnet-base":
        raise SystemExit(f"{cfg.model.encoder.name} not found: run `make mpnet` first")
    L.seed_everything(cfg.seed, workers=True)
    datamodule, timer = instantiate(cfg.data), TrainTimer()
    model = instantiate(cfg.model, _partial_=True)(categories=datamodule.categories)
    trainer = instantiate(cfg.trainer, callbacks=[timer], logger=False,
                          enable_checkpointing=False)
    before = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    trainer.fit(model, datamodule=datamodule)
    after = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    return {"name": name, "params": sum(p.numel() for p in model.encoder.parameters()),
            "dim": model.encoder.dim, "before": before, "after": after,
            "top_k": model.metrics["test"].top_k_name,
            "pairs/s": args.batch_size / timer.seconds_per_step(),
            "rows/s": predict_rows_per_s(model, datamodule, args.predict_rows),
            "test titles": len(datamodule.datasets["test"]), "cfg": cfg}


def table(results: list[dict]) -> str:
    first = results[0]
    top_k = metric_label(first["top_k"]).split()[0]  # "Top-5"
    header = (f"| model | params | dim | zero-shot top-1 | zero-shot {top_k} | fine-tuned top-1 | "
              f"fine-tuned {top_k} | Δ top-1 | train pairs/s | predict rows/s |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        b, a, k = r["before"], r["after"], f"test/{r['top_k']}"
        delta = 100 * (a["test/accuracy"] - b["test/accuracy"])
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.1f}M | {r['dim']} | "
                     f"{b['test/accuracy']:.4f} | {b[k]:.4f} | "
                     f"{a['test/accuracy']:.4f} | {a[k]:.4f} | "
                     f"{delta:+.1f} pts | {r['pairs/s']:.1f} ({r['pairs/s'] / first['pairs/s']:.2f}×) | "
                     f"{r['rows/s']:.0f} ({r['rows/s'] / first['rows/s']:.2f}×) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["minilm-l6", "mpnet-base"],
                        help="conf/model/ configs to compare")
    parser.add_argument("--train-pairs", type=int, default=4096, help="fine-tuning pairs")
    parser.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch size")
    parser.add_argument("--predict-rows", type=int, default=2000, help="titles to predict")
    parser.add_argument("overrides", nargs="*", help="hydra overrides of conf/train.yaml")
    args = parser.parse_args()
    if args.train_pairs < 2 * args.batch_size:
        parser.error("--train-pairs must be at least 2 batches (the first one is not timed)")
    began, at_start = time.perf_counter(), load()
    results = [measure(name, args, args.overrides) for name in args.models]
    cfg = results[0]["cfg"]
    extra = f", overrides `{' '.join(args.overrides)}`" if args.overrides else ""
    config = (f"default config (`conf/train.yaml`){extra}; test split {results[0]['test titles']:,} titles; fine-tune: "
              f"{args.train_pairs // args.batch_size * args.batch_size:,} training pairs in "
              f"batches of {args.batch_size}, lr {cfg.optim.lr} with {cfg.optim.warmup_ratio:.0%} "
              f"warmup, one pass, precision `{cfg.trainer.precision}`, inputs ≤ "
              f"{cfg.data.max_input_length} and category texts ≤ {cfg.data.max_category_length} "
              f"tokens (recipe `{cfg.data.recipe}`), seed {cfg.seed}; prediction: "
              f"{args.predict_rows:,} test titles, fp32, batches of 256, against the "
              "fine-tuned category matrix")
    write_section("model_sizes", f"## Model sizes\n\n{preamble(config, at_start)}\n"
                  f"{table(results)}\n\nSame pairs, order, batch size and learning rate for "
                  "every model, so the fine-tuned columns compare equal budgets, not each "
                  "model's best (see `conf/experiment/` for per-size settings); speeds in "
                  f"brackets are relative to {results[0]['name']}, measured in this run. Wall time "
                  f"{(time.perf_counter() - began) / 60:.1f} min.")


if __name__ == "__main__":
    main()
