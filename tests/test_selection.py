"""Selection on validation: the fusion weight, the description weight and the calibrator are the
ones validation picks, and the test split has no say in them."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.tiny import OCCUPATIONS, ONET_DATA, write_tiny_onet

from occlass import runs
from occlass.data.categories import Categories
from occlass.data.examples import exemplars_of
from occlass.data.postings import pseudo_postings
from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import load_tokenizer
from occlass.model.encoder import Encoder
from occlass.model.memory import FUSION_GRID, build_memory
from occlass.model.module import OccupationClassifier
from occlass.predict.loader import load_zero_shot
from occlass.predict.predictor import Predictor
from occlass.report import analysis

N_TASKS = 3


def test_fusion_weight_is_the_grid_value_with_the_best_validation_accuracy(tiny_bert, tiny_onet):
    """Constructed similarities: row r's gold code 2r and rival 2r+1 (every other code far
    below) score so that fused gold - fused rival = w - t (right above t) or t - w (right below
    t). Validation top-1 over FUSION_GRID is then 2,2,3,3,4,4,5,4,4,3,3 of 5: only w = 0.6
    gets every row."""
    categories = Categories.from_taxonomy(Taxonomy.load(tiny_onet), load_tokenizer(tiny_bert),
                                          "title_description", N_TASKS, 64)
    model = OccupationClassifier(Encoder(tiny_bert), categories, fusion_weight=0.0)
    above, below = (0.15, 0.35, 0.55), (0.65, 0.85)
    category = torch.full((5, len(categories)), -1.0)
    exemplar = category.clone()
    for r, t in enumerate(above):
        category[r, 2 * r:2 * r + 2] = torch.tensor([0.0, t])
        exemplar[r, 2 * r:2 * r + 2] = torch.tensor([1 - t, 0.0])
    for r, t in enumerate(below, start=len(above)):
        category[r, 2 * r:2 * r + 2] = torch.tensor([t, 0.0])
        exemplar[r, 2 * r:2 * r + 2] = torch.tensor([0.0, 1 - t])
    gold = torch.arange(0, 10, 2).unsqueeze(1)
    batches = [slice(0, 2), slice(2, 5)]  # two validation batches
    model.similarities = lambda rows: (category[rows], exemplar[rows])  # the encoder's output
    logged = {}
    model.log = lambda name, value, **kwargs: logged.update({name: float(value)})
    model.log_dict = lambda values, **kwargs: logged.update({k: float(v) for k, v in
                                                             values.items()})
    for rows in batches:
        model.validation_step({"title": rows, "codes": gold[rows]}, 0)
    grid = model.grid_accuracy.compute().tolist()
    model.on_validation_epoch_end()
    assert grid == pytest.approx([n / 5 for n in (2, 2, 3, 3, 4, 4, 5, 4, 4, 3, 3)])
    assert FUSION_GRID[6] == 0.6 and float(model.fusion_weight) == pytest.approx(0.6)
    assert logged["val/fusion_weight"] == pytest.approx(0.6)
    assert logged["val/accuracy"] == 1.0  # measured with the chosen weight


@pytest.fixture(scope="module")
def task_onet(tmp_path_factory):
    """The tiny O*NET with the real task statements of its occupations (enough for pseudo-ads
    beyond the first N_TASKS, which category texts may use)."""
    if not ONET_DATA.is_dir():
        pytest.skip("run `make data` first")
    folder = write_tiny_onet(tmp_path_factory.mktemp("onet") / "onet-29.3")
    codes = {code for code, *_ in OCCUPATIONS}
    lines = (ONET_DATA / "Task Statements.txt").read_text(encoding="utf-8").splitlines()
    (folder / "Task Statements.txt").write_text(
        "\n".join([lines[0]] + [line for line in lines[1:] if line.split("\t")[0] in codes])
        + "\n", encoding="utf-8")
    return folder


def tiny_examples(taxonomy: Taxonomy) -> pd.DataFrame:
    """Splits by hand: each occupation's alternate titles train, its reported title
    validates, its own title tests."""
    rows = []
    for code, title, _, alternates, reported in OCCUPATIONS:
        label = [taxonomy.index[code]]
        rows += [(t, label, "train") for t in alternates]
        rows += [(reported[0], label, "val"), (title, label, "test")]
    return pd.DataFrame(rows, columns=["title", "codes", "split"])


@pytest.fixture(scope="module")
def taxonomy(task_onet):
    return Taxonomy.load(task_onet, with_tasks=True)


@pytest.fixture(scope="module")
def parts(task_onet, tiny_bert, taxonomy):
    """The tiny BERT over the tiny O*NET with real tasks, its memory every title (as served;
    analysis looks titles up in it less the test split's)."""
    parts = load_zero_shot(task_onet, str(tiny_bert))
    examples = tiny_examples(taxonomy)
    exemplars = exemplars_of(examples, ("train", "val", "test"), parts.tokenizer,
                             parts.max_input_length)
    parts.memory = build_memory(parts.encoder, exemplars, len(taxonomy),
                                parts.tokenizer.pad_token_id, {})
    return parts


def test_description_weight_is_the_grid_value_with_the_best_top1_on_validation_ads(parts,
                                                                                  taxonomy):
    examples = tiny_examples(taxonomy)
    val = examples[examples["split"] == "val"]
    memory = analysis.lookup_memory(parts.memory, examples)
    chosen = analysis.choose_description_weight(
        Predictor(dataclasses.replace(parts, memory=memory)), val, taxonomy, N_TASKS)
    # The same pseudo-ads, each scored by prediction itself (late fusion) at every weight, with
    # the memory less the validation titles (each validation title leaves its own out).
    ads = pseudo_postings(list(val["title"]), [taxonomy.codes[c[0]] for c in val["codes"]],
                          taxonomy.tasks, seed=0, category_n_tasks=N_TASKS, fitting=True)
    parts = dataclasses.replace(parts, memory=memory.subset(
        ~np.isin(memory.titles, list(val["title"]))))
    has_ad = [ad != "" for ad in ads]
    assert sum(has_ad) == len(val) - 1  # 29-1228.00 has no task statements
    hits = []
    for weight in analysis.DESCRIPTION_GRID:
        predictor = Predictor(dataclasses.replace(parts, description_weight=weight))
        top = predictor.predict(list(val["title"][has_ad]), [a for a in ads if a],
                                top_k=1).to_frame()
        hits.append(sum(taxonomy.index[code] in codes for code, codes
                        in zip(top["pred_code_1"], val["codes"][has_ad])))
    best = max(hits)
    # The case is only a test if the weight matters (here 0.0 is best: 4 of 11; on the fitting
    # ads the tiny random BERT's description similarity only misleads).
    assert hits.count(best) == 1 and len(set(hits)) > 2, hits
    assert chosen == analysis.DESCRIPTION_GRID[hits.index(best)]


def test_validation_alone_fits_the_description_weight_and_the_calibrator(parts, taxonomy,
                                                                          task_onet, tmp_path):
    """Garbage titles and wrong codes in the test split change the test predictions but neither
    the description weight, the calibrator nor the confidence model; a change to validation
    does change them."""
    examples = tiny_examples(taxonomy)

    def analyse(frame, name):
        out = tmp_path / name
        out.mkdir()
        weight, calibrator, model = analysis.analyse(out, Predictor(parts), frame, task_onet,
                                                     N_TASKS)
        return weight, (calibrator, model), pd.read_parquet(out / runs.PREDICTIONS_FILE)

    def poisoned(split):
        frame = examples.copy()
        rows = frame["split"] == split
        frame.loc[rows, "title"] = [f"zq{i}x" * 3 for i in range(rows.sum())]
        frame.loc[rows, "codes"] = pd.Series([[(c[0] + 5) % len(taxonomy)]
                                              for c in frame.loc[rows, "codes"]],
                                             index=frame.index[rows])
        return frame

    weight, calibrator, predictions = analyse(examples, "clean")
    assert weight is not None and None not in calibrator
    poisoned_weight, poisoned_calibrator, poisoned_predictions = analyse(poisoned("test"), "test")
    assert (poisoned_weight, poisoned_calibrator) == (weight, calibrator)
    assert not poisoned_predictions["title"].equals(predictions["title"])  # test was read
    _, val_calibrator, _ = analyse(poisoned("val"), "val")
    assert val_calibrator[0] != calibrator[0] and val_calibrator[1] != calibrator[1]
