"SAE ensemble, MFR matching, trainer, checkpoints and SAELens format (tiny tensors, CPU, fast)."
import json
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from interpwb.core import ArtifactError
from interpwb.sae.matching import cosine_matrix, match_features, mmcs, max_cosines
from interpwb.sae.mfr import mfr_penalty, MFRPenalty
from interpwb.sae.ensemble import SAEConfig, SAEEnsemble
from interpwb.sae.trainer import SAETrainer
from interpwb.sae.train import train_saes
from interpwb.sae.checkpoint import save_checkpoint, load_checkpoint
from interpwb.sae.synthetic import make_synthetic

SMALL = dict(n_saes=2, d_sae=64, k=4, steps=24, lr=1e-2, batch_size=128, warmup_steps=4)


@pytest.fixture(scope="module")
def data():
    x, truth = make_synthetic(1024, d=32, n_features=64, kind="sharkey", seed=0)
    return x, truth


# --- MFR matching -------------------------------------------------------------------------------------------
def test_mmcs_of_permuted_copy_is_one_in_both_layouts():
    g = torch.Generator().manual_seed(1)
    d = torch.randn(50, 12, generator=g)
    perm = torch.randperm(50, generator=g)
    assert mmcs(d, 2.5 * d[perm]) == pytest.approx(1.0, abs=1e-5)
    assert mmcs(d.T, d[perm].T, features_as="columns") == pytest.approx(1.0, abs=1e-5)
    ia, ib, cos = match_features(d, d[perm])
    assert torch.equal(perm[ib], ia) and torch.allclose(cos, torch.ones(50), atol=1e-5)
    assert mmcs(d, torch.randn(50, 12, generator=g)) < 0.8


def test_hungarian_is_one_to_one_while_max_is_not():
    a = torch.tensor([[1., 0.], [0.9, 0.1]])
    b = torch.tensor([[1., 0.], [0., 1.]])
    # both rows of a prefer b[0]; Hungarian must give one of them b[1]
    assert mmcs(a, b, method="max") > mmcs(a, b)
    assert sorted(match_features(a, b)[1].tolist()) == [0, 1]


def test_cosine_matrix_width_mismatch_names_both_widths():
    with pytest.raises(ValueError, match="width 3.*width 5"):
        cosine_matrix(torch.ones(2, 3), torch.ones(2, 5))


def test_mfr_gradient_flows_through_matched_cosines_only():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 6, 5, generator=g, requires_grad=True)
    loss, assign = mfr_penalty(w)
    loss.backward()
    ia, ib = assign[(0, 1)]
    w2 = w.detach().clone().requires_grad_()
    n = F.normalize(w2, dim=-1)
    (1 - (n[0, ia] * n[1, ib]).sum(-1).mean()).backward()
    torch.testing.assert_close(w.grad, w2.grad)
    # rectangular: features of b that are not matched receive exactly zero gradient
    a, b = torch.randn(3, 5, generator=g), torch.randn(6, 5, generator=g, requires_grad=True)
    ia, ib, _ = match_features(a, b.detach())
    (1 - (F.normalize(a, dim=-1)[ia] * F.normalize(b, dim=-1)[ib]).sum(-1).mean()).backward()
    unmatched = sorted(set(range(6)) - set(ib.tolist()))
    assert len(unmatched) == 3 and b.grad[unmatched].abs().sum() == 0
    assert (b.grad[ib].norm(dim=-1) > 0).all()


def test_mfr_penalty_recompute_every_reuses_assignment():
    w = torch.randn(3, 8, 4)
    pen = MFRPenalty(alpha=2.0, warmup_steps=0, recompute_every=3)
    pen(w, 0)
    first = pen._assign
    pen(torch.randn(3, 8, 4), 1)
    assert pen._assign is first  # reused
    pen(torch.randn(3, 8, 4), 3)
    assert pen._assign is not first and pen._assigned_at == 3
    assert MFRPenalty(alpha=1.0, method="maxcos")(w, 500)[0] > 0


# --- SAE ensemble ---------------------------------------------------------------------------------------------
def test_topk_keeps_exactly_k():
    x = torch.randn(16, 12)
    tied = SAEEnsemble(SAEConfig(d_in=12, d_sae=40, k=5, n_saes=3, architecture="topk_tied"))
    assert ((tied.encode(x) != 0).sum(-1) == 5).all()
    ens = SAEEnsemble(SAEConfig(d_in=12, d_sae=40, k=5, n_saes=3, architecture="topk"))
    z, pre = ens.encode(x), ens.pre_acts(x)
    top = pre.topk(5, dim=-1).indices
    assert ((z != 0).sum(-1) <= 5).all()
    assert torch.equal(z.gather(-1, top), pre.gather(-1, top).relu())  # exactly the k largest, rectified


def test_k_larger_than_dictionary_errors(data):
    with pytest.raises(ValueError, match="k=65.*d_sae=64"):
        SAEConfig(d_in=32, d_sae=64, k=65)
    with pytest.raises(ValueError, match="d_sae=64"):
        train_saes(data[0], n_saes=1, d_sae=64, k=65, steps=1)


def test_width_mismatch_states_both_widths(data):
    ens = SAEEnsemble(SAEConfig(d_in=32, d_sae=64, k=4))
    with pytest.raises(ValueError, match="d_in=32.*width 31"):
        ens(torch.randn(4, 31))
    with pytest.raises(ValueError, match="width 16.*width 32"):
        train_saes(data[0], true_features=torch.randn(64, 16), steps=1, d_sae=64, k=4)


def test_nan_batch_is_named(data):
    x = data[0][:64].clone()
    bad = x.clone(); bad[5, 3] = float("inf")
    with pytest.raises(ValueError, match="Batch 2 contains NaN or inf"):
        train_saes(iter([x, x, bad, x]), n_saes=1, d_sae=64, k=4, steps=4, batch_size=64)


def test_ensemble_members_train_independently_without_mfr(data):
    "Stacking is only an implementation detail: SAE 0's training does not depend on SAE 1."
    x = data[0]
    cfg = SAEConfig(d_in=32, d_sae=64, k=4, n_saes=2)
    e1, e2 = SAEEnsemble(cfg), SAEEnsemble(cfg)
    e2.reset_sae_(1, seed=12345)
    t1, t2 = (SAETrainer(e, steps=10, lr=1e-2, dead_handling="none") for e in (e1, e2))
    for s in range(10):
        b = x[s * 64:(s + 1) * 64]
        t1.step(b); t2.step(b)
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        torch.testing.assert_close(getattr(e1, name)[0], getattr(e2, name)[0])
        assert not torch.allclose(getattr(e1, name)[1], getattr(e2, name)[1])


def test_init_is_not_aligned_with_synthetic_truth_of_same_seed():
    x, truth = make_synthetic(10, d=32, n_features=64, kind="sharkey", seed=0)
    ens = SAEEnsemble(SAEConfig(d_in=32, d_sae=64, k=4, n_saes=2, seed=0))
    assert max(mmcs(ens.dictionary(i), truth) for i in range(2)) < 0.6


def test_save_load_round_trip_and_mismatch(tmp_path):
    ens = SAEEnsemble(SAEConfig(d_in=12, d_sae=24, k=3, n_saes=2, meta=dict(model="tiny", hook_point="blocks.0.hook_resid_post")))
    with torch.no_grad(): ens.b_dec.add_(0.5)
    ens.save(tmp_path/"e", step=7)
    back = SAEEnsemble.load(tmp_path/"e", expect=dict(model="tiny", d_sae=24))
    x = torch.randn(5, 12)
    torch.testing.assert_close(back(x)[0], ens(x)[0])
    assert back.cfg == ens.cfg
    with pytest.raises(ArtifactError, match="model='tiny'.*model='SmolLM2'"):
        SAEEnsemble.load(tmp_path/"e", expect=dict(model="SmolLM2"))
    cfg = json.loads((tmp_path/"e"/"config.json").read_text()); cfg["sae"]["n_saes"] = 3
    (tmp_path/"e"/"config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="W_enc"):
        SAEEnsemble.load(tmp_path/"e")
    (tmp_path/"e"/"tensors.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError, match="corrupt"):
        SAEEnsemble.load(tmp_path/"e")


@pytest.mark.parametrize("arch", ["topk", "topk_tied", "relu_l1", "batchtopk"])
def test_saelens_format_round_trip(tmp_path, arch):
    ens = SAEEnsemble(SAEConfig(d_in=12, d_sae=24, k=3, n_saes=2, architecture=arch, l1_coeff=0.1,
                                meta=dict(model="m", hook_point="blocks.1.hook_resid_post")))
    if not ens.arch.tied:
        with torch.no_grad(): ens.b_dec.normal_(); ens.b_enc.normal_()
    folders = ens.to_saelens(tmp_path, saelens_relu=arch == "topk_tied")
    assert [f.name for f in folders] == ["sae_0", "sae_1"]
    cfg = json.loads((folders[1]/"cfg.json").read_text())
    w = load_file(str(folders[1]/"sae_weights.safetensors"))
    assert cfg["d_in"] == 12 and cfg["d_sae"] == 24 and cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert w["W_enc"].shape == (12, 24) and w["W_dec"].shape == (24, 12) and w["b_enc"].shape == (24,) and w["b_dec"].shape == (12,)
    back = SAEEnsemble.from_saelens(tmp_path)
    x = torch.randn(6, 12)
    torch.testing.assert_close(back(x)[0], ens(x)[0])
    assert back.cfg.architecture == arch and back.cfg.l1_coeff == pytest.approx(0.1)
    if arch == "topk":  # the file's semantics are SAELens's TopK: topk of (x - b_dec) W_enc + b_enc, ReLU, W_dec, + b_dec
        pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        v, i = pre.topk(3, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, i, v.relu())
        torch.testing.assert_close(z @ w["W_dec"] + w["b_dec"], ens(x)[0][1])


def test_saelens_folders_must_agree(tmp_path):
    SAEEnsemble(SAEConfig(d_in=12, d_sae=24, k=3)).to_saelens(tmp_path/"a")
    SAEEnsemble(SAEConfig(d_in=12, d_sae=48, k=3)).to_saelens(tmp_path/"b")
    with pytest.raises(ArtifactError, match="d_sae=48"):
        SAEEnsemble.from_saelens([tmp_path/"a"/"sae_0", tmp_path/"b"/"sae_0"])
    with pytest.raises(ArtifactError, match="cfg.json is missing"):
        SAEEnsemble.from_saelens([tmp_path/"nothing"])


# --- trainer, checkpoints -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dead_handling", ["reinit", "auxk"])
def test_resume_matches_uninterrupted_run(tmp_path, data, monkeypatch, dead_handling):
    x, truth = data
    kw = dict(SMALL, mfr_alpha=1.0, recompute_every=3, dead_handling=dead_handling, reinit_every=5, dead_steps=3,
              true_features=truth, eval_every=6)
    full, m_full = train_saes(x, **kw)
    orig = SAETrainer.step
    def dies_at_13(self, xb, batch_index=None):
        if self.step_no == 13: raise KeyboardInterrupt
        return orig(self, xb, batch_index)
    monkeypatch.setattr(SAETrainer, "step", dies_at_13)
    with pytest.raises(KeyboardInterrupt):
        train_saes(x, **kw, checkpoint_dir=tmp_path, checkpoint_every=5)
    monkeypatch.setattr(SAETrainer, "step", orig)
    assert json.loads((tmp_path/"latest.json").read_text())["step"] == 10
    resumed, m_res = train_saes(x, **kw, checkpoint_dir=tmp_path, checkpoint_every=5)
    for name, p in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], p, atol=1e-6, rtol=1e-5)
    assert len(m_res) == len(m_full)
    np.testing.assert_allclose(m_res.mse.values, m_full.mse.values, rtol=1e-5)
    np.testing.assert_allclose(m_res.reinits.values, m_full.reinits.values)


def test_resume_from_activation_store(tmp_path, data, monkeypatch):
    from interpwb.activations import ActivationStore
    x = data[0]
    store = ActivationStore.create(tmp_path/"store", d=32, model="synthetic", hook_point="none")
    for i in range(4): store.append(x[i * 256:(i + 1) * 256])
    kw = dict(SMALL, steps=12)
    full, _ = train_saes(store, **kw)
    orig = SAETrainer.step
    def dies_at_8(self, xb, batch_index=None):
        if self.step_no == 8: raise KeyboardInterrupt
        return orig(self, xb, batch_index)
    monkeypatch.setattr(SAETrainer, "step", dies_at_8)
    with pytest.raises(KeyboardInterrupt):
        train_saes(store, **kw, checkpoint_dir=tmp_path/"ck", checkpoint_every=6)
    monkeypatch.setattr(SAETrainer, "step", orig)
    resumed, _ = train_saes(store, **kw, checkpoint_dir=tmp_path/"ck")  # re-streams the store, skipping 6 batches
    torch.testing.assert_close(resumed.W_dec, full.W_dec)
    again, _ = train_saes(store, **kw, checkpoint_dir=tmp_path/"ck")  # already complete: loads and returns
    torch.testing.assert_close(again.W_dec, full.W_dec)


def test_checkpoint_mismatch_and_corruption_are_clear(tmp_path, data):
    x = data[0]
    train_saes(x, **SMALL, checkpoint_dir=tmp_path, checkpoint_every=12)
    with pytest.raises(ArtifactError, match="n_saes=2.*n_saes=3"):
        train_saes(x, **(SMALL | dict(n_saes=3)), checkpoint_dir=tmp_path)
    with pytest.raises(ArtifactError, match="lr=0.01.*lr=0.001"):
        train_saes(x, **(SMALL | dict(lr=1e-3)), checkpoint_dir=tmp_path)
    latest = json.loads((tmp_path/"latest.json").read_text())["folder"]
    (tmp_path/latest/"tensors.safetensors").write_bytes(b"broken")
    with pytest.raises(ArtifactError, match="corrupt"):
        train_saes(x, **SMALL, checkpoint_dir=tmp_path)
    (tmp_path/"latest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="latest.json is corrupt"):
        train_saes(x, **SMALL, checkpoint_dir=tmp_path)


def test_save_killed_midway_keeps_previous_checkpoint(tmp_path, data, monkeypatch):
    import interpwb.core
    x = data[0]
    ens = SAEEnsemble(SAEConfig(d_in=32, d_sae=64, k=4, n_saes=2))
    tr = SAETrainer(ens, steps=10, lr=1e-2)
    for s in range(3): tr.step(x[s * 64:(s + 1) * 64])
    import pandas as pd
    save_checkpoint(tmp_path, tr, pd.DataFrame({"step": [0, 1, 2]}), {"lr": 1e-2})
    saved_W = ens.W_dec.detach().clone()
    tr.step(x[:64])
    real_save = interpwb.core.save_file
    def killed(tensors, path, *a, **k):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(interpwb.core, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, tr, pd.DataFrame({"step": [0, 1, 2, 3]}), {"lr": 1e-2})
    monkeypatch.setattr(interpwb.core, "save_file", real_save)
    fresh = SAETrainer(SAEEnsemble(SAEConfig(d_in=32, d_sae=64, k=4, n_saes=2)), steps=10, lr=1e-2)
    metrics = load_checkpoint(tmp_path, fresh, {"lr": 1e-2})
    assert fresh.step_no == 3 and len(metrics) == 3
    torch.testing.assert_close(fresh.ens.W_dec.detach(), saved_W)


def test_metrics_columns_and_learning(data):
    x, truth = data
    ens, m = train_saes(x, **(SMALL | dict(steps=40)), mfr_alpha=1.0, true_features=truth, eval_every=20)
    for col in ("step", "sae", "mse", "fvu", "l0", "dead_frac", "mmcs_pairs", "mmcs_to_truth", "mfr_penalty", "lr", "seed"):
        assert col in m.columns, col
    first, last = m[m.step == 0], m[m.step == 39]
    assert (last.fvu.values < first.fvu.values).all()
    assert (last.l0 <= 4).all() and last.mmcs_pairs.notna().all() and last.mmcs_to_truth.notna().all()
    assert ens.dictionaries().shape == (2, 64, 32)

def test_reinit_rule_never_resets_an_sae_in_the_last_half_window(data):
    x, _ = data
    kw = dict(SMALL, dead_handling="reinit", reinit_threshold=float("-inf"), reinit_every=10)  # -inf: reset whenever checked
    kw["steps"] = 20
    _, m = train_saes(x, **kw)
    last = m[m.step == m.step.max()]
    assert (last.reinits == 1).all(), last.reinits.tolist()   # the check at step 10 fired, the one at step 20 did not
