import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occlass.model import memory as memory_module
from occlass.model.memory import BLOCK_SIMILARITIES, ExemplarMemory, fuse


def memory() -> ExemplarMemory:
    embeddings = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    return ExemplarMemory(embeddings, torch.tensor([0, 0, 2]), ["a", "b", "c"], n_codes=3,
                          identity={})


def test_fused_score_is_the_weighted_sum_of_category_and_best_exemplar_similarity():
    m = memory()
    query = torch.tensor([[0.8, 0.6]])
    category = torch.tensor([[0.1, 0.5, 0.3]])
    best = m.best(query)
    # code 0: exemplars (1, 0) and (0.6, 0.8) → best 0.96; code 1: none; code 2: (0, 1) → 0.6
    assert torch.allclose(best[0, [0, 2]], torch.tensor([0.96, 0.6]))
    assert torch.isinf(best[0, 1])
    fused = fuse(category, best, 0.25)
    expected = torch.tensor([[0.75 * 0.1 + 0.25 * 0.96, 0.5, 0.75 * 0.3 + 0.25 * 0.6]])
    assert torch.allclose(fused, expected)  # a code without exemplars keeps its category score
    assert torch.equal(fuse(category, best, 0.0), category)


def test_evidence_is_the_best_exemplar_of_the_asked_code(tmp_path):
    m = memory()
    titles, values = m.evidence(torch.tensor([[0.8, 0.6], [0.0, 1.0]]), torch.tensor([0, 1]))
    assert titles == ["b", ""] and torch.isclose(values[0], torch.tensor(0.96))
    assert torch.isnan(values[1])
    m.save(tmp_path / "m.pt")
    again = ExemplarMemory.load(tmp_path / "m.pt")
    assert again.titles == m.titles and torch.equal(again.embeddings, m.embeddings)



@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block", [1, 7, 10_000])
@pytest.mark.parametrize("few", [1, 128])
def test_best_and_evidence_match_a_scan_over_every_exemplar(dtype, block, few, monkeypatch):
    """A random memory given out of code order, with codes that have no exemplars and many
    exact ties (coordinates on a coarse grid, duplicated exemplars): the best similarity per
    code and the evidence (the first of equals in the order given) are those of a scan over
    every exemplar, whatever the block size of the lookup (one exemplar, a few codes, all) and
    whichever way round it multiplies (few queries: the exemplars as rows)."""
    monkeypatch.setitem(BLOCK_SIMILARITIES, dtype, block)
    monkeypatch.setattr(memory_module, "FEW_QUERIES", few)
    gen = torch.Generator().manual_seed(0)
    n, n_codes = 60, 12
    labels = torch.randint(0, n_codes, (n,), generator=gen)
    labels[(labels == 3) | (labels == 7)] = 4  # codes 3 and 7 have no exemplars
    labels[-1] = n_codes - 1  # the last code has one
    embeddings = torch.randint(-2, 3, (n, 8), generator=gen) / 4
    embeddings[10:20], labels[10:20] = embeddings[:10], labels[:10]  # duplicates: exact ties
    titles = [f"t{i}" for i in range(n)]
    m = ExemplarMemory(embeddings, labels, titles, n_codes, identity={}).to("cpu", dtype)
    position = [m.titles.index(t) for t in titles]  # where each exemplar given went
    assert m.labels.tolist() == sorted(labels.tolist())
    assert torch.equal(m.labels[position], labels)
    queries = torch.randint(-2, 3, (5, 8), generator=gen) / 4
    best = m.best(queries)
    assert best.shape == (len(queries), n_codes) and best.dtype == torch.float32
    ties = 0
    for code in range(n_codes):
        evidence, values = m.evidence(queries, torch.full((len(queries),), code))
        for row in range(len(queries)):
            scan = [(float(queries[row] @ embeddings[j]), titles[j]) for j in range(n)
                    if labels[j] == code]
            value, title = max(scan, key=lambda s: s[0], default=(-np.inf, ""))
            ties += sum(v == value for v, _ in scan) > 1
            assert float(best[row, code]) == value and evidence[row] == title
            assert float(values[row]) == value if scan else torch.isnan(values[row])
    assert ties > 10  # ties were tested


def test_evidence_asks_each_row_its_own_code():
    m = memory()
    queries = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    titles, values = m.evidence(queries, torch.tensor([2, 0, 0]))
    assert titles == ["c", "b", "a"]
    assert torch.allclose(values, torch.tensor([0.6, 0.8, 1.0]))
