"""The built model as files: ONNX (opens in Netron and runs in ONNX Runtime) and a safetensors state dict, and
the one way this project writes a file that a reader must never see half-written."""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors

from .model import ResNet


def to_onnx(model: ResNet, input_size: tuple[int, int, int], *, opset: int = 17) -> bytes:
    """ONNX bytes of `model` in eval mode, with a dynamic batch axis ("image" -> "logits")."""
    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter needs no extra packages; its deprecation notice is not for users.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (torch.zeros(1, *input_size),),
                buf,  # type: ignore[arg-type]  # a file-like object works as well as a path
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
            )
    finally:
        model.train(was_training)
    return buf.getvalue()


def to_safetensors(model: ResNet) -> bytes:
    """The state dict (weights and BN statistics) with torchvision's key names, as safetensors bytes."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return save_safetensors(state, metadata={"config": repr(model.config)})


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader, or a crash at any moment, never sees a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
