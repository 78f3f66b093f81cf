import torch
import torch.nn.functional as F

from occlass.losses import ContrastiveLoss, contrastive_loss


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

