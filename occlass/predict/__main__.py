"""`occlass-predict` (or `python -m occlass.predict`): predict.py with the packaged configs."""

import hydra
from omegaconf import DictConfig

from occlass.cli import CONF, run_cli


@hydra.main(config_path=str(CONF), config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from occlass.predict.job import predict_job

    run_cli(predict_job, cfg)


if __name__ == "__main__":
    main()
