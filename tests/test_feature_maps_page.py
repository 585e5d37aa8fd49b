"""The feature-maps page in AppTest: samples, uploads good and bad, names shown as plain text, sessions apart."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from resnet_core import build_model
from resnet_core.activations import block_internals, blocks_of, top_k
from resnet_core.config import ResNetConfig
from resnet_core.data import BUILTIN_CLASSES, builtin
from resnet_core.preprocess import Preprocess, preprocess
from resnet_core.train import TrainConfig, Trainer
from tests.conftest import torch_threads
from tests.test_pages import run_app
from ui.training import TrainedModel

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
    choice = at.radio(key="fm.weights")
    assert list(choice.proto.captions) == ["", "not on this computer yet", ""]  # marked before anyone picks it
    command = "python -m resnet_core fetch --weights resnet34"
    assert f"`{command}`" in choice.help
    choice.set_value("ImageNet-pretrained").run()
    assert not at.exception and not at.error
    said = next(i.value for i in at.info if "ImageNet weights" in i.value)
    assert said.startswith("**The ImageNet weights of resnet34 are not on this computer yet**")
    assert "83 MB" in said and command in [c.value for c in at.code]  # torchvision's record of its size
    assert at.session_state["fm.model"].categories is None  # random weights, the page keeps working
    assert any("Random weights predict nothing" in i.value for i in at.info)

    next(b for b in at.button if b.label == "Try downloading them here (83 MB)").click().run()
    assert not at.exception
    (failed,) = [e.value for e in at.error]
    assert failed.startswith("The download did not work") and f"`{command}`" in failed
    assert any("Temporary failure in name resolution" in t.value for t in at.text)  # the details, one click away
    assert not any((tmp_path / "hub").rglob("*.pth*"))  # nothing half-written
    assert at.session_state["fm.model"].categories is None


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


# --- a model trained in this session ----------------------------------------------------------------------------

TRAINED_LABEL = "tiny · builtin · 2 ep · seed 0"
TINY_SHAPES = ResNetConfig(blocks=(1, 1, 1), widths=(8, 16, 32), stem="cifar", stem_width=8)


@pytest.fixture(scope="module")
def shapes_model() -> TrainedModel:
    """A tiny ResNet really trained on the built-in shapes (2 epochs, a few seconds), held as the Training page holds
    the model it offers to this page."""
    data = builtin(n_train=1500, n_test=200, seed=0)
    recipe = TrainConfig(epochs=2, batch_size=32, lr=0.05, augment=False, device="cpu", max_seconds=30.0)
    with torch_threads(1):
        result = Trainer(TINY_SHAPES, data, recipe).run()
    return TrainedModel.of(result.model, data, job_id=1, label=TRAINED_LABEL)  # as the Training page keeps it


def with_trained(at: AppTest, trained: TrainedModel) -> AppTest:
    """Training finished in this session, then the student picks it under Weights."""
    at.session_state["train.trained"] = trained
    at.run()
    return at.radio(key="fm.weights").set_value("Trained in this session").run()


def shown_predictions(at: AppTest) -> pd.DataFrame:
    return next(df.value for df in at.dataframe if "probability" in df.value.columns)


def library_predictions(trained: TrainedModel, image: Image.Image) -> list[tuple[str, float]]:
    """The top 5 of the trained weights on `image`, computed with the library alone, as a notebook would."""
    import torch

    model = build_model(trained.config, seed=0)
    model.load_state_dict(trained.state)
    c, h, w = trained.input_size
    x = preprocess(image, Preprocess(crop=(h, w), resize=max(h, w), mean=trained.mean, std=trained.std, channels=c))
    with torch.inference_mode():
        return top_k(model.eval()(x), trained.classes, k=5)


def test_a_trained_shapes_model_is_named_offers_shapes_and_names_its_classes(shapes_model: TrainedModel) -> None:
    at = with_trained(feature_page("resnet50"), shapes_model)
    assert not at.exception
    header = at.caption[0].value
    assert header.startswith(f"{TRAINED_LABEL} (trained in this session):") and "resnet50 is another model" in header
    assert at.session_state["fm.model"].model.config == shapes_model.config

    samples = at.selectbox(key="fm.shape")
    assert samples.options[: len(BUILTIN_CLASSES)] == [f"{n} (built-in shape)" for n in BUILTIN_CLASSES]
    assert any(t.startswith("circle\n") for t in texts(at))  # the first shape replaced the photo
    assert any(c.value == f"This model knows 10 classes: {', '.join(BUILTIN_CLASSES)}." for c in at.caption)
    assert not at.warning  # a shape it knows: nothing to warn about

    samples.select_index(BUILTIN_CLASSES.index("star")).run()
    assert any(t.startswith("star\n") for t in texts(at))
    star = builtin(n_train=1, n_test=len(BUILTIN_CLASSES), seed=0).x_test
    expected = library_predictions(shapes_model, at.session_state["fm.image"][2].image)
    got = shown_predictions(at)
    assert list(got["class"]) == [c for c, _ in expected]
    assert np.allclose(got["probability"], [p for _, p in expected], atol=1e-5)
    shown = np.asarray(at.session_state["fm.image"][2].image)  # the drawn star of builtin()'s held-out stream
    assert any(np.array_equal(shown, img.permute(1, 2, 0).numpy()) for img in star)


def test_a_photo_to_a_shapes_model_says_which_classes_it_knows(shapes_model: TrainedModel) -> None:
    at = with_trained(feature_page(), shapes_model)
    at.get("button_group")[0].set_value("Your image").run()
    at.file_uploader(key="fm.upload").upload("cat.png", png_bytes((90, 120, 200)), "image/png").run()
    assert not at.exception
    [warning] = at.warning
    assert "trained on the built-in shapes only" in warning.value and "10 shapes" in warning.value
    assert any(c.value == f"This model knows 10 classes: {', '.join(BUILTIN_CLASSES)}." for c in at.caption)
    assert set(shown_predictions(at)["class"]) <= set(BUILTIN_CLASSES)


def test_the_memory_check_is_for_the_model_shown(shapes_model: TrainedModel) -> None:
    """The sidebar holds a model whose maps would not fit; the trained model's fit, so it is shown."""
    from resnet_core import analyze
    from server.settings import LIMITS

    link = {"preset": "custom", "blocks": "1", "block": "basic", "widths": "2048", "stem": "cifar",
            "input": "3x512x512"}
    at = run_app(link, page="feature_maps")
    assert any("more than this server allows" in e.value for e in at.error)
    with_trained(at, shapes_model)
    assert not at.exception and not at.error
    need = analyze(shapes_model.config, input_size=shapes_model.input_size).activation_bytes
    assert need <= LIMITS.activation_max_bytes
    assert at.session_state["fm.model"].model.config == shapes_model.config
    assert any(c.value.startswith("stem · output · 8 channels of 32×32") for c in at.caption)


def anatomy_caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if "median |F(x)| / |x|" in c.value)


def measured_median(at: AppTest) -> float:
    """The median over residual blocks of mean |F(x)| / mean |x|, measured again inside each block with
    `block_internals` (its own hooks, not the capture's statistics)."""
    sm, cap = at.session_state["fm.model"], at.session_state["fm.capture"][2]
    ratios = []
    for path, block in blocks_of(sm.model):
        inside = block_internals(block, cap.block_input(path))
        ratios.append(float(inside["F(x)"].abs().mean() / inside["x"].abs().mean()))
    return float(np.median(ratios))


@pytest.mark.parametrize(
    ("link", "median_range", "words"),
    [
        # Random weights, BN scales of 1: the branch comes out larger than the shortcut.
        ({"preset": "resnet20", "input": "3x32x32"}, (1.1, 2.0), "larger than"),
        # Zero-initialised last BN of each block (Goyal et al. 2017): F(x) = 0 at the start, so the ratio is 0.
        ({"preset": "custom", "blocks": "1,1", "block": "basic", "widths": "8,16", "stem": "cifar", "stem_width": "8",
          "zero_init": "true", "input": "3x32x32"}, (0.0, 0.0), "much smaller than"),
    ],
)
def test_the_residual_anatomy_sentence_says_what_was_measured(
    link: dict[str, str], median_range: tuple[float, float], words: str
) -> None:
    at = run_app(link, page="feature_maps")
    assert not at.exception
    median = measured_median(at)
    assert median_range[0] <= median <= median_range[1]
    said = anatomy_caption(at)
    assert f"median |F(x)| / |x| is {median:.2f}: in a typical block the residual branch is {words} the shortcut" in (
        said
    )
    assert "These weights are random" in said and "shows it too" not in said


def test_a_trained_model_is_said_to_agree_with_the_paper_only_when_its_ratio_is_small(
    shapes_model: TrainedModel,
) -> None:
    at = with_trained(feature_page(), shapes_model)
    median = measured_median(at)
    said = anatomy_caption(at)
    assert f"median |F(x)| / |x| is {median:.2f}" in said and "random" not in said
    assert ("This model shows it too" in said) == (median < 1)
    assert ("This model does not show it" in said) == (median >= 1)
