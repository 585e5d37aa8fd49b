"""Preprocessing is exactly the weights' own recipe, and the display undoes only the normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights, ResNet50_Weights

from resnet_core.preprocess import for_input, from_weights_transforms, preprocess, to_display


@pytest.mark.parametrize("weights", [ResNet50_Weights.IMAGENET1K_V2, ResNet18_Weights.IMAGENET1K_V1], ids=str)
def test_matches_torchvision_weights_transforms(weights: object) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8))
    transforms = weights.transforms()  # type: ignore[attr-defined]
    ours = preprocess(image, from_weights_transforms(transforms))
    assert torch.allclose(ours, transforms(image).unsqueeze(0), atol=1e-6)


def test_for_input_covers_then_crops_and_display_inverts() -> None:
    image = Image.new("RGB", (400, 200), (200, 100, 50))
    p = for_input((96, 128))
    x = preprocess(image, p)
    assert x.shape == (1, 3, 96, 128)
    shown = to_display(x, p)
    assert shown.shape == (96, 128, 3) and (np.abs(shown.astype(int) - [200, 100, 50]) <= 1).all()
    grey = preprocess(image, for_input((32, 32), channels=1))
    assert grey.shape == (1, 1, 32, 32)
