"""What each steering method does, checked against an independent computation so that a plausible wrong version fails:
the sign and size of every push (CAA's planted mean differences, K-Steering and linear raise the target margin and the
linear push has its closed form, Algorithm 2 is the paper's reflection), the steering hook edits exactly the positions asked,
and calibration picks the largest coherent strength."""
import pandas as pd, pytest, torch
from interpwb.steering.classifier import train_classifier
from interpwb.steering.base import Steerer, weights_from
from interpwb.steering.ksteering import KSteering
from interpwb.steering.baselines import CAASteering
from interpwb.steering.evaluate import calibrate_alpha, text_probs, steering_scores
import interpwb.steering.baselines as baselines

HOOK, LABELS = "blocks.1.hook_resid_post", ["a", "b", "c"]

def planted(d:int, n:int=120, seed:int=0):
    "Activations [3n, d] of three labels, label k = noise + 50 (an offset, as real activations have) + 3 * e_k."
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n)
    X = torch.randn(3 * n, d, generator=g) + 50 + 3 * torch.eye(d)[y]
    return X, y

@pytest.fixture(scope="module")
def clfs(tiny):
    X, y = planted(tiny.cfg.d_model)
    meta = dict(model=tiny.cfg.model_name, hook_point=HOOK)
    return {kind: train_classifier(X, y, LABELS, kind=kind, epochs=40, lr=1e-2, val_frac=0.0, meta=meta) for kind in ("mlp", "linear")}

def rows(tiny, n=16, seed=1):
    X, _ = planted(tiny.cfg.d_model, n=n, seed=seed)
    return X

# ---------- K-Steering and its linear ablation ----------
@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_ksteering_raises_the_target_and_lowers_the_avoided_margin(tiny, clfs, kind):
    ks = KSteering(tiny, clfs[kind])
    a = rows(tiny)
    w = weights_from(LABELS, {"a": 1.0, "c": -1.0})
    before, after = ks.classifier(a), ks.classifier(ks.edit(a, w, alpha=0.05))
    assert (after[:, 0] > before[:, 0]).all() and (after[:, 2] < before[:, 2]).all()   # per token, in the asked direction
    more = ks.classifier(ks.edit(a, w, alpha=0.05, steps=3))
    assert ((more @ w) > (after @ w)).all()                                             # more steps push further

def test_linear_push_has_its_closed_form(tiny, clfs):
    lin = KSteering(tiny, clfs["linear"])
    W, scale = lin.classifier.net[0].weight.detach(), lin.classifier.scale
    a, w = rows(tiny), weights_from(LABELS, {"b": 1.0, "a": -0.5})
    direction = (w @ W) / scale                      # the gradient of w . g(a) for g(a) = W (a - mean) / scale + b
    want = a + 0.1 * lin.typical_norm * direction / direction.norm()
    torch.testing.assert_close(lin.edit(a, w, alpha=0.1), want, atol=1e-4, rtol=1e-5)
    absolute = KSteering(tiny, clfs["linear"], alpha_mode="absolute")
    torch.testing.assert_close(absolute.edit(a, w, alpha=0.1), a + 0.1 * direction / w.abs().sum(), atol=1e-5, rtol=1e-5)

def test_centered_algorithm_2_is_the_reflection_it_claims(tiny, clfs):
    lin = KSteering(tiny, clfs["linear"])
    W, mean = lin.classifier.net[0].weight.detach(), lin.classifier.mean
    w = weights_from(LABELS, {"c": -1.0})
    a = torch.cat([rows(tiny, 8), (mean + 5 * (W[2] / W[2].norm()))[None], (mean - 5 * (W[2] / W[2].norm()))[None]])
    out = lin.edit(a, w, alpha=0.0, avoid_only="centered")
    u = W[2] / W[2].norm()
    c = (a - mean) @ u
    want = a - 2 * c.clamp(min=0)[:, None] * u       # reflect the avoided direction where the activation leans into it
    torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-5)
    g_before, g_after = lin.classifier(a)[:, 2], lin.classifier(out)[:, 2]
    leaning = c > 1e-3
    assert leaning.any() and (~leaning).any()
    assert (g_after[leaning] < g_before[leaning] - 1e-3).all()     # strictly lower where it must (a no-op fails)
    torch.testing.assert_close(g_after[~leaning], g_before[~leaning])  # untouched elsewhere

@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_paper_algorithm_2_is_the_householder_reflection_of_the_raw_activation(tiny, clfs, kind):
    "a' = a - 2 (a.g / |g|^2) g with g = grad of the avoided logit, computed here by autograd independently."
    ks = KSteering(tiny, clfs[kind])
    a = rows(tiny, 8)
    leaf = a.clone().requires_grad_(True)
    g, = torch.autograd.grad(ks.classifier(leaf)[:, 2].sum(), leaf)
    want = a - 2 * ((a * g).sum(-1) / (g * g).sum(-1))[:, None] * g
    out = ks.edit(a, weights_from(LABELS, {"c": -1.0}), alpha=0.0, avoid_only=True)
    torch.testing.assert_close(out, want, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(out.norm(dim=-1), a.norm(dim=-1), atol=1e-3, rtol=1e-5)   # a reflection keeps the norm
    assert ((out - a).norm(dim=-1) > 1e-2).all()                                           # and acts (a no-op fails)

def test_paper_algorithm_2_acts_on_a_confident_avoided_attribute_and_can_raise_it_where_a_dot_g_is_negative(tiny, clfs):
    "Linear g(a) = W (a - mean)/scale + b: the paper's reflection flips a.u, so logit_c changes by -2 (a.u) |W_c| / scale."
    lin = KSteering(tiny, clfs["linear"])
    W, mean = lin.classifier.net[0].weight.detach(), lin.classifier.mean
    u = W[2] / W[2].norm()
    m_u = mean @ u; perp = mean - m_u * u         # the training mean, split along u and across it
    a = torch.stack([perp + (m_u.abs() + 8) * u,  # confidently c, and a.u > 0: the reflection must lower c
                     perp - (m_u.abs() + 8) * u,  # confidently not c, a.u < 0: the paper's reflection raises c
                     mean + 3 * u])               # c, with a.u of either sign
    out = lin.edit(a, weights_from(LABELS, {"c": -1.0}), alpha=0.0, avoid_only=True)
    before, after = lin.classifier(a)[:, 2], lin.classifier(out)[:, 2]
    torch.testing.assert_close(after - before, -2 * (a @ u) * W[2].norm() / lin.classifier.scale, atol=1e-3, rtol=1e-4)
    assert torch.sigmoid(before[0]) > 0.99 and torch.sigmoid(after[0]) < 0.01   # acts where it must (a no-op fails)
    assert torch.sigmoid(before[1]) < 0.01 and after[1] > before[1] + 1.0        # the paper's reflection is not one-sided
    assert ((after < before) == ((a @ u) > 0)).all()

def test_avoid_only_accepts_only_the_named_variants(tiny, clfs):
    ks = KSteering(tiny, clfs["linear"])
    with pytest.raises(ValueError, match="centered"): ks.generate(["x"], {"c": -1.0}, avoid_only="paper", max_new_tokens=1)

# ---------- CAA ----------
def test_caa_vectors_are_the_planted_mean_differences(tiny, monkeypatch):
    X, y = planted(tiny.cfg.d_model, n=200)
    wt = torch.ones(len(X))
    monkeypatch.setattr(baselines, "classifier_data", lambda *a, **k: (X, y, None, wt))
    toy = pd.DataFrame(dict(id=[0], category=["c"], question=["q"])); toy.attrs.update(name="toy", labels=LABELS, instructions={l: l for l in LABELS})
    caa = CAASteering.fit(tiny, toy, HOOK)
    for k in range(3):
        want = X[y == k].mean(0) - X[y != k].mean(0)
        torch.testing.assert_close(caa.vectors[k].cpu(), want, atol=1e-4, rtol=1e-4)
        # the planted offset: +3 on its own axis, -1.5 on the other two labels' axes (their average), ~0 elsewhere
        assert caa.vectors[k, k] > 2.5 and all(caa.vectors[k, j] < -1.0 for j in range(3) if j != k)
    a = rows(tiny)
    w = weights_from(LABELS, {"a": 1.0, "b": -1.0})
    delta = w @ caa.vectors
    torch.testing.assert_close(caa.edit(a, w, alpha=0.3), a + 0.3 * caa.typical_norm * delta / delta.norm())
    assert ((caa.edit(a, w, alpha=0.3) - a) @ caa.vectors[0] > 0).all()   # toward a, not away (a flipped sign fails)

def test_caa_ablation_removes_the_avoided_direction(tiny, monkeypatch):
    X, y = planted(tiny.cfg.d_model, n=50)
    monkeypatch.setattr(baselines, "classifier_data", lambda *a, **k: (X, y, None, torch.ones(len(X))))
    toy = pd.DataFrame(dict(id=[0], category=["c"], question=["q"])); toy.attrs.update(name="toy", labels=LABELS, instructions={l: l for l in LABELS})
    caa = CAASteering.fit(tiny, toy, HOOK)
    u = caa.vectors[1] / caa.vectors[1].norm()
    a = rows(tiny)
    out = caa.edit(a, weights_from(LABELS, {"b": -1.0}), alpha=0.0, avoid_only=True)
    torch.testing.assert_close(out @ u, torch.zeros(len(out)), atol=1e-3, rtol=0)           # a - (a.u) u
    torch.testing.assert_close(out - a, -(a @ u)[:, None] * u, atol=1e-3, rtol=0)
    centered = caa.edit(a, weights_from(LABELS, {"b": -1.0}), alpha=0.0, avoid_only="centered")
    torch.testing.assert_close((centered - caa.mean) @ u, torch.zeros(len(out)), atol=1e-3, rtol=0)
    assert ((centered - out) @ u).abs().min() > 1.0    # the two variants differ by the mean's projection

# ---------- the hook: which positions get edited ----------
class _Const(Steerer):
    "Adds the same vector to every edited row (so the edits are easy to see)."
    method = "const"
    def edit(self, a, w, alpha, steps=1, decay=1.0, avoid_only=False): return a + alpha * w.sum()

@pytest.mark.parametrize("positions,edited", [("all", [1, 2, 3]), ("prompt", [1, 2, 3]), ("generated", [])])
def test_the_hook_edits_only_the_asked_positions_and_never_the_attention_sink(tiny, positions, edited):
    st = _Const(tiny, HOOK, LABELS, typical_norm=1.0, alpha_mode="absolute")
    toks = torch.tensor([[1, 504, 2342, 436]])
    seen = {}
    def grab(x, hook): seen["x"] = x.detach().clone()
    with st.steering({"a": 1.0}, alpha=7.0, positions=positions):
        tiny.run_with_hooks(toks, fwd_hooks=[("blocks.1.hook_resid_post", grab)])
    plain = tiny.run_with_cache(toks, names_filter=[HOOK])[1][HOOK]
    diff = (seen["x"] - plain)[0].mean(-1)
    changed = [i for i in range(4) if abs(diff[i] - 7.0) < 1e-3]
    assert changed == edited and all(abs(diff[i]) < 1e-4 for i in range(4) if i not in edited), diff

# ---------- calibration ----------
class _Scripted(Steerer):
    "Generates the unsteered text up to `limit`, then a degenerate loop: the largest coherent strength is `limit`."
    method, limit = "scripted", 0.3
    def generate(self, prompts, weights=None, alpha=None, max_new_tokens=8, **kw):
        ok = not weights or (alpha or 0) <= self.limit + 1e-9
        return ["It is a calm answer about rivers." if ok else "the the the the the the the the" for _ in prompts]

def test_calibration_picks_the_largest_coherent_strength(tiny):
    st = _Scripted(tiny, HOOK, LABELS, typical_norm=1.0)
    best, curve = calibrate_alpha(st, ["Hi", "Tell me about rivers."], {"a": 1.0}, alphas=(0.5, 0.1, 0.3, 0.2), stop_early=False)
    assert best == 0.3 and curve.alpha.tolist() == [0.1, 0.2, 0.3, 0.5]
    assert curve.coherent.tolist() == [1.0, 1.0, 1.0, 0.0]
    best, curve = calibrate_alpha(st, ["Hi"], {"a": 1.0}, alphas=(0.1, 0.5, 0.2), stop_early=True)
    assert best == 0.2 and curve.alpha.tolist() == [0.1, 0.2, 0.5]   # stops at the first incoherent strength
    st.limit = 0.0
    assert calibrate_alpha(st, ["Hi"], {"a": 1.0}, alphas=(0.1, 0.2))[0] == 0.0   # none coherent: 0.0, not the smallest

def test_steering_scores_read_the_steered_text_and_gate_it(tiny):
    from interpwb.activations import collect_activations
    from interpwb.models import chat_prompt
    plain, loop = "A plain sentence about the weather today.", "the the the the the the the the"
    class _Fixed(Steerer):
        method = "fixed"
        def generate(self, prompts, weights=None, alpha=None, max_new_tokens=8, **kw): return [loop if weights else plain for _ in prompts]
    # an evaluation classifier that reads "a" in the looping text and "b" in the plain one
    acts = collect_activations(tiny, [chat_prompt(tiny, "Hi") + t for t in (loop, plain)], HOOK, pool="all")
    X, y = acts[HOOK], torch.tensor([0 if t == 0 else 1 for t in acts.index[:, 0].tolist()])
    X, y = torch.cat([X, X.mean(0, keepdim=True) + torch.randn(20, X.shape[1])]), torch.cat([y, torch.full((20,), 2)])
    clf = train_classifier(X, y, LABELS, kind="linear", epochs=200, lr=1e-2, val_frac=0.0, meta=dict(model=tiny.cfg.model_name, hook_point=HOOK))
    st = _Fixed(tiny, HOOK, LABELS, typical_norm=1.0)
    df = steering_scores(st, clf, ["Hi", "Hi"], {"a": 1.0}, max_new_tokens=8)
    pb, ps = text_probs(clf, tiny, ["Hi"], [plain])[0], text_probs(clf, tiny, ["Hi"], [loop])[0]
    assert ps[0] > pb[0] and df.target_delta[0] == pytest.approx(ps[0] - pb[0], abs=1e-6) and df.target_delta[0] > 0
    assert not df.coherent.any() and (df.coherent_target_delta == 0).all()   # the loop moved the classifier but is gated out

# ---------- closed forms at the edges (small norms, decay, modes, weights) ----------
def _small_linear(clf, scale:float=1e-4):
    "A copy of the linear classifier whose gradients are tiny (norm << 1): a norm clamp at 1 instead of ~0 would show."
    import copy
    small = copy.deepcopy(clf)
    with torch.no_grad(): small.net[0].weight.mul_(scale)
    return small

def test_ksteering_steps_decay_and_small_weights_follow_the_closed_form(tiny, clfs):
    lin = KSteering(tiny, clfs["linear"], alpha_mode="absolute")
    W, scale, a = lin.classifier.net[0].weight.detach(), lin.classifier.scale, rows(tiny)
    w = weights_from(LABELS, {"a": 0.25})                      # sum |w| < 1: the gradient is divided by 0.25, not by 1
    step = (w @ W) / scale / w.abs().sum()
    torch.testing.assert_close(lin.edit(a, w, alpha=0.1), a + 0.1 * step, atol=1e-5, rtol=1e-5)
    # the linear gradient is constant, so k steps with decay d move by alpha * (1 + d + ... + d^(k-1)) * step
    torch.testing.assert_close(lin.edit(a, w, alpha=0.1, steps=3, decay=0.5), a + 0.1 * 1.75 * step, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lin.edit(a, w, alpha=0.1, steps=2), a + 0.2 * step, atol=1e-5, rtol=1e-5)   # decay 1 by default

def test_relative_pushes_have_length_alpha_times_typical_norm_even_for_tiny_gradients(tiny, clfs):
    ks = KSteering(tiny, _small_linear(clfs["linear"]))
    a, w = rows(tiny), weights_from(LABELS, {"b": 1.0})
    moved = (ks.edit(a, w, alpha=0.2) - a).norm(dim=-1)
    torch.testing.assert_close(moved, torch.full_like(moved, 0.2 * ks.typical_norm), atol=1e-3, rtol=1e-4)

def test_algorithm_2_reflects_with_a_unit_direction_even_for_tiny_gradients(tiny, clfs):
    ks = KSteering(tiny, _small_linear(clfs["linear"]))
    W, mean = ks.classifier.net[0].weight.detach(), ks.classifier.mean
    u = W[2] / W[2].norm()
    a = rows(tiny)
    c, w = (a - mean) @ u, weights_from(LABELS, {"c": -1.0})
    torch.testing.assert_close(ks.edit(a, w, alpha=0.0, avoid_only="centered"), a - 2 * c.clamp(min=0)[:, None] * u, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ks.edit(a, w, alpha=0.0, avoid_only=True), a - 2 * (a @ u)[:, None] * u, atol=1e-3, rtol=1e-5)

def test_ksteering_refuses_a_classifier_of_another_model_and_keeps_its_weights_frozen(tiny, clfs):
    import copy
    from interpwb.core import ArtifactError
    other = copy.deepcopy(clfs["mlp"]); other.meta["model"] = "some-other-model"
    with pytest.raises(ArtifactError, match="some-other-model"): KSteering(tiny, other)
    ks = KSteering(tiny, copy.deepcopy(clfs["mlp"]))
    assert not any(p.requires_grad for p in ks.classifier.parameters())
    ks.edit(rows(tiny), weights_from(LABELS, {"a": 1.0}), alpha=0.1)
    assert all(p.grad is None for p in ks.classifier.parameters())    # steering never trains the classifier

def _small_caa(tiny, alpha_mode="relative"):
    g = torch.Generator().manual_seed(3)
    vectors = 1e-3 * torch.randn(3, tiny.cfg.d_model, generator=g)      # norms << 1
    return CAASteering(tiny, HOOK, LABELS, vectors, torch.full((tiny.cfg.d_model,), 50.0), typical_norm=4.0,
                       alpha_mode=alpha_mode, meta=dict(source="test"))

def test_caa_closed_forms_for_small_vectors_both_modes_and_ablation(tiny):
    a, w = rows(tiny), weights_from(LABELS, {"a": 1.0, "c": -0.5})
    caa, absolute = _small_caa(tiny), _small_caa(tiny, "absolute")
    delta = w @ caa.vectors
    torch.testing.assert_close(caa.edit(a, w, alpha=0.3), a + 0.3 * 4.0 * delta / delta.norm())
    torch.testing.assert_close(absolute.edit(a, w, alpha=0.3), a + 0.3 * delta)
    u = caa.vectors[2] / caa.vectors[2].norm()
    out = caa.edit(a, weights_from(LABELS, {"c": -1.0}), alpha=0.0, avoid_only="centered")
    torch.testing.assert_close((out - caa.mean) @ u, torch.zeros(len(a)), atol=1e-3, rtol=0)

def test_caa_round_trips_vectors_mean_and_meta(tiny, tmp_path):
    caa = _small_caa(tiny)
    back = CAASteering.load(tiny, caa.save(tmp_path/"caa"))
    torch.testing.assert_close(back.vectors, caa.vectors); torch.testing.assert_close(back.mean, caa.mean)
    assert back.meta == {"source": "test"} and back.typical_norm == 4.0 and back.labels == LABELS

def test_weights_from_targets_avoid_and_their_errors():
    assert weights_from(LABELS, targets=["b"], avoid=["c"]).tolist() == [0.0, 1.0, -1.0]
    assert weights_from(LABELS, {"a": -1.0}).tolist() == [-1.0, 0.0, 0.0]       # the interval is closed
    with pytest.raises(ValueError, match="target list names \\['b'\\]"): weights_from(LABELS, targets=["b", "b"])
    with pytest.raises(ValueError, match="avoid list names \\['c'\\]"): weights_from(LABELS, avoid=["c", "a", "c"])
    with pytest.raises(ValueError, match="both a target and an avoid"): weights_from(LABELS, targets=["a"], avoid=["a"])
    with pytest.raises(ValueError, match="given twice"): weights_from(LABELS, {"a": 0.5}, targets=["a"])
    with pytest.raises(ValueError, match="-1.5"): weights_from(LABELS, {"a": -1.5})

def test_negative_strength_is_refused(tiny):
    st = _Const(tiny, HOOK, LABELS, typical_norm=1.0)
    with pytest.raises(ValueError, match="alpha"):
        with st.steering({"a": 1.0}, alpha=-0.1): pass
