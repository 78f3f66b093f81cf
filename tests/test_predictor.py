"""Predictor: loading a run, keeping its category cache fresh, ranking like a brute-force search."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occlass import runs
from occlass.data.tabular_io import AtomicTableWriter
from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import load_tokenizer
from occlass.errors import OcclassError
from occlass.model.category_cache import CategoryCache
from occlass.model.encoder import Encoder
from occlass.model.memory import ExemplarMemory
from occlass.predict.loader import load_run, load_zero_shot
from occlass.predict.predictor import MAX_DESCRIPTION_LENGTH, Predictions, Predictor

TITLES = ["Registered Nurse", "senior python developer", "Plumber", "CEO", "plumber"]
DESCRIPTIONS = ["Cares for patients on a ward.", None, "", "Leads the company.", "fixes pipes"]


@pytest.fixture(scope="module")
def predictor(run_dir, tiny_onet) -> Predictor:
    return Predictor(load_run(run_dir, tiny_onet), batch_size=2)  # several batches


@pytest.fixture
def run_copy(tmp_path, run_dir) -> Path:
    return shutil.copytree(run_dir, tmp_path / "run")


def embed(encoder, tokenizer, text: str, max_length: int) -> torch.Tensor:
    ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return encoder(ids["input_ids"], ids["attention_mask"])[0]


def test_top_k_matches_brute_force(predictor, run_dir, tiny_onet):
    """Fused title score (category and best exemplar cosine, the run's weight), plus the
    description's category cosine times the description weight (late fusion)."""
    result = predictor.predict(TITLES, DESCRIPTIONS, top_k=4)
    encoder = Encoder(run_dir / runs.ENCODER_DIR).eval()
    tokenizer = load_tokenizer(run_dir / runs.ENCODER_DIR)
    taxonomy = Taxonomy.load(tiny_onet)
    info = runs.RunInfo.load(run_dir)
    memory = ExemplarMemory.load(run_dir / runs.MEMORY_FILE)
    categories = torch.stack([embed(encoder, tokenizer, text, info.max_category_length)
                              for text in taxonomy.category_texts("title_description")])
    for row, (title, description) in enumerate(zip(TITLES, DESCRIPTIONS)):
        query = embed(encoder, tokenizer, title, 32)
        cosine = F.cosine_similarity(query[None], categories)
        best = torch.full((len(taxonomy),), -1.0)
        for label, exemplar in zip(memory.labels.tolist(), memory.embeddings):
            best[label] = max(best[label], float(exemplar @ query))
        score = (1 - info.fusion_weight) * cosine + info.fusion_weight * best
        if description:
            text = embed(encoder, tokenizer, description, MAX_DESCRIPTION_LENGTH)
            score += predictor.description_weight * F.cosine_similarity(text[None], categories)
        score = score.numpy()
        top = np.argsort(-score)[:4]
        # The tiny random model gives near-ties, so compare scores, not the order of tied codes.
        np.testing.assert_allclose(result.scores[row], score[top], atol=1e-5)
        chosen = [taxonomy.index[code] for code in result.codes[row]]
        np.testing.assert_allclose(score[chosen], result.scores[row], atol=1e-5)
        assert list(result.titles[row]) == [taxonomy.titles[i] for i in chosen]
    assert (result.status == "ok").all()


def encoded_passes(predictor: Predictor) -> list[list[list[int]]]:
    """The token ids of each pass the predictor sends to its encoder, as it goes."""
    passes = []
    encode = predictor._encode
    predictor._encode = lambda ids: passes.append(ids) or encode(ids)
    return passes


def test_batches_respect_the_size_and_token_limits(run_dir, tiny_onet, predictor):
    small = Predictor(load_run(run_dir, tiny_onet), batch_size=3, batch_tokens=20)
    passes = encoded_passes(small)
    titles = ["x " * n for n in range(8, 0, -1)]  # 3 to 10 tokens
    result = small.predict(titles)
    assert [(len(ids), max(map(len, ids))) for ids in passes] == [(3, 5), (2, 7), (2, 9),
                                                                  (1, 10)]
    np.testing.assert_allclose(result.scores, predictor.predict(titles).scores, atol=1e-5)


def test_a_fresh_run_cache_is_used_as_is(run_dir, tiny_onet, caplog):
    caplog.set_level(logging.INFO, logger="occlass")
    predictor = Predictor(load_run(run_dir, tiny_onet))
    assert "category texts" not in caplog.text
    saved = CategoryCache.load(run_dir / runs.CACHE_FILE)
    assert torch.equal(predictor.embeddings, saved.embeddings)
    assert predictor.max_input_length == 32  # from run.json


@pytest.mark.parametrize("damage", ["weights", "max_category_length", "taxonomy", "missing",
                                    "truncated"])
def test_a_stale_or_missing_cache_is_rebuilt(run_copy, tiny_onet, caplog, damage):
    path = run_copy / runs.CACHE_FILE
    good = CategoryCache.load(path)
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        CategoryCache(torch.zeros_like(good.embeddings), good.codes,
                      {**good.identity, damage: "something else"}).save(path)
    caplog.set_level(logging.INFO, logger="occlass")
    predictor = Predictor(load_run(run_copy, tiny_onet))
    assert "encoding 12 category texts" in caplog.text
    torch.testing.assert_close(predictor.embeddings, good.embeddings)
    rebuilt = CategoryCache.load(path)
    assert rebuilt.identity == good.identity
    torch.testing.assert_close(rebuilt.embeddings, good.embeddings)


def test_another_max_category_length_is_encoded_in_memory_only(run_copy, tiny_onet):
    before = (run_copy / runs.CACHE_FILE).read_bytes()
    predictor = Predictor(load_run(run_copy, tiny_onet, max_category_length=8))
    assert (run_copy / runs.CACHE_FILE).read_bytes() == before
    assert not torch.allclose(predictor.embeddings, CategoryCache.load(run_copy / runs.CACHE_FILE)
                              .embeddings)


def test_a_run_of_another_taxonomy_is_refused(run_dir, tiny_onet, tmp_path):
    other = shutil.copytree(tiny_onet, tmp_path / "onet")
    with open(other / "Occupation Data.txt", "a", encoding="utf-8") as f:
        f.write("53-3032.00\tHeavy and Tractor-Trailer Truck Drivers\tDrive trucks.\n")
    with pytest.raises(OcclassError, match=r"another taxonomy .*12 codes.*13 codes"):
        Predictor(load_run(run_dir, other))


def test_a_run_that_chose_no_weights_says_what_it_falls_back_to(run_copy, tiny_onet, caplog):
    """A run with no validation split (data.holdout=none) records no description weight,
    calibrator or confidence model: loading it warns of each default."""
    info = runs.RunInfo.load(run_copy)
    runs.RunInfo(**{**info.__dict__, "description_weight": None, "calibration": None,
                    "confidence": None}).save(run_copy)
    with caplog.at_level(logging.WARNING, logger="occlass"):
        parts = load_run(run_copy, tiny_onet)
    assert parts.description_weight == 0.5
    assert "chose no description weight" in caplog.text
    assert "weighs 0.5, the default" in caplog.text
    assert "no calibrator and no confidence model" in caplog.text
    caplog.clear()
    runs.RunInfo(**{**info.__dict__, "description_weight": 0.0}).save(run_copy)
    with caplog.at_level(logging.WARNING, logger="occlass"):
        parts = load_run(run_copy, tiny_onet)
    assert parts.description_weight == 0.0  # chosen: kept, no warning
    assert "chose no description weight" not in caplog.text


@pytest.mark.parametrize("remove", [runs.RUN_FILE, runs.ENCODER_DIR])
def test_an_incomplete_run_is_refused(run_copy, tiny_onet, remove):
    target = run_copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(OcclassError, match=f"not a complete training run .*{remove}"):
        Predictor(load_run(run_copy, tiny_onet))


def test_empty_and_missing_titles_get_a_status_and_no_prediction(predictor):
    result = predictor.predict(["Nurse", "", None, float("nan"), "  "], top_k=3)
    assert list(result.status) == ["ok"] + ["empty title"] * 4
    assert result.codes[0].tolist() == predictor.predict(["Nurse"], top_k=3).codes[0].tolist()
    assert result.codes[1:].tolist() == result.titles[1:].tolist() == [[None] * 3] * 4
    assert np.isnan(result.scores[1:]).all()


def test_missing_descriptions_count_as_absent(predictor):
    alone = predictor.predict(["Nurse"]).scores[0]
    with_missing = predictor.predict(["Nurse", "Nurse", "Nurse"], [None, float("nan"), " "])
    for scores in with_missing.scores:
        np.testing.assert_array_equal(scores, alone)
    described = predictor.predict(["Nurse"], ["Cares for patients on a hospital ward."]).scores[0]
    assert not np.allclose(described, alone)


def test_identical_inputs_are_encoded_once(run_dir, tiny_onet):
    predictor = Predictor(load_run(run_dir, tiny_onet))
    passes = encoded_passes(predictor)
    titles = ["Staff Nurse", "staff nurse", "  STAFF   nurse ", "Plumber", "Staff Nurse"]
    first = predictor.predict(titles)
    assert sum(map(len, passes)) == 2  # case and spacing do not change the tokens
    assert (first.codes[:3] == first.codes[0]).all() and (first.codes[4] == first.codes[0]).all()
    again = predictor.predict(titles[::-1])
    assert sum(map(len, passes)) == 2  # remembered across calls
    np.testing.assert_array_equal(again.scores[::-1], first.scores)


def test_rows_with_a_description_encode_each_title_once(run_dir, tiny_onet):
    """Rows sharing a title (and some a description) each score as they would alone, while
    each distinct title and description is encoded once."""
    predictor = Predictor(load_run(run_dir, tiny_onet), batch_size=2)
    passes = encoded_passes(predictor)
    titles = ["Staff Nurse", "Plumber", "staff nurse", "Staff Nurse", "Chef", "Staff Nurse"]
    descriptions = ["Cares for patients.", "Fixes pipes.", "Runs a ward.", "Cares for patients.",
                    "Cooks.", "Cooks."]
    together = predictor.predict(titles, descriptions, top_k=3)
    assert sum(map(len, passes)) == 3 + 4  # 3 distinct titles, 4 distinct descriptions
    for row, (title, description) in enumerate(zip(titles, descriptions)):
        alone = predictor.predict([title], [description], top_k=3)
        np.testing.assert_array_equal(alone.codes[0], together.codes[row])
        np.testing.assert_allclose(alone.scores[0], together.scores[row], rtol=1e-6)
        assert alone.evidence[0] == together.evidence[row]
    assert not np.array_equal(together.scores[0], together.scores[2])  # descriptions count


def test_inputs_are_truncated_to_max_input_length(run_dir, tiny_onet):
    predictor = Predictor(load_run(run_dir, tiny_onet), max_input_length=8,
                                   max_description_length=8)
    passes = encoded_passes(predictor)
    long = "Cares for patients on the night shift of a busy hospital ward. " * 20
    result = predictor.predict(["Nurse", "Nurse"], [long, long + " and more"])
    assert max(len(ids) for batch in passes for ids in batch) == 8
    np.testing.assert_array_equal(result.scores[0], result.scores[1])


def test_top_k_is_capped_by_the_taxonomy_and_must_be_positive(predictor):
    result = predictor.predict(["Nurse"], top_k=50)
    assert result.codes.shape == (1, 12) and len(set(result.codes[0])) == 12
    assert (np.diff(result.scores[0]) <= 0).all()
    with pytest.raises(OcclassError, match="top_k"):
        predictor.predict(["Nurse"], top_k=0)


def test_bf16_autocast_scores_close_to_fp32(run_dir, tiny_onet, predictor):
    bf16 = Predictor(load_run(run_dir, tiny_onet), precision="bf16")
    expected = predictor.predict(TITLES, DESCRIPTIONS).scores
    np.testing.assert_allclose(bf16.predict(TITLES, DESCRIPTIONS).scores, expected, atol=0.02)
    with pytest.raises(OcclassError, match="precision"):
        Predictor(load_run(run_dir, tiny_onet), precision="16")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_it_warns(run_dir, tiny_onet, monkeypatch, caplog, native):
    """Emulated bf16 is slower than fp32: the user who asks for it on such a CPU is told."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with caplog.at_level(logging.WARNING, "occlass.predict.predictor"):
        Predictor(load_run(run_dir, tiny_onet), precision="bf16")
        Predictor(load_run(run_dir, tiny_onet))
    assert caplog.text.count("emulated") == (0 if native else 1)  # fp32 never warns


def test_zero_shot_keeps_its_cache_at_cache_path(tiny_bert, tiny_onet, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="occlass")
    path = tmp_path / "zero-shot" / "category_cache.pt"
    first = Predictor(load_zero_shot(tiny_onet, model=str(tiny_bert), cache_path=path))
    assert CategoryCache.load(path).identity["recipe"] == "title_description"
    assert caplog.text.count("category texts") == 1
    second = Predictor(load_zero_shot(tiny_onet, model=str(tiny_bert), cache_path=path))
    assert caplog.text.count("category texts") == 1  # loaded, not rebuilt
    np.testing.assert_array_equal(first.predict(TITLES).scores, second.predict(TITLES).scores)


@pytest.mark.integration
def test_zero_shot_packaged_model_ranks_obvious_titles(packaged_minilm, tiny_onet):
    predictor = Predictor(load_zero_shot(tiny_onet))
    result = predictor.predict(["registered nurse", "python developer", "electrician"], top_k=3)
    assert [codes[0] for codes in result.codes] == ["29-1141.00", "15-1252.00", "47-2111.00"]
    assert (np.diff(result.scores, axis=1) <= 0).all()


def test_a_row_without_a_prediction_holds_nulls_in_jsonl(tmp_path):
    """A prediction column a row has no value in is a JSON null, not an absent key (which is a
    key the input record lacked): under pandas 3 the text columns were inferred as `str`, whose
    missing value is NaN, and the key was dropped."""
    codes = np.array([[None], ["11-1011.00"]], dtype=object)
    predictions = Predictions(codes, codes.copy(), np.array([[np.nan], [0.9]]),
                              np.array(["empty title", "ok"], dtype=object))
    with AtomicTableWriter(tmp_path / "out.jsonl") as writer:
        writer.write(predictions.to_frame())
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert records[0] == {"pred_code_1": None, "pred_title_1": None, "pred_score_1": None,
                          "status": "empty title"}
