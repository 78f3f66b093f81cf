"""Learning from decisions, one at a time (occlass.serve.learning), on the tiny run: after every
decision the rows learnt equal a full re-predict of every undecided row with every correction
(the way the desk learnt before: corrections= from a file), while a decision encodes only a
title not seen before and looks up only the rows it can change."""

from __future__ import annotations

import functools
import random
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from helpers.tables import write_table
from helpers.tiny import OCCUPATIONS
from test_serve import TITLES

from occlass.model.memory import ExemplarMemory
from occlass.predict.loader import load_corrections
from occlass.predict.predictor import Predictor
from occlass.serve import learning
from occlass.serve.learning import Learner
from occlass.serve.store import ReviewStore

CODES = [c for c, *_ in OCCUPATIONS]


def full_repredict(served_parts, threshold, folder):
    """The rows `pending` that `corrections` decide, by predicting every one of them with the
    corrections read from a file (the desk's way before learning one decision at a time)."""
    predictor = Predictor(served_parts, correction_threshold=threshold)

    def learn(corrections: list[tuple], pending: list[tuple]) -> list[tuple[int, str]]:
        corrections = pd.DataFrame(corrections, columns=["title", "code"])
        corrections = corrections[corrections["title"].fillna("").str.strip() != ""]
        if not pending or corrections.empty:
            return []
        path = write_table(corrections, folder / "corrections.csv")
        predictor.set_corrections(load_corrections(served_parts, path))
        result = predictor.predict([title for _, title in pending], top_k=1)
        decided = result.scores[:, 0] > 1  # a correction scores 1 + its similarity
        return [(row, code) for (row, _), code, d in zip(pending, result.codes[:, 0], decided)
                if d]

    return learn


def review_store(tmp_path, titles) -> tuple[ReviewStore, int]:
    """A store holding one file whose rows all need review."""
    coded = write_table(pd.DataFrame({"title": titles, "status": "ok", "needs_review": True,
                                      "pred_code_1": CODES[0]}), tmp_path / "f.coded.csv")
    store = ReviewStore(tmp_path / "review.sqlite")
    return store, store.add_file("f.csv", coded, lambda c: c == "pred_code_1", "x")


def test_each_decision_learns_what_a_full_repredict_learns(served_parts, tmp_path, monkeypatch):
    """Random decisions, re-decisions (another code, a group, an outcome) and undos on a file
    of near-equal and distinct titles, blanks and markers: every learn equals the full one."""
    rng = random.Random(0)
    variants = [v for t in TITLES[:24] for v in (t, t.lower(), f"{t} II", f"Sr {t}")]
    titles = [rng.choice(variants) for _ in range(150)] + ["", "  ", "NA", "n/a", None]
    predictor = Predictor(served_parts)
    embedded = predictor.embed(variants)
    similar = (embedded @ embedded.T).flatten()
    threshold = float(similar.quantile(0.75))  # the random model finds titles alike
    store, file = review_store(tmp_path, titles)
    with ThreadPoolExecutor(1) as model:
        learner = Learner(predictor, model, threshold, store.titles, chunk_rows=16)
        learner.warm(file)
        reference = full_repredict(served_parts, threshold, tmp_path)
        looked_up = []

        class Looking(ExemplarMemory):
            def best(self, queries, *args):
                looked_up.append(len(queries))
                return super().best(queries, *args)

        monkeypatch.setattr(learning, "ExemplarMemory", Looking)
        compared = learnt_any = 0

        def learn(corrections, pending, returned):
            nonlocal compared, learnt_any
            ours = learner.learn(file, corrections, pending, returned)
            assert ours == reference(corrections, pending(None))
            compared += 1
            learnt_any += len(ours) > 0
            return ours

        for _ in range(60):
            row = rng.randrange(len(titles))
            if rng.random() < 0.2:
                store.undo(file, row, lambda: learner.undone(file))
                continue
            kind = rng.random()
            code, level = ((rng.choice(CODES), "onet") if kind < 0.8
                           else ("11-0000", "major") if kind < 0.9 else (None, "uncodable"))
            also = [rng.randrange(len(titles))] if rng.random() < 0.1 else []
            store.decide(file, row, code, level, rng.choice(["ann", "bob"]), also=also,
                         learn=learn)
    assert compared > 40 and learnt_any > 5
    # most decisions look up only the rows they can change (after an undo: every row)
    assert sorted(looked_up)[len(looked_up) // 2] < len(titles) / 4


def test_a_decision_encodes_only_a_title_not_seen_before(served_parts, tmp_path):
    titles = [f"{TITLES[i % len(TITLES)]} {i}" for i in range(40)]
    predictor = Predictor(served_parts)
    store, file = review_store(tmp_path, titles)
    encoded = []
    embed = predictor.embed
    predictor.embed = lambda some: encoded.append(len(some)) or embed(some)
    with ThreadPoolExecutor(1) as model:
        learner = Learner(predictor, model, 0.9999, store.titles, chunk_rows=16)
        learner.warm(file)
        assert encoded == [16, 16, 8]  # the file's titles, a chunk at a time
        store.decide(file, 3, CODES[2], "onet", "ann",
                     learn=functools.partial(learner.learn, file))
        learner.learn(file, [(titles[3], CODES[2]), ("Wholly New Title", CODES[1])],
                      lambda rows: [])
    assert encoded == [16, 16, 8, 1]
