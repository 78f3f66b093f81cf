import logging

import pandas as pd
import pytest
from helpers.tiny import ONET_DATA, write_tiny_onet

from occlass.data.datamodule import TitlePairDataModule
from occlass.data.examples import assign_splits, group_examples, load_pairs, twin_keys
from occlass.data.taxonomy import Taxonomy
from occlass.data.text import normalize_title, surface_key
from occlass.errors import DataError


def test_normalize_title():
    assert normalize_title("Sr. S/W  Engineer") == "sr s w engineer"
    assert normalize_title("Café Manager (Night)") == "cafe manager night"
    assert normalize_title("  ") == ""


def make_examples(data_dir, **kwargs):
    taxonomy = Taxonomy.load(data_dir)
    pairs = load_pairs(data_dir, taxonomy, **kwargs)
    return taxonomy, pairs, group_examples(pairs, taxonomy)


def test_pairs_per_source_are_switchable(tiny_onet):
    _, pairs, _ = make_examples(tiny_onet, sources=["title", "reported"])
    assert pairs["source"].value_counts().to_dict() == {"title": 12, "reported": 12}
    _, pairs, _ = make_examples(tiny_onet)
    # 36 + 2 alternate titles; a short title for the first alternate title of each occupation
    assert pairs["source"].value_counts().to_dict() == {
        "alternate": 38, "title": 12, "reported": 12, "short": 12}
    with pytest.raises(ValueError, match="unknown title source"):
        make_examples(tiny_onet, sources=["title", "wiki"])


def test_multi_code_title_is_one_example_with_all_codes(tiny_onet):
    taxonomy, _, examples = make_examples(tiny_onet)
    developer = examples[examples["key"] == "developer"]
    assert len(developer) == 1
    assert developer["codes"].iloc[0] == sorted(
        [taxonomy.index["15-1252.00"], taxonomy.index["15-1211.00"]])


def twin_keys_of(examples) -> pd.Series:
    """Each example's twin keys: what makes titles one group (a title's surface form)."""
    return pd.Series([set(twin_keys(t, c)) for t, c in zip(examples["title"], examples["codes"])],
                     index=examples.index)


def check_splits(examples, split):
    """Group-level properties: no group spans two splits, and no held-out title has a twin
    key of a training title."""
    assert set(split) <= {"train", "val", "test", "reported"}
    per_group = examples.assign(split=split).groupby("group")["split"].nunique()
    assert (per_group == 1).all()  # no group in two splits
    twins = twin_keys_of(examples)
    in_train = set().union(*twins[split == "train"])
    held_out = twins[split != "train"]
    assert held_out.map(lambda keys: not keys & in_train).all()


@pytest.mark.skipif(not ONET_DATA.is_dir(), reason="run `make data` first")
def test_onet_splits_are_deterministic_and_never_leak():
    _, _, examples = make_examples(ONET_DATA)
    first = assign_splits(examples, 0.05, 0.1, seed=0)
    again = assign_splits(examples, 0.05, 0.1, seed=0)
    other = assign_splits(examples, 0.05, 0.1, seed=1)
    assert first.equals(again)
    assert not first.equals(other)
    check_splits(examples, first)
    check_splits(examples, other)
    # groups join titles (so the group-level checks are not the per-title ones), across splits'
    # worth of titles: were each title split alone, some group would span two splits
    sizes = examples.groupby("group").size()
    assert (sizes > 1).sum() > 1000
    alone = examples.assign(group=examples["key"])
    with pytest.raises(AssertionError):
        check_splits(examples, assign_splits(alone, 0.05, 0.1, seed=0))
    shares = first.value_counts(normalize=True)
    assert 0.08 < shares["test"] < 0.12 and 0.03 < shares["val"] < 0.07
    # an occupation's own title is part of its category text: it always trains
    anchored = examples["sources"].map(lambda s: "title" in s)
    assert (first[anchored] == "train").all()


@pytest.mark.skipif(not ONET_DATA.is_dir(), reason="run `make data` first")
def test_reported_holdout_holds_the_groups_of_titles_only_workers_reported():
    _, _, examples = make_examples(ONET_DATA)
    split = assign_splits(examples, 0.05, 0.1, seed=0)
    held = examples[split == "reported"]
    assert 2_000 < len(held) < 5_000
    reported_groups = set(examples.loc[examples["reported_only"], "group"])
    assert set(held["group"]) == reported_groups - set(examples.loc[split == "train", "group"])
    assert not held["sources"].map(lambda s: "title" in s).any()  # never an occupation's title
    assert (assign_splits(examples, 0.05, 0.1, seed=0, holdout="none") == "train").all()


@pytest.mark.integration
@pytest.mark.skipif(not ONET_DATA.is_dir(), reason="run `make data` first")
def test_no_held_out_title_has_a_surface_form_in_train():
    """On the real O*NET files: no test, validation or reported title has its same-row partner
    (alternate ↔ short title) or a twin after `surface_key` (plural, word order, stop words)
    in train."""
    _, pairs, examples = make_examples(ONET_DATA)
    split = dict(zip(examples["key"], assign_splits(examples, 0.05, 0.1, seed=0)))
    train = {k for k, s in split.items() if s == "train"}
    surface_in_train = {surface_key(k) for k in train}
    keys = pairs.assign(key=pairs["title"].map(normalize_title))
    for held_out in ("val", "test", "reported"):
        held = {k for k, s in split.items() if s == held_out}
        assert len(held) > 1000
        assert not {surface_key(k) for k in held} & surface_in_train
        rows = keys[keys["entry"].isin(set(keys.loc[keys["key"].isin(held), "entry"]) - {""})]
        assert not set(rows["key"]) & train, held_out  # same-row partners of held-out titles


def test_surface_key_joins_plurals_orders_and_stop_words():
    assert surface_key("Inspector, pole") == surface_key("Pole Inspectors")
    assert surface_key("Secretaries & Clerks") == surface_key("clerk and secretary")
    assert surface_key("Director of Nursing") == surface_key("Nursing Director")
    assert surface_key("Nurse") != surface_key("Nurse Aide")
    assert surface_key("the") == "the"  # nothing but stop words: kept as it is


def test_twin_keys_join_spacing_abbreviation_and_parenthesised_twins():
    def shared(a, b, codes_a=(0,), codes_b=(0,)):
        return set(twin_keys(a, codes_a)) & set(twin_keys(b, codes_b))

    assert shared("Co-Pilot", "Copilot") and shared("Bill Board Installer", "Billboard Installer")
    assert shared("Driver's Helper", "Drivers Helper")
    assert shared("Sr. Accountant", "Senior Accountant") and shared("S/W Engineer", "Software Eng")
    assert shared("Registered Nurse (RN)", "Registered Nurse")
    assert shared("Registered Nurse (RN)", "RN")
    # a parenthesised part joins only titles of the same code
    assert shared("Cook (Line)", "Line") and not shared("Cook (Line)", "Line", (0,), (1,))
    assert not shared("Nurse", "Nurse Aide") and not shared("Accountant", "Senior Accountant")


def test_twins_go_to_one_split(tiny_onet):
    taxonomy = Taxonomy.load(tiny_onet)
    pairs = pd.DataFrame({"title": ["Co-Pilot", "Copilot", "Sr. Welder", "Senior Welder", "Cook"],
                          "description": "", "code": taxonomy.codes[0], "source": "mine",
                          "reported_only": False, "entry": ""})
    examples = group_examples(pairs, taxonomy)
    group = dict(zip(examples["title"], examples["group"]))
    assert group["Co-Pilot"] == group["Copilot"] and group["Sr. Welder"] == group["Senior Welder"]
    assert len(set(group.values())) == 3


def test_user_labelled_file(tiny_onet, tmp_path, caplog):
    path = tmp_path / "mine.csv"
    path.write_text("title,description,code\n"
                    "Backend engineer,Builds APIs in Go,15-1252.00\n"
                    ",no title here,15-1252.00\n"
                    "Night nurse,,29-1141.00\n")
    taxonomy = Taxonomy.load(tiny_onet)
    with caplog.at_level(logging.WARNING):
        pairs = load_pairs(tiny_onet, taxonomy, sources=[], extra_files=[path])
    assert "dropped 1 row(s) with an empty title" in caplog.text
    assert pairs["title"].tolist() == ["Backend engineer", "Night nurse"]
    assert pairs["description"].tolist() == ["Builds APIs in Go", ""]
    examples = group_examples(pairs, taxonomy)
    assert "Backend engineer. Builds APIs in Go" in examples["text"].tolist()


@pytest.mark.parametrize("content, message", [
    ("title,code\nNurse,29-1141.00\nPilot,53-2011.00\n",
     r"mine\.csv, line 3: code '53-2011.00' is not an occupation of this taxonomy"),
    ("title,code\nNurse,29-1141\n", r"mine\.csv, line 2: malformed O\*NET-SOC code '29-1141'"),
    ("job,code\nNurse,29-1141.00\n", r"missing.*title"),
])
def test_user_labelled_file_errors(tiny_onet, tmp_path, content, message):
    path = tmp_path / "mine.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_pairs(tiny_onet, Taxonomy.load(tiny_onet), sources=["title"], extra_files=[path])


@pytest.mark.parametrize("name, content, line", [
    ("mine.csv", ('title,description,code\nNurse,"Cares for\npatients.\n\nNights.",29-1141.00\n'
                  "\nPilot,,53-2011.00\n"), 7),
    ("mine.jsonl", ('{"title": "Nurse", "code": "29-1141.00"}\n\n\n'
                    '{"title": "Pilot", "code": "53-2011.00"}\n'), 4),
])
def test_user_labelled_file_errors_name_physical_lines(tiny_onet, tmp_path, name, content, line):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{name}, line {line}: code '53-2011.00' is not"):
        load_pairs(tiny_onet, Taxonomy.load(tiny_onet), sources=[], extra_files=[path])


def test_extra_files_may_be_one_path(tiny_onet, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("title,code\nBackend engineer,15-1252.00\n")
    taxonomy = Taxonomy.load(tiny_onet)
    for extra_files in (str(path), path, [str(path)]):
        pairs = load_pairs(tiny_onet, taxonomy, sources=[], extra_files=extra_files)
        assert pairs[["title", "source"]].values.tolist() == [["Backend engineer", "mine"]]


def test_unknown_code_in_an_onet_file(tmp_path):
    folder = write_tiny_onet(tmp_path / "onet")
    path = folder / "Sample of Reported Titles.txt"
    path.write_text(path.read_text() + "99-9999.00\tNobody\tGhost\tY\n")
    with pytest.raises(DataError, match=r"Reported Titles\.txt, line 14: code '99-9999.00'"):
        load_pairs(folder, Taxonomy.load(folder))


def test_missing_data_folder(tmp_path, tiny_bert):
    datamodule = TitlePairDataModule(str(tmp_path / "nowhere"), str(tiny_bert))
    with pytest.raises(DataError, match="O\\*NET data folder not found"):
        datamodule.setup()


def test_datamodule_batches(tiny_onet, tiny_bert):
    datamodule = TitlePairDataModule(str(tiny_onet), str(tiny_bert), batch_size=16,
                                     eval_batch_size=8, max_input_length=12,
                                     max_category_length=20, val_fraction=0.2,
                                     test_fraction=0.2)
    datamodule.setup()
    pad = datamodule.tokenizer.pad_token_id
    batch = next(iter(datamodule.train_dataloader()))
    title = batch["title"]
    assert title["input_ids"].shape[0] == 16
    lengths = title["attention_mask"].sum(1)
    assert title["input_ids"].shape[1] == lengths.max() <= 12  # padded to the longest only
    assert (title["input_ids"][title["attention_mask"] == 0] == pad).all()
    # each distinct category of the batch is carried once, in category_index order
    assert batch["category_index"].tolist() == sorted(set(batch["label"].tolist()))
    assert batch["category"]["input_ids"].shape[0] == len(batch["category_index"])
    assert batch["category"]["input_ids"].shape[1] <= 20
    first = batch["category_index"][0]
    expected = datamodule.categories.token_ids[first]
    assert batch["category"]["input_ids"][0, :len(expected)].tolist() == expected
    # the label is always among the title's codes; codes are padded with -1
    assert (batch["codes"] == batch["label"].unsqueeze(1)).any(1).all()
    assert batch["codes"].min() >= -1
    eval_batch = next(iter(datamodule.val_dataloader()))
    assert set(eval_batch) == {"title", "codes", "choose"}
    assert eval_batch["title"]["input_ids"].shape[0] <= 8
    # every other validation title chooses the fusion weight, the others measure with it
    assert eval_batch["choose"].tolist() == [i % 2 == 0 for i in range(len(eval_batch["choose"]))]
    assert set(next(iter(datamodule.test_dataloader()))) == {"title", "codes"}


def test_summary_command(tiny_onet, capsys):
    from occlass.data.datamodule import main

    main([f"paths.data_dir={tiny_onet}"])
    out = capsys.readouterr().out
    assert "| alternate | 38 |" in out
    assert "| train |" in out and "| test |" in out
