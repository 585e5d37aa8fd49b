"""The model picker in AppTest: refusals said at their control and above the page, linked fields that follow one
another, and link warnings that go once the link's model is gone."""

from __future__ import annotations

import torchvision

from resnet_core import PRESETS, analyze
from server.fields import FIELD, FIELDS
from server.selection import CUSTOM, Selection, from_query, to_query
from tests.test_pages import metrics, run_app

RESNET50 = {"preset": CUSTOM, **{k: v for k, v in to_query(Selection(CUSTOM, PRESETS["resnet50"])).items()
                                 if k != "preset"}}


def params(at: object) -> int:
    return int(metrics(at)["Parameters (trainable)"].replace(",", ""))  # type: ignore[arg-type]


def test_every_field_has_one_control_and_its_url_key_round_trips() -> None:
    at = run_app(RESNET50)
    keys = {w.key for w in (*at.sidebar.text_input, *at.sidebar.number_input, *at.sidebar.radio,
                            *at.sidebar.selectbox, *at.sidebar.toggle)}
    assert {f.key for f in FIELDS if f.name != "in_channels"} <= keys
    assert len({f.url for f in FIELDS}) == len(FIELDS) == len({f.name for f in FIELDS})
    sel, warnings = from_query(RESNET50)
    assert warnings == [] and sel.config == PRESETS["resnet50"]


def test_more_stages_bring_their_widths_and_say_so() -> None:
    at = run_app({**RESNET50, "block": "basic", "blocks": "2,2,2,2"})
    at.text_input(key=FIELD["blocks"].key).input("2,2,2,2,2").run()
    assert not at.exception and not at.sidebar.error
    assert at.text_input(key=FIELD["widths"].key).value == "64,128,256,512,1024"
    assert any("one width for each of the 5 stages" in c.value for c in at.sidebar.caption)
    five = PRESETS["resnet18"].with_(blocks=(2,) * 5, widths=(64, 128, 256, 512, 1024))
    assert params(at) == analyze(five).total_params


def test_more_groups_keep_the_grouped_width_and_reach_resnext_as_torchvision_builds_it() -> None:
    at = run_app(RESNET50)
    at.number_input(key=FIELD["groups"].key).set_value(32).run()
    assert at.number_input(key=FIELD["width_per_group"].key).value == 2  # 32 × 2 = 64: the 3×3 conv as wide as before
    assert any("keeps the grouped 3×3 conv at 64 channels" in c.value for c in at.sidebar.caption)
    at.number_input(key=FIELD["width_per_group"].key).set_value(4).run()
    reference = torchvision.models.resnext50_32x4d()
    assert params(at) == sum(p.numel() for p in reference.parameters())


def test_basic_blocks_have_no_groups_to_set() -> None:
    at = run_app({**RESNET50, "block": "basic", "groups": "1", "width_per_group": "64"})
    assert at.number_input(key=FIELD["groups"].key).disabled
    assert at.number_input(key=FIELD["width_per_group"].key).disabled


def test_a_model_too_large_is_refused_at_the_control_that_made_it_and_above_the_page() -> None:
    at = run_app(RESNET50)
    shown = params(at)
    at.number_input(key=FIELD["width_per_group"].key).set_value(640).run()
    assert not at.exception
    wide = PRESETS["resnet50"].with_(width_per_group=640)
    total = analyze(wide).total_params
    [error] = at.sidebar.error
    assert f"({total:,})" in error.value and "200 M parameters" in error.value
    assert any("not shown" in w.value and f"({total:,})" in w.value for w in at.main.warning)
    assert params(at) == shown  # the last valid model stays on screen


def test_a_link_warning_stands_until_the_student_picks_another_model() -> None:
    at = run_app({"preset": "resnet51"})
    assert any("resnet51" in w.value for w in at.main.warning)
    at.selectbox(key="picker.preset").select("resnet18").run()
    assert not any("resnet51" in w.value for w in at.main.warning)
    assert params(at) == analyze("resnet18").total_params
