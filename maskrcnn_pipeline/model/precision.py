"""Mixed precision: which autocast dtype each ``precision`` setting means, and what ``auto``
resolves to on a device.

Shared by training and inference, so both run a model the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch

log = logging.getLogger(__name__)

#: ``precision`` settings that run under autocast, and their dtype (fp32 runs without).
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: /proc/cpuinfo flags of x86 CPUs that compute bf16 natively (AVX512_BF16, AMX). Without
#: them torch emulates bf16 autocast on the CPU, and it runs slower than fp32 (measured: the
#: demo's training step 944 ms in bf16 against 669 ms in fp32 on an AVX-512 Xeon without
#: them). torch's own check (torch.ops.mkldnn._is_mkldnn_bf16_supported) is no guide: it is
#: true wherever oneDNN can emulate bf16, AVX-512 without these flags included.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (empty where there is no such file,
    e.g. macOS: ``auto`` then runs fp32 on the CPU, the choice that is never slow)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def resolve_precision(
    setting: str,
    device: torch.device,
    *,
    flags: Iterable[str] | None = None,
    cuda_bf16: bool | None = None,
) -> str:
    """The precision a run uses on ``device``: ``setting`` itself unless it is ``auto``.

    ``auto``: on a GPU, bf16 where it supports bf16 (Ampere and newer), else fp16; on the
    CPU, bf16 where the CPU computes it natively (:data:`NATIVE_BF16_CPU_FLAGS`), else fp32.
    ``flags`` (the CPU's feature flags) and ``cuda_bf16`` replace the device's own answers
    (for tests). The choice is logged; training records it in its provenance.
    """
    if setting != "auto":
        return setting
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        chosen = "bf16" if supported else "fp16"
        reason = "the GPU supports bf16" if supported else "the GPU has no bf16"
    else:
        native = sorted(set(NATIVE_BF16_CPU_FLAGS) & set(cpu_flags() if flags is None else flags))
        chosen = "bf16" if native else "fp32"
        reason = (
            f"the CPU has {', '.join(native)}"
            if native
            else "the CPU has no native bf16 (avx512_bf16/amx_bf16), where bf16 is emulated "
            "and slower than fp32"
        )
    log.info("precision auto -> %s on %s: %s", chosen, device.type, reason)
    return chosen


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a resolved ``precision`` (disabled for fp32)."""
    if precision != "fp32" and precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision {precision!r}: resolve it first (resolve_precision)")
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
