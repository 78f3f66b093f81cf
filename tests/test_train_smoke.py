import json

from occlass import runs
from occlass.training import train


def test_fast_dev_run_writes_every_artifact(train_cfg):
    cfg = train_cfg("trainer.fast_dev_run=true")
    train(cfg)
    out = cfg.paths.output_dir
    from pathlib import Path
    out = Path(out)
    for name in (runs.CACHE_FILE, runs.RUN_FILE, runs.METRICS_FILE, runs.REPORT_FILE):
        assert (out / name).is_file(), name
    assert (out / runs.ENCODER_DIR / "config.json").is_file()
    assert list((out / "checkpoints").glob("*.ckpt"))
    metrics = json.loads((out / runs.METRICS_FILE).read_text())
    assert set(metrics) == {"before", "after", "best_val_accuracy"}
