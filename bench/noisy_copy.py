"""A seeded noisy copy of job titles, the way titles from other agencies and job boards look.

    .venv/bin/python bench/noisy_copy.py [--seed 0] < titles.txt > noisy.txt

Each title gets one or two of: comma inversion ("Inspector, Pole"), abbreviations ("Sr", "Mgr",
"RN"), a level ("II", "Lead"), a company, location, shift or pay suffix, upper or lower case,
and one typo. Independent of the training augmentation: its own word lists and rules.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections.abc import Sequence

# Longer phrases first, so "Registered Nurse" becomes "RN" before "Nurse" is looked at.
ABBREVIATIONS = {
    "licensed practical nurse": "LPN", "licensed vocational nurse": "LVN",
    "certified nursing assistant": "CNA", "registered nurse": "RN", "vice president": "VP",
    "information technology": "IT", "human resources": "HR", "customer service": "Cust Svc",
    "social worker": "SW", "software": "SW", "senior": "Sr", "junior": "Jr",
    "manager": "Mgr", "management": "Mgmt", "engineer": "Eng", "engineering": "Engrg",
    "technician": "Tech", "technologist": "Technol", "assistant": "Asst",
    "associate": "Assoc", "administrator": "Admin", "administrative": "Admin",
    "director": "Dir", "department": "Dept", "representative": "Rep", "supervisor": "Supv",
    "specialist": "Spec", "coordinator": "Coord", "operator": "Oper", "maintenance": "Maint",
    "mechanic": "Mech", "general": "Gen", "executive": "Exec", "accounting": "Acctg",
    "accountant": "Acct", "laboratory": "Lab", "medical": "Med", "development": "Dev",
    "developer": "Dev", "instructor": "Instr", "analyst": "Anlst", "equipment": "Equip",
    "operations": "Ops", "production": "Prod", "warehouse": "Whse", "services": "Svcs",
    "service": "Svc", "international": "Intl", "program": "Pgm", "clerk": "Clk",
    "and": "&",
}
_ABBREVIATION = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(ABBREVIATIONS, key=len, reverse=True))
    + r")\b", re.IGNORECASE)

LEVEL_PREFIXES = ["Senior", "Lead", "Principal", "Junior", "Entry Level", "Trainee"]
LEVEL_SUFFIXES = ["I", "II", "III", "IV", "2", "Level 2", "Trainee", "Apprentice"]

COMPANIES = ["Northwind Group", "Bluestone Partners", "Riverside Health", "Summit Logistics",
             "Harbor & Pine LLC", "Crescent Holdings", "Evergreen Services", "Keystone Inc."]
PLACES = ["Dallas, TX", "Columbus, OH", "Tampa, FL", "Denver, CO", "Sacramento, CA",
          "Raleigh, NC", "Spokane, WA", "Albany, NY", "Remote", "Hybrid"]
SHIFTS = ["Night Shift", "2nd Shift", "Days", "Weekends", "PRN", "Full-Time", "Part Time",
          "Temp to Hire", "Contract", "Nights 7p-7a"]
PREPOSITIONS = {"of", "for", "in", "to", "and", "&", "or", "with", "at", "on", "-", "/"}
KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm"


def _pay(rng: random.Random) -> str:
    if rng.random() < 0.5:
        low = rng.randint(14, 40)
        return f"${low}-${low + rng.randint(2, 8)}/hr"
    return f"Up to ${rng.randint(40, 150)}K"


def _can_invert(title: str) -> bool:
    words = title.split()
    return (len(words) > 1 and "," not in title and "(" not in title
            and not PREPOSITIONS.intersection(w.lower() for w in words))


def _invert(title: str, rng: random.Random) -> str:
    """ "Pole Inspector" → "Inspector, Pole"."""
    *rest, head = title.split()
    return f"{head}, {' '.join(rest)}"


def _can_abbreviate(title: str) -> bool:
    return bool(_ABBREVIATION.search(title))


def _abbreviate(title: str, rng: random.Random) -> str:
    """Some (at least one) abbreviable words shortened, with or without a full stop."""
    matches = list(_ABBREVIATION.finditer(title))
    if not matches:
        return title
    keep = {rng.randrange(len(matches))} | {i for i in range(len(matches)) if rng.random() < 0.6}
    stop = rng.random() < 0.4
    out, end = [], 0
    for i, match in enumerate(matches):
        short = ABBREVIATIONS[match.group(0).lower()]
        if i in keep:
            dot = "." if stop and not short.isupper() and short.isalpha() else ""
            out += [title[end:match.start()], short + dot]
        else:
            out += [title[end:match.end()]]
        end = match.end()
    return "".join(out) + title[end:]


def _level(title: str, rng: random.Random) -> str:
    if "," in title or rng.random() < 0.5:
        return f"{title} {rng.choice(LEVEL_SUFFIXES)}"
    return f"{rng.choice(LEVEL_PREFIXES)} {title}"


def _suffix(title: str, rng: random.Random) -> str:
    """A company, place, shift or pay after a separator."""
    kind = rng.choice((COMPANIES, PLACES, SHIFTS, None))
    extra = _pay(rng) if kind is None else rng.choice(kind)
    sep = rng.choice((" - ", " - ", " | ", " – ", " @ " if kind is COMPANIES else ", "))
    return f"{title} ({extra})" if rng.random() < 0.25 else f"{title}{sep}{extra}"


def _can_typo(title: str) -> bool:
    return any(len(w) >= 4 and w.isalpha() for w in title.split())


def _typo(title: str, rng: random.Random) -> str:
    """One swap, drop, doubling or neighbouring-key slip inside a word of 4+ letters."""
    words = title.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:  # an earlier step moved a comma onto the only long word
        return title
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 1)  # keep the first letter, as people usually do
    kind = rng.choice(("swap", "drop", "double", "key"))
    if kind == "swap" and w[j] != w[j + 1]:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    elif kind == "drop":
        w = w[:j] + w[j + 1:]
    elif kind == "double":
        w = w[:j] + w[j] + w[j:]
    else:
        row = next((r for r in KEYBOARD.split() if w[j].lower() in r), None)
        if row is None:
            w = w[:j] + w[j + 1:]
        else:
            k = row.index(w[j].lower())
            near = row[k - 1] if k == len(row) - 1 or (k > 0 and rng.random() < 0.5) else row[k + 1]
            w = w[:j] + (near.upper() if w[j].isupper() else near) + w[j + 1:]
    words[i] = w
    return " ".join(words)


def _case(title: str, rng: random.Random) -> str:
    return title.upper() if rng.random() < 0.5 else title.lower()


def _always(title: str) -> bool:
    return True


# (applies, apply) in the order they compose: invert before a level is added, the typo before
# abbreviations and suffixes (so it lands in a word of the title), case last.
STEPS = [(_can_invert, _invert), (_always, _level), (_can_typo, _typo),
         (_can_abbreviate, _abbreviate), (_always, _suffix), (_always, _case)]


def noisy_title(title: str, rng: random.Random) -> str:
    """`title` with one or two kinds of real-world noise; never the same string."""
    title = " ".join(title.split())
    usable = [i for i, (applies, _) in enumerate(STEPS) if applies(title)]
    chosen = set(rng.sample(usable, rng.choice((1, 2))))
    out = title
    for i, (_, apply) in enumerate(STEPS):
        if i in chosen:
            out = apply(out, rng)
    return out if out != title else _suffix(out, rng)


def noisy_copy(titles: Sequence[str], seed: int = 0) -> list[str]:
    """A noisy version of each title, reproducible for a seed."""
    rng = random.Random(seed)
    return [noisy_title(title, rng) for title in titles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    titles = [line.rstrip("\n") for line in sys.stdin]
    sys.stdout.writelines(title + "\n" for title in noisy_copy(titles, args.seed))


if __name__ == "__main__":
    main()
