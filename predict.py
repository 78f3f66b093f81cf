"""Predict O*NET-SOC occupations for job titles: `python predict.py run=RUN_DIR input=IN output=OUT`
or `python predict.py run=RUN_DIR text="senior python developer"` (see conf/predict.yaml)."""

import hydra
from omegaconf import DictConfig

from occlass.cli import run_cli


@hydra.main(config_path="conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from occlass.predict.job import predict_job

    run_cli(predict_job, cfg)


if __name__ == "__main__":
    main()
