"""The best checkpoint by the optimised metric, kept the best across a resume into a new folder."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint`, except that a run resumed into another folder keeps the
    best score so far (Lightning forgets it there, so the next epoch would be the best whatever
    its score). The earlier best file stays where it is (never deleted from the other folder)."""

    @property
    def state_key(self) -> str:  # as ModelCheckpoint's: either class resumes the other's
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        score, best = state_dict.get("best_model_score"), state_dict.get("best_model_path")
        if state_dict.get("dirpath", self.dirpath) != self.dirpath and score is not None and best:
            state_dict = {**state_dict, "dirpath": self.dirpath, "best_k_models": {best: score},
                          "kth_best_model_path": best, "kth_value": score,
                          "last_model_path": ""}
        super().load_state_dict(state_dict)
