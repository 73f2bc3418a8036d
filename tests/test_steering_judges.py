"Tests for interpwb.steering.judges: perplexity masking, degeneracy/coherence, judges (local, endpoint, text), scores."
import json, math, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
import numpy as np, pandas as pd, pytest, torch
from interpwb.core import ArtifactError, save_artifact
from interpwb.models import chat_prompt, tokenize
from interpwb.scoring import perplexity
from interpwb.textstats import degeneracy, coherence, is_coherent
from interpwb.steering.judges import Judge, LocalJudge, EndpointJudge, rubric_prompts
from interpwb.steering.text_judge import TextJudge
from interpwb.steering.compare import steering_score, aggregate_scores, success_vs_alpha_figure
from interpwb.steering.compare import attribute_heatmap_figure, method_comparison_figure

PROMPTS = ["<|im_start|>user\nWhat is a river?<|im_end|>\n<|im_start|>assistant\n", "Tell me",
           "<|im_start|>user\nName a colour and explain why people like it so much.<|im_end|>\n<|im_start|>assistant\n"]
CONTS = ["A river is water that flows.", "a story about a long winter in the mountains, please.", "Blue."]

def _manual_ppl(model, prompt, cont):
    "Reference: one unpadded sequence, loss over continuation tokens only."
    tok = model.tokenizer
    p, c = tok(prompt, add_special_tokens=False)["input_ids"], tok(cont, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    with torch.no_grad(): logp = model(ids).float().log_softmax(-1)[0]
    nll = [-logp[len(p) - 1 + i, t].item() for i, t in enumerate(c)]
    return math.exp(sum(nll) / len(nll))

def test_perplexity_masks_prompt_and_padding_batched_equals_single(tiny):
    batched = perplexity(tiny, PROMPTS, CONTS, batch_size=3)
    single = np.array([perplexity(tiny, [p], [c], batch_size=1)[0] for p, c in zip(PROMPTS, CONTS)])
    manual = np.array([_manual_ppl(tiny, p, c) for p, c in zip(PROMPTS, CONTS)])
    np.testing.assert_allclose(batched, single, rtol=1e-4)
    np.testing.assert_allclose(batched, manual, rtol=1e-4)

def test_perplexity_ignores_prompt_tokens_in_the_average(tiny):
    # the same continuation after two different prompts: only the conditioning changes, the count of scored tokens not
    a = perplexity(tiny, ["x " * 30], ["the end."])[0]
    manual = _manual_ppl(tiny, "x " * 30, "the end.")
    assert a == pytest.approx(manual, rel=1e-4)

def test_perplexity_empty_continuation_is_nan_and_length_mismatch_raises(tiny):
    out = perplexity(tiny, "Hello", ["", "world"])
    assert np.isnan(out[0]) and np.isfinite(out[1])
    with pytest.raises(ValueError, match="one prompt per continuation"): perplexity(tiny, ["a", "b"], ["c"])

def test_real_model_prefers_its_answer_over_shuffled_words(model):
    q = chat_prompt(model, "What is the capital of France?")
    good, bad = "The capital of France is Paris.", "Paris France the of is capital The."
    ppl = perplexity(model, q, [good, bad])
    assert ppl[0] < ppl[1] / 3

def test_degeneracy_flags_AAA_and_not_a_normal_sentence():
    d = degeneracy(["A.A.A.A.", "The river runs past the old mill before it reaches the sea."])
    assert d.longest_repeat[0] >= 4 and d.longest_repeat[1] == 1
    assert d.non_alpha[0] == 0.5 and d.non_alpha[1] < 0.1
    c = coherence(["A.A.A.A.", "The river runs past the old mill before it reaches the sea.", "Go go go go go now."])
    assert c.coherent.tolist() == [False, True, False]
    assert c.reason[2] == "repetition"

def test_looping_sentence_is_incoherent_even_with_low_perplexity():
    loop = "I like it. " * 10
    c = coherence([loop], perplexities=[1.1], reference=2.0)
    assert not c.coherent[0] and c.reason[0] in ("repetition", "low diversity")

def test_perplexity_ratio_gate_per_text_reference():
    ok = is_coherent(["A calm answer about rivers and hills.", "Another calm answer about mountain paths."],
                     perplexities=[3.0, 3.0], reference=[2.0, 0.5], max_ppl_ratio=3.0)
    assert ok.tolist() == [True, False]

def test_local_judge_shapes_and_ranges(tiny):
    j = LocalJudge(tiny, batch_size=2)
    s = j.score(["hello there", "a much longer text about the weather in the mountains"], ["casual", "expert", "concise"])
    assert s.shape[0] == 6 and list(s.columns[:4]) == ["text_id", "label", "presence", "strength"]
    assert s.presence.between(0, 1).all() and s.strength.between(0, 5).all()
    # batching does not change the scores
    s1 = LocalJudge(tiny, batch_size=1).score(["hello there"], ["casual", "expert", "concise"])
    np.testing.assert_allclose(s1.presence, s.presence[:3], rtol=1e-4)

def test_local_judge_reads_yes_probability(tiny):
    "presence must equal P(Yes)/(P(Yes)+P(No)) computed by hand from the model's next-token distribution."
    j = LocalJudge(tiny)
    msg = rubric_prompts(["hi"], ["casual"])[0]
    toks, _ = tokenize(tiny, chat_prompt(tiny, msg))
    with torch.no_grad(): lp = tiny(toks)[0, -1].log_softmax(-1)
    y, n = lp[j.yes_ids].logsumexp(-1), lp[j.no_ids].logsumexp(-1)
    assert j.score(["hi"], ["casual"]).presence[0] == pytest.approx(torch.sigmoid(y - n).item(), rel=1e-4)

def test_judge_rejects_empty_inputs(tiny):
    with pytest.raises(ValueError, match="at least one text"): LocalJudge(tiny).score([], ["casual"])
    with pytest.raises(ValueError, match="at least one label"): LocalJudge(tiny).score(["x"], [])

# ---- EndpointJudge against a local fake OpenAI-compatible server ----
class _Fake(BaseHTTPRequestHandler):
    seen = []
    mode = "logprobs"
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Fake.seen.append((self.path, self.headers.get("Authorization"), body))
        if _Fake.mode == "error":
            self.send_response(500); self.end_headers(); self.wfile.write(b"model overloaded"); return
        msg = body["messages"][0]["content"]
        if "Yes or No" in msg:
            yes = "chill" in msg and "casual" in msg
            ans = "Yes" if yes else "No"
            top = [{"token": " Yes", "logprob": math.log(0.75 if yes else 0.25)},
                   {"token": "No", "logprob": math.log(0.25 if yes else 0.75)}]
        else:
            ans = "3"; top = [{"token": "2", "logprob": math.log(0.5)}, {"token": "4", "logprob": math.log(0.5)}]
        choice = {"message": {"role": "assistant", "content": ans}}
        if _Fake.mode == "logprobs":
            choice["logprobs"] = {"content": [{"token": ans, "logprob": top[0]["logprob"], "top_logprobs": top}]}
        data = json.dumps({"choices": [choice]}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def log_message(self, *a): pass

@pytest.fixture
def fake_server():
    server = HTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Fake.seen.clear(); _Fake.mode = "logprobs"
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown(); server.server_close()

def test_endpoint_judge_uses_logprobs(fake_server):
    j = EndpointJudge(fake_server + "/", model="judge-x", api_key="sk-test")
    s = j.score(["just chill", "formal text"], ["casual"])
    np.testing.assert_allclose(s.presence, [0.75, 0.25], rtol=1e-6)
    np.testing.assert_allclose(s.strength, [3.0, 3.0], rtol=1e-6)  # expectation over 2 and 4
    path, auth, body = _Fake.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "judge-x" and body["temperature"] == 0 and body["logprobs"] is True

def test_endpoint_judge_parses_text_without_logprobs(fake_server):
    _Fake.mode = "text"
    s = EndpointJudge(fake_server, model="m").score(["just chill", "formal text"], ["casual"])
    assert s.presence.tolist() == [1.0, 0.0] and s.strength.tolist() == [3.0, 3.0]
    assert _Fake.seen[0][1] is None  # no api key -> no auth header

def test_endpoint_judge_reports_http_errors(fake_server):
    _Fake.mode = "error"
    with pytest.raises(RuntimeError, match="HTTP 500.*overloaded"): EndpointJudge(fake_server, model="m").score(["x"], ["casual"])

def test_endpoint_judge_unreachable_is_a_connection_error():
    from browser import free_port
    with pytest.raises(ConnectionError, match="Could not reach"):
        EndpointJudge(f"http://127.0.0.1:{free_port()}/v1", model="m", timeout=5).score(["x"], ["casual"])

# ---- TextJudge ----
CASUAL = ["hey no worries, it's all good", "lol just chill and grab a snack", "yeah that's totally fine, relax",
          "nah don't sweat it, buddy", "cool cool, catch you later", "haha sure thing, whatever works"]
EXPERT = ["The results indicate a statistically significant effect (p < 0.01).",
          "According to the specification, the protocol requires mutual authentication.",
          "The dosage should be adjusted based on renal clearance.", "This follows from the second law of thermodynamics.",
          "Empirical studies consistently report a 12% reduction in latency.",
          "The algorithm runs in O(n log n) time in the worst case."]

@pytest.fixture(scope="module")
def text_judge():
    return TextJudge().fit(CASUAL + EXPERT, ["casual"] * 6 + ["expert"] * 6, cv=3)

def test_text_judge_fit_predict(text_judge):
    assert text_judge.labels == ["casual", "expert"]
    assert text_judge.predict(["sure dude, no problem", "The lemma holds for every compact manifold."]) == ["casual", "expert"]
    p = text_judge.predict_proba(CASUAL + EXPERT)
    assert p.shape == (12, 2) and ((p >= 0) & (p <= 1)).all().all()
    assert 0 <= text_judge.cv_report["accuracy"] <= 1 and len(text_judge.cv_report["fold_accuracy"]) == 3
    s = text_judge.score(["sure dude"], ["expert", "casual"])
    assert s.label.tolist() == ["expert", "casual"]
    np.testing.assert_allclose(s.strength, 5 * s.presence)

def test_text_judge_save_load_round_trip(text_judge, tmp_path):
    text_judge.save(tmp_path / "tj")
    back = TextJudge.load(tmp_path / "tj", labels=["expert", "casual"])
    np.testing.assert_allclose(back.predict_proba(EXPERT).to_numpy(), text_judge.predict_proba(EXPERT).to_numpy(), atol=1e-6)
    assert back.cv_report["accuracy"] == pytest.approx(text_judge.cv_report["accuracy"])

def test_text_judge_load_mismatch_errors(text_judge, tmp_path):
    text_judge.save(tmp_path / "tj")
    with pytest.raises(ArtifactError, match="fitted on labels"): TextJudge.load(tmp_path / "tj", labels=["casual", "concise"])
    save_artifact(tmp_path / "other", {"coef": torch.zeros(2, 384)}, {"kind": "KSteeringClassifier"})
    with pytest.raises(ArtifactError, match="kind"): TextJudge.load(tmp_path / "other")
    save_artifact(tmp_path / "bad", {"coef": torch.zeros(3, 384), "intercept": torch.zeros(2)},
                  {"kind": "TextJudge", "embedder": "all-MiniLM-L6-v2", "labels": ["a", "b"], "C": 1.0, "embed_dim": 384})
    with pytest.raises(ArtifactError, match="do not match"): TextJudge.load(tmp_path / "bad")

def test_text_judge_unfitted_and_unknown_label(text_judge):
    with pytest.raises(RuntimeError, match="not fitted"): TextJudge().predict_proba(["x"])
    with pytest.raises(KeyError, match="Known: casual, expert"): text_judge.score(["x"], ["concise"])
    with pytest.raises(ValueError, match="at least two labels"): TextJudge().fit(["a", "b"], ["x", "x"], cv=0)

# ---- scores and figures ----
JD = pd.DataFrame({"text_id": [0, 0, 1, 1, 2, 2, 3, 3], "label": ["casual", "expert"] * 4,
                   "presence": [0.9, 0.1, 0.8, 0.7, 0.9, 0.2, 0.3, 0.9], "strength": [4, 1, 3, 5, 5, 0, 1, 4]})

def test_steering_score_arithmetic():
    s = steering_score(JD, "casual", coherent=[True, True, False, True])
    assert s.success.tolist() == [True, True, False, False]
    np.testing.assert_allclose(s.score, [0.8, 0.6, 0.0, 0.0])
    two = steering_score(JD, ["casual", "expert"], coherent=True)
    assert two.success.tolist() == [False, True, False, False]
    np.testing.assert_allclose(two.score, [0, 0.8, 0, 0]); assert two.n_targets.tolist() == [2] * 4

def test_steering_score_per_text_targets_and_coherent_column():
    jd = JD.assign(coherent=[True, True, True, True, False, False, True, True])
    s = steering_score(jd, {0: ["casual"], 1: ["expert"], 2: ["casual"], 3: ["expert"]})
    np.testing.assert_allclose(s.score, [0.8, 1.0, 0.0, 0.8])
    assert s.targets.tolist() == ["casual", "expert", "casual", "expert"]

def test_steering_score_requires_explicit_coherence_and_known_targets():
    with pytest.raises(ValueError, match="coherent=True"): steering_score(JD, "casual")
    with pytest.raises(KeyError, match="casual"): steering_score(JD, "casul", coherent=True)
    with pytest.raises(ValueError, match="4 texts"): steering_score(JD, "casual", coherent=[True])

def test_aggregate_scores_mean_and_standard_error():
    df = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 2, "score": [0.0, 1.0, 0.0, 1.0, 0.5, 0.5]})
    agg = aggregate_scores(df, "method").set_index("method")
    assert agg.loc["a", "mean"] == 0.5 and agg.loc["a", "se"] == pytest.approx(np.std([0, 1, 0, 1], ddof=1) / 2)
    assert agg.loc["b", "se"] == 0 and agg.loc["a", "n"] == 4
    with pytest.raises(KeyError, match="Known"): aggregate_scores(df, "methdo")

def test_figures_have_one_trace_per_method():
    df = pd.DataFrame([dict(method=m, alpha=a, n_targets=n, label=l, score=a / n)
                       for m in ["K-Steering", "CAA", "linear"] for a in [0, 1] for n in [1, 2, 3] for l in ["x", "y"]])
    f1 = success_vs_alpha_figure(aggregate_scores(df, ["method", "alpha"]))
    f2 = attribute_heatmap_figure(aggregate_scores(df, ["method", "label"]))
    f3 = method_comparison_figure(aggregate_scores(df, ["method", "n_targets"]))
    assert sorted(t.name for t in f1.data) == ["CAA", "K-Steering", "linear"]
    assert f2.data[0].z.shape == (3, 2)
    assert [list(t.x) for t in f3.data] == [["1", "2", "3"]] * 3
