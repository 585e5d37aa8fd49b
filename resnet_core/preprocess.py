"""From a picture to the exact tensor a network sees: resize, centre crop, scale to [0, 1], normalise.

Pretrained weights bring their own recipe (torchvision's `weights.transforms()`: ResNet-50 V2 resizes to
232, crops 224); `from_weights_transforms` reads it so that our preprocessing is exactly theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    crop: tuple[int, int]  # (H, W) the network sees
    resize: int  # the shorter side is resized to this first
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3  # 1: the image is turned to grey first
    interpolation: InterpolationMode = InterpolationMode.BILINEAR

    def describe(self) -> str:
        h, w = self.crop
        grey = "convert to grey, " if self.channels == 1 else ""
        return (
            f"{grey}resize the shorter side to {self.resize} px ({self.interpolation.value}, antialiased), "
            f"centre-crop {h}x{w}, scale to [0, 1], subtract mean {self.mean}, divide by std {self.std}"
        )


def for_input(crop: tuple[int, int], channels: int = 3) -> Preprocess:
    """Preprocessing for a model without a recipe of its own: cover the input size, then crop (no distortion)."""
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.25,))
    return Preprocess(crop=crop, resize=max(crop), mean=mean, std=std, channels=channels)


def from_weights_transforms(t: object) -> Preprocess:
    """torchvision's ImageClassification transform (weights.transforms()) as a Preprocess."""
    crop = t.crop_size[0]  # type: ignore[attr-defined]
    return Preprocess(
        crop=(crop, crop),
        resize=t.resize_size[0],  # type: ignore[attr-defined]
        mean=tuple(t.mean),  # type: ignore[attr-defined]
        std=tuple(t.std),  # type: ignore[attr-defined]
        interpolation=t.interpolation,  # type: ignore[attr-defined]
    )


def preprocess(image: Image.Image, p: Preprocess) -> Tensor:
    """(1, C, H, W) float tensor, exactly what the network is given."""
    if p.channels == 1:
        image = image.convert("L")
    image = TF.resize(image, [p.resize], interpolation=p.interpolation, antialias=True)
    image = TF.center_crop(image, list(p.crop))
    x = TF.pil_to_tensor(image).float() / 255.0
    return TF.normalize(x, list(p.mean), list(p.std)).unsqueeze(0)


def to_display(x: Tensor, p: Preprocess) -> np.ndarray:
    """Undo the normalisation of a (1, C, H, W) tensor: (H, W, 3) uint8 for showing on screen."""
    mean = torch.tensor(p.mean).view(-1, 1, 1)
    std = torch.tensor(p.std).view(-1, 1, 1)
    img = (x[0] * std + mean).clamp(0, 1)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
