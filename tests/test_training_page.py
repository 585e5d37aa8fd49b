"""The training page in AppTest: a tiny job starts, reports, stops on request, and its model moves on."""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_pages import run_app
from ui.training import job_runner

TINY = {"preset": "custom", "blocks": "1,1", "block": "basic", "widths": "8,16", "stem": "cifar",
        "stem_width": "8", "shortcut": "B", "classes": "10", "input": "3x32x32"}


def start_tiny(epochs: int = 1) -> tuple[AppTest, object]:
    at = run_app(TINY, page="training")
    assert not at.exception
    at.number_input(key="train.epochs").set_value(epochs)
    at.slider(key="train.seconds").set_value(300)  # room for a busy machine: a stop would end the epoch early
    at.button[0].click().run()
    assert not at.exception
    run = at.session_state["train.jobs"][-1]
    return at, job_runner().get(run.job_id)


def test_a_tiny_run_trains_and_offers_its_model_to_the_feature_maps_page() -> None:
    at, job = start_tiny()
    assert job.wait(300), "the job did not finish"
    at.run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Final test accuracy"].rstrip("%")) > 20  # 10 classes: chance is 10%
    assert any("Confusion matrix" in str(c.proto) for c in at.get("plotly_chart"))
    line = next(c.value for c in at.caption if c.value.startswith(f"Run {job.id} on this server: queued at "))
    assert f"waited {job.started_at - job.submitted_at:.0f} s" in line
    assert f"ran {job.finished_at - job.started_at:.0f} s" in line
    trained = at.session_state["train.trained"]
    assert trained.job_id == job.id and len(trained.classes) == 10

    at.session_state["test.page"] = "feature_maps"
    at.run()
    at.radio(key="fm.weights").set_value("Trained in this session").run()
    assert not at.exception
    top5 = next(df.value for df in at.dataframe if "probability" in df.value.columns)
    assert set(top5["class"]) <= set(trained.classes)


def test_stop_ends_the_run_and_the_page_says_so() -> None:
    at, job = start_tiny(epochs=20)
    deadline = time.monotonic() + 60
    while not job.progress() and time.monotonic() < deadline:
        time.sleep(0.05)
    job_runner().stop(job.id)
    assert job.wait(60)
    at.run()
    assert job.state.value == "stopped" and job.result.end == "user"
    last = job.result.last
    said = f"The run stopped by you at step {last.step:,} of {last.total_steps:,} (epoch {last.epoch} of 20)."
    assert said in [m.value.replace("**", "") for m in at.markdown]


def test_a_run_cut_by_its_time_limit_is_stopped_not_done_and_its_chart_shows_where() -> None:
    at = run_app(TINY, page="training")
    at.number_input(key="train.epochs").set_value(50)
    at.slider(key="train.seconds").set_value(10)
    at.button[0].click().run()
    job = job_runner().get(at.session_state["train.jobs"][-1].job_id)
    assert job.wait(120)
    at.run()
    assert not at.exception
    result = job.result
    assert job.state.value == "stopped" and result.end == "time"  # never "done" beside a run that was cut off
    last = result.last
    said = (f"The run stopped at the 10 s limit at step {last.step:,} of {last.total_steps:,} "
            f"(epoch {last.epoch} of 50).")
    assert said in [m.value.replace("**", "") for m in at.markdown]
    chart = next(c for c in at.get("plotly_chart") if "Accuracy" in str(c.proto))
    # The accuracy panel ends with the final evaluation, at the fractional epoch where the run stopped.
    assert f"{last.step / last.steps_per_epoch}" in str(chart.proto)


def test_before_start_the_page_says_what_the_run_will_do_and_offers_a_model_that_learns_in_time() -> None:
    at = run_app({"preset": "resnet50"}, page="training")
    assert not at.exception
    text = next(m.value for m in at.markdown if m.value.startswith("**Before you start.**"))
    assert "the dataset's own 32×32 images (the sidebar's 224×224 input is not used here)" in text
    ips = float(re.search(r"About \*\*([\d,.]+) images/s", text)[1].replace(",", ""))  # type: ignore[index]
    per_epoch = float(re.search(r"\*\*([\d,.]+) s per epoch\*\* of 312 steps", text)[1].replace(",", ""))  # type: ignore[index]
    images = 312 * 32  # an epoch of the built-in shapes at batch 32; both numbers are shown rounded to units
    assert images / (ips + 0.5) - 0.5 <= per_epoch <= images / (ips - 0.5) + 0.5
    if 120 / per_epoch < 2:  # resnet50 on a CPU: the 120 s limit cuts the two epochs short, and the page says so
        warning = at.warning[0].value
        reach = float(re.search(r"(?:only|about) ([\d.]+) of (?:an epoch|2 epochs)", warning)[1])  # type: ignore[index]
        # The page divides by the exact epoch time (the one shown is rounded to the second) and shows two
        # significant digits: 1.03 epochs reads "1".
        low, high = 120 / (per_epoch + 0.5), 120 / (per_epoch - 0.5)
        assert float(f"{low:.2g}") <= reach <= float(f"{high:.2g}")
        assert "ResNet-20 trains at about" in warning
        next(b for b in at.button if b.label == "Train ResNet-20 instead").click().run()
        assert not at.exception and at.session_state["picker.selection"].preset == "resnet20"


def test_a_second_run_waits_in_the_queue_and_the_page_shows_its_place() -> None:
    _, first = start_tiny(epochs=20)
    b, second = start_tiny(epochs=1)
    b.run()
    assert second.state.value == "queued"  # the first run (20 epochs) still holds the only worker
    assert any(i.value.startswith("Waiting in the queue: place 1. Runs go one at a time") for i in b.info)
    job_runner().stop(first.id)
    job_runner().stop(second.id)
    assert first.wait(60) and second.wait(60)


@pytest.mark.parametrize("cap", [2, 10, 15])
def test_the_stop_after_control_follows_the_servers_cap(cap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """RESNET_TRAIN_MAX_SECONDS bounds the "stop after" control on both training pages; a cap of 10 s or
    less leaves nothing to choose, and the page says the cap instead of offering an upside-down range."""
    import server.settings
    import ui.training

    limits = dataclasses.replace(server.settings.LIMITS, train_max_seconds=cap)
    monkeypatch.setattr(server.settings, "LIMITS", limits)
    monkeypatch.setattr(ui.training, "LIMITS", limits)
    at = run_app(TINY, page="training")
    lab = run_app(TINY, page="residual_lab")
    assert not at.exception and not lab.exception
    if cap <= 10:
        assert not at.slider and not [n for n in lab.number_input if n.key == "lab.seconds"]
        for page, label in ((at, "Stop after (seconds)"), (lab, "Stop after (s)")):
            assert f"{label}: {cap} (the server's limit per run)" in [c.value for c in page.caption]
    else:
        slider = at.slider(key="train.seconds")
        assert (slider.min, slider.max, slider.value) == (10, cap, cap)
        seconds = lab.number_input(key="lab.seconds")
        assert (seconds.min, seconds.max, seconds.value) == (10, cap, cap)


# --- a dataset that is not on this computer ----------------------------------------------------------


@pytest.fixture
def empty_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty data folder, as on a classroom computer nobody has prepared; the shared dataset cache forgets
    what it read from any other folder, before and after."""
    from ui.training import dataset

    monkeypatch.setenv("RESNET_DATA_DIR", str(tmp_path))
    dataset.clear()
    yield tmp_path
    dataset.clear()


def test_a_missing_dataset_is_marked_and_the_command_shown_adds_it(
    empty_data_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets import MNIST

    from resnet_core.__main__ import main
    from tests.test_data import md5, serve, write_mnist

    at = run_app(TINY, page="training")
    assert not at.exception
    choice = at.selectbox(key="train.data")
    assert choice.options == ["Built-in shapes (offline, 10 classes, 32×32)",
                              "CIFAR-10 · not on this computer yet (163 MB download)",
                              "MNIST · not on this computer yet (11 MB download)",
                              "Fashion-MNIST · not on this computer yet (30 MB download)"]
    command = f"python -m resnet_core fetch --data cifar10 mnist fashion_mnist --data-dir {empty_data_dir}"
    assert f"`{command}`" in choice.help and any(f"`{command}`" in c.value for c in at.caption)

    choice.set_value("mnist").run()
    assert not at.exception and not at.error
    (said,) = [w.value for w in at.warning]
    assert said.startswith("**MNIST is not on this computer yet.**") and "download=False" not in said
    (shown,) = [c.value for c in at.code]  # the command, in a block with a copy button
    assert shown == f"python -m resnet_core fetch --data mnist --data-dir {empty_data_dir}"
    assert "Start training" not in [b.label for b in at.button]  # nothing that cannot run is offered

    # The command the page shows fixes it: run as shown, from a local mirror of small files standing for MNIST's.
    mirror = tmp_path_factory.mktemp("mirror")
    arrays = write_mnist(mirror / "MNIST" / "raw", gz=True, n_train=600, n_test=100)  # room for a batch
    monkeypatch.setattr(MNIST, "resources", [(f"{n}.gz", md5(mirror / "MNIST" / "raw" / f"{n}.gz")) for n in arrays])
    with serve(mirror) as url:
        assert main([*shlex.split(shown)[3:], "--mirror", url]) == 0
    at.run()
    assert not at.exception and not at.warning
    assert at.selectbox(key="train.data").options[2] == "MNIST digits (28×28, grey)"
    assert any(c.value.startswith("600 training and 100 test images of 1×28×28") for c in at.caption)


def test_offline_the_download_button_says_what_went_wrong_and_the_built_in_shapes_are_one_click_away(
    empty_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error
    import urllib.request

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    at = run_app(TINY, page="training")
    at.selectbox(key="train.data").set_value("cifar10").run()
    next(b for b in at.button if b.label == "Try downloading it here (163 MB)").click().run()
    assert not at.exception
    (failed,) = [e.value for e in at.error]
    assert failed.startswith("The download did not work: this computer cannot reach the internet")
    assert f"`python -m resnet_core fetch --data cifar10 --data-dir {empty_data_dir}`" in failed
    details = "\n".join(t.value for t in at.text)  # the library's own words, for whoever looks after the computer
    assert "Temporary failure in name resolution" in details and "cifar-10-python.tar.gz" in details
    assert [p for p in empty_data_dir.rglob("*") if p.is_file()] == []

    next(b for b in at.button if b.label == "Use the built-in shapes instead").click().run()
    assert not at.exception and not at.error and at.selectbox(key="train.data").value == "builtin"
    assert "Start training" in [b.label for b in at.button]


def test_a_model_trained_with_the_datasets_channels_and_classes_says_so() -> None:
    one_channel = {**TINY, "in_channels": "1", "classes": "7", "input": "1x32x32"}
    at = run_app(one_channel, page="training")
    assert not at.exception
    [note] = [i.value for i in at.info if "Trained as this dataset needs" in i.value]
    assert "3 input channels instead of the model's 1" in note and "10 classes instead of the model's 7" in note
    at = run_app(TINY, page="training")  # 3 channels and 10 classes, as the built-in shapes: nothing to say
    assert not any("Trained as this dataset needs" in i.value for i in at.info)
