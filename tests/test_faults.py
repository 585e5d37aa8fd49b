"""Faults a hosted server meets, injected for real: a process killed mid-write, a download cut off by the
server. (Sessions that go away mid-run, reloads and a killed worker are in tests/test_jobs.py.)

(The server restart and the closed tab in a real browser are in tests/browser/test_faults.py.)
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from torchvision.datasets import CIFAR10

from resnet_core.data import DatasetUnavailable, load_dataset
from resnet_core.export import write_atomically
from server import runs as runs_mod
from server.runs import RunRecord, RunStore, new_run_id
from tests.test_data import check_cifar, cifar_archive, leftovers, md5

ROOT = Path(__file__).resolve().parents[1]


# --- atomic writes ---------------------------------------------------------------------------------


def test_a_process_killed_mid_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"the old weights")
    writer = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from resnet_core.export import write_atomically
        write_atomically(Path({str(target)!r}), b"n" * (1 << 30))  # 1 GiB: still writing when killed
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 1 << 20 for p in tmp_path.glob(".*.partial")):
            assert proc.poll() is None, "the writer ended before it could be killed"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert target.read_bytes() == b"the old weights"  # whole and old: never a prefix of the new one


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    with pytest.raises(TypeError):
        write_atomically(target, "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --- run records -----------------------------------------------------------------------------------


def test_a_record_left_by_another_server_process_reads_as_interrupted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    running = RunRecord(new_run_id(), "resnet20 · builtin", state="running", epoch=2, epochs=5)
    store.save(running)
    assert store.load(running.id) == running and not store.load(running.id).interrupted  # type: ignore[union-attr]

    # The same file as a process that died would have left it: its instance id is not this process's.
    status = tmp_path / running.id / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "instance": "0123456789abcdef"}))
    left = store.load(running.id)
    assert left is not None and left.interrupted and left.epoch == 2
    # A finished run is never "interrupted", whoever wrote it.
    store.save(left.with_(state="done"))
    assert not store.load(running.id).interrupted  # type: ignore[union-attr]


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "/etc/passwd", "A" * 32, "0" * 31, "", "0" * 32 + "/x"])
def test_no_text_but_a_run_id_becomes_a_path(tmp_path: Path, run_id: str) -> None:
    store = RunStore(tmp_path / "runs")
    assert store.load(run_id) is None and store.weights(run_id) is None
    with pytest.raises(ValueError, match="not a run id"):
        store.save(RunRecord(run_id, "x"))
    assert not (tmp_path / "runs").exists()


def test_the_store_keeps_the_newest_runs_only(tmp_path: Path) -> None:
    store = RunStore(tmp_path, keep=3)
    ids = []
    for i in range(5):
        ids.append(new_run_id())
        store.save(RunRecord(ids[-1], f"run {i}"))
        os.utime(tmp_path / ids[-1], (i, i))  # distinct ages, whatever the file system's clock resolution
    store.prune()
    assert store.ids() == ids[2:]
    assert [store.load(i).label for i in ids[2:]] == ["run 2", "run 3", "run 4"]  # type: ignore[union-attr]


def test_unreadable_records_are_treated_as_missing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = new_run_id()
    (tmp_path / run_id).mkdir()
    (tmp_path / run_id / "status.json").write_text('{"id": "x", "label": ')  # cut off
    assert store.load(run_id) is None
    (tmp_path / run_id / "status.json").write_text('{"id": "x", "surprise": 1}')
    assert store.load(run_id) is None
    assert runs_mod.is_run_id(run_id) and not runs_mod.is_run_id(run_id.upper())


# --- a download the server cuts off halfway --------------------------------------------------------


class _CuttingServer(http.server.BaseHTTPRequestHandler):
    """Serves one file; while `cut` is set it promises the whole file and closes the connection halfway."""

    body = b""
    cut = True
    requests = 0

    def do_GET(self) -> None:  # the name http.server calls
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2] if self.cut else self.body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cutting_server() -> Iterator[tuple[str, type[_CuttingServer]]]:
    handler = type("Handler", (_CuttingServer,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_download_cut_off_halfway_is_never_used_and_the_next_attempt_starts_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutting_server: tuple[str, type[_CuttingServer]]
) -> None:
    url, handler = cutting_server
    archive, expected = cifar_archive(tmp_path)
    handler.body = archive.read_bytes()
    monkeypatch.setattr(CIFAR10, "url", url)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    root = tmp_path / "data"

    with pytest.raises(DatasetUnavailable):
        load_dataset("cifar10", root=root)
    assert handler.requests == 1
    assert list(root.iterdir()) == []  # no archive, no partial file, no half-extracted folder

    handler.cut = False  # the network is back
    check_cifar(load_dataset("cifar10", root=root), expected)
    assert handler.requests == 2 and leftovers(root) == []
