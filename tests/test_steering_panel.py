"SteeringPanel: sliders do not generate, the button does; texts and chart follow; works in a real browser via Voila."
import json, os, shutil, time
from pathlib import Path
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from interpwb.steering.ksteering import KSteering
from interpwb.steering.panel import SteeringPanel, attribute_bars_figure

APP = Path(__file__).parent/"apps"/"steering_app.ipynb"
IMAGES = Path(__file__).parents[1]/"nbs"/"images"

@pytest.fixture(scope="module")
def ks(tiny):
    qs = [f"Tell me about item {i}." for i in range(6)]
    df = pd.DataFrame(dict(id=range(6), category="misc", question=qs))
    df.attrs.update(name="toy", labels=["loud", "quiet"], instructions={"loud": "Answer LOUDLY!", "quiet": "Answer quietly."})
    ex = pd.DataFrame(dict(label=["loud", "quiet"]*3, question=qs, text=["WOW! YES!", "yes, softly.", "AMAZING!",
                                                                         "hmm, maybe.", "GO GO GO!", "quiet now."]))
    return KSteering.fit(tiny, df, "blocks.1.hook_resid_post", exemplars=ex, epochs=3)

def test_bars_figure_is_a_pure_figure():
    f = attribute_bars_figure(["a", "b"], np.array([0.1, 0.9]), None)
    assert type(f) is go.Figure and [t.name for t in f.data] == ["unsteered"] and list(f.data[0].y) == [0.1, 0.9]

def test_sliders_mark_stale_and_button_generates(ks):
    p = SteeringPanel(ks, ks.classifier, prompt="Tell me about item 9.", max_new_tokens=6, threaded=False)
    assert p.texts["steered"] is None and "press Generate" in p.steered_html.value
    p.button.click()
    base, first, probs = p.texts["base"], p.texts["steered"], p.probs["steered"].copy()
    assert first == base  # all sliders at 0: no steering
    p.sliders["loud"].value, p.alpha.value, p.steps.value = 1.0, 2.0, 2
    assert p.texts["steered"] == first and "press Generate" in p.status.value  # no generation from sliders
    p.button.click()
    assert p.texts["base"] == base and p.texts["steered"] != first
    assert not np.allclose(p.probs["steered"], probs) and p.weights == {"loud": 1.0}
    assert [t.name for t in p.figure.data][:2] == ["unsteered", "steered"] and "(generation 2)" in p.status.value
    assert p.texts["steered"] in p.steered_html.value.replace("&#x27;", "'").replace("&quot;", '"') or p.texts["steered"] == ""

def test_rapid_clicks_are_coalesced_not_queued(ks):
    p = SteeringPanel(ks, ks.classifier, prompt="Tell me about item 9.", max_new_tokens=4, threaded=True)
    calls, orig = [], p._compute
    p._compute = lambda: (calls.append(p.generation), time.sleep(0.3), orig())[-1]
    for _ in range(4): p.button.click()
    for _ in range(3): p.wait(60)
    assert len(calls) <= 2 and p._done == 4 and p.status.value.endswith("(generation 4)")

def test_errors_show_in_the_panel(ks):
    p = SteeringPanel(ks, None, prompt=" ", threaded=False)
    p.button.click()
    assert "empty" in p.status.value and p.error is not None

@pytest.mark.slow  # the workbench test (test_app.py) drives this panel in a browser in the default suite
def test_steering_panel_in_a_real_browser(browser_ready, artifacts_dir, tmp_path):
    from browser import voila_server, browser_page
    shutil.copy(APP, tmp_path/APP.name)
    (tmp_path/"voila.json").write_text(json.dumps({"VoilaConfiguration": {"progressive_rendering": True}}))
    real = os.environ.get("STEERING_APP") == "real"  # the documentation screenshot: embedded model + tutorial cache
    with voila_server(tmp_path/APP.name, timeout=180, env={"STEERING_APP": "real"} if real else None) as url, browser_page(url, viewport=(1300, 1100)) as page:
        panel = page.locator(".interpwb-steering-panel")
        panel.wait_for(timeout=300_000)
        button = page.get_by_role("button", name="Generate")
        button.click()
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        status = page.locator(".interpwb-steering-status")
        page.wait_for_function("() => document.querySelector('.interpwb-steering-status').innerText.includes('generation 1')", timeout=120_000)
        steered_before = page.locator(".interpwb-steered-text").inner_text()
        bars_before = page.locator(".interpwb-steering-panel .js-plotly-plot").last.evaluate("el => JSON.stringify(el.data.map(t => t.y))")
        handle = panel.locator(".noUi-handle").nth(3 if real else 0)  # an attribute slider ("casual" / "loud")
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down(); page.mouse.move(box["x"] + (150 if real else 400), box["y"] + box["height"] / 2, steps=8); page.mouse.up()
        page.wait_for_function("() => document.querySelector('.interpwb-steering-status').innerText.includes('press Generate')", timeout=60_000)
        button.click()
        page.wait_for_function("() => document.querySelector('.interpwb-steering-status').innerText.includes('generation 2')", timeout=120_000)
        time.sleep(2)  # let plotly finish drawing
        steered_after = page.locator(".interpwb-steered-text").inner_text()
        bars_after = page.locator(".interpwb-steering-panel .js-plotly-plot").last.evaluate("el => JSON.stringify(el.data.map(t => t.y))")
        page.screenshot(path=str(artifacts_dir/"steering_panel.png"), full_page=True)
        assert steered_after != steered_before, steered_after
        assert bars_after != bars_before and bars_before != "[]", (bars_before, bars_after)
        assert not [e for e in page.console_errors if "plotly" in e.lower() or "widget" in e.lower()], page.console_errors
    if real or not (IMAGES/"steering_panel.png").exists():
        IMAGES.mkdir(exist_ok=True)
        shutil.copy(artifacts_dir/"steering_panel.png", IMAGES/"steering_panel.png")
