"""The library refuses nonsense with a sentence, before it allocates anything, and says what a teacher should know
about a model at an input (Report.warnings)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from resnet_core import PRESETS, analyze, build_model
from resnet_core.analysis import param_count
from resnet_core.model import MAX_PARAMS


@pytest.mark.parametrize("bad", [{"blocks": [2, 2]}, 50, None, ["resnet50"]])
def test_a_model_that_is_neither_a_config_nor_a_preset_name_is_refused_in_words(bad: object) -> None:
    for call in (lambda: analyze(bad), lambda: build_model(bad)):  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"a model is a ResNetConfig or the name of a preset such as 'resnet50'"):
            call()


@pytest.mark.parametrize("size", [224, (3, 224), (3, None, 224), (3.0, 224, 224), (3, 224, 224.0), "3x224x224",
                                  (True, 224, 224)])
def test_an_input_size_that_is_not_three_whole_numbers_is_refused(size: object) -> None:
    with pytest.raises(ValueError, match=r"must be \(channels, height, width\): three whole numbers"):
        analyze("resnet18", input_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype_bytes", [0, -4, 2.0, "4", None, True, 16])
def test_dtype_bytes_must_be_the_bytes_of_one_value(dtype_bytes: object) -> None:
    with pytest.raises(ValueError, match=r"dtype_bytes=.* must be the bytes of one value"):
        analyze("resnet18", dtype_bytes=dtype_bytes)  # type: ignore[arg-type]


def test_param_count_is_torchvisions_and_the_bound_refuses_before_allocating() -> None:
    wide101 = PRESETS["resnet101"].with_(width_per_group=128)  # torchvision's wide_resnet101_2
    truth = sum(p.numel() for p in torchvision.models.wide_resnet101_2().parameters())
    assert param_count(wide101) == truth  # 126.9 M: under the default bound
    assert truth < MAX_PARAMS
    allows = r"126\.89 M parameters .* more than the 100\.00 M parameters that build_model allows"
    with pytest.raises(ValueError, match=allows):
        build_model(wide101, max_params=100_000_000)
    # Tens of billions of parameters (hundreds of GB in float32): refused at once, where a build would exhaust the
    # machine's memory.
    huge = PRESETS["resnet50"].with_(widths=(2048, 2048, 2048, 2048), width_per_group=512)
    assert param_count(huge) > 1e10
    with pytest.raises(ValueError, match=r"more than the 200\.00 M parameters that build_model allows"):
        build_model(huge)
    assert build_model(huge, device="meta").fc.weight.is_meta  # shapes only: nothing allocated, no bound needed
    small = build_model("resnet18", max_params=None)
    assert sum(p.numel() for p in small.parameters()) == param_count("resnet18")


def test_warnings_say_when_the_input_is_smaller_than_the_stride_or_the_receptive_field() -> None:
    at_224 = analyze("resnet50", input_size=(3, 224, 224))
    assert at_224.jump == 32 and at_224.receptive_field > 224
    assert len(at_224.warnings) == 1 and "theoretical receptive field" in at_224.warnings[0]
    assert f"({at_224.receptive_field} px)" in at_224.warnings[0]
    tiny = analyze("resnet50", input_size=(3, 16, 16))
    assert any("smaller than the network's total stride (32)" in w for w in tiny.warnings)
    # The same check by torch: at 16×16 ResNet-50's last stage works on a single pixel.
    model = build_model("resnet50").eval()
    with torch.no_grad():
        feats = torch.nn.Sequential(*list(model.children())[:-2])(torch.zeros(1, 3, 16, 16))
    assert feats.shape[-2:] == (1, 1)
    big = analyze("resnet20", input_size=(3, 256, 256))
    assert big.warnings == ()  # a CIFAR net on a large input: nothing to say



def test_the_app_and_the_library_share_one_bound() -> None:
    from server import selection

    assert selection.MAX_PARAMS is MAX_PARAMS
