"""Mixed precision: which autocast dtype each ``precision`` setting means.

Shared by training and inference, so both run a model the same way.
"""

from __future__ import annotations

import torch

#: ``precision`` settings that run under autocast, and their dtype (fp32 runs without).
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
