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
STUDY, TRIALS = "web", 8
AREA_BUDGET = 1.0              # tiny.yaml's designs span 0.18-5 mm²: about half are over it, hence not mapped
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
    """tiny.yaml with a tighter area budget: the study holds designs that could not be mapped (their energy
    and throughput are placeholders for the samplers) next to feasible ones."""
    import yaml

    d = tmp_path_factory.mktemp("browse")
    space = yaml.safe_load((ROOT / "search_spaces/tiny.yaml").read_text())
    space["budgets"]["area_mm2"] = AREA_BUDGET
    space["reference_point"]["area_mm2"] = AREA_BUDGET
    (d / "tiny-tight.yaml").write_text(yaml.safe_dump(space))
    run = subprocess.run([sys.executable, "-m", "coopt.cli", "search", "--space", str(d / "tiny-tight.yaml"),
                          "--trials", str(TRIALS), "--workers", "1", "--sampler", "random", "--study", STUDY,
                          "--seed", "2", "--json"], cwd=d, env=_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    recs = records_of(d)
    assert any(r["violations"].get("unmapped_layers") for r in recs) and any(r["feasible"] for r in recs), \
        "the study should hold unmappable and feasible designs"
    return d


def records_of(d: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((d / "mlruns/studies" / STUDY / "trials").glob("*.json"))]


def largest_feasible_energy(d: Path) -> float:
    return max(r["metrics"]["energy_uj"] for r in records_of(d) if r["feasible"])


def plotly_x_range(driver, title_part: str) -> list[float]:
    """The x-axis range of the plotly chart whose text contains ``title_part`` (as plotly laid it out)."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = """
      const want = arguments[0];
      for (const el of document.querySelectorAll('.js-plotly-plot')) {
        let node = el; let text = '';
        for (let i = 0; i < 6 && node; i++) { text = node.innerText || ''; if (text.includes(want)) break;
                                              node = node.parentElement; }
        const xa = el._fullLayout && el._fullLayout.xaxis;
        if (text.includes(want) && xa && xa.range) return [xa.range[0], xa.range[1], xa.type];
      }
      return null;"""
    try:
        got = WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(lambda d: d.execute_script(script, title_part))
    except Exception:
        raise AssertionError(f"no plotly chart with '{title_part}' on {driver.current_url}") from None
    lo, hi, kind = got
    return [10 ** lo, 10 ** hi] if kind == "log" else [lo, hi]


def front_by_hand(study_dir: Path) -> set[int]:
    """Feasible trials no other feasible trial beats on every objective (from the records on disk);
    a design proposed again counts once, as its first trial, and of designs with the same objective values
    only the one with the least area (then power, then trial number)."""
    meta = json.loads((study_dir / "study.json").read_text())
    objectives = meta["settings"]["objectives"]
    recs = [json.loads(p.read_text()) for p in sorted((study_dir / "trials").glob("*.json"))]
    first = {}
    for r in recs:                                   # sorted by trial number: the first of each design
        first.setdefault(json.dumps(r["params"], sort_keys=True), r)
    feas = [r for r in first.values() if r["feasible"]]

    def loss(r):
        return [r["metrics"][n] * (1 if d == "minimize" else -1) for n, d in objectives]

    def rank(r):
        return (r["metrics"]["area_mm2"], r["metrics"]["power_mw"], r["number"])

    return {r["number"] for r in feas
            if not any(all(a <= b for a, b in zip(loss(o), loss(r))) and loss(o) != loss(r) for o in feas)
            and not any(loss(o) == loss(r) and rank(o) < rank(r) for o in feas)}


def same_objectives_by_hand(study_dir: Path, number: int) -> list[int]:
    """The other feasible trials whose objective values equal trial ``number``'s (one front entry)."""
    objectives = json.loads((study_dir / "study.json").read_text())["settings"]["objectives"]
    recs = [json.loads(p.read_text()) for p in (study_dir / "trials").glob("*.json")]
    key = {r["number"]: [r["metrics"][n] for n, _ in objectives] for r in recs if r["feasible"]}
    return sorted(n for n, k in key.items() if n != number and k == key[number])


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
    proc, run = _serve(["ui", "--port", str(port), "--study", STUDY], study, "its front in MLflow: ", log)
    line = log.read_text().splitlines()[0]
    assert line.startswith("front page: http")                            # its first line: the page to open
    (exp,) = [l for l in log.read_text().splitlines() if f"study {STUDY}: " in l]
    yield {"experiment": exp.split(": ", 1)[1].strip(), "front": line.split(": ", 1)[1].split()[0],
           "study_run": run.split(": ", 1)[1].strip()}
    _stop(proc)


@pytest.fixture(scope="module")
def ui(ui_urls):
    return ui_urls["experiment"]


def close_assistant(driver) -> None:
    """Close MLflow's assistant side panel: MLflow 3.17 opens it once per browser on a local server, and
    offers no server setting to keep it closed; closed once, it stays closed (the browser remembers)."""
    from selenium.webdriver.common.by import By

    for close in driver.find_elements(By.XPATH, "//*[text()='MLflow Assistant']/ancestor::div[.//button][1]"
                                                "//button[@aria-label='Close']"):
        close.click()
        time.sleep(1)


def shot(driver, name: str, tmp_path: Path) -> None:
    """Save a screenshot (MLflow's assistant side panel closed first: it hides half the page)."""
    close_assistant(driver)
    driver.save_screenshot(str(tmp_path / name))
    target = os.environ.get("COOPT_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(target) / name)


def path_of(url: str) -> str:
    """A URL without the query of its hash route (coopt's links ask for MLflow's classic mode there)."""
    return url.split("?", 1)[0]


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
    assert "/#/experiments/" in ui and ui.endswith("viewStateShareKey=coopt-trials&workflowType=machine_learning")
    browser.get(ui)
    body = wait_text(browser, f"{TRIALS} matching runs", "t000", "energy_uj", "throughput_ips")
    assert f"coopt/{STUDY}" in body                                  # the study's own experiment
    assert "Model registry" in body and "Judges" not in body         # MLflow's classic mode, not GenAI's
    records = [json.loads(p.read_text()) for p in (study / "mlruns/studies" / STUDY / "trials").glob("*.json")]
    for r in records:
        assert f"t{r['number']:03d} " in body                        # every trial is a row, by its name
    shot(browser, "mlflow-runs.png", tmp_path)
    # the chart view: every trial drawn, the objectives against each other, parallel coordinates set up
    browser.get(ui + "&compareRunsMode=CHART")
    wait_text(browser, "Objectives", "energy_uj vs. throughput_ips", "Parallel Coordinates", "Showing all runs")
    lo, hi = plotly_x_range(browser, "energy_uj vs. throughput_ips")
    top = largest_feasible_energy(study)
    assert hi <= 10 * top, f"the energy axis ends at {hi:g} µJ, the largest feasible energy is {top:g} µJ"
    shot(browser, "mlflow-charts.png", tmp_path)


def test_study_run_lists_the_front_with_links(study, ui, ui_urls, browser, tmp_path):
    """The study run, as `coopt ui` prints it, shows its front's table whole at 1600x1000 without a click;
    its overview names the front, each link opening that trial's run."""
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By

    client = MlflowClient(f"sqlite:///{study / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"coopt/{STUDY}")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`coopt.role` = 'parent'")
    base = ui.split("/#/")[0]
    expected = front_by_hand(study / "mlruns/studies" / STUDY)
    names = {int(r.data.tags["coopt.trial"]): r.info.run_name
             for r in client.search_runs([exp.experiment_id], "tags.`coopt.role` = 'trial'")}
    assert ui_urls["study_run"].startswith(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}/")
    browser.set_window_size(1600, 1000)
    try:
        browser.get(ui_urls["study_run"])
        wait_text(browser, "pareto/front_table.html")
        close_assistant(browser)
        from selenium.webdriver.support.ui import WebDriverWait
        frame = WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.CSS_SELECTOR, "iframe"))
        height = browser.execute_script("return window.innerHeight")
        top = browser.execute_script("return arguments[0].getBoundingClientRect().top", frame)
        browser.switch_to.frame(frame)
        try:
            WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#front-table tr"))
            rows = browser.find_elements(By.CSS_SELECTOR, "#front-table tr")[1:]
            recs = {r["number"]: r for r in records_of(study)}
            along = sorted(expected, key=lambda n: (recs[n]["metrics"]["energy_uj"], n))     # the front's order
            assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [names[n] for n in along]
            for r in rows:                  # on screen as the page opens: no click, no scrolling
                bottom = browser.execute_script("return arguments[0].getBoundingClientRect().bottom", r)
                assert top + bottom <= height, f"{r.text} is below the window"
            assert f"{len(expected)} designs on the front" in browser.find_element(By.TAG_NAME, "body").text
        finally:
            browser.switch_to.default_content()
        shot(browser, "mlflow-study-front.png", tmp_path)
    finally:
        browser.set_window_size(1920, 1080)
    browser.get(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}?workflowType=machine_learning")
    wait_text(browser, f"Pareto front of study {STUDY}")
    for button in browser.find_elements(By.XPATH, "//*[normalize-space(text())='Show more']"):
        button.click()
    wait_text(browser, f"{len(expected)} designs on the front")
    links = {}
    for a in browser.find_elements(By.CSS_SELECTOR, "table a[href*='/runs/']"):       # the front's table
        text = a.text.strip()
        if text.startswith("t") and text[1:4].isdigit():
            links[int(text[1:4])] = a
    assert set(links) == expected
    for number, a in links.items():
        (run,) = client.search_runs([exp.experiment_id], f"tags.`coopt.trial` = '{number}'")
        assert path_of(a.get_attribute("href")).endswith(f"#/experiments/{exp.experiment_id}/runs/{run.info.run_id}")
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
    assert path_of(browser.current_url).endswith(f"/runs/{run.info.run_id}")
    body = wait_text(browser, run.info.run_name, "energy_uj", "headroom_area_mm2")
    assert f"Pareto front of study {STUDY}" not in body               # the trial's page, not the study's


def test_dashboard_shows_the_pareto_front(study, browser, tmp_path):
    """`coopt dashboard`: the Pareto-front plot with named objectives, parameters in user units."""

    port = free_port()
    proc, line = _serve(["dashboard", "--study", STUDY, "--port", str(port)], study, "Optuna Dashboard: ",
                        tmp_path / "dashboard.log")
    try:
        url = line.split(": ", 1)[1].split()[0]
        browser.get(url)
        wait_text(browser, "Pareto Front", "energy / inference (µJ)", "throughput (inferences/s)")
        lo, hi = plotly_x_range(browser, "Pareto Front")
        xs = browser.execute_script("""
          for (const el of document.querySelectorAll('.js-plotly-plot')) {
            let node = el, text = '';
            for (let i = 0; i < 6 && node; i++) { text = node.innerText || ''; if (text.includes('Pareto Front')) break;
                                                  node = node.parentElement; }
            if (text.includes('Pareto Front'))
              return el.data.flatMap(t => Array.from(t.x || [])).filter(v => v !== null && v !== undefined);
          }
          return null;""")
        mapped = [r for r in records_of(study) if not r["violations"].get("unmapped_layers")]
        energies = sorted(r["metrics"]["energy_uj"] for r in mapped)
        assert sorted(set(xs)) == pytest.approx(sorted(set(energies)))   # every mapped design, no placeholder
        top = largest_feasible_energy(study)
        assert hi <= 10 * top, f"the energy axis ends at {hi:g} µJ, the largest feasible energy is {top:g} µJ"
        shot(browser, "dashboard-pareto.png", tmp_path)
        browser.get(url + "/trials")
        body = wait_text(browser, "glb_depth")
        assert "log2_glb_depth" not in body
        records = [json.loads(p.read_text()) for p in (study / "mlruns/studies" / STUDY / "trials").glob("*.json")]
        assert any(str(r["params"]["glb_depth"]) in body for r in records)     # 2048, not 11
    finally:
        _stop(proc)


def plotted_by_hand(study_dir: Path) -> int:
    """Trials that were mapped and have finite energy and throughput (an unmapped design has placeholders)."""
    import math

    recs = [json.loads(p.read_text()) for p in (study_dir / "trials").glob("*.json")]
    return sum(not r["violations"].get("unmapped_layers")
               and all(math.isfinite(r["metrics"].get(k, math.nan)) for k in ("energy_uj", "throughput_ips"))
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
    lo, hi = (float(v) for v in browser.find_element(By.ID, "front-plot").get_attribute("data-x-range").split(","))
    top = largest_feasible_energy(study)
    assert hi <= 10 * top, f"the energy axis ends at {hi:g} µJ, the largest feasible energy is {top:g} µJ"
    ticks = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#front-plot > text")]
    assert not any(t in ("1e+12", "1.000e+12", "1,000,000,000,000") for t in ticks)       # no placeholder axis
    unmapped = sum(bool(r["violations"].get("unmapped_layers")) for r in records_of(study))
    assert f"not mapped (no energy or throughput, not drawn): {unmapped}" in browser.find_element(By.ID, "not-mapped").text
    assert {int(a.get_attribute("data-trial")) for a in front} == expected
    rows = browser.find_elements(By.CSS_SELECTOR, "#front-table a")
    assert len(rows) == len(expected)
    for tr in browser.find_elements(By.CSS_SELECTOR, "#front-table tr")[1:]:        # ties: one entry each
        cells = tr.find_elements(By.TAG_NAME, "td")
        number = int(cells[0].text[1:4])
        same = same_objectives_by_hand(study / "mlruns/studies" / STUDY, number)
        assert cells[-1].text == (", ".join(f"t{n:03d}" for n in same) or "–")
    shot(browser, "front-page.png", tmp_path)
    client = MlflowClient(f"sqlite:///{study / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"coopt/{STUDY}")
    number = sorted(expected)[-1]
    (run,) = client.search_runs([exp.experiment_id], f"tags.`coopt.trial` = '{number}'")
    (point,) = [a for a in front if int(a.get_attribute("data-trial")) == number]
    point.find_element(By.CSS_SELECTOR, "circle").click()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not path_of(browser.current_url).endswith(f"/runs/{run.info.run_id}"):
        time.sleep(0.3)
    assert path_of(browser.current_url).endswith(f"#/experiments/{exp.experiment_id}/runs/{run.info.run_id}")
    assert browser.current_url.startswith(ui_urls["experiment"].split("/#/")[0])     # the MLflow UI coopt ui runs
    body = wait_text(browser, run.info.run_name, run.info.run_id, "energy_uj")
    assert f"Pareto front of study {STUDY}" not in body


def _as_an_older_coopt_left_it(sdir: Path) -> None:
    """An older coopt recorded no tracking URI (the store beside the study folder); today's studies record
    their store's absolute URI, which would point this copy back at the fixture's store."""
    import optuna

    from coopt.study.storage import open_storage
    meta = json.loads((sdir / "study.json").read_text())
    meta["settings"]["tracking_uri"] = None
    (sdir / "study.json").write_text(json.dumps(meta))
    stored = optuna.load_study(study_name=STUDY, storage=open_storage(None, sdir, create=False))
    settings = dict(stored.user_attrs["coopt.settings"], tracking_uri=None)
    stored.set_user_attr("coopt.settings", settings)


def test_old_store_hint_gives_the_study_its_experiment(study, tmp_path):
    """A store of the old layout (all studies in the experiment 'coopt'): `coopt ui --study` says in one line
    what to run; that command logs the study into its own experiment without evaluating a trial again."""
    from legacy_store import make_legacy_store
    from mlflow.tracking import MlflowClient

    shutil.copytree(study / "mlruns" / "studies", tmp_path / "mlruns" / "studies")
    _as_an_older_coopt_left_it(tmp_path / "mlruns" / "studies" / STUDY)
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
