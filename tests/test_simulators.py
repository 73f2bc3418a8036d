"LM-realised simulators, PSE fitting/backtesting and SimulatorPanel (headless and in a real browser via Voila)."
import itertools, json, math, shutil, time, warnings
from pathlib import Path
import numpy as np
import plotly.graph_objects as go
import pytest, torch
from interpwb.simulators.simulation import SCENARIOS, Scenario, Simulation, complexity_proxies, select, simulate
from interpwb.scoring import option_logprobs
from interpwb.simulators.pse import PSEResults, backtest, fit_trend, object_heatmap, option_probs_figure, run_pse
from interpwb.simulators.pse import synthetic_results, trend_figure
from interpwb.simulators.panel import SimulatorPanel

APP = Path(__file__).parent/"apps"/"simulator_app.ipynb"

# ---------- option scoring ----------
def _independent_score(model, prompt, option, sep=" "):
    "Sum of next-token log-probs of the option's tokens, one single-sequence forward per token (no batching/cache)."
    tok = model.tokenizer
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    f = tok(prompt + sep + option, add_special_tokens=False)["input_ids"]
    k = next(i for i in range(len(f)) if i >= len(p) or p[i] != f[i])
    total = 0.0
    with torch.no_grad():
        for t in range(k, len(f)):
            total += model(torch.tensor([f[:t]]))[0, -1].float().log_softmax(-1)[f[t]].item()
    return total, len(f) - k

def test_multi_token_option_score_is_sum_of_its_token_logprobs(tiny):
    prompt, option = "The suspects were asked what they would do. One said: I choose to", "stay silent for now"
    got = option_logprobs(tiny, [prompt], [option, "betray"])[0, 0].item()
    want, n_tok = _independent_score(tiny, prompt, option)
    assert n_tok >= 3 and abs(got - want) < 1e-3

def test_boundary_tokenisation_scores_the_full_continuation(tiny):
    # with sep="" the option glues onto the last word, so the joined text tokenises differently at the boundary
    tok, prompt, option = tiny.tokenizer, "It was totally un", "believable"
    joined = tok(prompt + option, add_special_tokens=False)["input_ids"]
    alone = tok(prompt, add_special_tokens=False)["input_ids"] + tok(option, add_special_tokens=False)["input_ids"]
    assert joined != alone  # the boundary really re-tokenises
    got = option_logprobs(tiny, prompt, [option], sep="")[0, 0].item()
    want, _ = _independent_score(tiny, prompt, option, sep="")
    assert abs(got - want) < 1e-3

def test_shared_prefix_cache_gives_the_same_scores(tiny):
    sc = SCENARIOS["honest_report"]
    prompts = [sc.prompt_text(["Alice", "Bilal", "Chen"], i) + "\nI choose to" for i in range(3)]
    a = option_logprobs(tiny, prompts, list(sc.options), prepend_bos=True, batch_size=4)
    b = option_logprobs(tiny, prompts, list(sc.options), prepend_bos=True, share_prefix=False)
    assert torch.allclose(a, b, atol=1e-4)

def test_blank_options_are_refused(tiny):
    for bad in ["", "   "]:
        with pytest.raises(ValueError, match="tokenises to nothing"):
            option_logprobs(tiny, "Pick:", ["yes", bad])
    with pytest.raises(ValueError, match="target"):
        Scenario("x", "{n} {names}", "{name} {options}", ("a", "b"), "c")

# ---------- selection rules ----------
def test_selection_rules_are_distributions_with_the_right_support():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(50, 5, generator=g) * 3
    for rule, kw in [("temperature", {}), ("temperature", {"temperature": 0.2}), ("greedy", {}), ("top_k", {"k": 2}), ("top_p", {"p": 0.7})]:
        p = select(s, rule, **kw)
        assert torch.allclose(p.sum(-1), torch.ones(50), atol=1e-5) and (p >= 0).all()
    assert (select(s, "greedy").argmax(-1) == s.argmax(-1)).all() and ((select(s, "greedy") > 0).sum(-1) == 1).all()
    assert ((select(s, "top_k", k=2) > 0).sum(-1) <= 2).all()
    full = s.softmax(-1); p = select(s, "top_p", p=0.7)
    kept_mass = (full * (p > 0)).sum(-1)
    assert (kept_mass >= 0.7 - 1e-6).all()
    # minimal: dropping the smallest kept option would fall below p
    smallest = torch.where(p > 0, full, torch.full_like(full, 2.0)).min(-1).values
    assert ((kept_mass - smallest) < 0.7).all()
    assert torch.allclose(select(s, "temperature", temperature=1e4), torch.full_like(s, 0.2), atol=1e-3)

# ---------- simulations on the tiny model ----------
@pytest.fixture(scope="module")
def tiny_sim(tiny):
    return simulate(tiny, "public_goods", 3, seed=2)

def test_cell_distribution_is_the_product_of_marginals(tiny_sim):
    cells = tiny_sim.cell_probs()
    assert cells.shape == (2, 2, 2) and abs(cells.sum().item() - 1) < 1e-5
    for i in range(3):
        other = [j for j in range(3) if j != i]
        assert torch.allclose(cells.sum(dim=other), tiny_sim.probs[i], atol=1e-6)
    # world = number choosing the target: brute-force Poisson-binomial
    p = tiny_sim.probs[:, 0].tolist(); want = [0.0] * 4
    for combo in itertools.product([0, 1], repeat=3):
        want[sum(combo)] += math.prod(p[i] if c else 1 - p[i] for i, c in enumerate(combo))
    assert np.allclose(tiny_sim.world_probs().numpy(), want, atol=1e-6)
    assert tiny_sim.object().axes == tuple(tiny_sim.names)

def test_complexity_proxies(tiny):
    sc = SCENARIOS["public_goods"]
    a, b = (complexity_proxies(tiny, sc.describe(list("ABCDEFGH"[:n])), [2] * n) for n in (2, 8))
    assert a["option_bits"] == 2 and b["option_bits"] == 8 and b["n_simulacra"] == 8
    assert b["chars"] > a["chars"] and b["tokens"] > a["tokens"] and b["model_bits"] > 0 and b["zlib_bits"] > 0
    assert "model_bits" not in complexity_proxies(None, "x", [3])

def test_run_pse_caches_and_resumes(tiny, tmp_path, monkeypatch):
    path = tmp_path/"pse.json"
    first = run_pse(tiny, scenarios=["honest_report"], levels=[2], seeds=[0], cache=path)
    assert path.exists() and len(first.sims) == 1
    import interpwb.simulators.pse as pse
    calls = []
    real = pse.simulate
    monkeypatch.setattr(pse, "simulate", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    with pytest.raises(ValueError, match="different experiment"):
        run_pse(tiny, scenarios=["honest_report"], levels=[2, 3], seeds=[0], cache=path)
    cfg = json.loads(path.read_text())["config"]
    again = run_pse(tiny, scenarios=["honest_report"], levels=[2], seeds=[0], cache=path)
    assert calls == [] and again.sims[0].p_target == first.sims[0].p_target and cfg["model"] == again.config["model"]
    loaded = PSEResults.load(path)
    assert torch.equal(loaded.sims[0].probs, first.sims[0].probs)

# ---------- trend, backtest, extrapolation ----------
def test_fit_recovers_planted_trend_and_band_covers_it():
    covered = 0
    for seed in range(10):
        df = synthetic_results(scenarios=["public_goods"], seed=seed, noise=0.3).table()
        f = fit_trend(df.n, df.p_target, n_boot=300, seed=seed)
        _, lo, hi = f.predict([5.0])
        truth = 1 / (1 + math.exp(-(1.0 - 0.3 * 5)))
        covered += lo[0] <= truth <= hi[0]
    assert covered >= 7   # a 95% band should cover the truth in most replicates

def test_linear_fit_and_bad_kind():
    f = fit_trend([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], kind="linear", n_boot=50)
    assert abs(f.coef[1] - 0.1) < 1e-9
    with pytest.raises(KeyError, match="Unknown trend kind"): fit_trend([1, 2, 3], [0.1, 0.2, 0.3], kind="cubic")

def test_far_extrapolation_warns_with_the_band_width():
    df = synthetic_results(scenarios=["public_goods"]).table()
    f = fit_trend(df.n, df.p_target, n_boot=200)
    with pytest.warns(UserWarning, match=r"width \d\.\d{3}"): f.predict([40])
    with warnings.catch_warnings():
        warnings.simplefilter("error"); f.predict([10])

def test_backtest_reports_error_and_coverage():
    bt = backtest(synthetic_results(seed=1).table(), train_max=5, n_boot=300)
    assert set(bt.scenario) == set(SCENARIOS) and sorted(bt.n.unique()) == [6, 7, 8]
    assert {"observed", "predicted", "lo", "hi", "abs_error", "covered", "run_coverage"} <= set(bt.columns)
    assert (bt.lo <= bt.predicted).all() and (bt.predicted <= bt.hi).all()
    assert bt.abs_error.mean() < 0.08 and bt.run_coverage.mean() > 0.6
    bt_proxy = backtest(synthetic_results(seed=1).table(), train_max=5, x="zlib_bits", n_boot=100)
    assert "zlib_bits" in bt_proxy.columns and len(bt_proxy) == len(bt)

def test_figures_are_pure_plotly_figures():
    res = synthetic_results()
    sim3, sim2 = res.get("prisoners_dilemma", 3), res.get("prisoners_dilemma", 2)
    h3, h2 = object_heatmap(sim3), object_heatmap(sim2)
    assert type(h3) is go.Figure and len(h3.data) == 2 and len(h2.data) == 1
    z = np.asarray(h2.data[0].z)
    assert np.allclose(z, np.outer(sim2.probs[0], sim2.probs[1]), atol=1e-6)
    bars = option_probs_figure(sim3)
    assert list(bars.data[0].x) == sim3.names and np.allclose(bars.data[0].y, sim3.probs[:, 0])
    df = res.table(); d = df[df.scenario == "prisoners_dilemma"]
    fig = trend_figure(d, fit_trend(d.n, d.p_target, n_boot=100), extrapolate_to=14)
    assert [t.name for t in fig.data][:3] == ["95% bootstrap band", "logistic fit", "extrapolation"]
    assert max(fig.data[2].x) == pytest.approx(14)

# ---------- panel ----------
def test_panel_controls_redraw_headlessly():
    p = SimulatorPanel(synthetic_results(seed=0), n_boot=100)
    assert p.summary.value.startswith("<b>public_goods, n=2, seed 0")
    p.n.value = 7
    assert p.summary.value.startswith("<b>public_goods, n=7, seed 0") and len(p.figures["probs"].data[0].x) == 7
    assert p.figures["trend"].layout.shapes[0].x0 == 7 and "n=7" in p.figures["object"].layout.title.text
    p.scenario.value = "honest_report"; p.seed.value = 2
    sim = p.results.get("honest_report", 7, 2)
    assert f"P(report 40 units) = {sim.p_target:.3f}" in p.summary.value
    assert "extrapolated to n=14" in p.summary.value

def test_panel_on_a_tiny_model_run(tiny):
    res = run_pse(tiny, scenarios=["prisoners_dilemma"], levels=[2, 3], seeds=[0, 1], cache=False)
    p = SimulatorPanel(res, n_boot=50)
    p.n.value = 3
    assert "prisoners_dilemma, n=3" in p.summary.value and len(p.figures["object"].data) == 2
    with pytest.raises(ValueError, match="at least one simulation"): SimulatorPanel(PSEResults({}))

@pytest.mark.slow  # the workbench test (test_app.py) drives this panel in a browser in the default suite
def test_simulator_panel_in_a_real_browser(browser_ready, artifacts_dir, tmp_path):
    from browser import voila_server, browser_page
    shutil.copy(APP, tmp_path/APP.name)
    # progressive rendering: the page loads at once and the cell runs afterwards; IPC kernel sockets avoid TCP port
    # races between the many kernels a busy machine starts
    (tmp_path/"voila.json").write_text(json.dumps({"VoilaConfiguration": {"progressive_rendering": True},
                                                   "KernelManager": {"transport": "ipc"}}))
    with voila_server(tmp_path/APP.name, timeout=180, env={"SIMULATOR_RESULTS": ""}) as url, browser_page(url, viewport=(1400, 1500)) as page:
        summary = page.locator(".interpwb-simulator-panel b", has_text="public_goods, n=")
        summary.wait_for(timeout=420_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        before = summary.inner_text()
        assert before.startswith("public_goods, n=2, seed 0"), before
        handle = page.locator(".interpwb-simulator-panel .noUi-handle").first
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down(); page.mouse.move(box["x"] + 90, box["y"] + box["height"] / 2, steps=8); page.mouse.up()
        page.wait_for_function("() => !document.querySelector('.interpwb-simulator-panel b').innerText.startsWith('public_goods, n=2,')",
                               timeout=60_000)
        after = page.locator(".interpwb-simulator-panel b").first.inner_text()
        assert after != before and after.startswith("public_goods, n=") and int(after.split("n=")[1].split(",")[0]) > 2
        time.sleep(3)
        assert page.locator(".js-plotly-plot").count() >= 3
        page.screenshot(path=str(artifacts_dir/"simulator_panel.png"), full_page=True)
        assert not [e for e in page.console_errors if "plotly" in e.lower() or "widget" in e.lower()], page.console_errors
