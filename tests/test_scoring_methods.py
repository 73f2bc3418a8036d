"""Scores and pooled activations against independent manual computations (one unpadded sequence at a time, plain
log-softmax, direct `run_with_cache` rows), and the coherence gate at its boundaries."""
import math
import numpy as np, pandas as pd, pytest, torch
from interpwb.models import chat_prompt, load_hf
from interpwb.core import cache_dir
from interpwb.activations import collect_activations
from interpwb.scoring import continuation_logprobs, perplexity, option_logprobs
from interpwb.textstats import coherence, is_coherent, distinct_n, repetition_rate

TEXTS = ["Hi", "A much longer text that goes on for quite a few more tokens than the first one does.", "Mid-size text here."]
HOOK = "blocks.1.hook_resid_post"

def _rows(model, text:str) -> torch.Tensor:
    "The hook's activations of one unpadded text, [pos, d] (the reference the batched collection must reproduce)."
    toks = torch.tensor([model.tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad(): return model.run_with_cache(toks, names_filter=[HOOK])[1][HOOK][0].float()

@pytest.mark.parametrize("side", ["right", "left"])
def test_pooled_activations_equal_direct_rows_of_each_text(tiny, side):
    ref = [_rows(tiny, t) for t in TEXTS]
    last = collect_activations(tiny, TEXTS, HOOK, pool="last", batch_size=3, padding_side=side)[HOOK]
    longer = TEXTS[1:] + ["Two words"]   # drop_first leaves a 1-token text ("Hi") nothing to pool: refused, below
    mean = collect_activations(tiny, longer, HOOK, pool="mean", batch_size=3, padding_side=side, drop_first=True)[HOOK]
    every = collect_activations(tiny, longer, HOOK, pool="all", batch_size=3, padding_side=side, drop_first=True)
    for i, r in enumerate(ref): torch.testing.assert_close(last[i], r[-1], atol=1e-4, rtol=1e-4)
    for i, r in enumerate(_rows(tiny, t) for t in longer):
        torch.testing.assert_close(mean[i], r[1:].mean(0), atol=1e-4, rtol=1e-4)   # the mean over real tokens after the first
        torch.testing.assert_close(every[HOOK][every.index[:, 0] == i], r[1:], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"index \[0\] have 1 token"):   # not a silent row of zeros
        collect_activations(tiny, TEXTS, HOOK, pool="mean", drop_first=True)

def _manual_logprobs(model, ids:list[int], start:int) -> torch.Tensor:
    with torch.no_grad(): lp = model(torch.tensor([ids]))[0].float().log_softmax(-1)
    return torch.stack([lp[t - 1, ids[t]] for t in range(start, len(ids))])

def test_continuation_logprobs_equal_an_unpadded_manual_computation(tiny):
    tok = tiny.tokenizer
    prompts, conts = ["The film was", "Pick one:", "It was totally un"], [" very good indeed", " stay silent", "believable"]
    got = continuation_logprobs(tiny, prompts, conts, batch_size=2)
    for p, c, lp in zip(prompts, conts, got):
        pi = tok(p, add_special_tokens=False)["input_ids"]; ci = tok(c, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(lp, _manual_logprobs(tiny, pi + ci, len(pi)), atol=1e-4, rtol=1e-4)
    joint = continuation_logprobs(tiny, prompts[2:], conts[2:], joint=True)[0]
    full = tok(prompts[2] + conts[2], add_special_tokens=False)["input_ids"]; pi = tok(prompts[2], add_special_tokens=False)["input_ids"]
    k = next(i for i in range(len(full)) if i >= len(pi) or pi[i] != full[i])
    torch.testing.assert_close(joint, _manual_logprobs(tiny, full, k), atol=1e-4, rtol=1e-4)
    ppl = perplexity(tiny, prompts, conts)
    assert ppl == pytest.approx([math.exp(-float(lp.mean())) for lp in got], rel=1e-5)
    lp_opt = option_logprobs(tiny, prompts[:1], ["very good indeed", "bad"])
    assert lp_opt[0, 0].item() == pytest.approx(float(continuation_logprobs(tiny, prompts[0], [" very good indeed"], joint=True)[0].sum()), abs=1e-4)

def test_text_probs_read_the_continuation_rows_only(tiny):
    from interpwb.steering.classifier import train_classifier
    from interpwb.steering.evaluate import text_probs
    g = torch.Generator().manual_seed(0)
    clf = train_classifier(torch.randn(60, tiny.cfg.d_model, generator=g), torch.arange(3).repeat(20), ["a", "b", "c"],
                           kind="linear", epochs=3, val_frac=0.0, meta=dict(hook_point=HOOK))
    prompt, cont = "Tell me something.", " The river runs past the mill."
    got = text_probs(clf, tiny, [prompt], [cont])[0]
    pre = chat_prompt(tiny, prompt)
    pi, ci = tiny.tokenizer(pre, add_special_tokens=False)["input_ids"], tiny.tokenizer(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad(): acts = tiny.run_with_cache(torch.tensor([pi + ci]), names_filter=[HOOK])[1][HOOK][0, len(pi):]
    with torch.no_grad(): want = torch.sigmoid(clf(acts)).mean(0).numpy()
    assert got == pytest.approx(want, abs=1e-5)
    assert np.isnan(text_probs(clf, tiny, [prompt], [""])[0]).all()

def test_completion_logprobs_equal_each_row_scored_alone(tiny):
    from interpwb.rl.train import sample_completions, completion_logprobs
    from interpwb.core import seed_everything
    hf, tok = load_hf(cache_dir("models")/tiny.cfg.model_name)
    seed_everything(0)
    s = sample_completions(hf, tok, ["The movie was", "I watched this long film about"], max_new_tokens=5)
    got = completion_logprobs(hf, s).detach()
    for r in range(2):
        real = s.attention_mask[r].bool()
        ids = s.tokens[r][real].tolist()
        n_prompt = int(s.attention_mask[r, :s.prompt_width].sum())
        with torch.no_grad(): lp = hf(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        gen = s.gen_mask[r].bool()
        want = torch.stack([lp[n_prompt - 1 + t, ids[n_prompt + t]] for t in range(int(gen.sum()))])
        torch.testing.assert_close(got[r][gen], want, atol=1e-4, rtol=1e-4)

def test_k3_kl_estimator_averages_to_the_true_kl():
    from interpwb.rl.train import kl_per_token
    g = torch.Generator().manual_seed(0)
    p, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.2, 0.5, 0.3])
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    est = kl_per_token(p.log()[x], q.log()[x])
    assert (est >= 0).all() and est.mean().item() == pytest.approx(float((p * (p / q).log()).sum()), rel=0.02)

# ---------- the coherence gate at its boundaries ----------
def test_coherence_gate_boundaries():
    s = "A calm answer about rivers and hills."
    c = coherence([s, s, s, "", "Fine."], perplexities=[4.0, 4.0000001, np.nan, 1.0, 1.0], reference=2.0)
    assert c.reason.tolist() == ["", "perplexity ratio", "no tokens", "too short", ""]   # ratio exactly 2 passes
    assert is_coherent(["word " * 2 + "a b"], max_repetition=0.0).tolist() == [True]    # no repeated 3-gram at all
    half = "a b c a b c"    # 4 trigrams, 1 repeats an earlier one... (abc, bca, cab, abc): 1/4 repeated
    assert repetition_rate(half) == pytest.approx(0.25)
    assert is_coherent([half], max_repetition=0.25, max_repeat=10).tolist() == [True]
    assert is_coherent([half], max_repetition=0.24, max_repeat=10).tolist() == [False]
    assert is_coherent(["very very very good"]).tolist() == [True] and is_coherent(["very very very very good"]).tolist() == [False]

def test_distinct_n_pools_texts_without_crossing_them():
    assert distinct_n(["a b", "a b"], 2) == 0.5 and distinct_n(["a", "b"], 2) == 1.0   # ("b","a") across texts is not a bigram
    assert distinct_n("The end. The end.", 2) == pytest.approx(3 / 5)                  # punctuation counts: the end . the end .
