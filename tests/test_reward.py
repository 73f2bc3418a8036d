"Known token reward (VADER / user mappings) and the RL fine-tuning loop, on the tiny random model."
import math
import pytest, torch
from interpwb.core import ArtifactError, cache_dir, set_progress
from interpwb.models import load_hf, tiny_model
from interpwb.rl.reward import TokenReward, read_vader_lexicon, read_reward_mapping, token_reward_figure
from interpwb.rl.train import RLConfig, TRAIN_PROMPTS, HELDOUT_PROMPTS, train_rl, save_tuned, group_advantages
from interpwb.rl.train import kl_per_token
from interpwb.models import load_tuned_hf, load_tuned_model
from interpwb.textstats import distinct_n
from interpwb.rl.evaluate import evaluate_policy

TINY = "tiny-llama-L2-d64-s0"

def tiny_hf():
    "A fresh plain HF copy of the tiny model (train_rl wraps it in place)."
    tiny_model()  # makes the cached folder if missing
    return load_hf(cache_dir("models")/TINY)

@pytest.fixture(scope="module")
def tok():
    return tiny_hf()[1]

def ids(tok, s): return tok(s, add_special_tokens=False)["input_ids"]

# ---- known reward -------------------------------------------------------------------------------------------------
def test_hand_mapping_is_valence_over_scale_case_insensitive(tok):
    r = TokenReward.from_mapping({"good": 2.0, "BAD": -3.0}, tok, scale=2.0)
    assert r.values[ids(tok, " Good")[0]].item() == 1.0
    assert r.values[ids(tok, " good")[0]].item() == 1.0
    assert r.values[ids(tok, " bad")[0]].item() == -1.5
    assert r.values[ids(tok, " the")[0]].item() == 0.0
    assert math.isclose(r.text_reward("good good bad").item(), 0.5, abs_tol=1e-6)
    assert math.isclose(r.text_reward(["good bad"], reduce="mean").item(), -0.25, abs_tol=1e-6)

def test_mapping_policies_for_duplicates_unmatched_words_and_settings(tok):
    import warnings
    clash = {"Good": 1.0, "good": 3.0, "bad": -2.0}
    g = ids(tok, " good")[0]
    with pytest.raises(ValueError, match="duplicates="): TokenReward.from_mapping(clash, tok)        # default: an error
    assert TokenReward.from_mapping(clash, tok, duplicates="last").values[g].item() == 3.0
    assert TokenReward.from_mapping(clash, tok, duplicates="mean").values[g].item() == 2.0
    multi = {"good": 1.0, "not bad": 1.0}                                                           # "not bad" is 2 tokens
    with pytest.raises(ValueError, match="not bad"): TokenReward.from_mapping(multi, tok)             # default: an error
    with pytest.warns(UserWarning, match="not bad"): warned = TokenReward.from_mapping(multi, tok, unmatched="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error"); ignored = TokenReward.from_mapping(multi, tok, unmatched="ignore")
    assert torch.equal(warned.values, ignored.values) and warned.values[g].item() == 1.0
    r = TokenReward.from_mapping({"good": 30.0}, tok, clip=5.0, source="mine", vocab_size=len(tok) + 7)
    assert (r.clip, r.source, len(r.values), r.values[g].item()) == (5.0, "mine", len(tok) + 7, 5.0)
    for bad in (dict(scale=0), dict(clip=0), dict(scale=-1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))): TokenReward.from_mapping({"good": 1.0}, tok, **bad)
    with pytest.raises(ValueError, match="clip"): TokenReward(torch.zeros(3), clip=0)

def test_text_totals_and_token_entries_are_clipped(tok):
    r = TokenReward.from_mapping({"huge": 30.0, "tiny": -4.0}, tok, clip=10.0)
    assert r.values[ids(tok, " huge")[0]].item() == 10.0          # token entry clipped
    assert r.text_reward("huge huge").item() == 10.0               # 20 clipped to 10
    assert r.text_reward("tiny tiny tiny").item() == -10.0         # -12 clipped to -10
    assert r.text_reward("tiny tiny tiny", reduce="mean").item() == -4.0

def test_non_numeric_entry_raises_naming_it(tok, tmp_path):
    with pytest.raises(ValueError, match="'meh' -> 'lots'"):
        TokenReward.from_mapping({"good": 1, "meh": "lots"}, tok)
    csv = tmp_path/"map.csv"; csv.write_text("token,reward\ngood,1.5\nfine,oops\n")
    with pytest.raises(ValueError, match="'fine' -> 'oops'"):
        read_reward_mapping(csv)
    with pytest.raises(ValueError, match="not a finite number"):
        read_reward_mapping({"x": float("nan")})

def test_csv_mapping_matches_dict_mapping(tok, tmp_path):
    csv = tmp_path/"map.csv"; csv.write_text("token,reward\ngood,1.5\nawful,-2\n")
    a, b = TokenReward.from_mapping(csv, tok), TokenReward.from_mapping({"good": 1.5, "awful": -2}, tok)
    assert torch.equal(a.values, b.values) and (a.values != 0).sum() > 2

def test_vader_reward_is_lexicon_valence_over_5(tok):
    lex = read_vader_lexicon()
    assert len(lex) > 7000 and lex["good"] > 0 > lex["terrible"]
    r = TokenReward.from_vader(tok)
    assert math.isclose(r.values[ids(tok, " great")[0]].item(), lex["great"]/5, abs_tol=1e-6)
    assert r.text_reward("a great and wonderful film").item() > 0 > r.text_reward("a terrible and boring film").item()

def test_token_reward_figure_has_one_cell_per_token(tok):
    r = TokenReward.from_vader(tok)
    text = "The story was wonderful but the ending was sad."
    fig = token_reward_figure(r, text, width=4)
    cells = [v for row in fig.data[0].z for v in row if v is not None]
    assert len(cells) == len(ids(tok, text)) and max(cells) > 0 > min(cells)

# ---- RL pieces ------------------------------------------------------------------------------------------------------
def test_rloo_advantages_sum_to_zero_per_group_and_ignore_own_reward():
    adv = group_advantages(torch.tensor([1., 2, 3, 10, 10, 10]), 3)
    assert torch.allclose(adv.view(2, 3).sum(1), torch.zeros(2))
    assert torch.allclose(adv[:3], torch.tensor([-1.5, 0, 1.5]))

def test_kl_estimate_is_zero_when_equal_and_nonnegative():
    a = -torch.rand(100) * 5
    assert kl_per_token(a, a).abs().max().item() == 0
    assert (kl_per_token(a, -torch.rand(100) * 5) >= 0).all()

def test_distinct_n_counts_repetition():
    assert distinct_n(["good good good good"], 1) == 0.25
    assert distinct_n(["a b", "c d"], 1) == 1.0

def test_prompts_are_short_and_heldout_is_disjoint(tok):
    assert not set(TRAIN_PROMPTS) & set(HELDOUT_PROMPTS)
    assert all(2 <= len(ids(tok, p)) <= 10 for p in TRAIN_PROMPTS + HELDOUT_PROMPTS)

FAST = dict(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=4, lr=1e-2)

def test_kl_is_zero_at_step_0_and_positive_after_updates():
    set_progress(False)
    hf, tok = tiny_hf()
    toy = TokenReward((torch.arange(len(tok)) % 3 == 0).float(), tokenizer=tok)
    run = train_rl(hf, tok, toy, TRAIN_PROMPTS, RLConfig(**{**FAST, "steps": 3}), base_name=TINY)
    assert run.log.kl_per_token[0] == 0.0
    assert run.log.kl_per_token[2] > 0.0
    assert {"reward_mean", "reward_std", "kl_per_token", "sample_text"} <= set(run.log.columns)

def _adapter(seed):
    hf, tok = tiny_hf()
    toy = TokenReward((torch.arange(len(tok)) % 2 == 0).float(), tokenizer=tok)
    run = train_rl(hf, tok, toy, TRAIN_PROMPTS, RLConfig(**FAST, seed=seed), base_name=TINY)
    from peft import get_peft_model_state_dict
    return run, {k: v.clone() for k, v in get_peft_model_state_dict(run.policy).items()}

def test_same_seed_gives_identical_adapters_different_seed_differs():
    set_progress(False)
    (_, a), (_, b), (_, c) = _adapter(5), _adapter(5), _adapter(6)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)

def test_loop_raises_a_learnable_toy_reward():
    "A dense reward aligned with one direction of the unembedding: the policy must learn to move towards it."
    set_progress(False)
    hf, tok = tiny_hf()
    with torch.no_grad(): hf.model.norm.weight.mul_(30)     # sharpen the random model's near-uniform outputs
    E = hf.get_output_embeddings().weight.detach()
    r = E @ torch.randn(E.shape[1], generator=torch.Generator().manual_seed(0))
    toy = TokenReward(((r - r.mean())/r.std()).clamp(-3, 3)/3, tokenizer=tok, source="toy-direction")
    run = train_rl(hf, tok, toy, TRAIN_PROMPTS, RLConfig(steps=20, prompts_per_step=4, group_size=4, max_new_tokens=4,
                                                         lr=1e-2, kl_coef=0.0, seed=0), base_name=TINY)
    first, last = run.log.reward_mean[:5].mean(), run.log.reward_mean[-5:].mean()
    assert last > first + 1.0, run.log.reward_mean.round(2).tolist()

def test_saved_adapter_reloads_as_bridge_with_equal_logits_and_rejects_other_bases(tmp_path):
    set_progress(False)
    run, _ = _adapter(1)
    folder = save_tuned(run, tmp_path/"adapter")
    assert (folder/"tensors.safetensors").exists() and (folder/"log.json").exists()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    tuned = load_tuned_model(folder, device="cpu")
    assert tuned.cfg.model_name == f"{TINY}+adapter"
    x = torch.tensor([[504, 2342, 436, 17]])
    with torch.no_grad(): assert torch.allclose(tuned(x), run.policy(input_ids=x).logits, atol=1e-4)
    other = tiny_model(d_model=32).cfg.model_name
    with pytest.raises(ArtifactError, match="for base model"):
        load_tuned_model(folder, base=other)
    with pytest.raises(ArtifactError, match="d_model=64"):            # same name claimed, wrong shapes
        load_tuned_hf(folder, base=load_hf(cache_dir("models")/other), base_name=TINY)

def test_evaluate_policy_scores_every_sample(tok):
    hf, tok = tiny_hf()
    toy = TokenReward((torch.arange(len(tok)) % 2 == 0).float(), tokenizer=tok)
    df = evaluate_policy(hf, tok, toy, HELDOUT_PROMPTS[:3], n_per_prompt=2, max_new_tokens=3)
    assert len(df) == 6 and (df.base_perplexity > 1).all() and df.reward.between(0, 3).all()
    again = evaluate_policy(hf, tok, toy, HELDOUT_PROMPTS[:3], n_per_prompt=2, max_new_tokens=3)
    assert df.completion.tolist() == again.completion.tolist()       # sampling is seeded

def test_token_reward_figure_cells_are_the_tokens_and_their_rewards_in_reading_order(tok):
    r = TokenReward.from_vader(tok)
    text = "The story was wonderful but the ending was sad and grim."
    fig, toks = token_reward_figure(r, text, width=4), ids(tok, text)
    hm = fig.data[0]
    assert len(hm.z) == math.ceil(len(toks) / 4) and all(len(row) == 4 for row in hm.z)
    words = [w for row in hm.text for w in row][:len(toks)]
    assert words == [tok.decode([i]) for i in toks]                                    # no special tokens added
    cells = [v for row in hm.z for v in row][:len(toks)]
    assert cells == pytest.approx(r.token_rewards(torch.tensor(toks)).tolist())
    m = max(abs(v) for v in cells)
    assert (hm.zmin, hm.zmax, hm.zmid) == (pytest.approx(-m), pytest.approx(m), 0)     # white is zero reward
    assert f"{r.sequence_reward(torch.tensor([toks])).item():+.2f}" in fig.layout.title.text

def test_readers_skip_blank_headers_and_malformed_lines(tmp_path, monkeypatch):
    import interpwb.rl.reward as reward
    lex = tmp_path/"vader_lexicon.txt"
    lex.write_text("good\t1.9\t0.9\t[2, 2]\n\nlonely\n\t3.0\t0\t[]\nmeh\t-0.3\n", encoding="utf-8")
    monkeypatch.setattr(reward, "vader_lexicon_path", lambda: lex)
    assert read_vader_lexicon() == {"good": 1.9, "meh": -0.3}      # 2-column lines count; 1-column and empty words do not
    csv = tmp_path/"r.csv"
    csv.write_text("word,reward\n\n  ,  \ngood,1\nbad, -2\n", encoding="utf-8")
    assert read_reward_mapping(csv) == {"good": 1.0, "bad": -2.0}   # header and blank / whitespace-only rows skipped
    csv.write_text("good,1\nbad,-2\n", encoding="utf-8")
    assert read_reward_mapping(csv) == {"good": 1.0, "bad": -2.0}   # no header: the first row is data
    csv.write_text("", encoding="utf-8")
    assert read_reward_mapping(csv) == {}

def test_vader_path_error_and_from_vader_settings(monkeypatch, tok):
    import importlib.util, interpwb.rl.reward as reward
    r = TokenReward.from_vader(tok, scale=2.0, clip=0.5, vocab_size=len(tok) + 3)
    g = ids(tok, " good")[0]
    assert (r.source, r.clip, len(r.values)) == ("vader/2", 0.5, len(tok) + 3)
    assert r.values[g].item() == pytest.approx(min(read_vader_lexicon()["good"] / 2.0, 0.5))
    bad = TokenReward.from_mapping({"awful": -30.0}, tok, clip=5.0)
    assert bad.values[ids(tok, " awful")[0]].item() == -5.0           # clipped from below too
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install vaderSentiment"): reward.vader_lexicon_path()
