import difflib
import importlib.util
import random

from helpers.tiny import OCCUPATIONS, ROOT

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
    changed = sum(normalize_title(c) != normalize_title(t) for c, t in zip(copies, titles))
    assert changed > 0.7 * len(titles)  # more than a change of case
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
