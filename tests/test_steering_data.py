"Steering benchmarks (ToneBank, DebateMix): content, validation, prompts, splits and combinations."
import json, re, shutil
from pathlib import Path
import pandas as pd
import pytest
from interpwb.steering.data import BENCHMARKS, SteeringDataError, data_dir, load_benchmark, load_tonebank
from interpwb.steering.data import load_debatemix, load_exemplars, benchmark_labels, check_labels, labelled_prompts
from interpwb.steering.data import split_steer_eval, target_combinations, benchmark_summary, category_counts_figure

TONES = ["expert", "cautious", "empathetic", "casual", "concise"]
STYLES = ["reductio_ad_absurdum", "appeal_to_precedent", "straw_man_reframing", "burden_of_proof_shift",
          "analogy_construction", "concession_and_pivot", "empirical_grounding", "moral_framing",
          "refutation_by_distinction", "circular_anticipation"]
MIN_EXEMPLARS = {"tonebank": 20, "debatemix": 10}

def norm(t): return re.sub(r"\s+", " ", t).strip().casefold()

@pytest.fixture(scope="module")
def tb(): return load_tonebank(include_optional=True)

@pytest.fixture(scope="module")
def dm(): return load_debatemix()

def test_question_counts_and_categories_meet_the_minimum(tb, dm):
    assert len(tb) >= 600 and tb.category.nunique() >= 15
    assert len(dm) >= 300 and dm.category.nunique() >= 15
    assert tb.category.value_counts().min() >= 20 and dm.category.value_counts().min() >= 15

@pytest.mark.parametrize("name", BENCHMARKS)
def test_no_duplicate_questions_ignoring_case_and_spaces(name):
    df = load_benchmark(name)
    assert df.question.map(norm).is_unique and df.id.is_unique

def test_tonebank_questions_carry_no_tone_words(tb):
    words = TONES + ["helpful", "friendly", "briefly", "brief", "formal", "empathy", "careful", "in detail", "simple terms"]
    hits = [q for q in tb.question if any(re.search(rf"\b{w}\b", q, re.I) for w in words)]
    assert hits == []

def test_questions_are_questions(tb, dm):
    assert all(q.endswith("?") for q in pd.concat([tb.question, dm.question]))

def test_labels_in_fixed_order_with_instructions_and_display_names(tb, dm):
    assert load_tonebank().attrs["labels"] == TONES
    assert tb.attrs["labels"] == TONES + ["helpful"] and tb.attrs["optional_labels"] == ["helpful"]
    assert dm.attrs["labels"] == STYLES and benchmark_labels("debatemix") == STYLES
    for df in (tb, dm):
        assert set(df.attrs["instructions"]) == set(df.attrs["labels"]) == set(df.attrs["display_names"])
        assert all(len(t.split()) >= 12 for t in df.attrs["instructions"].values())
        assert df.attrs["name"] in BENCHMARKS and df.attrs["licence"] == "CC-BY-4.0"
    assert dm.attrs["display_names"]["reductio_ad_absurdum"] == "Reductio ad Absurdum"

@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_label_has_enough_exemplars_and_exemplar_questions_are_not_benchmark_questions(name):
    ex = load_exemplars(name, include_optional=True)
    labels = benchmark_labels(name, include_optional=True)
    counts = ex.label.value_counts()
    assert set(counts.index) == set(labels) and counts.min() >= MIN_EXEMPLARS[name]
    assert not ex.duplicated(["label", "question"]).any() and ex.text.map(norm).is_unique
    assert not set(ex.question.map(norm)) & set(load_benchmark(name).question.map(norm))

def test_exemplars_default_to_the_benchmark_labels():
    assert set(load_exemplars("tonebank").label) == set(TONES)
    assert load_exemplars("tonebank", "casual").label.unique().tolist() == ["casual"]

def test_unknown_label_error_names_the_closest_and_the_known_ones():
    with pytest.raises(KeyError) as e: check_labels("tonebank", ["expert", "casul"])
    msg = e.value.args[0]
    assert msg.startswith("Unknown attribute 'casul'. Did you mean 'casual'? Known: ")
    assert all(t in msg for t in TONES)
    with pytest.raises(KeyError, match="Unknown benchmark"): load_benchmark("tonebnak")
    assert check_labels("debatemix", "moral_framing") == ["moral_framing"]

def test_labelled_prompts_cross_every_question_with_every_label(tb):
    df = load_tonebank().head(7)
    lp = labelled_prompts(df)
    assert len(lp) == 7 * 5 and list(lp.columns[:4]) == ["question_id", "category", "label", "question"]
    assert (lp.groupby("question_id").label.apply(list) == pd.Series({i: TONES for i in df.id})).all()
    r = lp.iloc[3]
    assert r.prompt_text == df.attrs["instructions"][r.label] + "\n" + df.set_index("id").question[r.question_id]
    assert labelled_prompts(df, template="<{display_name}> {question}").prompt_text[0] == "<Expert> " + df.question[0]
    with pytest.raises(ValueError, match="question"): labelled_prompts(df, template="{instruction}")

@pytest.mark.parametrize("name", BENCHMARKS)
def test_split_is_disjoint_stratified_and_deterministic(name):
    df = load_benchmark(name)
    s, e = split_steer_eval(df, frac=0.5, seed=0)
    assert not set(s.id) & set(e.id) and len(s) + len(e) == len(df)
    diff = s.category.value_counts().sub(e.category.value_counts(), fill_value=0).abs()
    assert diff.max() <= 1 and set(s.category) == set(e.category) == set(df.category)
    assert split_steer_eval(df, seed=0)[0].id.tolist() == s.id.tolist()
    assert split_steer_eval(df, seed=1)[0].id.tolist() != s.id.tolist()
    s3, _ = split_steer_eval(df, frac=0.25, seed=0)
    assert abs(len(s3) - 0.25 * len(df)) <= df.category.nunique()

def test_split_of_labelled_prompts_keeps_each_question_on_one_side():
    df = load_tonebank()
    ps, pe = split_steer_eval(labelled_prompts(df), seed=3)
    qs, _ = split_steer_eval(df, seed=3)
    assert set(ps.question_id) == set(qs.id) and not set(ps.question_id) & set(pe.question_id)
    assert (ps.groupby("question_id").size() == 5).all()

def test_target_combination_sizes():
    tc = target_combinations(TONES)
    assert len(tc) == 5 + 10 + 10 and [len(c) for c in tc] == sorted(len(c) for c in tc)
    assert len(target_combinations(STYLES)) == 10 + 45 + 120
    assert target_combinations(TONES, sizes=(2,))[0] == ("expert", "cautious")
    with pytest.raises(ValueError, match="between 1 and 5"): target_combinations(TONES, sizes=(6,))

def test_summary_and_figure():
    s = benchmark_summary()
    assert s.loc["tonebank", "questions"] >= 600 and s.loc["debatemix", "target_sets"] == 175
    df = load_debatemix(); a, b = split_steer_eval(df)
    fig = category_counts_figure({"steer": a, "eval": b})
    assert len(fig.data) == 2 and sum(fig.data[0].y) + sum(fig.data[1].y) == len(df)

@pytest.fixture
def own_data(tmp_path, monkeypatch):
    for name in BENCHMARKS: shutil.copytree(data_dir()/name, tmp_path/name)
    monkeypatch.setenv("INTERPWB_DATA", str(tmp_path))
    return tmp_path

def test_data_dir_override_and_bad_files_give_clear_errors(own_data):
    assert data_dir() == own_data and len(load_debatemix()) >= 300
    q = own_data/"tonebank"/"questions.csv"
    q.write_text("id,question\n1,Why?\n")
    with pytest.raises(SteeringDataError, match=r"missing column\(s\) category"): load_tonebank()
    q.write_text("id,category,question\n1,a,Why?\n2,a,\n")
    with pytest.raises(SteeringDataError, match="empty 'question'"): load_tonebank()
    q.write_text("id,category,question\n1,a,Why?\n1,a,How?\n")
    with pytest.raises(SteeringDataError, match="duplicate id"): load_tonebank()
    (own_data/"debatemix"/"exemplars.csv").write_text("label,question,text\nshouting,Why?,NO!\n")
    with pytest.raises(SteeringDataError, match="shouting have no instruction"): load_exemplars("debatemix")
    meta = json.loads((own_data/"debatemix"/"instructions.json").read_text())
    meta["labels"][0]["id"] = "Reductio Ad Absurdum"
    (own_data/"debatemix"/"instructions.json").write_text(json.dumps(meta))
    with pytest.raises(SteeringDataError, match="snake_case"): load_debatemix()
    (own_data/"tonebank"/"questions.csv").unlink()
    with pytest.raises(SteeringDataError, match="Missing benchmark file"): load_benchmark("tonebank")

def test_a_missing_data_folder_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPWB_DATA", str(tmp_path/"nowhere"))
    with pytest.raises(SteeringDataError, match="INTERPWB_DATA"): load_tonebank()
