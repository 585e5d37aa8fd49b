"""The residual lab page in AppTest: both charts, words that match the numbers, a race that starts and stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_pages import run_app
from ui.lab import signal_profiles


def test_signal_charts_and_words_follow_the_measurement() -> None:
    at = run_app(page="residual_lab")
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 1
    words = "\n".join(m.value for m in at.markdown)
    for bn in (True, False):
        if not bn:
            at.toggle(key="lab.bn").set_value(False).run()
            words = "\n".join(m.value for m in at.markdown)
        prof = signal_profiles(56, bn)["plain"]
        expected = "vanishes" if prof.grad_ratio < 0.01 else "shrinks" if prof.grad_ratio < 0.1 else (
            "grows" if prof.grad_ratio > 10 else "stays level")
        assert f"plain-56's gradient **{expected}**" in words


def test_cifar10_races_with_the_papers_recipe_and_says_how_to_get_it_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ui.lab import RACE_RECIPES
    from ui.training import dataset

    # The paper's CIFAR-10 recipe (§4.2) against the built-in shapes' CPU recipe.
    paper = RACE_RECIPES["cifar10"]
    recipe = (paper.batch_size, paper.lr, paper.momentum, paper.weight_decay, paper.augment)
    assert recipe == (128, 0.1, 0.9, 1e-4, True)

    monkeypatch.setenv("RESNET_DATA_DIR", str(tmp_path))  # an empty data folder: no CIFAR-10 here, no network
    dataset.clear()
    at = run_app(page="residual_lab")
    choice = at.radio(key="lab.data")
    assert list(choice.proto.captions) == ["", "not on this computer yet"]  # marked before anyone picks it
    command = f"python -m resnet_core fetch --data cifar10 --data-dir {tmp_path}"
    assert f"`{command}`" in choice.help
    choice.set_value("cifar10").run()
    assert not at.exception
    (said,) = [w.value for w in at.warning]
    assert said.startswith("**CIFAR-10 is not on this computer yet.**") and [c.value for c in at.code] == [command]
    assert "md5" not in said and "download=False" not in said  # the library's details are not the student's words
    labels = [b.label for b in at.button]
    assert "Try downloading it here (163 MB)" in labels and "Start the race" not in labels
    next(b for b in at.button if b.label == "Use the built-in shapes instead").click().run()  # one click back
    assert not at.exception and at.radio(key="lab.data").value == "builtin"
    assert "Start the race" in [b.label for b in at.button]
    dataset.clear()  # forget nothing of this folder's for the next test
