"""The CPU trainer's default precision, by what the processor can do (`${cpu_precision:}`)."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf


def cpu_precision() -> str:
    """`bf16-mixed` where the CPU has bf16 instructions (AVX-512 BF16 or AMX), where it is about
    2x faster than fp32; else `32-true`: without them bf16 is emulated, and a training step of
    the packaged model measured 5-7x slower than in fp32 (AVX2-only AMD EPYC)."""
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16-mixed" if native else "32-true"


OmegaConf.register_new_resolver("cpu_precision", cpu_precision, replace=True)
