"""Noise for fitting the confidence model: variants of titles by rules that neither the training
augmentation (`occlass.data.augment`) nor the evaluated noise (`bench/noisy_copy.py`) uses, so
that the noisy kind the confidence model is fitted on is a kind of input the encoder never saw.

Per rule, what it shares with the training augmentation:
- drop_word: a title of 3+ words without one of its words before the last ("Licensed Practical
  Nurse" → "Licensed Nurse"); nothing (training never removes a word).
- synonym: a word for its everyday synonym ("Assistant" → "Aide", "Operator" → "Operative");
  nothing (training abbreviates words, it never replaces them).
- split_compound: a compound word in two ("Bookkeeper" → "Book Keeper"); nothing.
- head_of: "Operations Manager" → "Manager of Operations"; training's `invert` also moves the
  last word first, but with a comma or space, never "of".
- qualifier: "Experienced", "Certified", "Bilingual"... before, or a requirement after; the kind of
  training's `seniority` (a word before or after), none of its words.
- industry: an industry after a separator ("- Healthcare", "[Retail]"); the kind of training's
  `company_location` and `shift_pay` (a suffix), none of their words.
"""

from __future__ import annotations

import random
import re

SYNONYMS = {
    "assistant": "Aide", "helper": "Hand", "operator": "Operative", "instructor": "Trainer",
    "teacher": "Educator", "representative": "Agent", "specialist": "Professional",
    "supervisor": "Team Leader", "worker": "Associate", "inspector": "Examiner",
    "installer": "Fitter", "manager": "Head", "attendant": "Associate", "consultant": "Advisor",
}
_SYNONYM = re.compile(r"\b(" + "|".join(SYNONYMS) + r")(s?)\b", re.IGNORECASE)
_COMPOUND = re.compile(r"\b([A-Za-z]{3,}?)(keeper|maker|smith|writer|master|worker|tender|"
                       r"fighter|layer|setter|cutter|builder|holder|man|woman|person)\b",
                       re.IGNORECASE)
HEADS = {"manager", "director", "supervisor", "coordinator", "specialist", "analyst",
         "technician", "officer", "administrator", "consultant", "engineer", "inspector"}
PREPOSITIONS = {"of", "for", "in", "to", "and", "&", "or", "with", "at", "on", "-", "/"}
QUALIFIERS = ["Experienced", "Certified", "Licensed", "Qualified", "Skilled", "Bilingual"]
REQUIREMENTS = ["- Bilingual Preferred", "(Certification Required)", "- No Experience Needed",
                "(License Required)", "- Will Train"]
INDUSTRIES = ["- Healthcare", "(Manufacturing)", "[Retail]", "– Hospitality", "/ Logistics",
              "- Nonprofit", "(Oil & Gas)", "- Higher Education", "[Public Sector]"]


def _can_drop(title: str) -> bool:
    return len(title.split()) >= 3


def drop_word(title: str, rng: random.Random) -> str:
    words = title.split()
    del words[rng.randrange(len(words) - 1)]
    return " ".join(words)


def _can_synonym(title: str) -> bool:
    return bool(_SYNONYM.search(title))


def synonym(title: str, rng: random.Random) -> str:
    return _SYNONYM.sub(lambda m: SYNONYMS[m[1].lower()] + m[2], title, count=1)


def _can_split(title: str) -> bool:
    return bool(_COMPOUND.search(title))


def split_compound(title: str, rng: random.Random) -> str:
    return _COMPOUND.sub(lambda m: f"{m[1]} {m[2].capitalize()}", title, count=1)


def _can_head_of(title: str) -> bool:
    words = title.split()
    return (1 < len(words) <= 3 and words[-1].lower() in HEADS
            and not PREPOSITIONS.intersection(w.lower() for w in words) and "," not in title)


def head_of(title: str, rng: random.Random) -> str:
    *rest, head = title.split()
    return f"{head} of {' '.join(rest)}"


def qualifier(title: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(QUALIFIERS)} {title}"
    return f"{title} {rng.choice(REQUIREMENTS)}"


def industry(title: str, rng: random.Random) -> str:
    return f"{title} {rng.choice(INDUSTRIES)}"


def _always(title: str) -> bool:
    return True


# (applies, apply) in the order they compose: inside the title first, then around it.
RULES = [(_can_synonym, synonym), (_can_split, split_compound), (_can_drop, drop_word),
         (_can_head_of, head_of), (_always, qualifier), (_always, industry)]


def fit_noise(title: str, rng: random.Random) -> str:
    """`title` with one or two of the rules that apply (never the same string)."""
    title = " ".join(title.split())
    usable = [i for i, (applies, _) in enumerate(RULES) if applies(title)]
    chosen = set(rng.sample(usable, min(len(usable), rng.choice((1, 2)))))
    out = title
    for i, (applies, apply) in enumerate(RULES):
        if i in chosen and applies(out):
            out = apply(out, rng)
    return out if out.lower() != title.lower() else industry(title, rng)
