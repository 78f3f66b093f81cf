import pytest
import torch

from occlass.data.tokenizer import load_tokenizer, resolve_model
from occlass.errors import OcclassError
from occlass.model.encoder import PACK_TOKENS, Encoder, mean_pool, packed_rows


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, -50.0]]])
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert torch.allclose(pooled, torch.nn.functional.normalize(torch.tensor([[2.0, 1.0]])))


def test_padding_does_not_change_embeddings(tiny_bert):
    encoder = Encoder(tiny_bert).eval()
    tokenizer = load_tokenizer(tiny_bert)
    alone = tokenizer(["nurse"], return_tensors="pt")
    padded = tokenizer(["nurse", "registered nurse practitioner"], padding=True,
                       return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]
    with torch.no_grad():
        a = encoder(alone["input_ids"], alone["attention_mask"])
        b = encoder(padded["input_ids"], padded["attention_mask"])
    assert torch.allclose(a[0], b[0], atol=1e-5)
    assert torch.allclose(b.norm(dim=1), torch.ones(2))


def test_encoder_starts_in_train_mode(tiny_bert):
    assert Encoder(tiny_bert).model.training


def test_resolve_model(tiny_bert, tmp_path):
    assert resolve_model(tiny_bert) == str(tiny_bert)
    assert resolve_model("sentence-transformers/all-MiniLM-L12-v2").startswith("sentence-")
    with pytest.raises(OcclassError, match="not a model folder"):
        resolve_model(tmp_path)
    with pytest.raises(OcclassError, match="model folder not found"):
        resolve_model("./no/such/model")
    with pytest.raises(OcclassError, match="unknown packaged model"):
        resolve_model("packaged:bert-large")


@pytest.mark.integration
def test_packaged_model_resolves_offline(packaged_minilm):
    assert Encoder(packaged_minilm).dim == 384


def test_encode_ids_turns_dropout_off_and_gives_the_mode_back(tiny_bert):
    encoder = Encoder(tiny_bert)
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    ids = [[2, 5, 6, 7, 3], [2, 8, 3]]
    batch = torch.tensor([ids[0]]), torch.ones(1, 5, dtype=torch.long)
    assert not torch.equal(encoder(*batch), encoder(*batch))  # dropout is live in train mode
    first, second = encoder.encode_ids(ids, pad_id=0), encoder.encode_ids(ids, pad_id=0)
    assert torch.equal(first, second)
    assert encoder.training


def test_packed_texts_embed_as_each_would_alone(tiny_bert):
    """Short texts share a row, end to end, and a long one has its own: each text's embedding
    is the one it gets alone, without padding or neighbours."""
    encoder = Encoder(tiny_bert).eval()
    vocab = encoder.model.config.vocab_size
    ids = [[2, 5, 3], [2, 6, 7, 8, 3], [2, *[5 + i % (vocab - 5) for i in range(70)], 3],
           [2, 9, 3], [2, 9, 3, 4]]
    rows = packed_rows([len(i) for i in ids], PACK_TOKENS)
    assert sorted(map(len, rows)) == [1, 4]  # four short texts in one row, the long one alone
    with torch.no_grad():
        alone = torch.cat([encoder(torch.tensor([i]), torch.ones(1, len(i), dtype=torch.long))
                           for i in ids])
    assert torch.allclose(encoder.encode_ids(ids, pad_id=0), alone, atol=1e-6)
