"Feature diff: layer choice, bad input, dictionary provenance checks, a planted model-specific direction, crosscoder scaling check, save/load."
import pytest, torch
import pandas as pd
from interpwb.core import ArtifactError, set_progress
from interpwb.model_diff.feature_diff import FeatureDiff
from interpwb.model_diff.pairs import PairActivations, check_same_architecture, choose_layers, collect_pair
from interpwb.model_diff.pairs import parameter_divergence, perturbed_copy, review_texts
from interpwb.model_diff.crosscoder import Crosscoder, crosscoder_table, train_crosscoder
from interpwb.model_diff.dictionaries import fit_dictionary, load_dictionary, reward_correlation, logit_lens
from interpwb.model_diff.dictionaries import reward_integrity
from interpwb.rl.reward import TokenReward

HOOK = "blocks.1.hook_mlp_out"

@pytest.fixture(scope="module")
def tuned(tiny):
    set_progress(False)
    return perturbed_copy(tiny, [1], scale=0.5, seed=3)

@pytest.fixture(scope="module")
def pair(tiny, tuned): return collect_pair(tiny, tuned, review_texts(24, seed=1), HOOK, max_length=24)

@pytest.fixture(scope="module")
def reward(tiny): return TokenReward.from_vader(tiny.tokenizer, vocab_size=tiny.cfg.d_vocab)

def test_divergence_points_at_the_perturbed_layer(tiny, tuned):
    div = parameter_divergence(tiny, tuned)
    assert div.set_index("layer").abs_diff.to_dict()[0] == 0
    assert choose_layers(div, n=1) == [1]
    assert choose_layers(div, layers=[0, 1]) == [0, 1]
    with pytest.raises(ValueError, match="do not exist"): choose_layers(div, layers=[9])

def test_different_width_is_an_error_naming_both(tiny):
    from interpwb.models import tiny_model
    other = tiny_model(d_model=32)
    with pytest.raises(ValueError, match="d_model': 64.*d_model': 32"): check_same_architecture(tiny, other)
    with pytest.raises(ValueError, match="differ in architecture"): parameter_divergence(tiny, other)

def test_pair_rows_are_the_same_tokens(pair, tuned, tiny):
    assert pair.base.shape == pair.tuned.shape and len(pair.tokens) == len(pair.index)
    assert pair.meta["base"] != pair.meta["tuned"]
    assert (pair.index[:, 1] > 0).all()  # first token (attention sink) dropped

def test_dictionary_for_another_model_or_hook_fails_on_load(pair, tmp_path):
    fit_dictionary(pair.base, 32, pair.meta["base"], HOOK, tmp_path/"d", k=4, steps=20)
    assert load_dictionary(tmp_path/"d", pair.meta["base"], HOOK, 64).cfg.d_sae == 32
    with pytest.raises(ArtifactError, match="model"): load_dictionary(tmp_path/"d", pair.meta["tuned"], HOOK)
    with pytest.raises(ArtifactError, match="hook_point"): load_dictionary(tmp_path/"d", pair.meta["base"], "blocks.0.hook_mlp_out")
    with pytest.raises(ArtifactError, match="d_in"): load_dictionary(tmp_path/"d", pair.meta["base"], HOOK, 576)

def test_reward_correlation_and_logit_lens(tiny):
    r = torch.tensor([0., 1, -1, 2, 0])
    c = reward_correlation(torch.stack([r, 3 * r + 1, torch.zeros(5)], 1), r)
    assert torch.allclose(c, torch.tensor([1., 1, 0]), atol=1e-6)
    # a direction equal to a token's unembedding column / norm weight promotes that token
    from interpwb.model_diff.dictionaries import _final_norm_weight
    tok = 1234
    direction = tiny.W_U[:, tok].float() / _final_norm_weight(tiny)
    _, ids = logit_lens(direction[None], tiny, k=1)
    assert ids[0, 0].item() == tok
    with pytest.raises(ValueError, match="d_model"): logit_lens(torch.zeros(1, 7), tiny)

def test_latent_scaling_flags_a_shared_concept():
    cc = Crosscoder(8, 2)
    with torch.no_grad():
        for p in (cc.W_enc, cc.b_enc, cc.b_dec, cc.W_dec): p.zero_()
        cc.W_enc[1, 0, 0] = 1; cc.W_dec[1, 0, 0] = 1   # latent 0: decoded only into the tuned model
    xt = torch.zeros(50, 8); xt[:, 0] = torch.linspace(0.5, 2, 50)
    idx = torch.stack([torch.arange(50), torch.ones(50, dtype=torch.long)], 1)
    mk = lambda xb: PairActivations(xb, xt, torch.zeros(50, dtype=torch.long), idx, [""], {})
    shared = crosscoder_table(cc, mk(xt.clone()), torch.zeros(2))
    specific = crosscoder_table(cc, mk(torch.zeros(50, 8)), torch.zeros(2))
    assert shared.cls[0] == specific.cls[0] == "tuned-only"
    assert shared.scaling_says_shared[0] and not specific.scaling_says_shared[0]
    assert shared.nu[0] == pytest.approx(1, abs=1e-4) and specific.nu[0] == pytest.approx(0, abs=1e-4)

def test_crosscoder_cache_is_checked(pair, tmp_path):
    cc = train_crosscoder(pair, 16, steps=10, folder=tmp_path/"cc")
    assert train_crosscoder(pair, 16, steps=10, folder=tmp_path/"cc").W_dec.allclose(cc.W_dec)
    other = PairActivations(pair.base, pair.tuned, pair.tokens, pair.index, pair.texts, dict(pair.meta, hook_point="x"))
    with pytest.raises(ArtifactError, match="hook_point"): train_crosscoder(other, 16, folder=tmp_path/"cc")

def test_full_run_finds_the_planted_direction_and_round_trips(tiny, tuned, reward, tmp_path):
    fd = FeatureDiff.run(tiny, tuned, review_texts(24, seed=1), reward, n_layers=1, k=4, steps=60, max_length=24,
                         cache=tmp_path/"cache")
    f = fd.features
    assert fd.meta["layers"] == [1] and len(f) == 2 * 128  # the large dictionaries of both models
    assert set(f.cls) <= {"shared", "tuned-only", "base-only"}
    # the rank-one change writes one new direction u into blocks.1 MLP out: the tuned dictionary should hold a feature
    # close to u that the base dictionary lacks
    w = dict(tuned.named_parameters()); wb = dict(tiny.named_parameters())
    key = [n for n in w if "layers.1." in n and "down_proj" in n][0]
    u = torch.linalg.svd((w[key] - wb[key]).float())[0][:, 0]
    from interpwb.model_diff.dictionaries import load_dictionary as ld
    dt = ld(tmp_path/"cache"/"L1"/f"{fd.meta['tuned']}-large", fd.meta["tuned"], HOOK).dictionary(0)
    db = ld(tmp_path/"cache"/"L1"/f"{fd.meta['base']}-large", fd.meta["base"], HOOK).dictionary(0)
    assert (dt @ u).abs().max() > (db @ u).abs().max()
    summary = reward_integrity(f, real_only=False)
    assert list(summary.group[:3]) == ["tuned-only", "tuned shared", "base-only"]
    fd.save(tmp_path/"res")
    back = FeatureDiff.load(tmp_path/"res")
    pd.testing.assert_frame_equal(back.features, f, check_dtype=False)
    with pytest.raises(ArtifactError, match="tuned="): FeatureDiff.load(tmp_path/"res", expect=dict(tuned="something else"))

def _always_on_data(n=4096, d=32, seed=0):
    "Rare sparse features plus one present in every row with a varying size (like an LM activation's dominant part)."
    g = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(64, d, generator=g), dim=1)
    p = torch.full((64,), 0.03); p[0] = 1.0
    mag = 0.5 + torch.rand(n, 64, generator=g); mag[:, 0] = 4.0 * torch.rand(n, generator=g)
    return ((torch.rand(n, 64, generator=g) < p).float() * mag) @ feats

def test_diff_dictionaries_are_not_wiped_by_the_reference_reinit_rule(tmp_path):
    import json
    from interpwb.sae.train import train_saes
    x = _always_on_data()
    _, log = train_saes(x, n_saes=1, d_sae=128, k=4, steps=300, batch_size=256, dead_handling="reinit")
    assert log.reinits.max() > 0          # on such data the reference rule re-initialises the whole SAE...
    fit_dictionary(x, 128, "m", "h", tmp_path/"d", k=4, steps=300, batch_size=256)
    final = json.loads((tmp_path/"d"/"config.json").read_text())["final"]
    assert final["reinits"] == 0          # ...a diff's dictionary never is, and it reconstructs better for it
    assert final["fvu"] < 0.8 * log.fvu.iloc[-1], (final["fvu"], log.fvu.iloc[-1])
    with pytest.raises(ArtifactError, match="dead_handling='auxk' \\(asked 'reinit'\\)"):
        fit_dictionary(x, 128, "m", "h", tmp_path/"d", k=4, steps=300, batch_size=256, dead_handling="reinit")
