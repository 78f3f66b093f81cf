import torch
import torch.nn.functional as F

from occlass.model.memory import ExemplarMemory, fuse


def memory() -> ExemplarMemory:
    embeddings = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    return ExemplarMemory(embeddings, torch.tensor([0, 0, 2]), ["a", "b", "c"], n_codes=3,
                          identity={})


def test_fused_score_is_the_weighted_sum_of_category_and_best_exemplar_similarity():
    m = memory()
    query = torch.tensor([[0.8, 0.6]])
    category = torch.tensor([[0.1, 0.5, 0.3]])
    best = m.best(m.similarities(query))
    # code 0: exemplars (1, 0) and (0.6, 0.8) → best 0.96; code 1: none; code 2: (0, 1) → 0.6
    assert torch.allclose(best[0, [0, 2]], torch.tensor([0.96, 0.6]))
    assert torch.isinf(best[0, 1])
    fused = fuse(category, best, 0.25)
    expected = torch.tensor([[0.75 * 0.1 + 0.25 * 0.96, 0.5, 0.75 * 0.3 + 0.25 * 0.6]])
    assert torch.allclose(fused, expected)  # a code without exemplars keeps its category score
    assert torch.equal(fuse(category, best, 0.0), category)


def test_evidence_is_the_best_exemplar_of_the_asked_code(tmp_path):
    m = memory()
    sims = m.similarities(torch.tensor([[0.8, 0.6], [0.0, 1.0]]))
    titles, values = m.evidence(sims, torch.tensor([0, 1]))
    assert titles == ["b", ""] and torch.isclose(values[0], torch.tensor(0.96))
    assert torch.isnan(values[1])
    m.save(tmp_path / "m.pt")
    again = ExemplarMemory.load(tmp_path / "m.pt")
    assert again.titles == m.titles and torch.equal(again.embeddings, m.embeddings)
