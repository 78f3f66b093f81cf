"""`occlass-serve` (or `python -m occlass.serve`): serve.py with the packaged configs."""

import hydra
from omegaconf import DictConfig

from occlass.cli import CONF, run_cli


@hydra.main(config_path=str(CONF), config_name="serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from occlass.serve.app import serve

    run_cli(serve, cfg)


if __name__ == "__main__":
    main()
