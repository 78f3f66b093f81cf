"""`occlass-train` (or `python -m occlass.train`): train.py with the packaged configs."""

import hydra
from omegaconf import DictConfig, OmegaConf

from occlass.cli import CONF, run_cli


@hydra.main(config_path=str(CONF), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from occlass.train.job import cross_validate, train

    job = train if OmegaConf.select(cfg, "cv.folds") is None else cross_validate
    return run_cli(job, cfg)


if __name__ == "__main__":
    main()
