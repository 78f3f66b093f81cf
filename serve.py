"""The review desk: an HTTP API and the review page, `python serve.py run=RUN_DIR`
(see conf/serve.yaml and occlass/serve/)."""

import hydra
from omegaconf import DictConfig

from occlass.cli import run_cli


@hydra.main(config_path="conf", config_name="serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from occlass.serve.app import serve

    run_cli(serve, cfg)


if __name__ == "__main__":
    main()
