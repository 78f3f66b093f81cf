import torch
import torch.nn.functional as F

from occlass.model.losses import ContrastiveLoss, contrastive_loss


def unit(x):
    return F.normalize(x, dim=-1)


def test_aligned_pairs_have_lower_loss():
    torch.manual_seed(0)
    categories = unit(torch.randn(6, 16))
    queries = unit(categories + 0.1 * torch.randn(6, 16))
    target = torch.arange(6)
    valid = F.one_hot(target, 6).bool()
    aligned = contrastive_loss(queries, categories, target, valid)
    shuffled = contrastive_loss(queries[torch.tensor([1, 2, 3, 4, 5, 0])], categories, target,
                                valid)
    assert aligned < shuffled


def test_forward_direction_masks_other_valid_categories():
    torch.manual_seed(1)
    queries, categories = unit(torch.randn(3, 8)), unit(torch.randn(4, 8))
    target = torch.tensor([0, 1, 2])
    valid = F.one_hot(target, 4).bool()
    valid[0, 3] = True  # category 3 is also correct for input 0: not a negative
    loss = contrastive_loss(queries, categories, target, valid, temperature=0.1, symmetric=False)
    scores = queries @ categories.T / 0.1
    expected = torch.stack([
        F.cross_entropy(scores[0, :3].unsqueeze(0), torch.tensor([0])),
        F.cross_entropy(scores[1].unsqueeze(0), torch.tensor([1])),
        F.cross_entropy(scores[2].unsqueeze(0), torch.tensor([2])),
    ]).mean()
    assert torch.allclose(loss, expected)


def test_reverse_direction_masks_inputs_of_the_same_category():
    torch.manual_seed(2)
    queries, categories = unit(torch.randn(3, 8)), unit(torch.randn(2, 8))
    target = torch.tensor([0, 0, 1])  # inputs 0 and 1 share category 0
    valid = F.one_hot(target, 2).bool()
    both = contrastive_loss(queries, categories, target, valid, temperature=0.1)
    forward = contrastive_loss(queries, categories, target, valid, temperature=0.1,
                               symmetric=False)
    scores = categories @ queries.T / 0.1  # category → inputs
    reverse = torch.stack([
        F.cross_entropy(scores[0, [0, 2]].unsqueeze(0), torch.tensor([0])),  # input 1 masked
        F.cross_entropy(scores[0, [1, 2]].unsqueeze(0), torch.tensor([0])),  # input 0 masked
        F.cross_entropy(scores[1].unsqueeze(0), torch.tensor([2])),
    ]).mean()
    assert torch.allclose(both, (forward + reverse) / 2)


def test_module_builds_target_and_mask_from_category_ids():
    torch.manual_seed(3)
    queries, categories = unit(torch.randn(3, 8)), unit(torch.randn(3, 8))
    labels = torch.tensor([7, 2, 7])
    codes = torch.tensor([[7, 2], [2, -1], [7, -1]])  # input 0 is valid for 7 and 2
    category_index = torch.tensor([2, 5, 7])
    loss = ContrastiveLoss(temperature=0.2)(queries, labels, codes, categories, category_index)
    target = torch.tensor([2, 0, 2])
    valid = torch.tensor([[True, False, True], [True, False, False], [False, False, True]])
    assert torch.allclose(loss, contrastive_loss(queries, categories, target, valid, 0.2))



def test_hard_negatives_come_from_the_bank_outside_the_batch_and_never_a_valid_code():
    torch.manual_seed(4)
    queries, categories = unit(torch.randn(2, 8)), unit(torch.randn(2, 8))
    bank = unit(torch.randn(5, 8))  # every category's embedding; the batch holds 1 and 3
    labels, index = torch.tensor([1, 3]), torch.tensor([1, 3])
    codes = torch.tensor([[1, 4], [3, 4]])  # code 4 is valid for both inputs too
    loss = ContrastiveLoss(temperature=0.1, symmetric=False)
    got = loss(queries, labels, codes, categories, index, bank=bank)
    scores = torch.cat([queries @ categories.T, queries @ bank[[0, 2, 4]].T], dim=1) / 0.1
    expected = torch.stack([  # categories 1, 3 | bank 0, 2 (4 is valid: masked)
        F.cross_entropy(scores[0, [0, 1, 2, 3]].unsqueeze(0), torch.tensor([0])),
        F.cross_entropy(scores[1, [0, 1, 2, 3]].unsqueeze(0), torch.tensor([1])),
    ]).mean()
    assert torch.allclose(got, expected)
    moved = bank.clone()
    moved[4] = queries[0]  # a valid code, however close, is never a negative
    assert torch.allclose(loss(queries, labels, codes, categories, index, bank=moved), got)
    moved[0] = queries[0]  # an invalid one is
    assert loss(queries, labels, codes, categories, index, bank=moved) > got


def test_title_pairs_contrast_each_input_with_the_other_inputs_partner_titles():
    torch.manual_seed(5)
    queries, partners = unit(torch.randn(3, 8)), unit(torch.randn(3, 8))
    categories = unit(torch.randn(2, 8))
    labels, index = torch.tensor([0, 0, 1]), torch.tensor([0, 1])
    codes = labels.unsqueeze(1)
    plain = ContrastiveLoss(temperature=0.1, symmetric=False, title_weight=0.0)
    paired = ContrastiveLoss(temperature=0.1, symmetric=False, title_weight=0.5)
    base = plain(queries, labels, codes, categories, index)
    got = paired(queries, labels, codes, categories, index, partners=partners)
    scores = queries @ partners.T / 0.1  # inputs 0 and 1 share a code: not each other's negative
    title = torch.stack([
        F.cross_entropy(scores[0, [0, 2]].unsqueeze(0), torch.tensor([0])),
        F.cross_entropy(scores[1, [1, 2]].unsqueeze(0), torch.tensor([0])),
        F.cross_entropy(scores[2].unsqueeze(0), torch.tensor([2])),
    ]).mean()
    assert torch.allclose(got, base + 0.5 * title)
