"""What a user sees, in a real browser: `coopt ui` (MLflow) and `coopt dashboard` (Optuna Dashboard) on a small study.

Headless Chromium driven by selenium (Debian's chromium + chromium-driver; `.ci/run` installs them).  One
small study on tiny.yaml is shared by the module.  Figures the pages must show are computed here from the
study's trial records, not taken from coopt's own front code.  With COOPT_SCREENSHOTS=DIR the screenshots
are also written to DIR (docs/ holds the README's).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
STUDY, TRIALS = "web", 6
WAIT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _serve(args: list[str], cwd: Path, marker: str, log: Path) -> tuple[subprocess.Popen, str]:
    """Start a coopt server command; return it and the first printed line containing ``marker``."""
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "coopt.cli", *args], cwd=cwd, env=_env(), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if marker in line:
                return proc, line
        time.sleep(0.3)
    _stop(proc)
    raise AssertionError(f"`coopt {' '.join(args)}` printed no '{marker}':\n{log.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("browse")
    run = subprocess.run([sys.executable, "-m", "coopt.cli", "search", "--space", str(ROOT / "search_spaces/tiny.yaml"),
                          "--trials", str(TRIALS), "--workers", "1", "--sampler", "random", "--study", STUDY,
                          "--seed", "2", "--json"], cwd=d, env=_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return d


def front_by_hand(study_dir: Path) -> set[int]:
    """Feasible trials no other feasible trial beats on every objective (from the records on disk);
    a design proposed again counts once, as its first trial."""
    meta = json.loads((study_dir / "study.json").read_text())
    objectives = meta["settings"]["objectives"]
    recs = [json.loads(p.read_text()) for p in sorted((study_dir / "trials").glob("*.json"))]
    first = {}
    for r in recs:                                   # sorted by trial number: the first of each design
        first.setdefault(json.dumps(r["params"], sort_keys=True), r)
    feas = [r for r in first.values() if r["feasible"]]

    def loss(r):
        return [r["metrics"][n] * (1 if d == "minimize" else -1) for n, d in objectives]

    return {r["number"] for r in feas
            if not any(all(a <= b for a, b in zip(loss(o), loss(r))) and loss(o) != loss(r) for o in feas)}


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1920,1080"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def ui_urls(study, tmp_path_factory):
    """`coopt ui` on the study: {"experiment": the study's runs view, "front": its front page}."""
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    proc, line = _serve(["ui", "--port", str(port), "--study", STUDY], study, "front page: ", log)
    (exp,) = [l for l in log.read_text().splitlines() if f"study {STUDY}: " in l]
    yield {"experiment": exp.split(": ", 1)[1].strip(), "front": line.split(": ", 1)[1].strip()}
    _stop(proc)


@pytest.fixture(scope="module")
def ui(ui_urls):
    return ui_urls["experiment"]


def shot(driver, name: str, tmp_path: Path) -> None:
    """Save a screenshot (MLflow's assistant side panel closed first: it hides half the page)."""
    from selenium.webdriver.common.by import By

    for close in driver.find_elements(By.XPATH, "//*[text()='MLflow Assistant']/ancestor::div[.//button][1]"
                                                "//button[@aria-label='Close']"):
        close.click()
        time.sleep(1)
    driver.save_screenshot(str(tmp_path / name))
    target = os.environ.get("COOPT_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(target) / name)


def wait_text(driver, *texts: str, timeout: float = WAIT_S) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def seen(d):
        body = d.find_element(By.TAG_NAME, "body").text
        return body if all(t in body for t in texts) else False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(seen)
    except Exception:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"page never showed {texts}; it shows:\n{body[:3000]}") from None


def test_experiment_opens_on_the_trials(study, ui, browser, tmp_path):
    """The printed URL opens the study's experiment on its runs table: every trial, objectives as columns."""
    assert "/#/experiments/" in ui and ui.endswith("viewStateShareKey=coopt-trials")
    browser.get(ui)
    body = wait_text(browser, f"{TRIALS} matching runs", "t000", "energy_uj", "throughput_ips")
    assert f"coopt/{STUDY}" in body                                  # the study's own experiment
    assert "Training runs" in body                                   # MLflow 3's classic runs view
    records = [json.loads(p.read_text()) for p in (study / "mlruns/studies" / STUDY / "trials").glob("*.json")]
    for r in records:
        assert f"t{r['number']:03d} " in body                        # every trial is a row, by its name
    shot(browser, "mlflow-runs.png", tmp_path)
    # the chart view: every trial drawn, the objectives against each other, parallel coordinates set up
    browser.get(ui + "&compareRunsMode=CHART")
    wait_text(browser, "Objectives", "energy_uj vs. throughput_ips", "Parallel Coordinates", "Showing all runs")
    shot(browser, "mlflow-charts.png", tmp_path)


def test_study_run_lists_the_front_with_links(study, ui, browser, tmp_path):
    """The study run's overview names its front; each link opens that trial's run."""
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By

    client = MlflowClient(f"sqlite:///{study / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"coopt/{STUDY}")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`coopt.role` = 'parent'")
    base = ui.split("/#/")[0]
    browser.get(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}")
    wait_text(browser, f"Pareto front of study {STUDY}")
    for button in browser.find_elements(By.XPATH, "//*[normalize-space(text())='Show more']"):
        button.click()
    expected = front_by_hand(study / "mlruns/studies" / STUDY)
    wait_text(browser, f"{len(expected)} designs on the front")
    shot(browser, "mlflow-study-front.png", tmp_path)
    links = {}
    for a in browser.find_elements(By.CSS_SELECTOR, "table a[href*='/runs/']"):       # the front's table
        text = a.text.strip()
        if text.startswith("t") and text[1:4].isdigit():
            links[int(text[1:4])] = a
    assert set(links) == expected
    for number, a in links.items():
        (run,) = client.search_runs([exp.experiment_id], f"tags.`coopt.trial` = '{number}'")
        assert a.get_attribute("href").endswith(f"#/experiments/{exp.experiment_id}/runs/{run.info.run_id}")
        assert a.text.strip() == run.info.run_name
    number = sorted(expected)[0]
    (run,) = client.search_runs([exp.experiment_id], f"tags.`coopt.trial` = '{number}'")
    handles = set(browser.window_handles)
    links[number].click()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and run.info.run_id not in browser.current_url:
        new = set(browser.window_handles) - handles
        if new:                                                      # opened in a new tab
            browser.switch_to.window(new.pop())
        time.sleep(0.3)
    assert browser.current_url.endswith(f"/runs/{run.info.run_id}")
    body = wait_text(browser, run.info.run_name, "energy_uj", "headroom_area_mm2")
    assert f"Pareto front of study {STUDY}" not in body               # the trial's page, not the study's


def test_dashboard_shows_the_pareto_front(study, browser, tmp_path):
    """`coopt dashboard`: the Pareto-front plot with named objectives, parameters in user units."""
    from selenium.webdriver.common.by import By

    port = free_port()
    proc, line = _serve(["dashboard", "--study", STUDY, "--port", str(port)], study, "Optuna Dashboard: ",
                        tmp_path / "dashboard.log")
    try:
        url = line.split(": ", 1)[1].split()[0]
        browser.get(url)
        wait_text(browser, "Pareto Front", "energy / inference (µJ)", "throughput (inferences/s)")
        points = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .point")
        assert len(points) >= TRIALS                                 # every complete trial is drawn
        shot(browser, "dashboard-pareto.png", tmp_path)
        browser.get(url + "/trials")
        body = wait_text(browser, "glb_depth")
        assert "log2_glb_depth" not in body
        records = [json.loads(p.read_text()) for p in (study / "mlruns/studies" / STUDY / "trials").glob("*.json")]
        assert any(str(r["params"]["glb_depth"]) in body for r in records)     # 2048, not 11
    finally:
        _stop(proc)


def plotted_by_hand(study_dir: Path) -> int:
    """Trials with finite energy and throughput (what MLflow holds for them, hence what the page draws)."""
    import math

    recs = [json.loads(p.read_text()) for p in (study_dir / "trials").glob("*.json")]
    return sum(all(math.isfinite(r["metrics"].get(k, math.nan)) for k in ("energy_uj", "throughput_ips"))
               for r in recs)


def test_front_page_points_open_the_trial_runs(study, ui_urls, browser, tmp_path):
    """`coopt ui`'s front page: every trial drawn, exactly the study's front highlighted, and clicking a front
    point lands on that trial's MLflow run."""
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By

    expected = front_by_hand(study / "mlruns/studies" / STUDY)
    browser.get(ui_urls["front"])
    wait_text(browser, f"Pareto front of study {STUDY}", f"{len(expected)} designs on the front")
    points = browser.find_elements(By.CSS_SELECTOR, "#front-plot a.trial")
    front = browser.find_elements(By.CSS_SELECTOR, "#front-plot a.front")
    assert len(points) == plotted_by_hand(study / "mlruns/studies" / STUDY)
    assert len(front) == len(expected)
    assert {int(a.get_attribute("data-trial")) for a in front} == expected
    rows = browser.find_elements(By.CSS_SELECTOR, "#front-table a")
    assert len(rows) == len(expected)
    shot(browser, "front-page.png", tmp_path)
    client = MlflowClient(f"sqlite:///{study / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"coopt/{STUDY}")
    number = sorted(expected)[-1]
    (run,) = client.search_runs([exp.experiment_id], f"tags.`coopt.trial` = '{number}'")
    (point,) = [a for a in front if int(a.get_attribute("data-trial")) == number]
    point.find_element(By.CSS_SELECTOR, "circle").click()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not browser.current_url.endswith(f"/runs/{run.info.run_id}"):
        time.sleep(0.3)
    assert browser.current_url.endswith(f"#/experiments/{exp.experiment_id}/runs/{run.info.run_id}")
    assert browser.current_url.startswith(ui_urls["experiment"].split("/#/")[0])     # the MLflow UI coopt ui runs
    body = wait_text(browser, run.info.run_name, run.info.run_id, "energy_uj")
    assert f"Pareto front of study {STUDY}" not in body


def test_old_store_hint_gives_the_study_its_experiment(study, tmp_path):
    """A store of the old layout (all studies in the experiment 'coopt'): `coopt ui --study` says in one line
    what to run; that command logs the study into its own experiment without evaluating a trial again."""
    from legacy_store import make_legacy_store
    from mlflow.tracking import MlflowClient

    shutil.copytree(study / "mlruns" / "studies", tmp_path / "mlruns" / "studies")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    trials = sorted((tmp_path / "mlruns/studies" / STUDY / "trials").glob("*.json"))
    make_legacy_store(client, STUDY, len(trials))
    run = subprocess.run([sys.executable, "-m", "coopt.cli", "ui", "--study", STUDY, "--port", str(free_port())],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    command = run.stderr.split("(no trial runs again): ", 1)[1].split(", then")[0]
    assert command.startswith(f"coopt search --study {STUDY} ")
    before = {p.name: p.stat().st_mtime_ns for p in trials}
    again = subprocess.run([sys.executable, "-m", "coopt.cli", *command.split()[1:]], cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "mlruns/studies" / STUDY / "trials").glob("*.json")}
    assert after == before                                            # no trial evaluated again
    exp = client.get_experiment_by_name(f"coopt/{STUDY}")
    runs = client.search_runs([exp.experiment_id], "tags.`coopt.role` = 'trial'")
    assert len(runs) == len(trials)
    assert {int(r.data.tags["coopt.trial"]) for r in runs if r.data.tags["pareto"] == "true"} == \
        front_by_hand(tmp_path / "mlruns/studies" / STUDY)
