"""precision: auto, resolved by the device's capabilities (faked here)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from maskrcnn_pipeline.model import precision as precision_module
from maskrcnn_pipeline.model.precision import autocast, cpu_flags, resolve_precision

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)
#: the flags of the two CPU kinds measured (abridged): with and without native bf16
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile"}
ICE_LAKE = {"avx2", "avx512f", "avx512bw", "avx512_vnni"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (SAPPHIRE_RAPIDS, "bf16"),
        ({"avx512f", "avx512_bf16"}, "bf16"),
        ({"avx2", "amx_bf16"}, "bf16"),
        (ICE_LAKE, "fp32"),
        (set(), "fp32"),
    ],
)
def test_auto_on_the_cpu_is_bf16_only_where_it_is_native(flags: set[str], expected: str) -> None:
    assert resolve_precision("auto", CPU, flags=flags) == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_a_gpu_is_bf16_where_supported_else_fp16(bf16: bool, expected: str) -> None:
    assert resolve_precision("auto", GPU, cuda_bf16=bf16) == expected


@pytest.mark.parametrize("setting", ["fp32", "fp16", "bf16"])
def test_an_explicit_precision_is_kept_on_any_device(setting: str) -> None:
    assert resolve_precision(setting, CPU, flags=set()) == setting
    assert resolve_precision(setting, GPU, cuda_bf16=False) == setting


def test_the_choice_and_its_reason_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="maskrcnn_pipeline.model.precision"):
        resolve_precision("auto", CPU, flags=ICE_LAKE)
    assert "precision auto -> fp32 on cpu" in caplog.text
    assert "no native bf16" in caplog.text


def test_cpu_flags_come_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n"
    )
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_auto_reads_this_cpu_when_not_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(ICE_LAKE))
    assert resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    assert resolve_precision("auto", CPU) == "bf16"


def test_predictor_resolves_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    from maskrcnn_pipeline.data.categories import Categories
    from maskrcnn_pipeline.inference.predict import Predictor

    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(ICE_LAKE))
    predictor = Predictor(torch.nn.Identity(), Categories((), ()), CPU, "auto")
    assert predictor.precision == "fp32"


def test_autocast_refuses_an_unresolved_setting() -> None:
    with pytest.raises(ValueError, match="resolve it first"):
        autocast("auto", CPU)
    with autocast("bf16", CPU):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast("fp32", CPU):
        assert not torch.is_autocast_enabled("cpu")
