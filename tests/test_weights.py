"""Pretrained weights: the real loading path, fed with files the tests write (no network here)."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision

from resnet_core import PretrainedUnavailable, load_pretrained
from resnet_core.weights import checkpoint_path, download


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path
    torch.hub.set_dir(str(Path(torch.hub._get_torch_home()) / "hub"))


def test_loads_a_cached_torchvision_checkpoint(torch_home: Path) -> None:
    ref = torchvision.models.resnet18().eval()
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    path = checkpoint_path(url)
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)

    pre = load_pretrained("resnet18")
    assert len(pre.categories) == 1000 and pre.categories[0] == "tench"
    assert pre.weights_name == "ResNet18_Weights.IMAGENET1K_V1"
    assert not pre.model.training
    img = torch.rand(3, 256, 300)
    x = pre.transforms(img).unsqueeze(0)
    assert x.shape == (1, 3, 224, 224)  # the weights' own resize and crop
    with torch.no_grad():
        assert (pre.model(x) - ref(x)).abs().max() <= 1e-5


def test_offline_gives_a_message_that_says_what_to_do(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(PretrainedUnavailable) as e:
        load_pretrained("resnet50")
    msg = str(e.value)
    assert "could not download" in msg and "resnet50-11ad3fa6.pth" in msg and str(torch_home) in msg
    assert not list((torch_home / "hub" / "checkpoints").glob("*"))  # nothing half-written left behind


def test_presets_without_torchvision_weights_say_so() -> None:
    with pytest.raises(PretrainedUnavailable, match="no ImageNet weights for 'resnet20'"):
        load_pretrained("resnet20")


def test_download_reports_progress_and_checks_the_hash(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 5000
    digest = hashlib.sha256(payload).hexdigest()[:8]
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    progress: list[tuple[int, int | None]] = []
    dest = download(src.as_uri(), tmp_path / "out" / f"model-{digest}.pth",
                    on_progress=lambda done, total: progress.append((done, total)), chunk_bytes=100_000)
    assert dest.read_bytes() == payload
    assert progress[-1] == (len(payload), len(payload)) and len(progress) == 13

    with pytest.raises(PretrainedUnavailable, match="hash mismatch"):
        download(src.as_uri(), tmp_path / "out2" / "model-deadbeef.pth")
    assert list((tmp_path / "out2").iterdir()) == []  # the partial file is gone
