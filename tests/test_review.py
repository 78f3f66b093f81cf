"""The review workflow: calibrated confidence and needs_review, evidence, corrections, the
error-analysis report and the exported encoder's sentence-transformers folder."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.tables import write_table
from helpers.tiny import OCCUPATIONS, ROOT

from occlass import runs
from occlass.data.examples import reported_for_fitting, split_examples
from occlass.data.soc import LEVELS
from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import load_tokenizer
from occlass.errors import DataError
from occlass.model.confidence import SIGNALS, ConfidenceModel, choose_level
from occlass.model.encoder import Encoder
from occlass.model.memory import ExemplarMemory, fuse
from occlass.predict.loader import load_corrections, load_run
from occlass.predict.predictor import Predictor
from occlass.report.analysis import (
    fit_confidence_model,
    fitting_kinds,
    lookup_memory,
    score_kind,
)
from occlass.report.rebuild import rebuild

TITLES = [t for _, title, _, alts, reps in OCCUPATIONS for t in (title, *alts, *reps)]


@pytest.fixture(scope="module")
def predictor(run_dir, tiny_onet) -> Predictor:
    return Predictor(load_run(run_dir, tiny_onet))


def test_confidence_is_the_confidence_model_of_the_run(predictor, run_dir, tiny_onet):
    """What the Predictor serves, title alone or with a description, is the fitted model over
    the signals that fitting scored (`score_kind`); each row is coded at the finest level that
    reaches the run's thresholds."""
    info = runs.RunInfo.load(run_dir)
    model = ConfidenceModel.from_dict(info.confidence)
    parts = load_run(run_dir, tiny_onet)
    descriptions = [f"{t} work" for t in TITLES]
    for texts in (None, descriptions):
        result = predictor.predict(TITLES, texts)
        kind = score_kind(predictor, TITLES, [[0]] * len(TITLES), model.temperature, parts.levels,
                          texts, predictor.description_weight)
        probability = model.probabilities(kind.signals).numpy()
        np.testing.assert_allclose(result.confidence, probability[:, 0], atol=1e-5)
        level = choose_level(probability, model.thresholds_for())
        coded = result.coded
        assert list(coded["coded_level"]) == [LEVELS[j] if j >= 0 else None for j in level]
        rows = np.flatnonzero(level >= 0)
        np.testing.assert_allclose(coded["coded_confidence"][rows],
                                   probability[rows, level[rows]], atol=1e-5)
        assert list(result.needs_review) == list(level < 0)
    frame = result.to_frame()
    assert {"confidence", "coded_level", "needs_review", "pred_evidence_1"} <= set(frame.columns)


def test_the_older_calibrator_is_a_choice_and_serves_a_run_without_the_model(run_dir,
                                                                              tiny_onet, tmp_path):
    info = runs.RunInfo.load(run_dir)
    older = shutil.copytree(run_dir, tmp_path / "older")
    record = json.loads((older / runs.RUN_FILE).read_text())
    del record["confidence"]  # run.json as written before the confidence model
    (older / runs.RUN_FILE).write_text(json.dumps(record))
    category, exemplar = Predictor(load_run(run_dir, tiny_onet)).similarities(TITLES, 32)
    scores = fuse(category, exemplar, info.fusion_weight)
    top = torch.softmax(scores / info.calibration["temperature"], dim=1).max(dim=1).values
    expected = torch.sigmoid(info.calibration["slope"] * torch.logit(top.double())
                             + info.calibration["intercept"]).float().numpy()
    for run, options in ((run_dir, {"confidence": "platt"}), (older, {})):
        result = Predictor(load_run(run, tiny_onet), **options).predict(TITLES)
        np.testing.assert_allclose(result.confidence, expected, atol=1e-5)
        assert result.coded is None and "coded_level" not in result.to_frame()
        middle = float(np.median(result.confidence))
        for threshold in (0.0, middle, 1.01):
            flagged = Predictor(load_run(run, tiny_onet), review_below=threshold,
                                **options).predict(TITLES)
            assert list(flagged.needs_review) == list(flagged.confidence < threshold)


def test_evidence_names_an_exemplar_of_the_predicted_code(predictor, run_dir, tiny_onet,
                                                         tmp_path):
    memory = ExemplarMemory.load(run_dir / runs.MEMORY_FILE)
    result = predictor.predict(TITLES)
    codes = list(predictor.codes)
    for code, evidence in zip(result.codes[:, 0], result.evidence):
        title, similarity = re.fullmatch(r"(.*) \((-?\d\.\d\d)\)", evidence).groups()
        label = codes.index(code)
        assert (title, label) in set(zip(memory.titles, memory.labels.tolist()))
        assert -1 <= float(similarity) <= 1
    quiet = Predictor(load_run(run_dir, tiny_onet), evidence=False)
    result = quiet.predict(TITLES[:3])
    assert result.evidence is None and "pred_evidence_1" not in result.to_frame()
    path = write_table(pd.DataFrame({"title": ["Wireman"], "code": ["47-2031.00"]}),
                       tmp_path / "reviewed.csv")
    quiet.set_corrections(load_corrections(load_run(run_dir, tiny_onet), path))
    # evidence=false stays off with corrections
    assert quiet.predict(TITLES[:3]).evidence is None


def test_corrections_decide_their_own_titles_and_leave_far_ones_alone(run_dir, tiny_onet,
                                                                      tmp_path):
    """The tiny random model finds every title alike, so the threshold is set between the
    corrected title's variants and the other titles."""
    encoder, tokenizer = (Encoder(run_dir / runs.ENCODER_DIR),
                          load_tokenizer(run_dir / runs.ENCODER_DIR))
    variants = ["Wireman", "wireman", "WIREMAN"]
    embedded = encoder.encode_ids(tokenizer(variants + TITLES)["input_ids"],
                                  tokenizer.pad_token_id)
    similarity = embedded @ embedded[0]
    threshold = float(similarity[:3].min()) - 1e-4
    far = (similarity[3:] < threshold).numpy()
    assert far.sum() >= len(TITLES) // 2  # the check below covers most titles
    predictor = Predictor(load_run(run_dir, tiny_onet), correction_threshold=threshold)
    before = predictor.predict(TITLES).codes[:, 0]
    path = write_table(pd.DataFrame({"title": ["Wireman"], "code": ["47-2031.00"]}),
                       tmp_path / "reviewed.csv")
    predictor.set_corrections(load_corrections(load_run(run_dir, tiny_onet), path))
    after = predictor.predict(variants)
    assert list(after.codes[:, 0]) == ["47-2031.00"] * 3
    assert all(e.startswith("Wireman (") for e in after.evidence)
    assert list(predictor.predict(TITLES).codes[far, 0]) == list(before[far])


def test_a_bad_corrections_file_is_one_error_naming_its_line(run_dir, tiny_onet, tmp_path):
    path = write_table(pd.DataFrame({"title": ["Wireman", "Joiner"],
                                     "code": ["47-2031.00", "99-9999.99"]}), tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"line 3: code '99-9999.99' is not an occupation"):
        load_run(run_dir, tiny_onet).with_corrections(path)
    result = subprocess.run([sys.executable, str(ROOT / "predict.py"), f"run={run_dir}",
                             f"data_dir={tiny_onet}", "text=Wireman", f"corrections={path}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 2
    # one line of error (the tiny run also warns that it chose no description weight)
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("not an occupation of this taxonomy; "
                                                           "1 such row(s)")
    assert result.stdout == ""


def test_the_run_has_an_error_report_with_every_plot_and_it_can_be_rebuilt(run_dir):
    plots = ["accuracy_by_major_group.png", "major_group_confusion.png", "reliability.png",
             "coverage.png"]
    report = (run_dir / "error_analysis.md").read_text()
    for name in plots:
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name})" in report
    assert "error_analysis.md" in (run_dir / runs.REPORT_FILE).read_text()
    (run_dir / "coverage.png").unlink()
    written = rebuild(run_dir)
    assert (run_dir / "coverage.png").is_file() and len(written) == 5


def test_the_exported_encoder_loads_in_sentence_transformers_with_the_same_embeddings(run_dir):
    from sentence_transformers import SentenceTransformer

    folder = run_dir / runs.ENCODER_DIR
    assert "CC BY 4.0" in (folder / "README.md").read_text()
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TITLES, convert_to_tensor=True)
    tokenizer = load_tokenizer(folder)
    ours = Encoder(folder).encode_ids(tokenizer(TITLES)["input_ids"], tokenizer.pad_token_id)
    assert (theirs - ours).abs().max() < 1e-5


def test_the_model_is_fitted_on_clean_reported_noisy_and_ad_rows(run_dir, tiny_onet):
    """Validation titles as they are, the reported titles' fitting half, validation titles
    noised and as pseudo ads (two more task statements per occupation leave one for the fitting
    ads), each looked up with its group left out; a title's variants share its group, so they
    share a fold."""
    info = runs.RunInfo.load(run_dir)
    taxonomy = Taxonomy.load(tiny_onet, with_tasks=True)
    for code, tasks in taxonomy.tasks.items():
        tasks += [f"Third task of {code}.", f"Fourth task of {code}."]
    examples = split_examples(info.config["data"], tiny_onet, taxonomy)
    val = examples[examples["split"] == "val"]
    parts = load_run(run_dir, tiny_onet)
    parts.memory = lookup_memory(parts.memory, examples)
    kinds = fitting_kinds(Predictor(parts), examples, taxonomy, 0, 0.05, parts.levels, 0.5)
    assert list(kinds) == ["clean", "reported", "noisy", "ads"]
    assert list(kinds["reported"].group) == list(
        examples["group"][reported_for_fitting(examples)])
    for name in ("clean", "noisy", "ads"):
        kind = kinds[name]
        assert list(kind.group) == list(val["group"])
        assert kind.signals.base[:, SIGNALS.index("has a description")].tolist() == [
            float(name == "ads")] * len(val)
    assert not torch.equal(kinds["clean"].signals.base, kinds["noisy"].signals.base)
    model = fit_confidence_model(kinds, 0.05)
    assert model.temperature == 0.05 and len(model.thresholds_for()) == len(LEVELS)
