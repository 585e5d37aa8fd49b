"""The feature-maps page in AppTest: samples, uploads good and bad, names shown as plain text, sessions apart."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.test_pages import run_app

HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"


def png_bytes(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def feature_page(preset: str = "resnet18") -> AppTest:
    return run_app({"preset": preset, "input": "3x96x96"}, page="feature_maps")


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def test_renders_a_sample_and_every_kind_of_layer() -> None:
    at = feature_page()
    assert not at.exception
    assert at.selectbox(key="fm.layer").value == "stem"
    for place in ("layer1", "layer2.0", "layer4.1"):
        at.selectbox(key="fm.layer").select(place).run()
        assert not at.exception
    assert any("layer4.1 · output · 512 channels of 3×3" in c.value for c in at.caption)


def test_upload_good_then_broken_keeps_the_good_image_and_shows_the_name_as_text() -> None:
    at = feature_page()
    at.get("button_group")[0].set_value("Your image").run()
    at.file_uploader(key="fm.upload").upload(HOSTILE_NAME, png_bytes(), "image/png").run()
    assert not at.exception and not at.error
    assert any(t.startswith(HOSTILE_NAME) for t in texts(at))  # st.text: never markdown or HTML
    assert not any(HOSTILE_NAME in m.value for m in at.markdown)

    at.file_uploader(key="fm.upload").upload("photo.jpg", b"<html><body>not a photo</body></html>", "image/jpeg")
    at.run()
    assert not at.exception
    assert any("not an image in a supported format" in e.value.lower() or "html" in e.value.lower() for e in at.error)
    assert any(t.startswith(HOSTILE_NAME) for t in texts(at))  # the previous image stays


def test_two_sessions_never_share_a_model_or_activations() -> None:
    a, b = feature_page(), feature_page()
    b.get("button_group")[0].set_value("Your image").run()
    b.file_uploader(key="fm.upload").upload("red.png", png_bytes((255, 0, 0)), "image/png").run()
    a.run()
    model_a, model_b = a.session_state["fm.model"].model, b.session_state["fm.model"].model
    assert model_a is not model_b
    cap_a, cap_b = a.session_state["fm.capture"][2], b.session_state["fm.capture"][2]
    assert not np.allclose(cap_a.outputs["stem"].numpy(), cap_b.outputs["stem"].numpy())
    assert not any(m._forward_hooks for m in model_a.modules())


def test_a_plain_network_says_it_has_no_shortcut() -> None:
    at = run_app({"preset": "plain20", "input": "3x32x32"}, page="feature_maps")
    assert not at.exception
    assert any("plain network" in i.value for i in at.info)


def test_pretrained_weights_give_top5_and_grad_cam(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torch
    import torchvision

    from resnet_core.weights import checkpoint_path, pretrained_url

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path = checkpoint_path(pretrained_url("resnet18"))
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)  # the real loading path, on a file we wrote

    at = feature_page("resnet18")
    at.radio(key="fm.weights").set_value("ImageNet-pretrained").run()
    assert not at.exception and not at.warning
    top5 = next(df.value for df in at.dataframe if "probability" in df.value.columns)
    assert len(top5) == 5 and abs(top5["probability"].sum()) <= 1.0
    assert any("Grad-CAM of" in c.value for c in at.caption)
    assert at.session_state["fm.model"].categories[0] == "tench"


def test_offline_pretrained_falls_back_to_random_weights(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import urllib.error
    import urllib.request

    import torch

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    at = feature_page("resnet34")
    at.radio(key="fm.weights").set_value("ImageNet-pretrained").run()
    assert not at.exception
    assert any("could not download" in w.value for w in at.warning)
    assert at.session_state["fm.model"].categories is None  # random weights, the page keeps working
    assert any("Random weights predict nothing" in i.value for i in at.info)


def test_a_model_whose_feature_maps_would_not_fit_is_refused_before_it_is_built() -> None:
    from resnet_core import analyze
    from resnet_core.units import fmt_bytes
    from server.settings import LIMITS

    # One stage of 2048 channels at full resolution: 41 M parameters, but 18 GiB of maps for one 512x512 image.
    link = {"preset": "custom", "blocks": "1", "block": "basic", "widths": "2048", "stem": "cifar",
            "input": "3x512x512"}
    at = run_app(link, page="feature_maps")
    assert not at.exception
    need = analyze(at.session_state["picker.selection"].config, input_size=(3, 512, 512)).activation_bytes
    assert need > LIMITS.activation_max_bytes
    assert [e.value for e in at.error] == [
        f"The feature maps of {at.session_state['picker.selection'].label} at 512×512 take {fmt_bytes(need)} for one "
        f"image, more than this server allows ({fmt_bytes(LIMITS.activation_max_bytes)}). Choose a smaller input or "
        "fewer or narrower channels in the sidebar."
    ]
    assert "fm.model" not in at.session_state  # nothing was built
