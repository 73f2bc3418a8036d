"DiffPanel: filters and thresholds drive the outputs headlessly, a selected feature shows its card, and it works in a real browser via Voila."
import json, shutil, time
from pathlib import Path
import pandas as pd
import plotly.graph_objects as go
import pytest
from interpwb.model_diff.feature_diff import FeatureDiff
from interpwb.model_diff.panel import DiffPanel, classify, demo_diff, feature_detail_html

APP = Path(__file__).parent/"apps"/"diff_app.ipynb"

@pytest.fixture
def panel(): return DiffPanel(demo_diff(seed=1))

def test_classify_follows_the_threshold():
    f = pd.DataFrame(dict(model=["base", "tuned", "tuned"], best_match=[0.5, 0.65, 0.95]))
    assert list(classify(f, 0.6)) == ["base-only", "shared", "shared"]
    assert list(classify(f, 0.9)) == ["base-only", "tuned-only", "shared"]

def test_threshold_slider_reclassifies_and_redraws(panel):
    n_model_specific = lambda: (panel.filtered().cls != "shared").sum()
    panel.match.value = 0.3
    low = n_model_specific()
    panel.match.value = 0.9
    high = n_model_specific()
    assert high > low
    assert panel.plot.layout.shapes[0].x0 == pytest.approx(0.9)  # the dashed threshold line moved

def test_class_filter_restricts_dots_and_dropdown(panel):
    before = panel.count.value
    panel.classes.value = ("tuned-only",)
    assert panel.count.value != before
    assert set(panel.filtered().cls) == {"tuned-only"}
    assert all(v[0] == "tuned" for _, v in panel.feature.options)
    assert {tr.name for tr in panel.plot.data} == {"tuned-only"}

def test_real_only_filter_uses_the_real_threshold(panel):
    n_all = len(panel.filtered())
    panel.real_only.value = True
    n_real = len(panel.filtered())
    panel.real.value = 0.95
    assert n_all > n_real > len(panel.filtered())

def test_selecting_a_feature_changes_the_card(panel):
    card = panel.detail.value
    other = [v for _, v in panel.feature.options if v != panel.feature.value][0]
    panel.feature.value = other
    assert panel.detail.value != card and f"feature {other[1]}" in panel.detail.value
    assert "Top contexts in base activations" in panel.detail.value and "Logit lens" in panel.detail.value

def test_click_on_a_dot_selects_its_feature(panel):
    class Points: point_inds = [0]
    tr = panel.plot.data[0]
    panel._on_click(tr, Points())
    layer, feat, model = tr.customdata[0]
    assert panel.feature.value == (str(model), int(feat))

def test_layer_switch_and_unknown_feature(panel):
    panel.layer.value = 5
    assert (panel.filtered().layer == 5).all()
    with pytest.raises(KeyError, match="No feature 500"): panel.select("tuned", 500)
    with pytest.raises(KeyError, match="No feature 3 of the nope"): feature_detail_html(panel.diff, 5, "nope", 3)

def test_saved_results_round_trip_into_the_panel(tmp_path):
    d = demo_diff(seed=2); d.save(tmp_path/"res")
    p = DiffPanel(FeatureDiff.load(tmp_path/"res"))
    assert p.count.value == DiffPanel(d).count.value

@pytest.mark.slow  # the workbench test (test_app.py) drives this panel in a browser in the default suite
def test_diff_panel_in_a_real_browser(browser_ready, artifacts_dir, tmp_path):
    from browser import voila_server, browser_page
    shutil.copy(APP, tmp_path/APP.name)
    demo_diff(seed=0).save(tmp_path/"results")
    (tmp_path/"voila.json").write_text(json.dumps({"VoilaConfiguration": {"preheat_kernel": True},
                                                   "VoilaKernelManager": {"kernel_pools_config": {"default": {"pool_size": 1}}}}))
    import urllib.request
    with voila_server(tmp_path/APP.name, timeout=180, env={"INTERPWB_DIFF_RESULTS": str(tmp_path/"results")}) as url:
        urllib.request.urlopen(url, timeout=600).read()  # returns once a kernel has rendered the app
        with browser_page(url, viewport=(1400, 1400)) as page:
            card = page.locator(".interpwb-diff-detail")
            card.wait_for(timeout=240_000)
            page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=120_000)
            assert page.locator(".js-plotly-plot .scatterlayer .point").count() > 20  # the dots are drawn
            before = card.inner_text()
            select = page.locator(".interpwb-diff-panel select").last
            options = select.locator("option").all_inner_texts()
            assert len(options) > 3, options
            select.select_option(index=3)
            page.wait_for_function("(b) => document.querySelector('.interpwb-diff-detail').innerText !== b", arg=before,
                                   timeout=120_000)
            after = card.inner_text()
            assert after != before and "Top contexts in tuned activations" in after
            time.sleep(3)
            page.screenshot(path=str(artifacts_dir/"diff_panel.png"), full_page=True)
            assert not [e for e in page.console_errors if "plotly" in e.lower() or "widget" in e.lower()], page.console_errors
