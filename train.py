"""Train a job-title classifier: `python train.py [overrides]` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from occlass.cli import run_cli


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from occlass.training import train

    return run_cli(train, cfg)


if __name__ == "__main__":
    main()
