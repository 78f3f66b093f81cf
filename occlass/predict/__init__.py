"""Prediction: `loader` turns a run (or the zero-shot model) into checked parts, `Predictor`
ranks occupations with them, `job` and `distributed` stream files through it for predict.py."""

from occlass.predict.loader import (
    RunParts,
    load_configured,
    load_corrections,
    load_run,
    load_zero_shot,
)
from occlass.predict.predictor import Predictions, Predictor

__all__ = ["Predictions", "Predictor", "RunParts", "load_configured", "load_corrections",
           "load_run", "load_zero_shot"]
