"""What a student reads when a dataset or ImageNet weights are not on this computer, and the one command that
fixes it.

The library's exceptions say precisely what went wrong (which URL, which file, which checksum) for whoever
keeps the machine; here the page says what is missing and what to run, and keeps those details one click away.
Whether something is here is read from file names only (`dataset_present`, `checkpoint_present`): no page
waits on a network that a classroom may not have.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from resnet_core.data import REPO_DATA_DIR, DatasetUnavailable, dataset_present, default_data_dir, fetch_dataset
from resnet_core.weights import PretrainedUnavailable, checkpoint_megabytes, fetch_checkpoint

DATASET_TITLES = {"builtin": "The built-in shapes", "cifar10": "CIFAR-10", "mnist": "MNIST",
                  "fashion_mnist": "Fashion-MNIST"}
DATASET_MEGABYTES = {"cifar10": 163, "mnist": 11, "fashion_mnist": 30}  # the downloads, in MiB as the bar counts
NOT_HERE = "not on this computer yet"


def fetch_command(*, data: Sequence[str] = (), weights: Sequence[str] = ()) -> str:
    """The command that downloads these where this app reads them (`python -m resnet_core fetch`); it names the
    data folder when the app was started with another one ($RESNET_DATA_DIR)."""
    words = ["python -m resnet_core fetch"]
    if weights:
        words += ["--weights", *weights]
    if data:
        words += ["--data", *data]
        if (root := default_data_dir()) != REPO_DATA_DIR:
            words += ["--data-dir", shlex.quote(str(root))]
    return " ".join(words)


def missing_datasets(names: Sequence[str]) -> list[str]:
    """The datasets of `names` whose files are not in the data folder (the built-in shapes always are)."""
    return [n for n in names if not dataset_present(n)]


def _titles(names: Sequence[str]) -> str:
    titles = [DATASET_TITLES[n] for n in names]
    return titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"


def datasets_note(missing: Sequence[str]) -> str:
    """One line under a dataset choice: which datasets cannot be used here yet, and the command that adds them."""
    one = len(missing) == 1
    return (f"{_titles(missing)} {'is' if one else 'are'} {NOT_HERE}: {'it is' if one else 'they are'} downloaded "
            f"once, from a terminal in the app's folder, with `{fetch_command(data=missing)}`. "
            "The built-in shapes need no download.")


def _download_failed(error: DatasetUnavailable | PretrainedUnavailable, command: str) -> None:
    st.error("The download did not work: this computer cannot reach the internet, or the download broke off "
             f"(nothing half-downloaded was kept). Run `{command}` once the computer is online, or ask your "
             "teacher to.", icon=":material/cloud_off:")
    with st.expander("Details for whoever looks after this computer"):
        st.text(str(error))


def _progress_bar(what: str, megabytes: float) -> tuple[DeltaGenerator, Callable[[int, int | None], None]]:
    """A progress bar and the download callback that moves it (by the expected size when no length is sent)."""
    bar = st.progress(0.0, text=f"Downloading {what}…")

    def show(done: int, total: int | None) -> None:
        fraction = done / total if total else min(done / (megabytes * 2**20), 1.0)
        bar.progress(fraction, text=f"Downloading {what}: {done / 2**20:.0f} of {megabytes:.0f} MB")

    return bar, show


def download_with_progress(name: str) -> None:
    """Download the dataset `name` under a progress bar, cleared when it ends; raises DatasetUnavailable."""
    bar, show = _progress_bar(DATASET_TITLES[name], DATASET_MEGABYTES[name])
    try:
        fetch_dataset(name, on_progress=show)
    finally:
        bar.empty()


def offer_dataset(name: str, *, choice_key: str) -> None:
    """In place of a dataset that is not on this computer: what is missing, the command that adds it, the built-in
    shapes one click away (`choice_key`: the session key of the dataset choice), and a download for a computer
    that is online."""
    command = fetch_command(data=[name])
    megabytes = DATASET_MEGABYTES[name]
    st.warning(f"**{DATASET_TITLES[name]} is {NOT_HERE}.** It is downloaded once ({megabytes} MB) with the command "
               "below, run in a terminal in the app's folder (ask your teacher if you cannot run it yourself); then "
               "reload this page. Meanwhile the built-in shapes work with no download.", icon=":material/cloud_off:")
    st.code(command, language="bash", wrap_lines=True)  # with a copy button
    buttons = st.container(horizontal=True)
    buttons.button("Use the built-in shapes instead", icon=":material/category:", type="primary",
                   on_click=st.session_state.__setitem__, args=(choice_key, "builtin"))
    if buttons.button(f"Try downloading it here ({megabytes} MB)", icon=":material/download:"):
        try:
            download_with_progress(name)
        except DatasetUnavailable as e:
            _download_failed(e, command)
        else:
            st.rerun()


def weights_note(preset: str) -> str:
    """Under the weights choice, when the ImageNet weights of `preset` are not here: the command that adds them."""
    return f"ImageNet weights: {NOT_HERE}; `{fetch_command(weights=[preset])}` downloads them once."


def offer_weights(preset: str) -> None:
    """In place of ImageNet weights that are not on this computer: what is missing, the command that adds them,
    and a download for a computer that is online. The page shows random weights meanwhile."""
    command = fetch_command(weights=[preset])
    megabytes = checkpoint_megabytes(preset) or 100.0
    st.info(f"**The ImageNet weights of {preset} are {NOT_HERE}**, so the maps below come from random weights. "
            f"They are downloaded once ({megabytes:.0f} MB) with the command below, run in a terminal in the app's "
            "folder (ask your teacher if you cannot run it yourself); then reload this page.",
            icon=":material/cloud_off:")
    st.code(command, language="bash", wrap_lines=True)  # with a copy button
    if st.button(f"Try downloading them here ({megabytes:.0f} MB)", icon=":material/download:"):
        bar, show = _progress_bar(f"the {preset} weights", megabytes)
        try:
            fetch_checkpoint(preset, on_progress=show)
        except PretrainedUnavailable as e:
            _download_failed(e, command)
        else:
            st.rerun()
        finally:
            bar.empty()
