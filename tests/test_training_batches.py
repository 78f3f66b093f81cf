"""What reaches the training step: the DataModule's batches carry noised titles and title-pair
partners when the config turns them on, and the clean titles and no partners when it does not."""

import pytest
from hydra.utils import instantiate


def epoch(cfg):
    """The training rows of each batch of the first epoch (in the sampler's order), the batches,
    and a function giving a text's token ids as the batches hold them."""
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    loader = datamodule.train_dataloader()
    train = datamodule.datasets["train"]
    order = list(loader.sampler)
    size = loader.batch_size
    rows = [[train[i] for i in order[start:start + size]]
            for start in range(0, len(order) - size + 1, size)]

    def ids(text):
        return datamodule.tokenizer(text, truncation=True,
                                    max_length=cfg.data.max_input_length)["input_ids"]

    return rows, list(loader), ids, datamodule.partners()


def held(tokens):
    """The token ids of each row of a padded batch."""
    return [row[mask.bool()].tolist() for row, mask in zip(tokens["input_ids"],
                                                          tokens["attention_mask"])]


@pytest.mark.parametrize("noise", [True, False])
@pytest.mark.parametrize("pairs", [True, False])
def test_batches_carry_noised_titles_and_partners_when_on(train_cfg, noise, pairs):
    overrides = [f"data.title_pairs={str(pairs).lower()}"] + ([] if noise else ["data.noise=null"])
    rows, batches, ids, partners = epoch(train_cfg(*overrides))
    titles = clean = 0
    other_partners = noised_partners = 0
    for batch_rows, batch in zip(rows, batches, strict=True):
        assert batch["label"].tolist() == [r["label"] for r in batch_rows]
        for row, title in zip(batch_rows, held(batch["title"])):
            titles += 1
            clean += title == ids(row["text"])
        assert ("partner" in batch) == pairs
        if pairs:
            for row, partner in zip(batch_rows, held(batch["partner"])):
                pool = [ids(t) for t in partners[row["label"]]]
                noised_partners += partner not in pool
                other_partners += partner in pool and partner != ids(row["text"])
    if noise:  # probability 0.5: about half of the titles changed
        assert 0.25 * titles < titles - clean < 0.75 * titles
    else:
        assert clean == titles
    if pairs:
        assert other_partners > 0  # another title of the same code
        assert (noised_partners > 0) == noise
