"""A classroom at once: N students on one `streamlit run` server, each in their own browser session.

All sessions at the same time (they arrive ARRIVAL_S apart), each one:
1. opens the link the teacher shared (a small custom ResNet: blocks 1,1, widths 8,16, CIFAR stem);
2. changes the model in the sidebar: its own stem width, so every session's model differs;
3. opens Feature maps, switches to "Your image", uploads its own PNG (its own name and size), sees its maps;
4. opens Training, sets its own seed and starts a tiny run on the built-in shapes (the server caps every
   job at RESNET_TRAIN_MAX_SECONDS), and waits for its result;
5. goes back to Feature maps and picks "Trained in this session".

Asserted:
- no errors: every step showed what it should, no page showed an exception box or a traceback, and the
  server logged no traceback;
- every session got its own results: its own model (the stem's channel count under the grid, before and
  after training, and the sidebar's Family picker saying "Custom"), its own upload's name and size and no
  other session's file name, its own run's label (its seed) while it ran and on the trained model;
- the jobs ran one at a time (one worker, one device) and in the order they were queued. The page shows a
  queue place, not times, so the times come from the job runner itself, recorded by tests/load/serve.py:
  each job started after the previous one had finished, in submission order; and the queue places each
  page showed only went down;
- one job per session, each finished without an error.

Reported: p50/p95/max of a page update (action -> expected content on screen and the app idle), per step
and over all steps; the jobs' run and wait times; the server's memory and CPU time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from resnet_core import analyze
from resnet_core.config import ResNetConfig
from tests.browser.helpers import metric_locator

from .harness import (
    MB,
    RssSampler,
    Server,
    Session,
    Sizes,
    expect,
    launch,
    markdown_table,
    nav_link,
    new_page,
    noise_png,
    percentile,
    run_async,
    serve,
    step_rows,
    visit,
    wait_idle,
    write_report,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

TRAIN_CAP_S = 2  # RESNET_TRAIN_MAX_SECONDS on the server: each job stops after this, then evaluates
SESSION_TTL_S = 5  # server.disconnectedSessionTTL: a closed session is dropped this long after it closed
PARAMS = "Parameters (trainable)"
TINY = ResNetConfig().with_(blocks=(1, 1), block="basic", widths=(8, 16), stem="cifar", stem_width=8, shortcut="B",
                            num_classes=10)
LINK = "/?preset=custom&blocks=1,1&block=basic&widths=8,16&stem=cifar&stem_width=8&shortcut=B&classes=10&input=3x32x32"
STEPS = ("open the shared link", "change the model (sidebar)", "open Feature maps", "Image -> Your image",
         "upload an image", "open Training", "start training", "back to Feature maps",
         "weights -> trained in this session")  # every session times each of these once
UPLOAD_NAME = re.compile(r"load-\d\d\.png")
STEM_ANY = re.compile(r"^stem · output · ")  # the caption under the grid, whatever the model
JOB_POLL_S = 0.5  # how often a page that watches its run reads its status
BLANK_LIMIT_S = 30  # a watched page that shows neither a queue place, a running run nor a result this long fails
BUDGET_S = 480  # for the whole classroom: pytest stops a test at 600 s, and a stopped run still gets its report
ARRIVAL_S = 0.5  # students arrive this far apart (all are connected at once soon after), not in the same ms

# What the training page says about this session's run: its place in the queue, its running label, its result.
_JOB_STATUS_JS = """
() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const text = main ? main.innerText : '';
  const place = text.match(/Waiting in the queue: place (\\d+)/);
  const running = text.match(/(?:Running|Starting) (.+? · builtin · \\d+ ep · seed \\d+)/);
  const labels = [...document.querySelectorAll('[data-testid="stMetricLabel"]')].map((m) => m.innerText.trim());
  return {place: place ? Number(place[1]) : null, running: running ? running[1] : null,
          done: labels.includes('Final test accuracy'), busy: text.includes('The server is busy')};
}
"""


def _params(stem_width: int) -> str:
    return f"{analyze(TINY.with_(stem_width=stem_width), input_size=(3, 32, 32)).trainable_params:,}"


def _stem_caption(stem_width: int) -> str:
    return f"stem · output · {stem_width} channels of 32×32"  # the CIFAR stem keeps the input's size


async def _own_model(page: Page, s: Session, where: str) -> None:
    """The Feature maps page shows this session's model (its stem width), or fail with what it shows instead."""
    caption = await page.get_by_test_id("stCaptionContainer").filter(has_text=STEM_ANY).first.inner_text()
    if _stem_caption(s.notes["stem_width"]) not in caption:
        family = await page.get_by_role("combobox", name="Family", exact=True).input_value()
        raise AssertionError(
            f"session {s.index}, {where}: Feature maps shows another model than the session chose (stem width "
            f"{s.notes['stem_width']}): caption {caption[:80]!r}, sidebar Family {family!r}, URL {page.url}"
        )


async def _custom_family(page: Page, s: Session, where: str) -> None:
    """The sidebar's Family picker says "Custom", as the model on the page is (the shared link's custom model)."""
    family = await page.get_by_role("combobox", name="Family", exact=True).input_value()
    if family != "Custom":
        raise AssertionError(f"session {s.index}, {where}: the sidebar's Family picker shows {family!r} while the "
                             f"page shows the custom model; URL {page.url}")


async def _student(browser: Browser, base: str, s: Session) -> None:
    await asyncio.sleep(ARRIVAL_S * s.index)
    page = await new_page(browser)
    seed, width = 1000 + s.index, 9 + s.index  # both differ from every other session's
    name, size = f"load-{s.index:02d}.png", (40 + s.index, 30 + s.index)
    s.notes.update(seed=seed, stem_width=width, upload=name)
    params = metric_locator(page, PARAMS)  # type: ignore[arg-type]  # builds a locator only: async-safe
    stem = page.get_by_test_id("stCaptionContainer").filter(has_text=STEM_ANY)
    try:
        await s.step(page, "open the shared link", lambda: page.goto(base + LINK),
                     lambda: expect(params).to_have_text(_params(TINY.stem_width)))
        await _custom_family(page, s, "after opening the shared link")
        stem_box = page.get_by_role("spinbutton", name="Stem width", exact=True)

        async def set_stem() -> None:
            await stem_box.fill(str(width))
            await stem_box.press("Enter")

        await s.step(page, "change the model (sidebar)", set_stem, lambda: expect(params).to_have_text(_params(width)))
        await _custom_family(page, s, "after changing the stem width")

        await s.step(page, "open Feature maps", lambda: nav_link(page, "Feature maps").click(),
                     lambda: expect(stem).to_have_count(1))
        await _own_model(page, s, "after opening Feature maps")
        uploader = page.get_by_test_id("stFileUploader")
        await s.step(page, "Image -> Your image",
                     lambda: page.get_by_role("radiogroup", name="Image", exact=True)
                     .get_by_role("radio", name="Your image", exact=True).click(),
                     lambda: expect(uploader).to_be_visible())
        label = page.get_by_test_id("stText").filter(has_text=name)
        png = noise_png(name, *size, seed=seed)
        await s.step(page, "upload an image", lambda: uploader.locator("input[type=file]").set_input_files(files=[png]),
                     lambda: expect(label).to_contain_text(f"{name}\nPNG, RGB, {size[0]}×{size[1]}"))
        await expect(page.get_by_test_id("stPlotlyChart").first.locator(".main-svg").first).to_be_visible()
        await _own_model(page, s, "after the upload")
        shown = set(UPLOAD_NAME.findall(await page.locator("body").inner_text()))
        assert shown == {name}, f"session {s.index} sees uploads {sorted(shown)}, not only its own {name}"

        start = page.get_by_role("button", name="Start training")
        await s.step(page, "open Training", lambda: nav_link(page, "Training").click(),
                     lambda: expect(start).to_be_enabled())
        seed_box = page.get_by_role("spinbutton", name="Seed", exact=True)

        async def set_seed() -> None:
            await seed_box.fill(str(seed))
            await seed_box.press("Enter")

        await s.step(page, "set the seed", set_seed, lambda: expect(seed_box).to_have_value(str(seed)), timed=False)
        status = page.get_by_text(re.compile(rf"Waiting in the queue: place \d+|(Running|Starting) .* seed {seed}"))
        result = page.get_by_test_id("stMetricLabel").filter(has_text="Final test accuracy")
        await s.step(page, "start training", lambda: start.click(),
                     lambda: expect(status.or_(result).first).to_be_visible())

        # Watch the run on the Training page until its result shows, as a student would.
        places: list[int] = []
        running: set[str] = set()
        s.notes.update(places=places, running=running)
        blank_since: float | None = None
        while True:
            st = await page.evaluate(_JOB_STATUS_JS)
            s.notes["last status"] = st
            if st["place"] is None and st["running"] is None and not st["done"]:
                blank_since = blank_since or time.monotonic()
                if time.monotonic() - blank_since > BLANK_LIMIT_S:  # stuck: say what the page shows instead
                    if s.shots is not None:
                        await page.screenshot(path=str(s.shots / f"session{s.index:02d}_watching.png"), full_page=True)
                    text = await page.get_by_test_id("stMain").inner_text()
                    raise AssertionError(f"session {s.index}: for {BLANK_LIMIT_S} s the Training page showed no queue "
                                         f"place, no running run and no result; it shows: {text[:800]!r}")
            else:
                blank_since = None
            if st["place"] is not None:
                places.append(st["place"])
            if st["running"] is not None:
                running.add(st["running"])
            if st["busy"]:
                raise AssertionError(f"session {s.index}: the queue refused the run (server busy)")
            if st["done"]:
                break
            await asyncio.sleep(JOB_POLL_S)
        await wait_idle(page)

        await s.step(page, "back to Feature maps", lambda: nav_link(page, "Feature maps").click(),
                     lambda: expect(stem).to_have_count(1))
        await _own_model(page, s, "back on Feature maps after training")
        trained = page.get_by_text(re.compile(rf"^Trained in this session: .+ · builtin · \d+ ep · seed {seed}$"))
        await s.step(page, "weights -> trained in this session",
                     lambda: page.get_by_role("radiogroup", name="Weights", exact=True)
                     .get_by_text("Trained in this session", exact=True).click(),
                     lambda: expect(trained).to_be_visible())
        await _own_model(page, s, "with its trained weights")  # the trained model is this session's own
        s.notes["trained_label"] = (await trained.inner_text()).removeprefix("Trained in this session: ")
    except Exception as e:
        if not s.errors:  # a failed check between steps
            s.errors.append(f"session {s.index}: {type(e).__name__}: {str(e)[:600]}")
    except asyncio.CancelledError:  # the test's time budget ran out
        s.errors.append(f"session {s.index}: still at {s.current!r} when the time budget ran out "
                        f"(last job status {s.notes.get('last status')})")
        raise
    finally:
        s.notes["running"] = sorted(s.notes.get("running", ()))
        await page.context.close()


async def _classroom(server: Server, sessions: list[Session], rss: RssSampler) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            await visit(browser, server.url + LINK)  # the teacher's check: the server has imported everything
            await asyncio.to_thread(server.collect_garbage)
            rss.mark("warm")
            await asyncio.gather(*(_student(browser, server.url, s) for s in sessions))
            rss.mark("all done")
            # Let the closed sessions go: after the TTL, Streamlit drops them on its next write to its session
            # store (this visit's disconnect); then a full collection, as in the soak test.
            await asyncio.sleep(SESSION_TTL_S + 2)
            await visit(browser, server.url)
            await asyncio.sleep(1)
            await asyncio.to_thread(server.collect_garbage)
            rss.mark("end")
        finally:
            await browser.close()


@dataclass(frozen=True)
class JobRecord:
    """One job as tests/load/serve.py recorded it from the runner (times are time.time() seconds)."""

    id: int
    owner: str
    label: str
    state: str
    error: str | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def seed(self) -> int:
        return int(self.label.rsplit(" ", 1)[1])  # labels end with "seed <n>"


def _check_jobs(jobs: list[JobRecord], sessions: list[Session]) -> list[str]:
    """What is wrong (nothing: an empty list): one job per session and one at a time, in submission order."""
    wrong = []
    seeds = sorted(s.notes["seed"] for s in sessions)
    if sorted(j.seed for j in jobs) != seeds:
        wrong.append(f"one job per session expected (seeds {seeds}); the runner had {sorted(j.seed for j in jobs)}")
    if len({j.owner for j in jobs}) != len(jobs):
        wrong.append("two jobs share an owner: sessions were not told apart")
    for j in jobs:
        if j.state not in ("done", "stopped") or j.error or j.started_at is None or j.finished_at is None:
            wrong.append(f"job {j.id} ({j.label}) did not finish cleanly: {j.state}, {j.error}")
    for a, b in itertools.pairwise(sorted(jobs, key=lambda j: j.id)):  # ids are handed out in submission order
        if b.submitted_at < a.submitted_at:
            wrong.append(f"job ids out of submission order: {a.id} after {b.id}")
        if a.started_at is None or a.finished_at is None or b.started_at is None:
            continue
        if b.started_at < a.finished_at:
            wrong.append(f"job {b.id} started {a.finished_at - b.started_at:.3f} s before job {a.id} finished: "
                         "two jobs ran at once on one worker")
        if b.started_at < a.started_at:
            wrong.append(f"job {b.id} started before job {a.id}, which was queued first")
    for s in sessions:
        places = s.notes.get("places", [])
        if any(later > earlier for earlier, later in itertools.pairwise(places)):
            wrong.append(f"session {s.index}: its queue place went up: {places}")
        if any(not label.endswith(f"seed {s.notes['seed']}") for label in s.notes.get("running", [])):
            wrong.append(f"session {s.index} (seed {s.notes['seed']}) was shown another run: {s.notes['running']}")
        if not s.errors and not s.notes.get("trained_label", "").endswith(f"seed {s.notes['seed']}"):
            wrong.append(f"session {s.index}: trained model {s.notes.get('trained_label')!r} is not its own run")
    return wrong


def test_classroom_load(sizes: Sizes, tmp_path: Path, summary: list[str]) -> None:
    n = sizes.load_sessions
    record, shots = tmp_path / "jobs.json", tmp_path / "screenshots"
    shots.mkdir()
    env = {
        "RESNET_TRAIN_MAX_SECONDS": str(TRAIN_CAP_S),
        "RESNET_TRAIN_QUEUE": str(n),  # room for the whole class: nobody is told "busy"
        "RESNET_TRAIN_WORKERS": "1",
        "RESNET_RUNS_DIR": str(tmp_path / "runs"),
    }
    options = {"server.disconnectedSessionTTL": str(SESSION_TTL_S)}
    sessions = [Session(i, shots=shots) for i in range(n)]
    t0 = time.monotonic()
    with serve(tmp_path, options=options, env=env, job_record=record) as server, RssSampler(server.pid) as rss:
        try:
            run_async(_classroom(server, sessions, rss), budget_s=BUDGET_S)
        except TimeoutError:
            out_of_time = [f"the whole run took more than {BUDGET_S} s and was stopped"]
        else:
            out_of_time = []
        for mark in ("warm", "all done", "end"):  # a run stopped early still gets its report
            if mark not in rss.marks:
                rss.mark(mark)
        log = server.log()
    wall_s = time.monotonic() - t0

    jobs = [JobRecord(**j) for j in json.loads(record.read_text())]
    errors = out_of_time + [e for s in sessions for e in s.errors]
    times = [t for s in sessions for _, t in s.times]
    ran = [j.finished_at - j.started_at for j in jobs if j.started_at is not None and j.finished_at is not None]
    waited = [j.started_at - j.submitted_at for j in jobs if j.started_at is not None]
    wrong = _check_jobs(jobs, sessions)

    later = [t for s in sessions for name, t in s.times if name != STEPS[0]]  # without the first load of a tab
    server_cpu, machine_busy, machine_all = rss.cpu_between("warm", "all done")
    table = markdown_table(
        ["sessions", "page updates", "p50 (s)", "p95 (s)", "p50 / p95 after the first load (s)", "max (s)",
         "errors", "jobs: one at a time, FIFO", "RSS warm / peak / end (MB)", "wall (s)"],
        [[n, len(times), percentile(times, 50), percentile(times, 95),
          f"{percentile(later, 50):.2f} / {percentile(later, 95):.2f}", max(times, default=float("nan")),
          len(errors), f"{len(jobs)}: {'yes' if not wrong else 'NO'}",
          f"{rss.marks['warm'] // MB} / {rss.peak // MB} / {rss.marks['end'] // MB}", round(wall_s)]],
    )
    steps = markdown_table(["step", "n", "p50 (s)", "p95 (s)", "max (s)"], step_rows(sessions))
    notes = (
        f"Jobs: {len(jobs)}; run time each p50 {percentile(ran, 50):.1f} s, max {max(ran, default=0):.1f} s; "
        f"wait in the queue max {max(waited, default=0):.1f} s.\n"
        f"CPU while the sessions ran: the server {server_cpu:.0f} s, the whole machine {machine_busy:.0f} s busy of "
        f"{machine_all:.0f} s (the browsers, this test and anything else running take the rest).\n"
        f"RSS before the first visit {rss.marks['start'] // MB} MB (torch and the app are imported by the first "
        "page); warm = after it; end = after the TTL, one visit and a full garbage collection."
    )
    text = f"Load, {sizes.name} size: {n} concurrent sessions\n\n{table}\n\n{steps}\n\n{notes}"
    md = write_report(tmp_path, "load", "Load", text, {
        "size": sizes.name, "sessions": n, "wall_s": wall_s, "errors": errors, "problems": wrong,
        "times": {s.index: s.times for s in sessions},
        "notes": {s.index: s.notes for s in sessions},
        "jobs": [asdict(j) for j in jobs], "rss_marks": rss.marks, "cpu_marks": rss.cpu_marks,
        "machine_cpu_marks": rss.machine_marks, "rss_peak": rss.peak,
        "rss_samples": rss.samples,
    })
    summary.append(f"{text}\n(report: {md})")
    print(summary[-1])

    assert not errors, "\n".join(errors) + f"\n(screenshots in {shots}; server log:\n{log[-3000:]})"
    assert not wrong, "\n".join(wrong)
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-3000:]}"
    counts = {name: c for name, c, *_ in step_rows(sessions)}
    assert all(counts.get(step) == n for step in STEPS), f"page updates timed per step: {counts}"
