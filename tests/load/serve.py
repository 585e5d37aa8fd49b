"""`streamlit run`, in this process, plus two read-outs for the load and soak tests.

    python tests/load/serve.py [--jobs JOBS.json] [--collect-on REQUEST] -- run app.py --server.port 8600 ...

Everything after `--` is Streamlit's own command line, so the app is served exactly as by `streamlit run`
(same options, same .streamlit/config.toml). Nothing in the app is patched or replaced; two daemon threads
only read, or act when asked:

- `--jobs JOBS.json`: every 0.1 s, read the training page's job runner through its public `get(job_id)`
  (ids are 1, 2, 3... in submission order) and write what it holds of each job (label, owner, state,
  submit/start/finish times) to JOBS.json, replaced atomically. The page shows a queue place, not these
  times; the load test uses them to check that jobs ran one at a time and in the order they were queued.
- `--collect-on REQUEST`: when the file REQUEST appears, run a full garbage collection, write what is still
  alive (objects the collector tracks, bytes of live torch tensors) to REQUEST with the suffix .json, then
  delete REQUEST; a REQUEST that says `census` only counts, without collecting. The app turns Streamlit's
  collection after every script run off (.streamlit/config.toml) and collects when sessions end (ui/janitor.py);
  the soak test counts what that leaves, then asks for a collection before each reading so that its readings
  compare like with like and show what is really kept.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

POLL_S = 0.1
REPO_ROOT = Path(__file__).resolve().parents[2]


def _snapshot(runner: Any, known: dict[int, dict[str, Any]]) -> None:
    """Update `known` with every job this server's client holds now; jobs it has dropped keep their last record."""
    for job in runner.jobs():
        known[job.id] = {
            "id": job.id,
            "owner": job.owner,
            "label": job.label,
            "state": job.state.value,
            "error": job.error,
            "submitted_at": job.submitted_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        }


def _record_jobs(path: Path) -> None:
    known: dict[int, dict[str, Any]] = {}
    last = ""
    while "ui.training" not in sys.modules:  # imported by the first page run that needs it
        time.sleep(POLL_S)
    from ui.training import job_runner  # the same cached runner the pages use

    runner = job_runner()
    while True:
        _snapshot(runner, known)
        text = json.dumps([known[k] for k in sorted(known)], indent=1)
        if text != last:
            tmp = path.with_suffix(".partial")
            tmp.write_text(text)
            os.replace(tmp, path)
            last = text
        time.sleep(POLL_S)


def _live_objects() -> dict[str, int]:
    """After a full collection: objects the collector tracks, and the bytes of every live torch tensor."""
    import torch

    storages: dict[int, int] = {}  # data pointer -> bytes: views and detached copies share one storage
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and not obj.is_meta and obj.device.type == "cpu":
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return {"tracked_objects": len(gc.get_objects()), "tensor_bytes": sum(storages.values())}


def _collect_on(request: Path) -> None:
    result = request.with_suffix(".json")
    while True:
        if request.exists():
            collected = gc.collect() if request.read_text() != "census" else 0
            result.write_text(json.dumps({"collected": collected, **_live_objects()}))
            request.unlink()
        time.sleep(POLL_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=Path, help="write the job runner's record here")
    parser.add_argument("--collect-on", type=Path, help="run a full garbage collection when this file appears")
    parser.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="-- then Streamlit's arguments")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    if args.jobs is not None:
        args.jobs.write_text("[]")
        threading.Thread(target=_record_jobs, args=(args.jobs,), name="load-test-jobs", daemon=True).start()
    if args.collect_on is not None:
        threading.Thread(target=_collect_on, args=(args.collect_on,), name="load-test-gc", daemon=True).start()

    from streamlit.web import cli

    rest = args.streamlit_args[1:] if args.streamlit_args[:1] == ["--"] else args.streamlit_args
    sys.argv = ["streamlit", *rest]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
