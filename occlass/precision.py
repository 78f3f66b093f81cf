"""What bf16 costs on this CPU: the CPU trainer's default precision (`${cpu_precision:}`)."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf


def native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX-512 BF16 or AMX); without them bf16 is
    emulated, and slower than fp32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def cpu_precision() -> str:
    """`bf16-mixed` where the CPU has bf16 instructions, where it is about 2x faster than fp32;
    else `32-true`: a training step of the packaged model in emulated bf16 measured 5-7x slower
    than in fp32 (AVX2-only AMD EPYC)."""
    return "bf16-mixed" if native_bf16() else "32-true"


OmegaConf.register_new_resolver("cpu_precision", cpu_precision, replace=True)
