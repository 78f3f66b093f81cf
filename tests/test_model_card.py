"""The exported encoder as a sentence-transformers model (same embeddings as occlass), and its
model card."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from occlass.data.taxonomy import Taxonomy
from occlass.data.tokenizer import PACKAGED, load_tokenizer, resolve_model
from occlass.errors import OcclassError
from occlass.model.encoder import Encoder
from occlass.report.model_card import write_model_card, write_sentence_transformers_config

st = pytest.importorskip("sentence_transformers")

TITLES = ["nurse", "RN", "Senior Software Engineer (Python), remote", "Café manager",
          "chief executive officer. Plans and directs the company."]
ATTRIBUTION = ("This model was trained on O*NET 29.3 Database by the U.S. Department of Labor, "
               "Employment and Training Administration (USDOL/ETA). Used under the CC BY 4.0 "
               "license. O*NET® is a trademark of USDOL/ETA.")


def export_like_training(model_name, encoder_dir):
    """The encoder folder as training's export writes it: encoder and tokenizer save_pretrained."""
    Encoder(model_name).save_pretrained(encoder_dir)
    load_tokenizer(model_name).save_pretrained(encoder_dir)
    return encoder_dir


def occlass_embeddings(encoder_dir, texts, max_length):
    """Embeddings as occlass computes them: its tokenizer call, then Encoder.encode_ids."""
    tokenizer = load_tokenizer(encoder_dir)
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return Encoder(encoder_dir).encode_ids(ids, tokenizer.pad_token_id), ids


def st_embeddings(model, texts):
    return model.encode(texts, convert_to_tensor=True, batch_size=2).cpu()


def front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def code_blocks(card: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)\n```", card, re.DOTALL)


def test_tiny_export_loads_in_sentence_transformers(tmp_path, tiny_bert, tiny_onet):
    encoder_dir = export_like_training(tiny_bert, tmp_path / "encoder")
    files_before = {p: p.read_bytes() for p in encoder_dir.iterdir()}
    write_sentence_transformers_config(encoder_dir, max_seq_length=12)
    config = {"data": {"recipe": "title_description", "max_input_length": 12,
                       "max_category_length": 24, "sources": ["title", "alternate"],
                       "test_fraction": 0.2}}
    write_model_card(encoder_dir, base_model=str(tiny_bert), taxonomy_version="29.3",
                     config=config, metrics=None, n_codes=12)
    # The model's and tokenizer's own files are left as they were.
    assert {p: p.read_bytes() for p in files_before} == files_before
    assert json.loads((encoder_dir / "1_Pooling" / "config.json").read_text())[
        "word_embedding_dimension"] == 32
    assert not list(encoder_dir.rglob("*.tmp"))

    model = st.SentenceTransformer(str(encoder_dir), device="cpu")
    assert model.max_seq_length == 12
    assert model.get_embedding_dimension() == 32
    ours, ids = occlass_embeddings(encoder_dir, TITLES, max_length=12)
    assert max(len(i) for i in ids) == 12  # the long titles are truncated, by both
    theirs = st_embeddings(model, TITLES)
    assert theirs.shape == ours.shape == (len(TITLES), 32)
    assert (theirs - ours).abs().max() < 1e-5
    assert torch.allclose(theirs.norm(dim=1), torch.ones(len(TITLES)), atol=1e-5)
    # Truncation matters here: untruncated, the long titles embed differently.
    untruncated, _ = occlass_embeddings(encoder_dir, TITLES, max_length=512)
    assert (untruncated - ours).abs().max() > 1e-3

    # The card's ranking code, run as written (O*NET path aside), builds the occupation texts
    # exactly as occlass does for each recipe, and gives occlass's scores.
    for recipe in ("title_description", "title", "title_description_tasks"):
        config["data"]["recipe"] = recipe
        write_model_card(encoder_dir, base_model=str(tiny_bert), taxonomy_version="29.3",
                         config=config, metrics=None, n_codes=12)
        card = (encoder_dir / "README.md").read_text(encoding="utf-8")
        snippet = code_blocks(card, "python")[1]
        assert "model.max_seq_length = 24" in snippet
        snippet = (snippet.replace('"Occupation Data.txt"',
                                   repr(str(tiny_onet / "Occupation Data.txt")))
                   .replace('"path/to/onet"', repr(str(tiny_onet))))
        namespace = {"model": model}
        exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 (our card's code)
        taxonomy = Taxonomy.load(tiny_onet, with_tasks=True)
        assert namespace["texts"] == taxonomy.category_texts(recipe), recipe
        assert list(namespace["codes"]) == taxonomy.codes
        categories, _ = occlass_embeddings(encoder_dir, namespace["texts"], max_length=24)
        title, _ = occlass_embeddings(encoder_dir, ["senior python developer"], max_length=12)
        assert (namespace["scores"].cpu() - title @ categories.T).abs().max() < 1e-5


@pytest.mark.integration
def test_packaged_minilm_export_loads_in_sentence_transformers(tmp_path, packaged_minilm):
    encoder_dir = export_like_training(packaged_minilm, tmp_path / "encoder")
    write_sentence_transformers_config(encoder_dir, max_seq_length=32)
    model = st.SentenceTransformer(str(encoder_dir), device="cpu")
    assert model.get_embedding_dimension() == 384
    ours, _ = occlass_embeddings(encoder_dir, TITLES, max_length=32)
    theirs = st_embeddings(model, TITLES)
    assert (theirs - ours).abs().max() < 1e-5
    # ... and the same as the package's own sentence-transformers folder.
    original = st.SentenceTransformer(resolve_model(PACKAGED), device="cpu")
    assert (st_embeddings(original, TITLES) - theirs).abs().max() < 1e-5


def test_model_card(tmp_path, train_cfg, tiny_bert):
    config = OmegaConf.to_container(train_cfg(), resolve=True)
    after = {"accuracy": 0.50421, "top5_accuracy": 0.7741, "f1_macro": 0.31275}
    metrics = {"before": {"accuracy": 0.297, "top5_accuracy": 0.5223, "f1_macro": 0.2},
               "after": after}
    write_model_card(tmp_path, base_model=PACKAGED, taxonomy_version="29.3", config=config,
                     metrics=metrics, n_codes=1016, fusion_weight=0.9)
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    text = " ".join(card.split())
    meta = front_matter(card)
    assert meta["library_name"] == "sentence-transformers"
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "sentence-transformers" in meta["tags"] and "occlass" in meta["tags"]
    assert ATTRIBUTION in card
    assert "the 1,016 occupations of O*NET 29.3" in " ".join(card.split())
    assert "## Base model\n\n[sentence-transformers/all-MiniLM-L6-v2]" in card
    assert "| accuracy | 0.2970 | 0.5042 |" in card
    assert "| top5_accuracy | 0.5223 | 0.7741 |" in card
    assert "| f1_macro | 0.2000 | 0.3127 |" in card
    assert "(20% of the titles)" in card
    # The metrics are fused-with-memory scores; the sentence-transformers snippet is not.
    assert "by occlass's fused score" in text and "w = 0.9 as chosen on the validation" in text
    assert "snippet above gives the category similarity alone (w = 0), not these scores" in text
    write_model_card(tmp_path, base_model=PACKAGED, taxonomy_version="29.3", config=config,
                     metrics=metrics, n_codes=1016)  # no memory
    text = " ".join((tmp_path / "README.md").read_text(encoding="utf-8").split())
    assert "occlass's fused score" not in text
    assert "by the cosine similarity of a title to their texts (the category similarity" in text
    assert "python predict.py run=" in card
    assert 'SentenceTransformer("path/to/this/folder")' in card
    # The config block is the config, as YAML.
    (config_block,) = code_blocks(card, "yaml")
    assert yaml.safe_load(config_block) == json.loads(json.dumps(config))
    assert len(config_block.splitlines()) < len(yaml.safe_dump(config).splitlines())  # compact
    assert not [p for p in tmp_path.iterdir() if p.name != "README.md"]

    # No metrics; a local base model (no Hub id in the metadata); rewritten in place.
    write_model_card(tmp_path, base_model=str(tiny_bert), taxonomy_version="28.1",
                     config={}, metrics=None, n_codes=12)
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "base_model" not in front_matter(card)
    assert f"a local model folder, `{tiny_bert}`" in card
    assert ATTRIBUTION.replace("29.3", "28.1") in card
    assert "No test metrics were recorded" in card
    assert "| accuracy |" not in card
    write_model_card(tmp_path, base_model="sentence-transformers/all-mpnet-base-v2",
                     taxonomy_version="29.3", config=config, metrics={"after": None}, n_codes=12)
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert front_matter(card)["base_model"] == "sentence-transformers/all-mpnet-base-v2"
    assert "No test metrics were recorded" in card


def test_config_needs_a_model_folder_and_a_length(tmp_path, tiny_bert):
    with pytest.raises(OcclassError, match="not a model folder"):
        write_sentence_transformers_config(tmp_path, max_seq_length=32)
    with pytest.raises(OcclassError, match="max_seq_length must be a positive whole number"):
        write_sentence_transformers_config(tiny_bert, max_seq_length=0)
    assert not list(tmp_path.iterdir()) and not (tiny_bert / "modules.json").exists()
