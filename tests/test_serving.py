"""The server helper of the browser tests and benchmarks: it serves the app, says why when a server does not
start, and leaves no process of the server behind."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

from tests.serving import ServerDidNotStart, healthy, option_words, serve


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_serves_the_app_and_stops_every_process_it_started(tmp_path: Path) -> None:
    with serve(log_path=tmp_path / "server.log") as server:
        assert healthy(server.url)
        with urllib.request.urlopen(server.url, timeout=10) as page:
            assert "<title>Streamlit</title>" in page.read().decode()  # Streamlit's own page shell
        assert _group_alive(server.pid)
    assert not _group_alive(server.pid)
    assert not healthy(server.url)


def test_a_server_that_does_not_start_is_reported_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(ServerDidNotStart, match="exited early") as failure, \
            serve(log_path=tmp_path / "server.log", options=option_words(["server.noSuchOption=1"])):
        pass
    assert "noSuchOption" in str(failure.value)  # the tail of the log, where Streamlit names what it refused


def test_options_are_written_as_streamlit_reads_them() -> None:
    assert option_words(["runner.postScriptGC=false", "server.maxUploadSize=5"]) == [
        "--runner.postScriptGC", "false", "--server.maxUploadSize", "5"]
    with pytest.raises(ValueError, match=r"section\.name=value"):
        option_words(["runner.postScriptGC"])
