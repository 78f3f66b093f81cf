"""Training throughput (pairs/s): our Lightning training step against sentence-transformers.

    .venv/bin/python bench/train_speed.py [--batches 20] [--warmup 3] [hydra overrides]

Ours: `OccupationClassifier.training_step` driven by a Lightning `Trainer` built from the default
config (as `make train` runs it), training only. Reference: sentence-transformers `old_fit` with
`MultipleNegativesRankingLoss`, the same packaged MiniLM at its own max_seq_length, fp32. Both see
the same train-split (input text, category text) pairs in the same order and batch size, each
in a fresh process with the same torch threads; the first `--warmup` steps of each are not timed.
After training, both encoders are scored by the same evaluator (ours, `trainer.test` on the test
split against the category matrix) so the speed-up is read beside the accuracy it buys.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from common import default_config, load, preamble, write_section
from hydra.utils import instantiate
from sentence_transformers import InputExample, SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils.data import DataLoader

from occlass.data.datamodule import TitlePairDataModule
from occlass.data.tokenizer import resolve_model

PHASES = {"ours": "ours (Lightning, occlass ContrastiveLoss, trainer precision)",
          "ours-fp32": "ours in fp32 (`32-true`)",
          "reference-capped": "reference at our max lengths (fp32)",
          "reference": "reference (sentence-transformers old_fit, MNRL, fp32)"}


class Steps:
    """Per training step: timestamps of its phases (start, forward, backward, end) and sizes."""

    def __init__(self):
        self.rows: list[dict] = []

    def begin(self, **sizes) -> None:
        self.rows.append({"start": time.perf_counter(), **sizes})

    def mark(self, phase: str) -> None:
        self.rows[-1][phase] = time.perf_counter()

    def summary(self, warmup: int) -> dict[str, float]:
        """Means over the steps after `warmup`; a step's period runs from the previous step's end
        to its own (data loading included), and pairs/s = pairs / period."""
        timed = [{"period": row["end"] - prev["end"], "data": row["start"] - prev["end"],
                  "forward": row["forward"] - row["start"],
                  "backward": row["backward"] - row["forward"],
                  "optimizer": row["end"] - row["backward"],
                  "tokens": (row["pairs"] * row["title_len"]
                             + row["categories"] * row["category_len"]),
                  **{k: row[k] for k in ("pairs", "title_len", "categories", "category_len")}}
                 for prev, row in zip(self.rows[warmup - 1:], self.rows[warmup:])]
        mean = {k: sum(step[k] for step in timed) / len(timed) for k in timed[0]}
        return {**mean, "pairs/s": mean["pairs"] / mean["period"]}


class StepTimer(L.Callback):
    """Feeds `Steps` from Lightning's batch and backward hooks."""

    def __init__(self, steps: Steps):
        self.steps = steps

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.begin(pairs=len(batch["label"]), title_len=batch["title"]["input_ids"].shape[1],
                         categories=len(batch["category_index"]),
                         category_len=batch["category"]["input_ids"].shape[1])

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.steps.mark("forward")

    def on_after_backward(self, trainer, pl_module) -> None:
        self.steps.mark("backward")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.mark("end")


class FixedOrderDataModule(TitlePairDataModule):
    """The default DataModule, drawing training rows in `order` instead of a fresh shuffle."""

    order: list[int] | None = None  # set after setup(), once the train split's size is known

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=self.order,
                          drop_last=True, num_workers=loader.num_workers,
                          collate_fn=loader.collate_fn)


class TimedLoss(nn.Module):
    """Wraps a sentence-transformers loss to mark each step's start and forward end."""

    def __init__(self, loss: nn.Module, steps: Steps):
        super().__init__()
        self.loss, self.steps = loss, steps

    def forward(self, features, labels):
        title, category = features
        self.steps.begin(pairs=len(labels), title_len=title["input_ids"].shape[1],
                         categories=len(labels), category_len=category["input_ids"].shape[1])
        loss = self.loss(features, labels)
        self.steps.mark("forward")
        return loss


def evaluate_test(cfg, datamodule: TitlePairDataModule, model) -> dict[str, float]:
    """Test-split top-1 / top-k of `model` (an `OccupationClassifier`) by our evaluator (the
    config's trainer, whatever precision the model trained in)."""
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False,
                          enable_model_summary=False)
    result = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    return {"top1": result["test/accuracy"],
            "topk": result[f"test/{model.metrics['test'].top_k_name}"]}


def run_ours(cfg, datamodule: FixedOrderDataModule, n_steps: int,
             precision: str) -> tuple[Steps, dict]:
    steps = Steps()
    L.seed_everything(cfg.seed, workers=True)
    model = instantiate(cfg.model, _partial_=True)(categories=datamodule.categories)
    trainer = instantiate(cfg.trainer, callbacks=[StepTimer(steps)], logger=False,
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, max_epochs=1, limit_train_batches=n_steps,
                          limit_val_batches=0, num_sanity_val_steps=0, precision=precision)
    trainer.fit(model, datamodule=datamodule)
    return steps, evaluate_test(cfg, datamodule, model)


def run_reference(cfg, pairs: list[tuple[str, str]], n_steps: int, seed: int,
                  max_seq_length: int | None) -> tuple[Steps, int, SentenceTransformer]:
    """sentence-transformers' pre-v3 training loop (`old_fit`; `fit` needs `accelerate`), at
    `max_seq_length` (None: the model's own)."""
    steps = Steps()
    torch.manual_seed(seed)
    model = SentenceTransformer(resolve_model(cfg.model.encoder.name), device="cpu")
    if max_seq_length:
        model.max_seq_length = max_seq_length
    loss = TimedLoss(MultipleNegativesRankingLoss(model), steps)
    loader = DataLoader([InputExample(texts=list(p)) for p in pairs],
                        batch_size=cfg.data.batch_size, shuffle=False, drop_last=True)
    hooks = [register_optimizer_step_pre_hook(lambda *_: steps.mark("backward")),
             register_optimizer_step_post_hook(lambda *_: steps.mark("end"))]
    try:
        model.old_fit([(loader, loss)], epochs=1, steps_per_epoch=n_steps,
                      optimizer_params={"lr": cfg.optim.lr}, weight_decay=cfg.optim.weight_decay,
                      warmup_steps=int(cfg.optim.warmup_ratio * n_steps),  # ours; its default: 10k
                      use_amp=False, show_progress_bar=False)
    finally:
        for hook in hooks:
            hook.remove()
    return steps, model.max_seq_length, model


def table(results: dict[str, dict[str, float]], top_k: str) -> str:
    header = (f"| approach | pairs/s | test top-1 | test {top_k} | ms/step | data | forward | "
              "backward | optimizer + rest | padded title length | "
              "category texts × padded length | padded tokens/step |")
    lines = [header, "|---|" + "---:|" * 11]
    for name, r in results.items():
        ms = {k: f"{1000 * r[k]:.0f}"
              for k in ("period", "data", "forward", "backward", "optimizer")}
        lines.append(f"| {name} | {r['pairs/s']:.1f} | {r['top1']:.4f} | {r['topk']:.4f} | "
                     f"{ms['period']} | {ms['data']} | "
                     f"{ms['forward']} | {ms['backward']} | {ms['optimizer']} | "
                     f"{r['title_len']:.1f} | {r['categories']:.1f} × {r['category_len']:.1f} | "
                     f"{r['tokens']:,.0f} |")
    return "\n".join(lines)


def measure(args) -> dict[str, float]:
    """Run one approach (`args.phase`) in this process; its summary."""
    torch.set_num_threads(args.threads)
    cfg = default_config(*args.overrides)
    datamodule = instantiate(cfg.data, _target_=FixedOrderDataModule)
    datamodule.setup()
    train = datamodule.datasets["train"]
    n_steps = args.warmup + args.batches
    n_pairs = n_steps * cfg.data.batch_size
    if n_pairs > len(train):
        raise SystemExit(f"{n_steps} steps need {n_pairs:,} pairs; the train split has "
                         f"{len(train):,}")
    generator = torch.Generator().manual_seed(cfg.seed)
    datamodule.order = torch.randperm(len(train), generator=generator)[:n_pairs].tolist()
    if args.phase.startswith("ours"):
        precision = "32-true" if args.phase == "ours-fp32" else cfg.trainer.precision
        steps, accuracy = run_ours(cfg, datamodule, n_steps, precision)
        return {**steps.summary(args.warmup), **accuracy, "threads": torch.get_num_threads(),
                "precision": precision}
    rows = train.select(datamodule.order)
    categories = datamodule.taxonomy.category_texts(cfg.data.recipe, cfg.data.n_tasks)
    pairs = [(text, categories[label]) for text, label in zip(rows["text"], rows["label"])]
    # "capped": one max_seq_length for both texts, our category cap (inputs are shorter)
    cap = cfg.data.max_category_length if args.phase == "reference-capped" else None
    steps, max_seq_length, reference = run_reference(cfg, pairs, n_steps, cfg.seed, cap)
    # our evaluator around the reference's trained weights
    model = instantiate(cfg.model, _partial_=True)(categories=datamodule.categories)
    model.encoder.model.load_state_dict(reference[0].auto_model.state_dict())
    return {**steps.summary(args.warmup), **evaluate_test(cfg, datamodule, model),
            "max_seq_length": max_seq_length, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="timed steps of each approach")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (≥ 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for both")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="hydra overrides of conf/train.yaml")
    args = parser.parse_args()
    if args.warmup < 1 or args.batches < 1:
        parser.error("--warmup and --batches must be at least 1")
    if args.phase:
        args.result.write_text(json.dumps(measure(args)))
        return
    torch.set_num_threads(args.threads)
    began, at_start = time.perf_counter(), load()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for phase, name in PHASES.items():  # a fresh process each: memory and threads start clean
            result = Path(tmp) / f"{phase}.json"
            child = subprocess.run([sys.executable, __file__, "--phase", phase, "--result",
                                    str(result), *sys.argv[1:]], check=False)
            if child.returncode:
                sys.exit(child.returncode)
            results[name] = json.loads(result.read_text())
    mine, mine_fp32, capped, theirs = results.values()
    ratio = mine["pairs/s"] / theirs["pairs/s"]
    implementation = mine_fp32["pairs/s"] / capped["pairs/s"]
    max_seq_length = theirs["max_seq_length"]

    cfg = default_config(*args.overrides)
    d, precision = cfg.data, cfg.trainer.precision
    overrides = f", overrides {' '.join(args.overrides)}" if args.overrides else ""
    config = (
        f"default config (`conf/train.yaml`{overrides}), model `{cfg.model.encoder.name}`, batch "
        f"size {d.batch_size}, {args.warmup} untimed + {args.batches} timed steps each "
        f"({args.batches * d.batch_size:,} pairs), the same train-split pairs in the same order "
        f"(seed {cfg.seed}), run in this order, each in a fresh process with "
        f"{mine['threads']} torch threads. Ours: Lightning `Trainer` "
        f"(accelerator {cfg.trainer.accelerator}, precision `{precision}`), inputs ≤ "
        f"{d.max_input_length} and category texts ≤ {d.max_category_length} tokens (recipe "
        f"`{d.recipe}`), each distinct category of a batch encoded once, symmetric "
        f"`ContrastiveLoss` (temperature {cfg.loss.temperature}), "
        f"`{cfg.optim.optimizer._target_}`, gradient clipping "
        f"{cfg.trainer.get('gradient_clip_val') or 'none'}, no validation. Reference: "
        f"`SentenceTransformer.old_fit` in fp32, one `max_seq_length` for both texts (its own "
        f"{max_seq_length}, or our category cap {capped['max_seq_length']}), one category "
        f"text per pair, `MultipleNegativesRankingLoss` (scale 20), AdamW "
        f"with our lr schedule (lr {cfg.optim.lr}, linear, {cfg.optim.warmup_ratio:.0%} warmup; "
        f"`old_fit`'s default warmup is 10,000 steps), "
        f"gradient clipping at 1 (`fit` and `SentenceTransformerTrainer` need `accelerate`, "
        f"which is not installed)")
    body = (
        f"## Training throughput\n\n{preamble(config, at_start)}\n"
        f"{table(results, f'top-{cfg.top_k}')}\n\n"
        f"**Implementation alone** (both fp32, both at our max length: the reference's "
        f"`max_seq_length` {capped['max_seq_length']} for both texts): ours in fp32 / reference "
        f"= **{implementation:.2f}×**, at test top-1 {mine_fp32['top1']:.4f} vs "
        f"{capped['top1']:.4f}. **With our settings** (`{precision}`, the reference at its own "
        f"max length {max_seq_length}): "
        f"**ours / reference = {ratio:.2f}×** (steady-state pairs/s) at test top-1 "
        f"{mine['top1']:.4f} vs {theirs['top1']:.4f} ({100 * (mine['top1'] - theirs['top1']):+.1f} "
        f"pts) after the same {args.warmup + args.batches} steps: both encoders scored by our "
        f"evaluator (test split, category texts ≤ {d.max_category_length} tokens, "
        f"`{precision}`). Phase columns are mean ms "
        f"per step: data = collation and loading, forward includes the loss, backward includes "
        f"the reference's gradient clipping, optimizer + rest = AdamW step, zero_grad and loop "
        f"overhead. Sources of the difference: `{precision}` (ours) vs fp32; each distinct "
        f"category text encoded once per batch (ours) vs once per pair; category texts cut at "
        f"{d.max_category_length} tokens and inputs at {d.max_input_length} vs "
        f"{max_seq_length} (see padded tokens/step; both pad to the longest text of the batch). "
        f"Wall time {time.perf_counter() - began:.0f} s.\n")
    print(body)
    write_section("train_speed", body)


if __name__ == "__main__":
    main()
