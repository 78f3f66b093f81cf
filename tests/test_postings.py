import random
import re

import pandas as pd
import pytest
from helpers.tiny import OCCUPATIONS, ONET_DATA

from occlass.data.postings import (
    BENEFITS,
    BLURBS,
    EQUAL_OPPORTUNITY,
    FITTING,
    GENERIC_DUTIES,
    REQUIREMENTS,
    posting_tasks,
    pseudo_posting,
    pseudo_postings,
    task_half,
)
from occlass.data.taxonomy import Taxonomy
from occlass.data.text import normalize_title

TASKS = {
    "15-1252.00": [f"Write program module {i} in the main codebase." for i in range(12)],
    "29-1141.00": [f"Record patient vital sign {i}." for i in range(6)],
    "47-2111.00": [f"Inspect wiring panel {i}." for i in range(4)],
}


@pytest.mark.parametrize("n_tasks", [0, 1, 3, 5])
@pytest.mark.parametrize("length", range(15))
def test_posting_tasks_skip_the_first_half_and_the_category_tasks(length, n_tasks):
    tasks = [f"task {i}" for i in range(length)]
    kept = posting_tasks(tasks, n_tasks)
    assert not set(kept) & set(tasks[:n_tasks])
    assert not set(kept) & set(tasks[:length // 2])
    assert kept == tasks[max(n_tasks, length // 2):]  # everything else, in order


def test_posting_holds_sampled_tasks_and_boilerplate_but_not_the_title():
    tasks = TASKS["15-1252.00"]
    text = pseudo_posting("Software Developer", tasks, random.Random(0), n_tasks=5)
    assert sum(task in text for task in tasks) == 5
    assert "Software Developer" not in text
    assert "Responsibilities:" in text
    duties = text.index("Responsibilities:")
    assert all(text.index(task) > duties for task in tasks if task in text)
    assert sum(blurb in text for blurb in BLURBS) == 1
    assert sum(benefit in text for benefit in BENEFITS) == 1
    assert any(text.endswith(statement) for statement in EQUAL_OPPORTUNITY)


def test_posting_with_few_tasks_uses_them_all():
    tasks = TASKS["47-2111.00"][:2]
    text = pseudo_posting("Electrician", tasks, random.Random(1), n_tasks=5)
    assert all(task in text for task in tasks)


def test_postings_vary_order_sample_and_layout():
    tasks = TASKS["15-1252.00"]
    texts = [pseudo_posting("x", tasks, random.Random(seed), n_tasks=5) for seed in range(40)]
    orders = {tuple(sorted((t.index(task), task) for task in tasks if task in t)) for t in texts}
    assert len(orders) > 30  # different tasks and different orders
    first_lines = {t.split("\n")[0] for t in texts}
    assert "Responsibilities:" in first_lines  # some ads do not open with the company
    assert first_lines & set(BLURBS)
    assert sum("Requirements:" in t or "Qualifications:" in t for t in texts) not in (0, 40)


def test_pseudo_postings_draw_only_unused_tasks_and_are_seeded():
    titles = ["Developer", "Nurse", "Electrician", "Unknown"]
    codes = ["15-1252.00", "29-1141.00", "47-2111.00", "99-9999.00"]
    texts = pseudo_postings(titles, codes, TASKS, seed=0, n_tasks=5, category_n_tasks=3)
    assert len(texts) == 4 and texts[-1] == ""
    for text, title, code in zip(texts, titles, codes[:3]):
        tasks = TASKS[code]
        unused = posting_tasks(tasks, 3)
        assert not any(task in text for task in tasks if task not in unused)
        assert sum(task in text for task in unused) == min(5, len(task_half(unused, False)))
        assert title not in text
    assert pseudo_postings(titles, codes, TASKS, seed=0) == texts
    assert pseudo_postings(titles, codes, TASKS, seed=1) != texts


def test_pseudo_postings_on_the_tiny_onet(tiny_onet):
    taxonomy = Taxonomy.load(tiny_onet, with_tasks=True)
    # two tasks per code, the core one first: with 3 category tasks nothing is left over
    assert set(pseudo_postings(taxonomy.titles, taxonomy.codes, taxonomy.tasks)) == {""}
    texts = pseudo_postings(taxonomy.titles, taxonomy.codes, taxonomy.tasks, category_n_tasks=1)
    for text, title in zip(texts, taxonomy.titles):
        assert f"Supplemental task of {title}." in text
        assert f"Core task of {title}." not in text


def test_pseudo_postings_need_one_code_per_title():
    with pytest.raises(ValueError, match="2 titles but 1 codes"):
        pseudo_postings(["a", "b"], ["15-1252.00"], TASKS)


def occupation_titles() -> set[str]:
    titles = {t for _, title, _, alts, reps in OCCUPATIONS for t in [title, *alts, *reps]}
    if ONET_DATA.is_dir():
        for name, column in [("Occupation Data.txt", "Title"),
                             ("Alternate Titles.txt", "Alternate Title")]:
            frame = pd.read_csv(ONET_DATA / name, sep="\t", dtype=str, quoting=3)
            titles.update(frame[column].dropna())
    return {normalize_title(t) for t in titles} - {""}


def test_boilerplate_names_no_occupation():
    titles = occupation_titles()
    fitting = [text for field in FITTING[:4] for text in field]
    for text in BLURBS + BENEFITS + EQUAL_OPPORTUNITY + REQUIREMENTS + fitting + GENERIC_DUTIES:
        padded = f" {normalize_title(text)} "
        named = [t for t in titles if f" {t} " in padded]
        assert not named, (text, named)


def test_requirements_fill_in_years():
    texts = [pseudo_posting("x", ["Do a thing."], random.Random(seed)) for seed in range(60)]
    assert not any("{" in t for t in texts)
    assert any(re.search(r"\b[2-5]\+? years", t) for t in texts)
