"""DDP on CPU (gloo): the gathered loss equals the one-process loss, the data order matches, and a
2-process run equals a 1-process run with the same global batch; the SLURM launcher config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers.tiny import ROOT
from torch.utils.data import DataLoader, DistributedSampler

from occlass.data.datamodule import EpochSampler
from occlass.model.category_cache import CategoryCache
from occlass.model.encoder import Encoder
from occlass.model.losses import ContrastiveLoss
from occlass.train.job import train

WORLD = 2


def loss_inputs():
    """A global batch of 8 inputs: categories shared between the halves, one two-code input."""
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(8, 16), dim=-1)
    table = F.normalize(torch.randn(6, 16), dim=-1)  # category embeddings by category id
    labels = torch.tensor([0, 1, 2, 1, 3, 1, 4, 5])
    codes = torch.stack([labels, torch.full_like(labels, -1)], dim=1)
    codes[3, 1] = 2  # input 3 is also valid for category 2
    return queries, table, labels, codes


def loss_and_grads(queries, table, labels, codes):
    """The loss of this process's inputs, and its gradients w.r.t. queries and the table."""
    queries, table = queries.clone().requires_grad_(), table.clone().requires_grad_()
    index = torch.unique(labels)  # what PairCollator does: each category of the batch once
    loss = ContrastiveLoss(temperature=0.1)(queries, labels, codes, table[index], index)
    loss.backward()
    return loss.detach(), queries.grad, table.grad


def ddp_rank(rank: int, port: int, out: Path) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    queries, table, labels, codes = loss_inputs()
    half = slice(rank * 4, (rank + 1) * 4)
    torch.save(loss_and_grads(queries[half], table, labels[half], codes[half]), out / f"{rank}.pt")
    dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_loss_and_gradients_match_one_process(tmp_path):
    """Every rank computes the loss of the global batch. all_gather's backward sums the gradients
    of the ranks' (identical) losses, so a rank's input gradient is WORLD × the one-process one;
    DDP's averaging of parameter gradients divides WORLD out again."""
    loss, query_grad, table_grad = loss_and_grads(*loss_inputs())
    mp.spawn(ddp_rank, args=(free_port(), tmp_path), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(WORLD)]
    for rank, (rank_loss, rank_query_grad, _) in enumerate(ranks):
        assert torch.allclose(rank_loss, loss, atol=1e-6)
        assert torch.allclose(rank_query_grad / WORLD, query_grad[rank * 4:(rank + 1) * 4],
                              atol=1e-6)
    assert torch.allclose(sum(grads for _, _, grads in ranks) / WORLD, table_grad, atol=1e-6)


def test_one_process_batches_are_the_union_of_the_ranks_batches():
    """Under DDP, the training loader takes a DistributedSampler(shuffle, seed, drop_last) for
    EpochSampler: the ranks' t-th batches together hold the one-process t-th batch, and there
    are as many (47 titles: Lightning's padding to 48 gave the ranks a sixth batch)."""
    data = list(range(47))
    loader = DataLoader(data, batch_size=8, drop_last=True, sampler=EpochSampler(data, seed=7))
    ranks = [DistributedSampler(data, num_replicas=WORLD, rank=rank, shuffle=True, seed=7,
                                drop_last=True) for rank in range(WORLD)]
    orders = []
    for epoch in (0, 1):
        for sampler in (loader.sampler, *ranks):
            sampler.set_epoch(epoch)
        orders.append(list(loader.sampler))
        split = [list(sampler) for sampler in ranks]
        assert [len(order) // 4 for order in split] == [len(loader)] * WORLD
        for t in range(len(data) // 8):
            assert sorted(orders[-1][8 * t:8 * t + 8]) == sorted(
                index for order in split for index in order[4 * t:4 * t + 4])
    assert orders[0] != orders[1]


def run_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_two_process_ddp_run_equals_one_process_run(train_cfg, tiny_bert, tiny_onet, tmp_path):
    """2 ranks × batch 4 against 1 process × batch 8: the same global batches (val of 10 and
    test of 6 titles, so no rank gets a padded sample), the same metrics, final
    weights and category cache. Without title-to-title pairs and noise: the partner titles and
    the noise are drawn from each rank's own share of the batch, so they differ from one
    process's."""
    common = ["trainer.max_epochs=2", "optim.lr=1e-3", "seed=7", "threads=1",
              "callbacks=model_checkpoint", "data.title_pairs=false", "data.noise=null",
              "data.val_fraction=0.2",
              "data.test_fraction=0.35"]
    single = train_cfg(*common, f"paths.output_dir={tmp_path / 'single'}")
    train(single)
    ddp = tmp_path / "ddp"
    command = [sys.executable, "train.py", *common, f"hydra.run.dir={ddp}",
               f"paths.data_dir={tiny_onet}", f"model.encoder.name={tiny_bert}",
               "trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={WORLD}",
               "trainer.precision=32-true", "trainer.enable_progress_bar=false",
               "data.batch_size=4", "data.eval_batch_size=16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = run_metrics(tmp_path / "single"), run_metrics(ddp)
    assert b["objective"]["value"] == pytest.approx(a["objective"]["value"], abs=1e-6)
    for stage in ("before", "after"):
        assert b[stage] == pytest.approx(a[stage], abs=1e-6), stage
    weights = [torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
               for out in (tmp_path / "single", ddp)]
    for key, value in weights[0].items():
        assert torch.allclose(weights[1][key], value, atol=1e-5), key
    query = "encoder.model.encoder.layer.0.attention.self.query.weight"
    initial = Encoder(tiny_bert).state_dict()[query.removeprefix("encoder.")]
    assert not torch.allclose(weights[0][query], initial, atol=1e-3)  # training moved them
    caches = [CategoryCache.load(out / "category_cache.pt") for out in (tmp_path / "single", ddp)]
    assert torch.allclose(caches[0].embeddings, caches[1].embeddings, atol=1e-5)
    assert (ddp / "train_ddp_process_1.log").is_file()  # rank 1 ran (and wrote only its log)


def test_slurm_launcher_submits_a_task_per_device(tmp_path):
    """`python train.py -m hydra/launcher=slurm` builds its sbatch script through the plugin and
    submitit; a stub `sbatch` keeps the script and refuses the job, so nothing runs."""
    stub = tmp_path / "bin" / "sbatch"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\ncp "$1" {tmp_path / "job.sh"}\necho "refused by a stub" >&2\nexit 1\n')
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it
    for tool in stub.parent.iterdir():
        tool.chmod(0o755)
    command = [sys.executable, "train.py", "-m", "hydra/launcher=slurm",
               "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path / 'sweep'}",
               "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "optim.lr=1e-4,3e-5"]
    env = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            check=False, timeout=300)
    assert result.returncode != 0 and "refused by a stub" in result.stderr
    script = (tmp_path / "job.sh").read_text()
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu",
                 "--time=720", "--mem=64GB", "--cpus-per-task=8", "--array=0-1%2"):
        assert f"#SBATCH {line}\n" in script, line
    assert "srun" in script and "submitit" in script
