"""OccupationClassifier on its own: built from explicit inputs, scoring with no DataModule and no
Trainer."""

import torch
import torch.nn.functional as F

from occlass.data.categories import Categories
from occlass.data.datamodule import TitlePairDataModule
from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import load_tokenizer
from occlass.model.encoder import Encoder
from occlass.model.module import OccupationClassifier

TITLES = ["registered nurse", "master plumber", "chief executive officer"]


def test_module_scores_a_batch_without_datamodule_or_trainer(tiny_bert, tiny_onet):
    tokenizer = load_tokenizer(tiny_bert)
    taxonomy = Taxonomy.load(tiny_onet)
    categories = Categories.from_taxonomy(taxonomy, tokenizer, "title_description", 3, 64)
    model = OccupationClassifier(Encoder(tiny_bert), categories, top_k=2)
    model.eval()
    batch = tokenizer(TITLES, padding=True, return_tensors="pt")
    with torch.no_grad():
        scores = model.score({"input_ids": batch["input_ids"],
                              "attention_mask": batch["attention_mask"]})
    # brute force: each text encoded alone, cosine similarity
    encoder = Encoder(tiny_bert).eval()

    def embed(text: str, max_length: int) -> torch.Tensor:
        ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            return encoder(ids["input_ids"], ids["attention_mask"])[0]

    texts = taxonomy.category_texts("title_description")
    matrix = torch.stack([embed(text, 64) for text in texts])
    expected = torch.stack([F.cosine_similarity(embed(t, 64)[None], matrix) for t in TITLES])
    assert scores.shape == (3, len(taxonomy))
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    # the metrics are the module's own, ready without a Trainer
    codes = torch.tensor([[taxonomy.index["29-1141.00"]], [taxonomy.index["47-2152.00"]],
                          [taxonomy.index["11-1011.00"]]])
    model.metrics["test"].update(scores, codes)
    top1 = (scores.argmax(dim=1) == codes[:, 0]).float().mean().item()
    assert model.metrics["test"].compute()["accuracy"] == top1


def test_soc_level_accuracy_follows_the_soc_2018_structure_not_code_prefixes(tiny_bert,
                                                                            tiny_onet):
    """Registered Nurses (29-1141) and Physicians, All Other (29-1229) share SOC minor group
    29-1000 though their codes' prefixes differ (29-11, 29-12); their broad groups differ
    (29-1140, 29-1210). Licensed Practical Nurses (29-2061) are in minor group 29-2000."""
    taxonomy = Taxonomy.load(tiny_onet)
    categories = Categories.from_taxonomy(taxonomy, load_tokenizer(tiny_bert),
                                          "title_description", 3, 64)
    levels = TitlePairDataModule(str(tiny_onet), str(tiny_bert)).levels
    model = OccupationClassifier(Encoder(tiny_bert), categories, levels=levels)
    metrics = model.metrics["test"]
    assert metrics.names[-4:] == ["major_accuracy", "minor_accuracy", "broad_accuracy",
                                  "detailed_accuracy"]
    gold = [taxonomy.index["29-1141.00"], taxonomy.index["29-1141.00"]]
    predicted = [taxonomy.index["29-1229.00"], taxonomy.index["29-2061.00"]]
    scores = torch.zeros(2, len(taxonomy))
    scores[[0, 1], predicted] = 1.0
    metrics.update(scores, torch.tensor(gold).unsqueeze(1))
    values = metrics.compute()
    assert values["major_accuracy"] == 1.0
    assert values["minor_accuracy"] == 0.5  # by code prefix: 0
    assert values["broad_accuracy"] == values["detailed_accuracy"] == 0.0
    # without the structure, no SOC-level accuracy at all (not a guess from prefixes)
    assert "minor_accuracy" not in OccupationClassifier(Encoder(tiny_bert), categories).metrics[
        "test"].names
