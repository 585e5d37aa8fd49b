"""Pages in Streamlit's AppTest: every page runs, the numbers on screen are the analysis's, bad input is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core import PRESETS, analyze
from resnet_core.units import fmt_count

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.stem for p in (ROOT / "app_pages").glob("*.py"))


def _page_with_sidebar(root: str, page: str) -> None:
    """What app.py does for one page, without st.navigation: AppTest in this Streamlit version drops the
    router script's own widgets on every rerun of a multipage app, so interactions are tested this way."""
    import runpy
    import sys

    import streamlit as st

    sys.path.insert(0, root)
    from ui.sidebar import model_picker

    page = st.session_state.get("test.page", page)  # a test may move the session to another page
    model_picker()
    runpy.run_path(f"{root}/app_pages/{page}.py", run_name="__page__")


def run_app(query: dict[str, str] | None = None, page: str = "architecture") -> AppTest:
    at = AppTest.from_function(_page_with_sidebar, args=(str(ROOT), page), default_timeout=60)
    at.query_params.update(query or {})
    return at.run()


def test_the_router_serves_every_page() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.metric  # the default page rendered
    for page in PAGES:
        at = run_app(page=page)
        assert not at.exception, page


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_default_page_shows_resnet50_exactly() -> None:
    at = run_app()
    assert not at.exception
    shown = metrics(at)
    report = analyze("resnet50")
    assert shown["Parameters (trainable)"] == f"{report.trainable_params:,}" == "25,557,032"
    assert shown["MACs per image"] == fmt_count(report.total_macs, "MACs") == "4.09 GMACs"
    assert shown["FLOPs per image"] == "8.18 GFLOPs"
    assert shown["Receptive field (theoretical)"] == f"{report.receptive_field} px"
    assert shown["Weighted layers"] == "50"
    assert report.warnings and all(any(w in c.value for c in at.caption) for w in report.warnings)  # said, not hidden
    assert at.query_params["preset"] == ["resnet50"] or at.query_params["preset"] == "resnet50"


@pytest.mark.parametrize("name", ["resnet18", "resnet152", "resnext50_32x4d", "resnet110", "plain56", "resnet1202"])
def test_presets_render_without_exception(name: str) -> None:
    side = 32 if PRESETS[name].stem == "cifar" else 224
    at = run_app({"preset": name, "input": f"3x{side}x{side}"})
    assert not at.exception
    assert metrics(at)["Parameters (trainable)"] == f"{analyze(name).total_params:,}"
    assert at.title[0].value == name


def test_custom_model_from_a_link() -> None:
    q = {"preset": "custom", "blocks": "1,2,1", "block": "basic,bottleneck,bottleneck", "widths": "16,32,64",
         "stem": "cifar", "stem_width": "16", "shortcut": "C", "preact": "true", "input": "3x40x48", "batch": "8"}
    at = run_app(q)
    assert not at.exception and not at.warning
    from server.selection import from_query

    sel, _ = from_query(q)
    report = analyze(sel.config, input_size=(3, 40, 48), batch_size=8)
    assert metrics(at)["Parameters (trainable)"] == f"{report.total_params:,}"
    assert at.text_input(key="custom.blocks").value == "1,2,1"


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ({"preset": "nonsense"}, "Unknown preset"),
        ({"preset": "resnet18", "input": "3x1x1"}, "out of range"),
        ({"preset": "custom", "blocks": "0,0"}, "not valid"),
        ({"preset": "resnet18", "batch": "<b>x</b>"}, "not a whole number"),
    ],
)
def test_broken_links_show_a_warning_and_the_defaults(query: dict[str, str], text: str) -> None:
    at = run_app(query)
    assert not at.exception
    assert any(text in w.value for w in at.warning)
    assert metrics(at)["Parameters (trainable)"]  # a model is still on screen


def test_invalid_custom_config_keeps_the_last_valid_model() -> None:
    at = run_app({"preset": "resnet34"})
    at.selectbox(key="picker.family").select("Custom").run()
    params = f"{analyze('resnet34').total_params:,}"
    assert metrics(at)["Parameters (trainable)"] == params  # custom starts from the model on screen
    at.text_input(key="custom.blocks").input("3,0,6,3").run()
    assert not at.exception
    # Said in words at the control, and above the page: the model shown is the last valid one.
    assert [e.value for e in at.sidebar.error] == ["Blocks per stage: stage 2 has 0; allowed: a whole number from 1 "
                                                   "to 300."]
    assert any("is not shown" in w.value and "last valid model" in w.value for w in at.main.warning)
    assert metrics(at)["Parameters (trainable)"] == params
    at.text_input(key="custom.blocks").input("3,4,6,3")
    at.text_input(key="custom.widths").input("64,128,256,512")
    at.selectbox(key="custom.block").select("bottleneck").run()
    assert metrics(at)["Parameters (trainable)"] == f"{analyze('resnet50').total_params:,}"
    assert at.query_params["blocks"] in ("3,4,6,3", ["3,4,6,3"])


def test_out_of_range_input_is_refused_next_to_the_control() -> None:
    at = run_app({"preset": "resnet18"})
    at.number_input(key="picker.side").set_value(5000).run()
    assert any("5000 is out of range" in e.value for e in at.sidebar.error)
    assert metrics(at)["MACs per image"] == fmt_count(analyze("resnet18").total_macs, "MACs")
    at.number_input(key="picker.side").set_value(320).run()
    assert not at.sidebar.error
    assert metrics(at)["MACs per image"] == fmt_count(analyze("resnet18", input_size=(3, 320, 320)).total_macs, "MACs")


def test_choosing_a_cifar_preset_gives_a_cifar_input() -> None:
    at = run_app()
    at.selectbox(key="picker.family").select("CIFAR").run()
    assert at.selectbox(key="picker.preset").value == "resnet20"
    assert at.number_input(key="picker.side").value == 32
    assert metrics(at)["Parameters (trainable)"] == f"{analyze('resnet20', input_size=(3, 32, 32)).total_params:,}"


def open_tab(at: AppTest, label: str) -> AppTest:
    """Open a tab of the architecture page, as a click on it does (its tabs rerun the page when one is opened)."""
    at.session_state["arch.tab"] = label
    return at.run()


def test_only_the_open_tab_is_drawn_and_its_controls_keep_their_value() -> None:
    import json

    from tests.browser.helpers import plotly_values  # decodes the typed arrays Plotly sends for numpy data

    at = run_app({"preset": "resnet34"})
    assert [t.label for t in at.tabs][:3] == ["Layer table", "Charts", "Diagram"]
    assert len(at.dataframe) == 1 and not at.get("plotly_chart") and not at.get("graphviz_chart")
    at.segmented_control(key="arch.table_level").set_value("layer").run()
    rows = len(analyze("resnet34").to_dataframe("layer"))
    assert len(at.dataframe[0].value) == rows

    open_tab(at, "Charts")
    assert not at.exception and not at.dataframe and not at.get("graphviz_chart")
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs) == 2
    stages = analyze("resnet34").to_dataframe("stage")
    params, macs = (plotly_values(trace["y"]) for trace in specs[0]["data"])
    assert params == stages["params"].tolist() and macs == stages["macs"].tolist()

    open_tab(at, "Diagram")
    assert len(at.get("graphviz_chart")) == 1 and not at.get("plotly_chart")

    open_tab(at, "Layer table")
    assert at.segmented_control(key="arch.table_level").value == "layer"  # kept while the tab was closed
    assert len(at.dataframe[0].value) == rows


def test_references_and_block_source_are_shown() -> None:
    at = open_tab(run_app({"preset": "resnet50"}), "Against the references")
    tables = [df.value for df in at.dataframe]
    refs = next(t for t in tables if "source" in t.columns)
    tv = refs[refs["source"].str.startswith("torchvision")]
    assert (tv["params"] == tv["ours: params"]).all()
    open_tab(at, "How it works")
    assert any("class Bottleneck" in c.value for c in at.code)


def _defaults_differing_from_values(at: AppTest) -> list[str]:
    """Sidebar widgets whose default (what a browser shows when it falls back to the element's default)
    is not the value the session holds."""
    wrong = []
    for kind in ("selectbox", "radio"):
        for w in getattr(at.sidebar, kind):
            if w.proto.default != w.index:
                wrong.append(f"{w.key}: default {w.options[w.proto.default]!r}, value {w.value!r}")
    for kind in ("number_input", "text_input", "toggle"):
        for w in getattr(at.sidebar, kind):
            if w.proto.default != w.value:
                wrong.append(f"{w.key}: default {w.proto.default!r}, value {w.value!r}")
    return wrong


def test_the_picker_never_leaves_a_browser_a_default_other_than_its_value() -> None:
    """A link to a custom model, then the family and preset changed: in every run each picker widget's
    default is the session's value, so a browser that shows the default shows the model on the page."""
    at = run_app({"preset": "custom", "blocks": "1,1", "block": "basic", "widths": "8,16", "stem": "cifar",
                  "stem_width": "8", "shortcut": "C", "stride_at": "v1", "classes": "10", "input": "3x32x48"})
    assert at.selectbox(key="picker.family").value == "Custom"
    assert not _defaults_differing_from_values(at)
    at.selectbox(key="picker.family").select("CIFAR").run()
    assert not _defaults_differing_from_values(at)
    at.selectbox(key="picker.preset").select("resnet56").run()
    assert at.selectbox(key="picker.preset").value == "resnet56"
    assert not _defaults_differing_from_values(at)
    at.selectbox(key="picker.family").select("Custom").run()
    assert at.text_input(key="custom.blocks").value == "9,9,9"  # custom starts from resnet56
    assert not _defaults_differing_from_values(at)
