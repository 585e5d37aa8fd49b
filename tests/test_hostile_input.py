"""Hostile input through the app: links someone else wrote, file names, and the code paths that read files.

A link is text from a stranger. For every URL parameter the model picker reads, a huge, negative,
non-numeric, scripted or markdown-laden value must leave the app running, say what was wrong, show a valid
model, rewrite the URL to that model, and show the stranger's text only as literal characters. The same
holds for the names of uploaded files on the feature-maps page.

"Literal" is checked on the markdown source each element is given (what AppTest sees): every ASCII
punctuation character is backslash-escaped, so CommonMark, GFM and Streamlit's own `:icon:`/`:color[]`
and `$math$` syntax have nothing to start from, and no GFM autolink pattern is left in the text.
"""

from __future__ import annotations

import ast
import io
import re
import string
import time
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from resnet_core import ResNetConfig, analyze
from server.runs import RunStore, is_run_id
from server.selection import CUSTOM, DEFAULT, MAX_PARAMS, check, from_query, to_query
from tests.test_pages import metrics, run_app
from ui import state as K
from ui.sidebar import literal_markdown

ROOT = Path(__file__).resolve().parents[1]

# Every parameter the picker reads; the custom-model ones only count with preset=custom.
MODEL_KEYS = ("preset", "input", "batch")
CUSTOM_KEYS = ("blocks", "block", "widths", "stem", "stem_width", "shortcut", "stride_at", "groups",
               "width_per_group", "preact", "residual", "zero_init", "classes", "in_channels")

SCRIPT = "<script>alert(1)</script>"
# Under MAX_QUERY_VALUE (200) characters, so it is parsed, not refused for its length.
INJECTION = f"{SCRIPT}[x](javascript:alert(1))**b** :red[r] $x$ <img src=x onerror=alert(1)> https://evil.example"

# Values no parameter accepts: huge, negative, not a number, script and markdown.
HOSTILE = [
    "9" * 150,
    str(10**30),
    "-1",
    "-3x-224x-224",
    "3x99999999x9",
    "NaN",
    "1e9",
    "",
    "\x00",
    "\u202e1",
    SCRIPT,
    "javascript:alert(1)",
    "[click](https://evil.example)",
    "**bold** _it_ `code` ~~s~~ :red[r] :material/home: $x^2$",
    "a\n\n# heading\n- item",
    ",".join(["1"] * 99),  # 99 stages, 197 characters
]

# Streamlit elements whose body is markdown.
MARKDOWN_ELEMENTS = ("markdown", "caption", "title", "header", "subheader", "warning", "error", "info", "success",
                     "toast")

AUTOLINK = re.compile(r"https?://|www\.|[\w.+-]@[\w-]", re.IGNORECASE)  # what GFM turns into a link


def shown_text(body: str) -> str:
    """The text CommonMark shows for `body`, which must hold only plain characters and backslash-escaped
    punctuation; fails on any punctuation left bare (it could open a link, emphasis, HTML, math, an icon)."""
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            assert i + 1 < len(body) and body[i + 1] in string.punctuation, f"lone backslash at {i} in {body!r}"
            out.append(body[i + 1])
            i += 2
            continue
        assert ch not in string.punctuation, f"bare {ch!r} at {i} in {body!r}"
        assert ch not in "\r\n", f"line break in {body!r}"
        out.append(ch)
        i += 1
    text = "".join(out)
    # GFM finds autolinks in the text after escapes are resolved, so escaping alone does not stop them.
    assert not AUTOLINK.search(text), f"an autolink in {text!r}"
    return text.replace("\u2060", "")  # the invisible word joiner that breaks them


def bodies(at: AppTest) -> list[str]:
    """The markdown source of every element that renders markdown, main area and sidebar."""
    return [str(getattr(el, "value", "")) for kind in MARKDOWN_ELEMENTS for el in at.get(kind)]


def query_of(at: AppTest) -> dict[str, str]:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


# --- the library: what a link turns into --------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("key", MODEL_KEYS + CUSTOM_KEYS)
def test_a_hostile_value_falls_back_to_a_valid_model_with_a_warning(key: str, value: str) -> None:
    base = {"preset": CUSTOM} if key in CUSTOM_KEYS else {"preset": "resnet18"}
    sel, warnings = from_query({**base, key: value})
    check(sel)  # what comes back is a model the app shows
    assert warnings, f"{key}={value!r} was taken silently: {sel}"
    assert all(len(w) < 2000 for w in warnings)  # bounded: a value over 200 characters is never quoted
    if key in CUSTOM_KEYS or key == "preset":
        assert sel == DEFAULT
    else:  # the preset survives; its input and batch are the defaults
        assert (sel.preset, sel.input_size, sel.batch_size) == ("resnet18", (3, 224, 224), 1)


def test_megabyte_values_in_every_parameter_are_refused_unread() -> None:
    big = "1," * 500_000
    q = {"preset": CUSTOM} | {key: big for key in MODEL_KEYS[1:] + CUSTOM_KEYS}
    t = time.perf_counter()
    sel, warnings = from_query(q)
    assert time.perf_counter() - t < 1.0
    assert sel.preset == CUSTOM and sel.config == ResNetConfig()  # preset=custom with nothing changed
    assert len(warnings) == len(q) - 1 and all("too long (1000000 characters)" in w for w in warnings)


def test_other_parameters_are_ignored_and_never_quoted() -> None:
    sel, warnings = from_query({"preset": "resnet18", "x" * 100_000: "y" * 1000, SCRIPT: "1"})
    assert (sel, warnings) == (from_query({"preset": "resnet18"})[0], [])


def test_a_short_link_to_a_terabyte_model_is_refused() -> None:
    """A query string of 98 characters that would have the feature-maps page allocate 514 billion parameters."""
    q = {"preset": CUSTOM, "blocks": "300,300,300,300,300,300", "widths": "4096,4096,4096,4096,4096,4096",
         "block": "bottleneck"}
    sel, warnings = from_query(q)
    assert sel == DEFAULT
    assert any("(514,764,253,480), more than the 200 M parameters the app builds" in w for w in warnings)
    assert analyze(DEFAULT.config).total_params <= MAX_PARAMS


# --- the app: what a link shows -----------------------------------------------------------------------------


def assert_literal_warnings(at: AppTest, query: dict[str, str]) -> None:
    """The page shows exactly the library's warnings for `query`, each as literal text."""
    _, expected = from_query(query)
    shown = [w.value for w in at.warning]
    assert [shown_text(w) for w in shown] == expected
    assert shown == [literal_markdown(w) for w in expected]


@pytest.mark.parametrize("key", MODEL_KEYS + CUSTOM_KEYS)
def test_injection_in_any_parameter_is_shown_as_text_and_dropped_from_the_url(key: str) -> None:
    query = {"preset": CUSTOM if key in CUSTOM_KEYS else "resnet18", key: INJECTION}
    at = run_app(query)
    assert not at.exception
    assert at.warning
    assert_literal_warnings(at, query)
    for body in bodies(at):  # nothing of the link reaches any markdown unescaped
        for raw in (SCRIPT, "javascript:", "**b**", ":red[r]", "onerror=", "evil.example"):
            assert raw not in body, (raw, body)
    sel, _ = from_query(query)
    assert metrics(at)["Parameters (trainable)"] == f"{analyze(sel.config).trainable_params:,}"
    assert query_of(at) == to_query(sel)  # the URL now describes the model on screen, nothing of the link


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"preset": "resnet18", "input": "3x99999999x9"}, "input height 99999999 is out of range"),
        ({"preset": "resnet18", "batch": str(10**30)}, f"batch size {10**30} is out of range"),
        ({"preset": "resnet18", "batch": "-5"}, "batch size -5 is out of range"),
        ({"preset": "resnet18", "input": "-3x-224x-224"}, "out of range"),
        ({"preset": CUSTOM, "blocks": ",".join(["1"] * 10_000)}, "blocks is too long (19999 characters)"),
        ({"preset": "x" * 500_000}, "preset is too long (500000 characters)"),
        ({"preset": CUSTOM, "blocks": "300,300,300,300,300,300", "widths": "4096,4096,4096,4096,4096,4096",
          "block": "bottleneck"}, "more than the 200 M parameters the app builds"),
    ],
    ids=["huge-input", "huge-batch", "negative-batch", "negative-input", "10k-stages", "500k-preset", "terabyte-model"],
)
def test_huge_and_negative_links_show_a_warning_and_a_valid_model(query: dict[str, str], words: str) -> None:
    t = time.perf_counter()
    at = run_app(query)
    assert time.perf_counter() - t < 30
    assert not at.exception
    assert any(words in shown_text(w.value) for w in at.warning), [w.value for w in at.warning]
    assert_literal_warnings(at, query)
    sel = at.session_state[K.SELECTION]  # what every page, feature maps and training too, is given
    check(sel)
    assert analyze(sel.config, input_size=sel.input_size).total_params <= MAX_PARAMS
    assert metrics(at)["Parameters (trainable)"] == f"{analyze(sel.config).trainable_params:,}"
    assert all(len(v) <= 200 for v in query_of(at).values())


def test_a_megabyte_link_is_dropped_before_the_app_reads_it() -> None:
    """Streamlit ignores a query string over 512 K characters (it logs it); the app shows its default."""
    at = run_app({"preset": CUSTOM, "blocks": "1," * 2**19})
    assert not at.exception
    assert at.session_state[K.SELECTION] == DEFAULT
    assert query_of(at) == to_query(DEFAULT)


def test_a_huge_model_typed_in_the_sidebar_is_refused_next_to_the_control() -> None:
    at = run_app({"preset": "resnet18"})
    at.selectbox(key="picker.family").select("Custom").run()
    at.text_input(key="custom.blocks").input("300,300,300,300")
    at.text_input(key="custom.widths").input("4096,4096,4096,4096").run()
    assert not at.exception
    assert any("more than the 200 M parameters the app builds" in e.value for e in at.sidebar.error)
    assert metrics(at)["Parameters (trainable)"] == f"{analyze('resnet18').trainable_params:,}"
    assert query_of(at)["blocks"] == "2,2,2,2"  # still resnet18's, now as a custom model


def test_a_run_parameter_that_is_a_path_is_dropped() -> None:
    at = run_app({"preset": "resnet18", "run": "../../../../etc/passwd"})
    assert not at.exception
    assert "run" not in query_of(at)


def test_run_records_are_never_read_from_a_path_in_a_link(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "status.json").write_text('{"id": "0" , "label": "leaked"}')
    (secret / "model.safetensors").write_bytes(b"leaked")
    store = RunStore(tmp_path / "runs")
    for text in ("../secret", str(secret), "..", "0" * 31 + "/", "0" * 32 + "/../../secret", "0" * 32 + "\n"):
        assert not is_run_id(text)
        assert store.load(text) is None
        assert store.weights(text) is None


# --- uploads: file names are text ---------------------------------------------------------------------------

HOSTILE_NAMES = [
    f"{SCRIPT}.png",
    "<img src=x onerror=alert(1)>.png",
    "[click](javascript:alert(1)).png",
    "**bold** :red[x] $x^2$ :material/home:.png",
    "https://evil.example/a.png",
    "../../../../etc/passwd",  # the name of a PNG: never opened, never decides the format
]


def png_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_names_are_shown_as_literal_text() -> None:
    at = run_app({"preset": "resnet20", "input": "3x32x32"}, page="feature_maps")
    at.segmented_control(key="fm.source").set_value("Your image").run()
    for i, name in enumerate(HOSTILE_NAMES):
        at.file_uploader(key="fm.upload").upload(name, png_bytes((40 + i, 30)), "image/png").run()
        assert not at.exception and not at.error, name
        texts = [t.value for t in at.text]  # st.text: never markdown or HTML
        assert f"{name}\nPNG, RGB, {40 + i}×30" in texts, texts
        assert not any(name in body for body in bodies(at)), name

    at.file_uploader(key="fm.upload").upload(f"{SCRIPT}.jpg", b"<html><script>alert(1)</script></html>", "image/jpeg")
    at.run()
    assert not at.exception
    assert at.error and not any(SCRIPT in e.value or ".jpg" in e.value for e in at.error)
    assert f"{HOSTILE_NAMES[-1]}\nPNG, RGB, {40 + len(HOSTILE_NAMES) - 1}×30" in [t.value for t in at.text]


# --- no file from a user, no unpickling ---------------------------------------------------------------------

SOURCES = [*sorted(p for d in ("resnet_core", "ui", "app_pages") for p in (ROOT / d).rglob("*.py")), ROOT / "app.py"]


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


def _keyword(call: ast.Call, name: str) -> object:
    kw = next((k for k in call.keywords if k.arg == name), None)
    return kw.value.value if kw is not None and isinstance(kw.value, ast.Constant) else None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unpickling_and_no_raw_html(path: Path) -> None:
    """torch.load only with weights_only=True, no pickle/marshal/dill loads, no np.load of pickles, no
    unpickler that accepts every class, and nothing that renders HTML."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for func, call in _calls(tree):
        where = f"{path.relative_to(ROOT)}:{call.lineno}: {func}"
        if func == "torch.load":
            assert _keyword(call, "weights_only") is True, where
        assert func not in ("pickle.load", "pickle.loads", "marshal.load", "marshal.loads", "dill.load",
                            "dill.loads", "torch.jit.load", "joblib.load", "st.html", "components.html"), where
        if func in ("np.load", "numpy.load"):
            assert _keyword(call, "allow_pickle") is not True, where
        assert _keyword(call, "unsafe_allow_html") is not True, where
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases):
            assert any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body), (
                f"{path.relative_to(ROOT)}: {node.name} must restrict find_class"
            )
