import difflib
import importlib.util
import itertools
import random
import re

import pytest
from helpers.tiny import OCCUPATIONS, ROOT

from occlass.data.augment import TRANSFORMS, TitleNoise
from occlass.data.text import normalize_title

# bench/ is a folder of scripts, not a package: load the script by path.
_spec = importlib.util.spec_from_file_location("noisy_copy", ROOT / "bench" / "noisy_copy.py")
noisy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(noisy)

TITLES = [
    "Pole Inspector", "Registered Nurse", "Senior Software Engineer", "Director of Nursing",
    "Passer", "Tax Examiner", "Licensed Practical Nurse", "Customer Service Representative",
    "CAD Drafter (Computer Aided Design Drafter)", "Vice President of Operations", "RN",
    "Maintenance Mechanic", "Administrative Assistant", "Human Resources Manager", "Bus Driver",
    "Research and Development Engineer", "Warehouse Associate", "Cook", "Dental Hygienist",
    "Quality Control Technician (QC Tech)",
] + [t for _, _, _, alts, _ in OCCUPATIONS for t in alts]


def words(text: str) -> list[str]:
    return normalize_title(text.replace("&", " and ")).split()


def recoverable(title: str, copy: str) -> bool:
    """Every word of `title` is in `copy` as is, abbreviated, or with one slip."""
    found = set(words(copy))
    padded = f" {' '.join(words(copy))} "
    for phrase, short in noisy.ABBREVIATIONS.items():
        if f" {normalize_title(short.replace('&', 'and'))} " in padded:
            found.update(phrase.split())
    return all(w in found or any(difflib.SequenceMatcher(None, w, f).ratio() >= 0.7
                                 for f in found if len(w) >= 4)
               for w in words(title))


def test_noisy_copy_is_seeded():
    assert noisy.noisy_copy(TITLES, seed=0) == noisy.noisy_copy(TITLES, seed=0)
    assert noisy.noisy_copy(TITLES, seed=0) != noisy.noisy_copy(TITLES, seed=1)


def test_noisy_copy_changes_titles_but_keeps_their_words():
    titles = TITLES * 20
    copies = noisy.noisy_copy(titles, seed=3)
    assert len(copies) == len(titles)
    assert all(copy.strip() for copy in copies)
    assert all(copy != title for copy, title in zip(copies, titles))
    # never only a change of case, which the lowercasing tokenizer undoes
    assert all(copy.lower() != title.lower() for copy, title in zip(copies, titles))
    kept = [recoverable(t, c) for t, c in zip(titles, copies)]
    assert all(kept), [(t, c) for t, c, k in zip(titles, copies, kept) if not k][:5]


def test_each_kind_of_noise_occurs():
    copies = noisy.noisy_copy(["Senior Pole Inspector"] * 300, seed=0)
    assert any(c.startswith("Inspector, ") for c in copies)  # inversion
    assert any("Sr" in c.split() or "Sr." in c.split() for c in copies)  # abbreviation
    assert any(c.endswith((" II", " III", " Trainee")) or c.startswith("Lead ") for c in copies)
    assert any("$" in c for c in copies)  # pay
    assert any(any(place in c for place in noisy.PLACES) for c in copies)
    assert any(c == c.upper() for c in copies) and any(c == c.lower() for c in copies)
    assert any(len(c) == len("Senior Pole Inspector") - 1 for c in copies)  # a dropped letter


def test_inversion_only_where_it_reads_naturally():
    rng = random.Random(0)
    assert noisy._invert("Pole Inspector", rng) == "Inspector, Pole"
    assert noisy._can_invert("Pole Inspector")
    assert not noisy._can_invert("Director of Nursing")
    assert not noisy._can_invert("Inspector, Pole")
    assert not noisy._can_invert("Passer")


def test_abbreviation_prefers_whole_phrases():
    copies = {noisy._abbreviate("Registered Nurse Supervisor", random.Random(s)) for s in range(30)}
    assert any(c.startswith("RN ") for c in copies)
    assert not any("Registered" in c and "Nurse" not in c for c in copies)


# What the unseen rules add around a title, as the test reads it.
UNSEEN_MARKS = re.compile("|".join([
    *map(re.escape, noisy.BANNERS), *map(re.escape, noisy.GENDER_TAGS),
    r"Req #\d+", r"\[JR-\d{6}\]", r"- Job ID \d{4}-\d+", r"\(Ref\. \d+\)", r"REQ\d+",
    *(re.escape(part.strip()) for d in noisy.DECORATIONS for part in d.split("{}") if part.strip()),
]))
WORD_FORMS = re.compile(r"\b(" + "|".join(noisy.BRITISH.values()) + r")s?\b|(person|woman)\b",
                        re.IGNORECASE)
# Titles that every unseen rule applies to, besides the ones above.
FORMS = ["Laborer Foreman", "Pediatric Nurse", "Tire Repairman", "Mold Maker", "Lineman"]


def squash(text: str) -> str:
    return re.sub(r"[\s-]", "", text)


def forms(title: str) -> set[str]:
    """The title as the unseen word-form rules may leave it: British, "-person", "-woman"."""
    spelled = {title, noisy._british(title, random.Random(0))}
    return {noisy._MAN.sub(rf"\g<1>{ending}", t) if ending else t
            for t in spelled for ending in ("", "person", "woman")}


def unseen_marks(title: str, copy: str) -> list[str]:
    """What in `copy` an unseen rule would have made: added marks, word forms, fused words."""
    marks = UNSEEN_MARKS.findall(copy)
    marks += [m[0] for m in WORD_FORMS.finditer(copy) if m[0].lower() not in title.lower()]
    marks += [a + sep + b for form in forms(title) for a, b in itertools.pairwise(form.split())
              for sep in ("", "-") if (a + sep + b).lower() in copy.lower().split()]
    return marks


def test_unseen_rules_examples():
    rng = random.Random(0)
    assert noisy._british("Laborers and Pediatric Tire Changers", rng) == \
        "Labourers and Paediatric Tyre Changers"
    assert noisy._british("LABORATORY Programmer", rng) == "LABORATORY Programmer"
    assert {noisy._neutral("Foreman", random.Random(s)) for s in range(10)} == \
        {"Foreperson", "Forewoman"}
    for title in ("Human Resources Manager", "Policewoman", "German Teacher", "Woman"):
        assert not noisy._can_neutral(title)
    assert {noisy._fuse("Pole Inspector", random.Random(s)) for s in range(10)} == \
        {"PoleInspector", "Pole-Inspector"}


def test_unseen_copy_is_seeded_and_changes_every_title():
    titles = TITLES + FORMS
    copies = noisy.noisy_copy(titles, seed=0, rules="unseen")
    assert copies == noisy.noisy_copy(titles, seed=0, rules="unseen")
    assert copies != noisy.noisy_copy(titles, seed=1, rules="unseen")
    assert copies != noisy.noisy_copy(titles, seed=0)
    assert all(copy != title for copy, title in zip(copies, titles))


def test_unseen_copy_keeps_the_title_and_adds_only_its_marks():
    """Remove what the unseen rules add and the title is back, letter for letter and case for
    case, up to spaces and its word forms: no inversion, abbreviation, level, suffix, casing or
    typo (the training noise's kinds) happened."""
    titles = (TITLES + FORMS) * 10
    for title, copy in zip(titles, noisy.noisy_copy(titles, seed=2, rules="unseen")):
        stripped = UNSEEN_MARKS.sub("", copy)
        assert squash(stripped) in {squash(t) for t in forms(title)}, (title, copy)


def test_each_unseen_kind_occurs():
    copies = noisy.noisy_copy(["Laborer Foreman"] * 300, seed=0, rules="unseen")
    found = [unseen_marks("Laborer Foreman", c) for c in copies]
    assert all(found)
    marks = {m for f in found for m in f}
    assert {"Labourer", "person", "woman", "LaborerForeman", "Laborer-Foreman"} <= marks
    for kind in (noisy.BANNERS, noisy.GENDER_TAGS, ["Req #", "[JR-", "Job ID", "(Ref.", "REQ"],
                 [d.split("{}")[0].strip() for d in noisy.DECORATIONS]):
        assert any(any(k in c for k in kind) for c in copies), kind


@pytest.mark.parametrize("max_transforms", [2, len(TRANSFORMS)])
def test_training_noise_makes_none_of_the_unseen_kinds(max_transforms):
    """The unseen set is unseen: no title the training augmentation writes carries a mark of
    an unseen rule (an added tag, banner, number or decoration, a British or gender-neutral
    form, two words run together)."""
    noise = TitleNoise(probability=1, max_transforms=max_transforms)
    titles = TITLES + FORMS
    for seed in range(40):
        rng = random.Random(seed)
        for title in titles:
            out = noise(title, rng)
            assert unseen_marks(title, out) == [], (title, out)
