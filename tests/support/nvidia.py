"""What the tests of engine nvidia share: the stand-in for NVIDIA's code and its log format.

tests/support/doubles/nvidia_maskrcnn.py plays ``torchrun`` + NVIDIA's train_net.py/test_net.py; it
also writes dllogger lines, which the parser tests reuse so both follow one statement of
NVIDIA's format. Kept out of conftest.py so the shared fixtures stay as they are.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.conftest import REPO

#: tests/support/doubles/nvidia_maskrcnn.py: NOT NVIDIA's code; checks our calls, writes
#: their files.
NVIDIA_DOUBLE = REPO / "tests" / "support" / "doubles" / "nvidia_maskrcnn.py"


@cache
def double() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nvidia_double", NVIDIA_DOUBLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


START = datetime(2022, 5, 1, 12, 0, 0)


def dllogger_file(path: Path, lines: list[tuple[Any, dict, float]]) -> Path:
    """A --json-summary file: (step, data, seconds after the logger started) per line."""
    text = "".join(
        double().dllogger_line(step, data, START, START + timedelta(seconds=seconds)) + "\n"
        for step, data, seconds in lines
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def iteration_data(loss: float, *, lr: float = 0.12, time: float = 0.5) -> dict[str, Any]:
    """What NVIDIA's trainer logs every 20 iterations (MetricLogger's text for the meters)."""
    return {
        "eta": "1:02:03",
        "learning_rate": lr,
        "memory": 9876.5,
        "loss": f"{loss:.4f} ({loss + 1:.4f})",
        "loss_classifier": f"{loss / 4:.4f} ({loss:.4f})",
        "loss_box_reg": f"{loss / 4:.4f} ({loss:.4f})",
        "loss_mask": f"{loss / 4:.4f} ({loss:.4f})",
        "loss_objectness": f"{loss / 8:.4f} ({loss:.4f})",
        "loss_rpn_box_reg": f"{loss / 8:.4f} ({loss:.4f})",
        "time": f"{time:.4f} ({time + 0.1:.4f})",
        "data": "0.0200 (0.0300)",
    }
