"""Training augmentation: noise that makes clean O*NET titles look like real job-board titles.

Each transform takes a title and a `random.Random` and draws all its randomness from it, so a
seeded generator gives reproducible outputs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

ABBREVIATIONS = {
    "senior": ("Sr", "Sr."),
    "junior": ("Jr", "Jr."),
    "manager": ("Mgr",),
    "management": ("Mgmt",),
    "engineer": ("Eng", "Engr"),
    "engineering": ("Eng", "Engrg"),
    "technician": ("Tech",),
    "technology": ("Tech",),
    "assistant": ("Asst",),
    "administrator": ("Admin",),
    "administrative": ("Admin",),
    "director": ("Dir",),
    "vice president": ("VP",),
    "registered nurse": ("RN",),
    "licensed practical nurse": ("LPN",),
    "certified nursing assistant": ("CNA",),
    "software": ("SW", "S/W"),
    "department": ("Dept",),
    "representative": ("Rep",),
    "specialist": ("Spec",),
    "coordinator": ("Coord",),
    "supervisor": ("Supv", "Supvr"),
    "operator": ("Op", "Oper"),
    "associate": ("Assoc",),
    "development": ("Dev",),
    "developer": ("Dev",),
    "information technology": ("IT",),
    "customer service": ("CS",),
    "human resources": ("HR",),
    "executive": ("Exec",),
    "operations": ("Ops",),
    "maintenance": ("Maint",),
    "mechanic": ("Mech",),
    "accountant": ("Acct",),
    "accounting": ("Acctg",),
    "warehouse": ("Whse",),
    "production": ("Prod",),
    "international": ("Intl",),
    "service": ("Svc",),
    "services": ("Svcs",),
    "temporary": ("Temp",),
}
# Longest first, so "Certified Nursing Assistant" wins over "Assistant"; a plural keeps its "s".
_ABBREVIATION_RE = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, ABBREVIATIONS), key=len, reverse=True)) + r")(s?)\b",
    re.IGNORECASE,
)
_PREFIXES = ("Senior", "Sr.", "Junior", "Lead", "Principal", "Chief", "Head", "Trainee", "Intern",
             "Entry Level", "Staff")
_SUFFIXES = ("I", "II", "III", "IV", "1", "2", "3", "- Level 2", "(Entry Level)")
_PLACES = (
    "- Remote", "(Remote)", "- Remote, US", "(Hybrid)", "- Hybrid", "- On-site", "- New York, NY",
    "- Los Angeles, CA", "- Chicago, IL", "- Houston, TX", "- Dallas TX", "- Phoenix, AZ",
    "- Atlanta, GA", "- Seattle, WA", "- Denver CO", "- Boston, MA", "- Miami, FL",
    "(Columbus, OH)", "- Nashville", "- Multiple Locations", "at Acme Corp", "at Walmart",
    "at Amazon", "at Kaiser Permanente", "at Home Depot", "@ Target", "| Globex Inc",
    "- City of Austin", "- State of Ohio", "- Main Campus", "- Store #1234",
)
_SHIFTS = (
    "- Night Shift", "- Day Shift", "- 2nd Shift", "(3rd Shift)", "(Part-Time)", "- Part Time",
    "Full Time", "(Full-Time)", "- Weekends", "PRN", "- PRN", "Per Diem", "- Seasonal",
    "(Temporary)", "- Contract", "- Sign-on Bonus", "- $5,000 Sign On Bonus", "- Immediate Start",
    "${hourly}/hr", "- ${hourly}/hour", "(${hourly} per hour)", "- Up to ${salary}K",
    "${salary}K-${salary_high}K",
)
_RELATED = ("Helper", "Apprentice", "Trainee", "Assistant", "Lead", "Supervisor")
_EXCEPTIONS = ("Retail", "Construction", "Government", "Healthcare", "Food Service")
_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    key: "".join(other[j] for other in _KEY_ROWS[max(r - 1, 0):r + 2]
                 for j in (i - 1, i, i + 1) if 0 <= j < len(other) and other[j] != key)
    for r, row in enumerate(_KEY_ROWS) for i, key in enumerate(row)
}


def invert(title: str, rng: random.Random) -> str:
    """Last word first, with or without a comma: "Pole Inspector" → "Inspector, Pole"."""
    words = title.split()
    if len(words) < 2:
        return title
    return words[-1] + rng.choice((", ", " ")) + " ".join(words[:-1]).rstrip(",")


def abbreviate(title: str, rng: random.Random) -> str:
    """Abbreviate known words and phrases: "Senior Software Engineers" → "Sr. SW Engrs"."""
    return _ABBREVIATION_RE.sub(
        lambda m: rng.choice(ABBREVIATIONS[m[1].lower()]) + ("s" if m[2] else ""), title)


def seniority(title: str, rng: random.Random) -> str:
    """Add a level marker before or after: "Electrician" → "Lead Electrician" or "Electrician II"."""
    if rng.random() < 0.5:
        return f"{rng.choice(_PREFIXES)} {title}"
    return f"{title} {rng.choice(_SUFFIXES)}"


def company_location(title: str, rng: random.Random) -> str:
    """Append a place or employer: "Cashier" → "Cashier - Dallas TX"."""
    return f"{title} {rng.choice(_PLACES)}"


def shift_pay(title: str, rng: random.Random) -> str:
    """Append shift, schedule or pay: "Cook" → "Cook - Night Shift" or "Cook $18/hr"."""
    salary = 5 * rng.randint(6, 30)
    fragment = rng.choice(_SHIFTS).format(hourly=rng.randint(12, 65), salary=salary,
                                          salary_high=salary + 10)
    return f"{title} {fragment}"


def list_or(title: str, rng: random.Random) -> str:
    """List a related variant: "Electrician" → "Electrician / Electrician Helper"."""
    related = rng.choice(_RELATED)
    form = rng.choice(("{t} / {last} {r}", "{t} or {r}", "{t}/{r}", "{t} (exc. {x})"))
    return form.format(t=title, last=(title.split() or [""])[-1], r=related,
                       x=rng.choice(_EXCEPTIONS))


def casing(title: str, rng: random.Random) -> str:
    """Upper, lower or title case, other than the input's: "Pole Inspector" → "POLE INSPECTOR"."""
    options = [c for c in (title.upper(), title.lower(), title.title()) if c != title]
    return rng.choice(options) if options else title


def typo(title: str, rng: random.Random) -> str:
    """One edit (swap, delete, duplicate, keyboard-neighbour replace) in a word of 4+ letters,
    never its first letter: "Pole Inspector" → "Pole Inpsector"."""
    words = list(re.finditer(r"[A-Za-z]{4,}", title))
    if not words:
        return title
    match = rng.choice(words)
    w = match[0]
    swaps = [i for i in range(1, len(w) - 1) if w[i] != w[i + 1]]
    op = rng.choice(("swap", "delete", "duplicate", "replace"))  # no swap possible: delete
    i = rng.randrange(1, len(w))
    if op == "swap" and swaps:
        i = rng.choice(swaps)
        w = w[:i] + w[i + 1] + w[i] + w[i + 2:]
    elif op == "duplicate":
        w = w[:i] + w[i] + w[i:]
    elif op == "replace":
        key = rng.choice(_NEIGHBOURS[w[i].lower()])
        w = w[:i] + (key.upper() if w[i].isupper() else key) + w[i + 1:]
    else:
        w = w[:i] + w[i + 1:]
    return title[:match.start()] + w + title[match.end():]


TRANSFORMS: dict[str, Callable[[str, random.Random], str]] = {
    f.__name__: f
    for f in (invert, abbreviate, seniority, company_location, shift_pay, list_or, casing, typo)
}


class TitleNoise:
    """Applies, with probability `probability`, 1..max_transforms randomly chosen transforms."""

    def __init__(self, probability: float = 0.5, transforms: Sequence[str] = tuple(TRANSFORMS),
                 max_transforms: int = 2):
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        unknown = [name for name in transforms if name not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transforms {unknown}; valid: {', '.join(TRANSFORMS)}")
        if not transforms or max_transforms < 1:
            raise ValueError("need at least one transform and max_transforms >= 1")
        self.probability = probability
        self.transforms = tuple(transforms)
        self.max_transforms = max_transforms

    def __call__(self, title: str, rng: random.Random) -> str:
        """The noisy title; never empty (falls back to `title`)."""
        if rng.random() >= self.probability:
            return title
        count = rng.randint(1, min(self.max_transforms, len(self.transforms)))
        noisy = title
        for name in rng.sample(self.transforms, count):
            noisy = TRANSFORMS[name](noisy, rng)
        return noisy if noisy.strip() else title
