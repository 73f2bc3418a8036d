"""What the SAE machinery computes, against independent computations a plausible wrong version would fail: Hungarian
matching is optimal (brute force), MFR pulls SAEs together and its gradient is exactly reconstruction + alpha * w(t) *
penalty, the AuxK loss and pairwise MMCS match their definitions, the SAELens files mean what SAELens computes, and the
architecture / selection-rule registries really extend the library."""
import itertools, json, math
import numpy as np, pytest, torch
import torch.nn.functional as F
from safetensors.torch import load_file
from interpwb.sae.ensemble import SAEConfig, SAEEnsemble, SAEArchitecture, register_architecture, ARCHITECTURES
from interpwb.sae.matching import match_features, cosine_matrix, mmcs, pairwise_mmcs, pw_mcc, feature_stability
from interpwb.sae.mfr import mfr_penalty, mfr_warmup
from interpwb.sae.trainer import SAETrainer, auxk_loss
from interpwb.sae.train import train_saes
from interpwb.sae.synthetic import make_synthetic

# ---------- matching ----------
@pytest.mark.parametrize("na,nb,seed", [(5, 5, 0), (4, 6, 1), (6, 4, 2), (6, 6, 3)])
def test_hungarian_matching_is_optimal_against_brute_force(na, nb, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(na, 3, generator=g), torch.randn(nb, 3, generator=g)
    c = cosine_matrix(a, b)
    # brute force over every one-to-one assignment of the smaller side
    small, large = (na, nb) if na <= nb else (nb, na)
    cc = c if na <= nb else c.T
    best = max(float(sum(cc[i, p[i]] for i in range(small))) for p in itertools.permutations(range(large), small))
    ia, ib, cos = match_features(a, b)
    assert len(ia) == small and len(set(ia.tolist())) == small and len(set(ib.tolist())) == small
    assert float(cos.sum()) == pytest.approx(best, abs=1e-5)
    torch.testing.assert_close(cos, c[ia, ib])

def test_pairwise_mmcs_is_the_matrix_of_pairwise_mmcs():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(3, 10, 4, generator=g)
    pm = pairwise_mmcs(d)
    assert np.allclose(np.diag(pm), 1) and np.allclose(pm, pm.T)
    for i, j in [(0, 1), (0, 2), (1, 2)]: assert pm[i, j] == pytest.approx(mmcs(d[i], d[j]), abs=1e-6)
    mx = pairwise_mmcs(d, method="max")   # not symmetric: each direction is its own best-match mean
    assert mx[0, 1] == pytest.approx(cosine_matrix(d[0], d[1]).max(1).values.mean().item(), abs=1e-6)
    assert mx[1, 0] == pytest.approx(cosine_matrix(d[1], d[0]).max(1).values.mean().item(), abs=1e-6)

def _scipy_matched(a, b):
    "Cosines of the optimal one-to-one matching by SciPy's dense Hungarian, independently of interpwb's solver."
    from scipy.optimize import linear_sum_assignment
    c = (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T).numpy()
    r, k = linear_sum_assignment(-c)
    return c[r, k]

def test_the_trainers_pw_mcc_and_shared_fraction_are_those_of_its_dictionaries():
    x, _ = make_synthetic(2048, d=16, n_features=32, kind="grouped", n_groups=4, n_active=3, seed=0)
    ens, m = train_saes(x, n_saes=3, d_sae=24, k=3, steps=40, batch_size=256, seed=2, eval_every=20, dead_handling="none")
    last = m[m.step == m.step.max()]
    d = ens.dictionaries().detach().cpu()
    pairs = [_scipy_matched(d[i], d[j]) for i, j in [(0, 1), (0, 2), (1, 2)]]
    assert last.pw_mcc.nunique() == 1 and len(last) == 3                               # one value per step, on every SAE's row
    assert last.pw_mcc.iloc[0] == pytest.approx(np.mean([c.mean() for c in pairs]), abs=1e-5)
    assert last.shared_frac.iloc[0] == pytest.approx(np.mean([(c >= 0.7).mean() for c in pairs]), abs=1e-9)
    assert last.pw_mcc.iloc[0] == pytest.approx(last.mmcs_pairs.mean(), abs=1e-5)       # the per-SAE means average to it
    assert m[m.step == 19].pw_mcc.notna().all() and m[m.step == 0].pw_mcc.isna().all()  # only at evaluation steps

def test_feature_stability_counts_one_to_one_partners_not_nearest_neighbours():
    g = torch.Generator().manual_seed(0)
    ref = F.normalize(torch.randn(6, 32, generator=g), dim=-1)
    ref[1] = F.normalize(ref[0] + 0.5 * F.normalize(torch.randn(32, generator=g), dim=0), dim=0)   # close to feature 0
    assert (ref[0] @ ref[1]).item() > 0.8
    # SAE 1 has feature 0 but not feature 1: feature 1's NEAREST neighbour there is feature 0's copy (cosine > 0.8),
    # its one-to-one partner is a random direction - so feature 1 must not count as shared with SAE 1
    other = torch.cat([ref[[0]], F.normalize(torch.randn(1, 32, generator=g), dim=-1), ref[2:]])[torch.tensor([3, 1, 5, 0, 2, 4])]
    st = feature_stability([ref, other, ref.flip(0)])
    want = [_scipy_matched(ref, other), _scipy_matched(ref, ref.flip(0))]
    assert st.shared_with.tolist() == [2, 1, 2, 2, 2, 2] and st.orphan.sum() == 0
    assert cosine_matrix(ref, other)[1].max() > 0.8                                    # what a nearest-neighbour count would use
    assert np.allclose(st.mean_cos.to_numpy(), (want[0] + want[1]) / 2, atol=1e-6)
    assert pw_mcc([ref, other, ref.flip(0)])[0] == pytest.approx(np.mean([_scipy_matched(a, b).mean() for a, b in
                                                                         [(ref, other), (ref, ref.flip(0)), (other, ref.flip(0))]]), abs=1e-6)

# ---------- MFR ----------
def test_mfr_raises_agreement_between_saes_at_fixed_seed_and_data():
    x, truth = make_synthetic(4096, d=16, n_features=32, kind="grouped", n_groups=4, n_active=3, seed=0)
    kw = dict(n_saes=2, d_sae=32, k=3, steps=150, lr=1e-2, batch_size=512, warmup_steps=20, seed=1, eval_every=150,
              dead_handling="none")
    last = lambda m: m[m.step == m.step.max()]
    _, base = train_saes(x, mfr_alpha=0.0, **kw)
    _, mfr = train_saes(x, mfr_alpha=2.0, **kw)
    # same seed, same batches: only the penalty differs, and it must pull the two dictionaries toward each other
    assert last(mfr).mmcs_pairs.mean() > last(base).mmcs_pairs.mean() + 0.02, (last(mfr).mmcs_pairs.mean(), last(base).mmcs_pairs.mean())

def test_the_trainers_gradient_is_reconstruction_plus_weighted_penalty():
    x, _ = make_synthetic(256, d=8, n_features=16, n_groups=4, n_active=2, seed=0)
    cfg = SAEConfig(d_in=8, d_sae=16, k=3, n_saes=2, seed=0)
    alpha, step = 0.7, 3
    tr = SAETrainer(SAEEnsemble(cfg), steps=10, mfr_alpha=alpha, warmup_steps=10, init_b_dec="zeros", dead_handling="none")
    tr.step_no = step                                  # inside the MFR warm-up: w(t) = mfr_warmup(3, 10) in (0, 1)
    ref = SAEEnsemble(cfg); ref.load_state_dict(tr.ens.state_dict())
    seen = {}
    real_step = tr.opt.step
    def spy(*a, **k):
        seen.update({n: p.grad.detach().clone() for n, p in tr.ens.named_parameters()}); return real_step(*a, **k)
    tr.opt.step = spy
    tr._train_step(x)
    out = ref.losses(x)
    pen, _ = mfr_penalty(ref.decoder())
    w = mfr_warmup(step, 10)
    assert 0 < w < 1
    (out["mse"].sum() + out["sparsity"].sum() + alpha * w * pen).backward()
    for n, p in ref.named_parameters(): torch.testing.assert_close(seen[n], p.grad, atol=1e-6, rtol=1e-4, msg=n)
    # and the penalty's own gradient is not zero there (a dropped or mis-weighted penalty would have passed otherwise)
    ref.zero_grad(); mfr_penalty(ref.decoder())[0].backward()
    assert ref.W_dec.grad.abs().max() > 1e-4

def test_mfr_penalty_is_one_minus_the_mean_pairwise_mmcs():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(3, 12, 5, generator=g)
    pen, _ = mfr_penalty(d)
    want = np.mean([1 - mmcs(d[i], d[j]) for i, j in [(0, 1), (0, 2), (1, 2)]])
    assert pen.item() == pytest.approx(want, abs=1e-5)
    perm = torch.randperm(12, generator=g)
    assert mfr_penalty(torch.stack([d[0], 2 * d[0][perm]]))[0].item() == pytest.approx(0.0, abs=1e-5)

# ---------- AuxK ----------
def test_auxk_loss_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    ens = SAEEnsemble(SAEConfig(d_in=6, d_sae=10, k=2, n_saes=2))
    x = torch.randn(2, 7, 6, generator=g); recon = torch.randn(2, 7, 6, generator=g); pre = torch.randn(2, 7, 10, generator=g)
    dead = torch.zeros(2, 10, dtype=torch.bool); dead[0, [1, 4, 7, 9]] = True        # SAE 1 has no dead latent
    got = auxk_loss(ens, pre, x, recon, dead, aux_k=2)
    D = ens.decoder().detach()
    resid = x[0] - recon[0]
    want_rows = []
    for b in range(7):
        cand = sorted([(pre[0, b, j].item(), j) for j in range(10) if dead[0, j]], reverse=True)[:2]
        want_rows.append(sum(max(v, 0.0) * D[0, j] for v, j in cand))
    e_hat = torch.stack(want_rows)
    var = ((resid - resid.mean(0)) ** 2).mean()
    assert got[0].item() == pytest.approx(((e_hat - resid) ** 2).mean().item() / var.item(), rel=1e-4)
    assert got[1].item() == 0.0

# ---------- SAELens files, read by SAELens's formulas ----------
def _saelens_forward(cfg:dict, w:dict, x:torch.Tensor) -> torch.Tensor:
    "SAELens inference: pre = (x - b_dec) W_enc + b_enc (b_dec subtracted when apply_b_dec_to_input), then the architecture's activation, then z W_dec + b_dec."
    pre = ((x - w["b_dec"]) if cfg["apply_b_dec_to_input"] else x) @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "standard": z = pre.relu()
    elif cfg["architecture"] == "topk":
        v, i = pre.topk(cfg["k"], dim=-1); z = torch.zeros_like(pre).scatter(-1, i, v.relu())   # SAELens's TopK applies a ReLU
    elif cfg["architecture"] == "batchtopk":
        acts = pre.relu().flatten(); v, i = acts.topk(cfg["k"] * len(x)); z = torch.zeros_like(acts).scatter(-1, i, v).reshape(pre.shape)
    else: raise AssertionError(cfg["architecture"])
    return z @ w["W_dec"] + w["b_dec"]

@pytest.mark.parametrize("arch", ["topk", "relu_l1", "batchtopk"])
def test_exported_files_compute_what_saelens_computes(tmp_path, arch):
    ens = SAEEnsemble(SAEConfig(d_in=12, d_sae=24, k=3, n_saes=2, architecture=arch, l1_coeff=0.1))
    with torch.no_grad(): ens.b_dec.normal_(); ens.b_enc.normal_()
    folders = ens.to_saelens(tmp_path)
    x = torch.randn(6, 12)
    with torch.no_grad(): ours = ens(x)[0]
    for i, f in enumerate(folders):
        cfg, w = json.loads((f/"cfg.json").read_text()), load_file(str(f/"sae_weights.safetensors"))
        torch.testing.assert_close(_saelens_forward(cfg, w, x), ours[i], atol=1e-5, rtol=1e-5)

def test_topk_tied_is_not_exported_as_saelens_topk_silently(tmp_path):
    ens = SAEEnsemble(SAEConfig(d_in=12, d_sae=24, k=3, n_saes=1, architecture="topk_tied"))
    v = torch.randn(12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(): ens.W_enc[0] = v[:, None] + 0.01 * torch.randn(12, 24)   # every latent reads about +v
    with pytest.raises(ValueError, match="saelens_relu=True"): ens.to_saelens(tmp_path)
    f = ens.to_saelens(tmp_path, saelens_relu=True)[0]
    cfg, w = json.loads((f/"cfg.json").read_text()), load_file(str(f/"sae_weights.safetensors"))
    x = -v.expand(4, 12)          # every pre-activation negative: the reference keeps its top 3, SAELens zeros them
    with torch.no_grad(): ours = ens(x)[0][0]
    assert not torch.allclose(_saelens_forward(cfg, w, x), ours, atol=1e-3)   # the difference the flag accepts
    torch.testing.assert_close(SAEEnsemble.from_saelens(f)(x)[0][0].detach(), ours.detach(), atol=1e-5, rtol=1e-5)

def test_batchtopk_keeps_k_per_row_on_average_and_is_not_dead():
    ens = SAEEnsemble(SAEConfig(d_in=12, d_sae=24, k=3, n_saes=1, architecture="batchtopk"))
    with torch.no_grad(): ens.W_enc.zero_(); ens.b_enc.fill_(1.0)    # every pre-activation is 1: exactly k * batch survive
    z = ens.encode(torch.randn(8, 12))[0]
    assert (z > 0).sum().item() == 3 * 8

# ---------- registries ----------
def test_a_registered_architecture_trains_and_round_trips(tmp_path):
    register_architecture(SAEArchitecture("abs_topk", False, lambda pre, cfg: torch.zeros_like(pre).scatter(
        -1, pre.abs().topk(cfg.k, -1).indices, pre.abs().topk(cfg.k, -1).values), uses_k=True))
    try:
        x, _ = make_synthetic(512, d=8, n_features=16, n_groups=4, n_active=2, seed=0)
        ens, m = train_saes(x, n_saes=1, d_sae=16, k=2, steps=20, lr=1e-2, batch_size=128, architecture="abs_topk")
        z = ens.encode(x[:5])[0]
        assert ((z != 0).sum(-1) == 2).all() and (z >= 0).all()
        assert m[m.step == 19].fvu.item() < m[m.step == 0].fvu.item()
        ens.save(tmp_path/"e"); assert SAEEnsemble.load(tmp_path/"e").cfg.architecture == "abs_topk"
    finally: ARCHITECTURES.pop("abs_topk", None)
    with pytest.raises(KeyError, match="abs_topk|Known"): SAEConfig(d_in=8, d_sae=16, architecture="abs_topk")

def test_a_registered_selection_rule_is_used_by_select():
    from interpwb.simulators.simulation import register_selection_rule, select, SELECTION_RULES
    @register_selection_rule("uniform_test")
    def _uniform(scores): return torch.full_like(scores, 1 / scores.shape[-1])
    try:
        torch.testing.assert_close(select(torch.tensor([[0.0, -5.0, -9.0]]), "uniform_test"), torch.full((1, 3), 1 / 3))
        with pytest.raises(KeyError, match="uniform_test"): select(torch.zeros(1, 2), "uniform_tset")
    finally: SELECTION_RULES.pop("uniform_test", None)

# ---------- loading refuses tensors that disagree with their config ----------
@pytest.mark.parametrize("arch,name", [("topk", "W_dec"), ("topk", "b_enc"), ("topk", "b_dec"), ("topk_tied", "W_enc")])
def test_load_refuses_a_tensor_whose_shape_disagrees_with_the_config(tmp_path, arch, name):
    from interpwb.core import save_artifact, ArtifactError
    ens = SAEEnsemble(SAEConfig(d_in=6, d_sae=10, k=2, n_saes=2, architecture=arch))
    tensors = dict(ens.state_dict())
    tensors[name] = torch.zeros(*tensors[name].shape[:-1], tensors[name].shape[-1] + 1)   # one column too many
    folder = save_artifact(tmp_path/"bad", tensors, dict(kind="SAEEnsemble", format_version=1, sae=ens.cfg.to_dict()))
    with pytest.raises(ArtifactError, match=f"tensor {name} is"): SAEEnsemble.load(folder)
    tensors.pop(name)
    folder = save_artifact(tmp_path/"missing", tensors, dict(kind="SAEEnsemble", format_version=1, sae=ens.cfg.to_dict()))
    with pytest.raises(ArtifactError, match=f"tensor {name} is missing"): SAEEnsemble.load(folder)

def test_max_cosines_reads_columns_as_features_when_asked():
    from interpwb.sae.matching import max_cosines
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g), torch.randn(7, 3, generator=g)
    want = torch.stack([max(F.cosine_similarity(x, y, dim=0) for y in b) for x in a])
    torch.testing.assert_close(max_cosines(a, b), want)
    torch.testing.assert_close(max_cosines(a.T, b.T, features_as="columns"), want)

# ---------- fast matching: sparse candidate graph, certified optimal, dense fallback ----------
def _dictionary_pair(na:int, nb:int, kind:str, d:int=32, seed:int=0):
    "A [na, d] and B [nb, d]: unrelated ('random'), or B a noisy permuted copy of A plus new features ('noisy')."
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(na, d, generator=g)
    if kind == "random": return a, torch.randn(nb, d, generator=g)
    shared = a[torch.randperm(na, generator=g)[:nb]] + 0.3 * torch.randn(min(na, nb), d, generator=g)
    b = torch.cat([shared, torch.randn(nb - len(shared), d, generator=g)])
    return a, b[torch.randperm(nb, generator=g)]

def _count_dense_calls(monkeypatch) -> list:
    import interpwb.sae.matching as matching
    calls, dense = [], matching._dense_match
    monkeypatch.setattr(matching, "_dense_match", lambda a, b: calls.append((len(a), len(b))) or dense(a, b))
    return calls

@pytest.mark.parametrize("na,nb,kind", [(600, 600, "random"), (600, 600, "noisy"), (600, 700, "random"),
                                        (600, 700, "noisy"), (700, 600, "noisy"), (700, 600, "random")])
def test_fast_matching_scores_the_dense_optimum(monkeypatch, na, nb, kind):
    a, b = _dictionary_pair(na, nb, kind, seed=na + nb)
    dia, dib, best = match_features(a, b, method="dense")
    dense_calls = _count_dense_calls(monkeypatch)
    ia, ib, cos = match_features(a, b)   # "auto" above 512 x 512: the sparse path
    assert dense_calls == []
    assert len(ia) == min(na, nb) and len(ia.unique()) == len(ia) and len(ib.unique()) == len(ib)
    assert float(cos.double().sum()) == pytest.approx(float(best.double().sum()), rel=1e-5)   # the issue allows 1e-3
    torch.testing.assert_close(cos, cosine_matrix(a, b)[ia, ib])
    # the same kinds and shapes as SciPy's answer (idx_a ascending)
    assert (ia.dtype, ib.dtype, cos.dtype) == (dia.dtype, dib.dtype, best.dtype) == (torch.long, torch.long, torch.float32)
    assert ia.shape == dia.shape and ib.shape == dib.shape and cos.shape == best.shape and bool((ia.diff() > 0).all())

def test_fast_matching_repairs_a_small_candidate_graph_to_the_optimum(monkeypatch):
    a, b = _dictionary_pair(600, 600, "random", seed=3)
    best = match_features(a, b, method="dense")[2].double().sum()
    import interpwb.sae.matching as matching
    dense_calls, checks, check = _count_dense_calls(monkeypatch), [], matching._violations
    monkeypatch.setattr(matching, "_violations", lambda *args: checks.append(found := check(*args)) or found)
    cos = match_features(a, b, method="sparse", k=6)[2]   # 6 candidates each: the certificate finds better pairs
    assert dense_calls == [] and checks[0] is not None and checks[-1] is None
    assert float(cos.double().sum()) == pytest.approx(float(best), rel=1e-5)

def test_fast_matching_falls_back_to_dense_when_the_candidate_graph_has_no_full_matching(monkeypatch):
    from interpwb.sae.matching import _sparse_match
    g = torch.Generator().manual_seed(0)
    b = torch.randn(600, 32, generator=g)
    a = b[torch.arange(600) % 5] + 0.05 * torch.randn(600, 32, generator=g)   # all of A nearest to the same 5 of B
    assert _sparse_match(F.normalize(a, dim=-1), F.normalize(b, dim=-1), 2) is None   # k = 2, then 8: no full matching
    best = match_features(a, b, method="dense")[2].double().sum()
    dense_calls = _count_dense_calls(monkeypatch)
    ia, ib, cos = match_features(a, b, method="sparse", k=2)
    assert dense_calls == [(600, 600)]
    assert len(ia.unique()) == len(ib.unique()) == 600 and float(cos.double().sum()) == pytest.approx(float(best), rel=1e-6)

def test_match_features_checks_its_method_and_k():
    a = torch.randn(4, 3)
    with pytest.raises(KeyError, match="sparse"): match_features(a, a, method="hungarian")
    with pytest.raises(ValueError, match="k"): match_features(a, a, k=0)
    assert match_features(torch.zeros(0, 3), a, method="sparse")[0].shape == (0,)
    assert len(match_features(a, a, method="sparse", k=1)[0]) == 4                      # k = 1 is allowed
    with pytest.raises(ValueError, match="k"): match_features(a, a, k=1.5)              # k is a count
    for method in ("sparse", "dense", "auto"):                                          # the width error, on every path
        with pytest.raises(ValueError, match="a has width 3, b has width 2"):
            match_features(torch.randn(4, 3), torch.randn(5, 2), method=method)
        with pytest.raises(ValueError, match="a has width 3, b has width 2"):
            match_features(torch.randn(3, 4), torch.randn(2, 5), features_as="columns", method=method)

# ---------- MFR's schedule, the max-cosine variant and the assignment cache, by hand ----------
@pytest.mark.parametrize("step,W,want", [(0, 100, 0.0), (25, 100, 0.5 * (1 - math.sqrt(0.5))), (50, 100, 0.5), (99, 100, None),
                                         (100, 100, 1.0), (150, 100, 1.0), (0, 0, 1.0), (0, 1, 0.0), (1, 1, 1.0)])
def test_mfr_warmup_is_the_cosine_ramp_from_0_to_1(step, W, want):
    if want is None: want = 0.5 * (1 + math.cos(math.pi * (W - step) / W))
    assert mfr_warmup(step, W) == pytest.approx(want, abs=1e-12)
    assert mfr_warmup(step) == pytest.approx(mfr_warmup(step, 100))          # W = 100 by default

def test_maxcos_penalty_by_hand_over_every_pair():
    g = torch.Generator().manual_seed(1)
    d = torch.randn(3, 6, 4, generator=g)
    w = F.normalize(d, dim=-1)
    def by_hand(i, j):
        c = w[i] @ w[j].T                                   # rows: features of i; its row and column maxima differ
        return 1 - 0.5 * (c.max(1).values.mean() + c.max(0).values.mean())
    c01 = w[0] @ w[1].T
    assert abs(c01.max(1).values.mean() - c01.max(0).values.mean()) > 1e-3
    pen, assign = mfr_penalty(d, method="maxcos")
    assert assign is None and pen.item() == pytest.approx(float(sum(by_hand(i, j) for i, j in [(0, 1), (0, 2), (1, 2)]) / 3), abs=1e-6)
    one = d[:1].clone().requires_grad_(True)
    p1, _ = mfr_penalty(one)
    p1.backward()
    assert p1.item() == 0.0 and one.grad.abs().max().item() == 0.0          # one SAE: no penalty, no gradient

def test_mfr_penalty_reuses_its_assignment_until_it_is_stale(monkeypatch):
    import interpwb.sae.mfr as mfr_module
    from interpwb.sae.mfr import MFRPenalty
    g = torch.Generator().manual_seed(2)
    d0, d1 = torch.randn(2, 8, 5, generator=g), torch.randn(2, 8, 5, generator=g)
    stale_ref = mfr_penalty(d1, assignments=mfr_penalty(d0)[1])[0].item()   # d1 scored with d0's assignment
    assert abs(stale_ref - mfr_penalty(d1)[0].item()) > 1e-4
    calls = []
    real = mfr_module.match_features
    monkeypatch.setattr(mfr_module, "match_features", lambda a, b, *r: calls.append(1) or real(a, b, *r))
    m = MFRPenalty(alpha=0.5, recompute_every=3, warmup_steps=0)
    w0, p0 = m(d0, 0); assert len(calls) == 1 and w0.item() == pytest.approx(0.5 * p0.item())
    _, p1 = m(d1, 1)                                                   # steps 1, 2: the step-0 assignment, reused
    assert len(calls) == 1
    assert p1.item() == pytest.approx(stale_ref, abs=1e-6)
    m(d1, 2); assert len(calls) == 1
    m(d1, 3); assert len(calls) == 2                                   # 3 steps later: recomputed
    m(d1, 3); m(d1, 4); assert len(calls) == 2                         # counted from the step it was computed at
    m(d1, 1); assert len(calls) == 3                                   # an earlier step (a restart): recomputed
    assert MFRPenalty(alpha=0.0)(d0, 0)[0].item() == 0.0 and len(calls) == 3   # off: nothing computed
    assert MFRPenalty(alpha=1.0)(d0[:1], 0)[1].item() == 0.0                    # one SAE: nothing to agree with
    mc = MFRPenalty(alpha=1.0, method="maxcos", warmup_steps=0)
    mc(d0, 0); mc(d1, 1)
    assert mc._assign is None and len(calls) == 3                      # max-cosine needs no assignment
    assert MFRPenalty(alpha=1.0, warmup_steps=10).weight(5) == pytest.approx(mfr_warmup(5, 10))

# ---------- matching on batched and column layouts ----------
def test_cosine_matrix_handles_a_leading_batch_dim_and_refuses_other_widths():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 5, 3, generator=g), torch.randn(2, 7, 3, generator=g)
    got = cosine_matrix(a, b)
    for k in range(2):
        want = torch.stack([torch.stack([F.cosine_similarity(x, y, dim=0) for y in b[k]]) for x in a[k]])
        torch.testing.assert_close(got[k], want)
    with pytest.raises(ValueError): cosine_matrix(a, torch.randn(2, 7, 4))

def test_matching_and_mmcs_read_columns_and_max_is_not_symmetric():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(5, 3, generator=g), torch.randn(7, 3, generator=g)
    ia, ib, cos = match_features(a, b)
    assert ia.dtype == ib.dtype == torch.long
    ja, jb, cos_t = match_features(a.T, b.T, features_as="columns")
    assert ja.tolist() == ia.tolist() and jb.tolist() == ib.tolist()
    assert mmcs(a.T, b.T, features_as="columns") == pytest.approx(mmcs(a, b))
    assert mmcs(a.T, b.T, features_as="columns", method="max") == pytest.approx(mmcs(a, b, method="max"))
    d = torch.stack([torch.randn(6, 3, generator=g) for _ in range(2)])
    pm = pairwise_mmcs(d, method="max")
    assert pm[0, 1] == pytest.approx(mmcs(d[0], d[1], method="max"), abs=1e-6)
    assert pm[1, 0] == pytest.approx(mmcs(d[1], d[0], method="max"), abs=1e-6) and abs(pm[0, 1] - pm[1, 0]) > 1e-4

def test_topk_keeps_only_positive_activations_and_k_may_equal_the_width():
    ens = SAEEnsemble(SAEConfig(d_in=4, d_sae=6, k=2, n_saes=1))
    with torch.no_grad(): ens.W_enc.zero_(); ens.b_enc.fill_(-1.0)        # every pre-activation is -1
    assert (ens.encode(torch.randn(3, 4))[0] == 0).all()                  # the k largest are negative: ReLU'd to 0
    vals, idx = ARCHITECTURES["topk"].sparse_activate(torch.full((3, 6), -1.0), ens.cfg)   # the sparse path, too
    assert vals.shape == (3, 2) and (vals == 0).all()
    assert SAEConfig(d_in=4, d_sae=6, k=6, n_saes=1).k == 6               # k = d_sae is allowed; k > d_sae is not
    with pytest.raises(ValueError): SAEConfig(d_in=4, d_sae=6, k=7, n_saes=1)

# ---------- the sparse solver's parts, each against an independent reference ----------
def _unit_pair(na, nb, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(na, d, generator=g), dim=-1), F.normalize(torch.randn(nb, d, generator=g), dim=-1)

def test_row_blocks_cover_every_row_once_within_the_budget():
    from interpwb.sae.matching import _row_blocks
    for n_rows, n_cols, budget in [(10, 3, 7), (10, 3, 30), (1, 5, 1), (7, 0, 4), (100, 9, 1 << 24)]:
        blocks = _row_blocks(n_rows, n_cols, budget)
        assert np.concatenate([np.arange(n_rows)[s] for s in blocks]).tolist() == list(range(n_rows))
        assert all((s.stop - s.start) * n_cols <= max(budget, n_cols) for s in blocks)

def test_top_k_equals_topk_of_the_full_cosine_matrix(monkeypatch):
    import interpwb.sae.matching as matching
    a, b = _unit_pair(37, 23)
    monkeypatch.setattr(matching, "_row_blocks", lambda n, m: [slice(s, min(s + 5, n)) for s in range(0, n, 5)])  # small blocks
    cos, idx = matching._top_k(a, b, 4)
    want = torch.topk(a @ b.T, 4, dim=1)
    np.testing.assert_allclose(cos, want.values.numpy(), rtol=1e-6); np.testing.assert_array_equal(idx, want.indices.numpy())
    empty = matching._top_k(a[:0], b, 4)
    assert empty[0].shape == (0, 4) and empty[0].dtype == np.float32 and empty[1].dtype == np.int64

def test_candidate_edges_are_each_rows_best_and_reach_every_column():
    from interpwb.sae.matching import _candidate_edges
    a, b = _unit_pair(30, 45)                    # more columns than rows x k can pick: some are reached only backwards
    rows, cols, cos, kth = _candidate_edges(a, b, 2)
    full = (a @ b.T).numpy()
    np.testing.assert_allclose(cos, full[rows, cols], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kth, np.sort(full, 1)[:, -2], rtol=1e-5, atol=1e-6)   # each row's 2nd best cosine
    assert set(cols.tolist()) == set(range(45))                                        # no column left unreachable
    for r in range(30): assert set(np.argsort(-full[r])[:2]) <= set(cols[rows == r].tolist())

def test_is_edge_agrees_with_a_set_of_pairs():
    from interpwb.sae.matching import _is_edge
    g = np.random.default_rng(0)
    rows, cols = g.integers(0, 9, 40), g.integers(0, 11, 40)
    r, c = g.integers(0, 9, 200), g.integers(0, 11, 200)
    edges = set(zip(rows.tolist(), cols.tolist()))
    np.testing.assert_array_equal(_is_edge(r, c, rows, cols, 11), [(x, y) in edges for x, y in zip(r.tolist(), c.tolist())])

def _best_on_graph(rows, cols, cost, shape) -> np.ndarray:
    "Each row's column in SciPy's minimum-cost full matching of the candidate graph (an independent solver)."
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching
    ia, ib = min_weight_full_bipartite_matching(csr_matrix((cost, (rows, cols)), shape=shape))
    m = np.empty(shape[0], dtype=np.int64); m[ia] = ib
    return m

def _graph_matchings(seed=0):
    "A candidate graph and two full matchings of its rows: the optimal one and one optimal for perturbed costs."
    from interpwb.sae.matching import _candidate_edges
    a, b = _unit_pair(40, 50, seed=seed)
    rows, cols, cos, _ = _candidate_edges(a, b, 6)
    cost = 2.0 - cos
    noisy = cost + np.random.default_rng(seed).uniform(0, 0.5, len(cost))
    return rows, cols, cost, _best_on_graph(rows, cols, cost, (40, 50)), _best_on_graph(rows, cols, noisy, (40, 50))

def test_potentials_certify_the_optimal_matching_and_refuse_a_worse_one():
    "Dual feasibility off the matching, complementary slackness on it, free columns above matched ones; None if improvable."
    from interpwb.sae.matching import _potentials
    rows, cols, cost, best, worse = _graph_matchings()
    pr, pc = _potentials(50, rows, cols, cost, best)
    reduced = cost + pr[rows] - pc[cols]
    on = best[rows] == cols
    assert (reduced[~on] >= -1e-9).all() and np.abs(reduced[on]).max() < 1e-9
    free = np.setdiff1d(np.arange(50), best)
    assert pc[np.setdiff1d(np.arange(50), free)].max() <= pc[free].min() + 1e-9   # no augmenting path through a free column
    cost_of = lambda m: sum(cost[(rows == r) & (cols == m[r])][0] for r in range(40))
    assert cost_of(worse) > cost_of(best) + 1e-6                                   # the perturbed optimum is worse here
    assert _potentials(50, rows, cols, cost, worse) is None                         # a negative cycle: not certifiable
    again = _potentials(50, rows, cols, cost, best, start=(pr, pc))                 # warm start from a certificate: unchanged
    np.testing.assert_allclose(again[0], pr); np.testing.assert_allclose(again[1], pc)

def test_a_certified_match_needs_no_repair_round_with_enough_candidates(monkeypatch):
    "600 x 600 random pair, k = 64: the first certificate holds (one LP check, no dense fallback)."
    a, b = _dictionary_pair(600, 600, "random", seed=3)
    import interpwb.sae.matching as matching
    dense_calls, checks, check = _count_dense_calls(monkeypatch), [], matching._violations
    monkeypatch.setattr(matching, "_violations", lambda *args: checks.append(found := check(*args)) or found)
    match_features(a, b, method="sparse")
    assert dense_calls == [] and checks == [None]

def test_violations_finds_exactly_the_pairs_with_negative_reduced_cost():
    "Against the full matrix: every off-matching pair with 2 - cos + pr - pc < -tol is returned (none is missed)."
    from interpwb.sae.matching import _candidate_edges, _potentials, _violations
    a, b = _unit_pair(60, 60, seed=4)
    rows, cols, cos, kth = _candidate_edges(a, b, 4)              # few candidates: the certificate must find better pairs
    cost = 2.0 - cos
    match = _best_on_graph(rows, cols, cost, (60, 60))
    pr, pc = _potentials(60, rows, cols, cost, match)
    full = (a @ b.T).double().numpy()
    reduced = 2 - full + pr[:, None] - pc[None, :]
    reduced[np.arange(60), match] = np.inf
    want = set(zip(*np.nonzero(reduced < -1e-6)))
    assert want, "the small candidate graph should leave violations"
    got = _violations(a, b, pr, pc, kth, match, 1e-6, 0.0, block=7)
    assert want <= set(zip(got[0].tolist(), got[1].tolist()))
    np.testing.assert_allclose(got[2], full[got[0], got[1]], rtol=1e-6)
    assert (reduced[got[0], got[1]] < 1e-9).all()                 # margin 0: nothing with a non-negative reduced cost
