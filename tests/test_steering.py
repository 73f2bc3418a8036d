"""K-Steering, CAA and linear baselines: classifier training/saving, per-token gradient edits, hook mechanics,
batched generation, calibration and bad input. Fast: tiny random model, plus a few short runs on the embedded model."""
import math
import numpy as np
import pandas as pd
import pytest, torch
from interpwb.core import ArtifactError
from interpwb.models import chat_prompt, tokenize, tiny_model
from interpwb.steering.classifier import AttributeClassifier, train_classifier, fit_classifier, default_hook
from interpwb.steering.ksteering import KSteering
from interpwb.steering.base import weights_from
from interpwb.steering.evaluate import calibrate_alpha, steering_scores
from interpwb.textstats import repetition_rate
from interpwb.steering.baselines import CAASteering, LinearSteering

LABELS = ["loud", "quiet"]

def _toy():
    qs = [f"Tell me about item {i}." for i in range(6)]
    df = pd.DataFrame(dict(id=range(6), category="misc", question=qs))
    df.attrs.update(name="toy", labels=LABELS, instructions={"loud": "Answer LOUDLY!", "quiet": "Answer quietly."})
    ex = pd.DataFrame(dict(label=LABELS*3, question=qs,
                           text=["WOW! YES! GREAT!", "yes, softly, calmly.", "AMAZING! SUPER!", "hmm, maybe, gently.",
                                 "GO GO GO! NOW!", "quiet now, slowly."]))
    return df, ex

@pytest.fixture(scope="module")
def ks(tiny):
    df, ex = _toy()
    return KSteering.fit(tiny, df, "blocks.1.hook_resid_post", exemplars=ex, epochs=3)

@pytest.fixture(scope="module")
def real_ks(model):
    df, ex = _toy()
    return KSteering.fit(model, None, "blocks.18.hook_resid_post", source="exemplars", exemplars=ex, labels=LABELS, epochs=20)

def test_classifier_learns_separable_data_and_reports_per_label():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat_interleave(60)
    X = torch.randn(2, 16, generator=g)[y] * 3 + torch.randn(120, 16, generator=g) + 100
    clf = train_classifier(X, y, LABELS, epochs=15, groups=np.arange(120) // 4)
    assert list(clf.report.label) == LABELS and clf.report.attrs["top1_accuracy"] > 0.9
    assert clf.meta["n_val"] > 0 and clf.meta["typical_norm"] > 100

def test_classifier_saved_for_another_model_or_hook_fails_to_load(tmp_path, ks, tiny):
    ks.save(tmp_path)
    assert KSteering.load(tiny, tmp_path).hook_point == "blocks.1.hook_resid_post"
    with pytest.raises(ArtifactError, match="hook_point='blocks.0.hook_resid_post' was expected"):
        KSteering.load(tiny, tmp_path, hook_point="blocks.0.hook_resid_post")
    with pytest.raises(ArtifactError, match="was expected"):
        KSteering.load(tiny_model(d_model=32), tmp_path)
    with pytest.raises(ArtifactError, match="model='SmolLM2"):
        AttributeClassifier.load(tmp_path, model="SmolLM2-135M-Instruct")

def test_bad_input_errors_say_what_is_known(ks):
    with pytest.raises(KeyError, match="Known: loud, quiet"): ks.generate(["x"], {"lowd": 1.0})
    with pytest.raises(ValueError, match="both a target and an avoid"): ks.generate(["x"], targets=["loud"], avoid=["loud"])
    with pytest.raises(ValueError, match="more than once"): weights_from(LABELS, avoid=["quiet", "quiet"])
    with pytest.raises(ValueError, match=">= 0"): ks.generate(["x"], {"loud": 1.0}, alpha=-0.5)
    with pytest.raises(ValueError, match="finite"): ks.generate(["x"], {"loud": 1.0}, alpha=math.inf)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"): ks.generate(["x"], {"loud": 1.5})
    with pytest.raises(ValueError, match="empty"): ks.generate([], {"loud": 1.0})
    with pytest.raises(KeyError, match="Known: all, prompt, generated"): ks.generate(["x"], {"loud": 1.0}, positions="both")

def test_edit_moves_each_token_toward_targets_with_per_token_gradients(ks, tiny):
    a = torch.randn(6, tiny.cfg.d_model) * 3 + ks.classifier.mean
    w = weights_from(LABELS, {"loud": 1.0, "quiet": -1.0})
    margin = lambda x: (ks.classifier(x) @ w).detach()
    edited = ks.edit(a, w, 0.2)
    assert (margin(edited) > margin(a)).all()
    assert torch.allclose(ks.edit(a[2:3], w, 0.2), edited[2:3], atol=1e-5)  # a token's edit ignores the others
    assert torch.allclose((edited - a).norm(dim=-1), torch.full((6,), 0.2 * ks.typical_norm), rtol=1e-3)
    assert all(p.grad is None for p in tiny.parameters()) and all(p.grad is None for p in ks.classifier.parameters())

def test_more_steps_push_further_and_decay_shrinks_them(ks, tiny):
    a = torch.randn(4, tiny.cfg.d_model) + ks.classifier.mean
    w = weights_from(LABELS, {"loud": 1.0})
    d1, d3 = [(ks.edit(a, w, 0.1, steps=s) - a).norm(dim=-1) for s in (1, 3)]
    d3_decay = (ks.edit(a, w, 0.1, steps=3, decay=0.5) - a).norm(dim=-1)
    assert (d3 > d1).all() and (d3_decay < d3).all()

def test_avoid_only_reflection_lowers_the_avoided_logit(ks, tiny):
    a = torch.randn(8, tiny.cfg.d_model) * 2 + ks.classifier.mean
    out = ks.edit(a, weights_from(LABELS, {"quiet": -1.0}), 0.0, avoid_only="centered")
    assert (ks.classifier(out)[:, 1] <= ks.classifier(a)[:, 1] + 1e-4).all()   # the centered variant never raises it
    with pytest.raises(ValueError, match="negative weight"): ks.generate(["x"], {"loud": 1.0}, avoid_only=True)

def test_steering_acts_at_the_hook_the_classifier_reads(ks, tiny):
    "No off-by-one: the activation the classifier sees at its hook point is the edited one."
    toks, _ = tokenize(tiny, chat_prompt(tiny, "Tell me about item 3."))
    seen = {}
    rec = lambda x, hook: seen.__setitem__("a", x[0, 1:].detach().clone())
    tiny.run_with_hooks(toks, fwd_hooks=[(ks.hook_point, rec)]); before = ks.classifier(seen["a"])
    with ks.steering({"loud": 1.0}, alpha=0.3):
        tiny.run_with_hooks(toks, fwd_hooks=[(ks.hook_point, rec)])
    after = ks.classifier(seen["a"])
    assert ((after[:, 0] - after[:, 1]) > (before[:, 0] - before[:, 1])).all()

def test_positions_prompt_generated_and_layers(ks, tiny):
    toks, _ = tokenize(tiny, chat_prompt(tiny, "Hi"))
    for pos, want in (("generated", 4), ("prompt", toks.shape[1] - 1), ("all", toks.shape[1] - 1 + 4)):
        with ks.steering({"loud": 1.0}, alpha=0.5, positions=pos) as st:
            tiny.generate(toks, max_new_tokens=5, do_sample=False, verbose=False)
        assert st[ks.hook_point]["edited"] == want, pos
    with ks.steering({"loud": 1.0}, layers=[0, 1]) as st: tiny(toks)
    assert all(s["edited"] == toks.shape[1] - 1 for s in st.values()) and len(st) == 2

def test_batched_generation_equals_one_prompt_at_a_time_tiny(ks):
    qs = ["Hi", "A much longer question about item twelve and its many properties?", "Tell me about item 9."]
    for method in (ks, CAASteering.fit(ks.model, _toy()[0], ks.hook_point)):
        got = method.generate(qs, {"loud": 1.0, "quiet": -0.5}, alpha=1.0, max_new_tokens=5, batch_size=3)
        assert got == [method.generate([q], {"loud": 1.0, "quiet": -0.5}, alpha=1.0, max_new_tokens=5)[0] for q in qs]

def test_real_model_batched_equals_single_and_steering_changes_text(real_ks):
    qs = ["How do I boil an egg?", "Why do cats purr? Please explain it to me in simple words."]
    base = real_ks.generate(qs, {}, max_new_tokens=8)
    steered = real_ks.generate(qs, {"loud": 1.0}, alpha=0.3, max_new_tokens=8, batch_size=2)
    assert steered == [real_ks.generate([q], {"loud": 1.0}, alpha=0.3, max_new_tokens=8)[0] for q in qs]
    assert steered != base and all(b.strip() for b in base)
    assert real_ks.typical_norm > 50  # the residual stream at layer 18 has norms in the hundreds

def test_greedy_generation_is_reproducible(ks):
    a = ks.generate(["Tell me about item 2."], {"quiet": 1.0}, alpha=0.7, max_new_tokens=6)
    assert a == ks.generate(["Tell me about item 2."], {"quiet": 1.0}, alpha=0.7, max_new_tokens=6)

def test_caa_and_linear_share_the_interface(ks, tiny):
    df, ex = _toy()
    caa = CAASteering.fit(tiny, df, ks.hook_point, source="both", exemplars=ex)
    lin = LinearSteering.fit(tiny, df, ks.hook_point, exemplars=ex, epochs=2)
    assert lin.classifier.kind == "linear" and caa.vectors.shape == (2, tiny.cfg.d_model)
    for st in (caa, lin):
        out = st.generate(["Hi"], {"loud": 1.0}, alpha=2.0, max_new_tokens=4)
        assert isinstance(out, list) and len(out) == 1
        with pytest.raises(KeyError, match="Known: loud, quiet"): st.generate(["Hi"], {"x": 1.0})

def test_calibrate_alpha_returns_the_curve_and_a_grid_value(ks):
    best, curve = calibrate_alpha(ks, ["Tell me about item 9.", "Hi"], {"loud": 1.0}, alphas=(0.0, 0.3), max_new_tokens=4,
                                  max_repetition=1.0, stop_early=False, eval_classifier=ks.classifier)
    assert list(curve.alpha) == [0.0, 0.3] and best in (0.0, 0.3)
    assert curve.changed[0] == 0 and abs(curve.ppl_ratio[0] - 1) < 1e-6 and "target_delta" in curve

def test_steering_scores_gate_degenerate_text(ks):
    df = steering_scores(ks, ks.classifier, ["Tell me about item 9.", "Hi"], {"loud": 1.0}, alpha=0.5, max_new_tokens=5)
    assert len(df) == 2 and {"target_delta", "ppl_ratio", "coherent", "coherent_target_delta"} <= set(df.columns)
    assert (df.coherent_target_delta[~df.coherent] == 0).all()
    assert repetition_rate("and they kept it, and they kept it, and they kept it") > 0.4
