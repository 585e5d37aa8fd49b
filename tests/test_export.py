"""Exports: the ONNX file runs in ONNX Runtime with the same outputs; safetensors loads into torchvision."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from safetensors.torch import load as load_safetensors

from resnet_core import PRESETS, build_model
from resnet_core.export import to_onnx, to_safetensors


@pytest.mark.parametrize("cfg", ["resnet18", "resnet20", PRESETS["resnet20"].with_(preact=True, shortcut="B")], ids=str)
def test_onnx_runs_in_onnxruntime_with_the_same_outputs(cfg: object) -> None:
    model = build_model(cfg).eval()  # type: ignore[arg-type]
    side = 32 if model.config.stem == "cifar" else 64
    data = to_onnx(model, (3, side, side))
    onnx.checker.check_model(onnx.load_from_string(data))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, side, side)  # batch 3: the batch axis is dynamic
    (logits,) = session.run(["logits"], {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(x).numpy(), atol=1e-4, rtol=1e-4)
    assert not model.training


def test_safetensors_state_dict_loads_into_torchvision() -> None:
    ours = build_model("resnet34").eval()
    ref = torchvision.models.resnet34().eval()
    ref.load_state_dict(load_safetensors(to_safetensors(ours)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
