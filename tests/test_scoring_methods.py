"""Scores and pooled activations against independent manual computations (one unpadded sequence at a time, plain
log-softmax, direct `run_with_cache` rows), and the coherence gate at its boundaries."""
import math
import numpy as np, pytest, torch
from interpwb.models import chat_prompt, load_hf
from interpwb.core import cache_dir
from interpwb.activations import collect_activations
from interpwb.scoring import continuation_logprobs, perplexity, option_logprobs
from interpwb.textstats import coherence, is_coherent, distinct_n, repetition_rate

TEXTS = ["Hi", "A much longer text that goes on for quite a few more tokens than the first one does.", "Mid-size text here."]
HOOK = "blocks.1.hook_resid_post"

def _direct(model, text:str, bos:bool=False, max_length:int|None=None) -> tuple[torch.Tensor, list[int]]:
    "The hook's activations [pos, d] of one unpadded text (optionally after BOS, cut to max_length) and its token ids."
    ids = ([model.tokenizer.bos_token_id] if bos else []) + model.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = ids[:max_length] if max_length else ids
    with torch.no_grad(): return model.run_with_cache(torch.tensor([ids]), names_filter=[HOOK])[1][HOOK][0].float(), ids

def _rows(model, text:str) -> torch.Tensor:
    "The hook's activations of one unpadded text, [pos, d] (the reference the batched collection must reproduce)."
    return _direct(model, text)[0]

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

# ---------- the repetition and degeneracy statistics, by hand ----------
from interpwb.textstats import longest_repeat, degeneracy

@pytest.mark.parametrize("text,want", [("", 0), ("a", 1), ("a b c", 1), ("a a", 2), ("a b a b", 2), ("a b a b a", 2),
                                       ("x a b a b a b y", 3), ("a . a . a . a .", 4), ("a b c a b d", 1)])
def test_longest_repeat_counts_consecutive_copies(text, want):
    assert longest_repeat(text.split()) == want

def test_longest_repeat_stops_at_max_period():
    unit = [str(i) for i in range(11)]         # an 11-token unit said twice
    assert longest_repeat(unit * 2) == 1 and longest_repeat(unit * 2, max_period=11) == 2
    assert longest_repeat(unit[:10] * 2) == 2  # a 10-token unit is within the default

def test_degeneracy_columns_by_hand():
    row = degeneracy("Hi, hi 42! hi, hi").iloc[0]
    # units: hi , hi 42 ! hi , hi  (8); words (letters only): Hi hi hi hi (4); non-space chars: 13, of which , 4 2 ! , = 5;
    # no unit repeats back to back (hi , hi has a comma between), so the longest run is 1 copy
    assert (row.n_chars, row.n_words, row.n_units) == (17, 4, 8)
    assert row.distinct_1 == pytest.approx(4 / 8) and row.distinct_2 == pytest.approx(5 / 7)
    assert row.distinct_3 == pytest.approx(5 / 6) and row.repetition == pytest.approx(1 / 6)
    assert row.longest_repeat == 1 and row.non_alpha == pytest.approx(5 / 13)
    assert degeneracy("   ").iloc[0].non_alpha == 1.0 and distinct_n("") == 1.0
    assert distinct_n("a a b") == pytest.approx(2 / 3)   # the default n is 1

def test_the_gate_is_inclusive_at_every_threshold_and_reports_the_first_failure():
    letters = "Rivers run down hills and into calm seas."
    assert coherence([letters], min_words=8).coherent.tolist() == [True]          # exactly 8 words
    assert coherence([letters], min_words=9).reason.tolist() == ["too short"]
    na = degeneracy("ab, cd!").iloc[0].non_alpha                                    # 2 of 6 characters
    assert na == pytest.approx(2 / 6)
    assert coherence(["ab, cd!"], max_non_alpha=na).coherent.tolist() == [True]
    assert coherence(["ab, cd!"], max_non_alpha=na - 1e-9).reason.tolist() == ["non-alphabetic"]
    low = "a b " * 6                                                                   # 12 units, distinct-2 = 2/11
    assert coherence([low], max_repeat=99, max_repetition=1.0).reason.tolist() == ["low diversity"]
    assert coherence([low], max_repeat=99, max_repetition=1.0, min_distinct_2=2 / 11).coherent.tolist() == [True]
    eleven = "a b " * 5 + "a"                                                          # 11 units: too short for the check
    assert coherence([eleven], max_repeat=99, max_repetition=1.0).coherent.tolist() == [True]
    assert coherence([letters], perplexities=[9.0], max_perplexity=9.0).coherent.tolist() == [True]
    assert coherence([letters], perplexities=[9.5], max_perplexity=9.0).reason.tolist() == ["perplexity"]
    both = coherence(["ok 1 2 3 #"], perplexities=[np.nan])                    # non-alphabetic and no tokens
    assert both.reason.tolist() == ["non-alphabetic"]                                 # the earlier check is named
    per_text = coherence([letters, letters], perplexities=[3.0, 3.0], reference=[1.0, 2.0])
    assert per_text.ppl_ratio.tolist() == [3.0, 1.5] and per_text.coherent.tolist() == [False, True]
    with pytest.raises(ValueError, match="2 perplexities for 1 texts"): coherence([letters], perplexities=[1.0, 2.0])

# ---------- collection options against direct rows ----------
def test_bos_truncation_tokens_and_metadata_of_a_collection(tiny):
    texts = [TEXTS[1], "Hi"]
    with_bos = collect_activations(tiny, texts, HOOK, pool="mean", prepend_bos=True, drop_first=True)   # BOS makes "Hi" 2 tokens
    for i, t in enumerate(texts): torch.testing.assert_close(with_bos[HOOK][i], _direct(tiny, t, bos=True)[0][1:].mean(0), atol=1e-4, rtol=1e-4)
    cut = collect_activations(tiny, texts, HOOK, pool="last", max_length=3)
    torch.testing.assert_close(cut[HOOK][0], _direct(tiny, texts[0], max_length=3)[0][-1], atol=1e-4, rtol=1e-4)
    every = collect_activations(tiny, texts, HOOK, pool="all")
    assert every.tokens[every.index[:, 0] == 0].tolist() == _direct(tiny, texts[0])[1]      # the tokens the rows belong to
    one = collect_activations(tiny, ["Hi"], HOOK, pool="mean")                               # one token is enough without drop_first
    torch.testing.assert_close(one[HOOK][0], _direct(tiny, "Hi")[0][0], atol=1e-4, rtol=1e-4)
    assert with_bos.meta == dict(model=tiny.cfg.model_name, hooks=[HOOK], pool="mean", n_texts=2, prepend_bos=True,
                                 drop_first=True, d={HOOK: tiny.cfg.d_model})
    with pytest.raises(KeyError, match="hook point"): with_bos["blocks.0.nowhere"]

def test_a_store_opens_only_with_matching_metadata(tmp_path):
    from interpwb.activations import ActivationStore
    from interpwb.core import ArtifactError
    store = ActivationStore.create(tmp_path/"s", d=4, model="m", hook_point="h")
    assert (len(store), store.meta["texts_done"], store.meta["shards"]) == (0, 0, [])
    store.append(torch.ones(3, 4))
    again = ActivationStore(tmp_path/"s", expect=dict(model="m", d=4))
    assert len(again) == 3 and again.read_all().shape == (3, 4)
    with pytest.raises(ArtifactError, match="model='m', but model='other'"): ActivationStore(tmp_path/"s", expect=dict(model="other"))
    with pytest.raises(FileExistsError): ActivationStore.create(tmp_path/"s", d=4)
    (tmp_path/"s"/again.meta["shards"][0]["file"]).unlink()
    with pytest.raises(ArtifactError, match="missing"): ActivationStore(tmp_path/"s")
    nested = ActivationStore.create(tmp_path/"a"/"b"/"c", d=2)                               # parents are created
    assert nested.folder.exists()

def test_a_shared_prefix_computed_once_scores_exactly_what_each_row_alone_scores(tiny):
    tok = tiny.tokenizer
    prompt = "Here is a long shared question about rivers, hills and the weather today:"
    conts = [" yes", " it rains a lot in the hills", "", " no, not really"]
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    for share in (True, False):
        got = continuation_logprobs(tiny, prompt, conts, batch_size=2, share_prefix=share)
        for c, lp in zip(conts, got):
            if not c: assert lp.shape == (0,); continue                            # nothing to score: empty, not an error
            torch.testing.assert_close(lp, _manual_logprobs(tiny, ids(prompt) + ids(c), len(ids(prompt))), atol=1e-4, rtol=1e-4)
    # rows whose prompts part early (the shared prefix is under 4 tokens) and rows that share a prompt and a bit more
    for prompts in (["Yes. The sky", "No. The sea"], [prompt + " Well", prompt + " Well"]):
        got = continuation_logprobs(tiny, prompts, [" is blue", " is grey today"], share_prefix=True)
        for p, c, lp in zip(prompts, [" is blue", " is grey today"], got):
            torch.testing.assert_close(lp, _manual_logprobs(tiny, ids(p) + ids(c), len(ids(p))), atol=1e-4, rtol=1e-4)
    capped = continuation_logprobs(tiny, prompt, conts[1:2], max_tokens=2)[0]
    torch.testing.assert_close(capped, _manual_logprobs(tiny, ids(prompt) + ids(conts[1]), len(ids(prompt)))[:2], atol=1e-4, rtol=1e-4)

def test_empty_prompts_get_bos_and_single_texts_are_accepted(tiny):
    from interpwb.scoring import continuation_ids
    tok = tiny.tokenizer
    ids, k = continuation_ids(tok, "", "Hello there")
    assert ids[0] == tok.bos_token_id and k == 1                    # an empty prompt: BOS gives the first token a context
    ids, k = continuation_ids(tok, "Say:", " hi", prepend_bos=True)
    assert ids[0] == tok.bos_token_id and ids[k:] == tok(" hi", add_special_tokens=False)["input_ids"]
    assert np.isnan(perplexity(tiny, "Hi", [""])[0])                  # nothing to score: NaN, not a number
    one = coherence("A calm answer about rivers.", perplexities=[3.0])
    assert len(one) == 1 and one.perplexity.tolist() == [3.0] and one.coherent.tolist() == [True]

def test_joint_tokenisation_starts_where_prompt_and_text_part_and_perplexity_honours_max_tokens(tiny, tmp_path):
    from interpwb.scoring import continuation_ids
    from interpwb.activations import ActivationStore
    tok = tiny.tokenizer
    prompt, cont = "It was totally un", "believable"
    ids, k = continuation_ids(tok, prompt, cont, joint=True)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids == tok(prompt + cont, add_special_tokens=False)["input_ids"]
    assert ids[:k] == p[:k] and (k == len(p) or ids[k] != p[k]) and k >= 1      # the first token where the two part
    lp = continuation_logprobs(tiny, "The film was", [" very good indeed, really"])[0]
    assert perplexity(tiny, "The film was", [" very good indeed, really"], max_tokens=2)[0] == pytest.approx(math.exp(-float(lp[:2].mean())), rel=1e-5)
    (tmp_path/"empty").mkdir()
    assert len(ActivationStore.create(tmp_path/"empty", d=3)) == 0                   # an existing empty folder is fine

def test_the_smallest_valid_sizes_and_a_single_text_are_accepted(tiny):
    one = collect_activations(tiny, "A single text, not a list.", HOOK, pool="all", batch_size=1, max_length=1)
    assert one[HOOK].shape == (1, tiny.cfg.d_model) and one.meta["n_texts"] == 1 and one.meta["pool"] == "all"
