"""A seeded noisy copy of job titles, the way titles from other agencies and job boards look.

    .venv/bin/python bench/noisy_copy.py [--seed 0] [--rules seen|unseen] < titles.txt > noisy.txt

Each title gets one or two kinds of noise from one of two rule sets:
- seen: comma inversion ("Inspector, Pole"), abbreviations ("Sr", "Mgr", "RN"), a level ("II",
  "Lead"), a company, location, shift or pay suffix, upper or lower case (never alone: the
  tokenizer lowercases, so a title changed only in case is drawn again), one typo. Its own code
  and word lists, but the same kinds of noise as the training augmentation
  (`occlass/data/augment.py`).
- unseen: kinds the training augmentation never makes: British spellings ("Labourer"),
  gender-neutral forms ("Foreperson"), two words run together ("Pole-Inspector"), a gender tag
  ("(m/f/d)"), a requisition number ("Req #48213"), a hiring banner ("Now Hiring:") or
  decoration ("** Cook **"). Every word of the title stays, in that spelling; nothing else changes.
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


# The unseen rules: none of their kinds of noise is in the training augmentation.
BRITISH = {  # American → British; a plural keeps its "s"
    "labor": "labour", "laborer": "labourer", "behavior": "behaviour",
    "behavioral": "behavioural", "color": "colour", "colorist": "colourist",
    "harbor": "harbour", "armor": "armour", "armorer": "armourer", "vapor": "vapour",
    "pediatric": "paediatric", "pediatrician": "paediatrician", "orthopedic": "orthopaedic",
    "anesthesiologist": "anaesthesiologist", "anesthetist": "anaesthetist",
    "anesthesia": "anaesthesia", "gynecologist": "gynaecologist", "hematologist": "haematologist",
    "hematology": "haematology", "esthetician": "aesthetician", "mold": "mould",
    "molder": "moulder", "molding": "moulding", "tire": "tyre", "gray": "grey", "plow": "plough",
    "aluminum": "aluminium", "jewelry": "jewellery", "catalog": "catalogue",
    "cataloger": "cataloguer", "program": "programme", "airplane": "aeroplane", "curb": "kerb",
}
_BRITISH = re.compile(r"\b(" + "|".join(BRITISH) + r")(s?)\b", re.IGNORECASE)
# "Foreman" → "Foreperson", not "Human" or "Policewoman".
_MAN = re.compile(r"\b(?!(?:hu|ger|pull|sha|otto)man\b)([A-Za-z]{2,}?)(?<!wo)man\b", re.IGNORECASE)
GENDER_TAGS = ["(m/f/d)", "(m/w/d)", "(f/m/x)", "(all genders)", "(h/f)", "(M/F/D)"]
REQUISITIONS = ["Req #{n}", "[JR-{n:06d}]", "- Job ID {year}-{n}", "(Ref. {n})", "REQ{n}"]
BANNERS = ["Now Hiring:", "URGENT:", "Hiring Now -", "Job Opening:", "NEW!", "Apply Today -",
           "We're Hiring:"]
DECORATIONS = ["** {} **", "*{}*", "★ {} ★", ">> {} <<", "~ {} ~", "!! {} !!"]


def _same_case(word: str, like: str) -> str:
    return word.upper() if like.isupper() and len(like) > 1 else (
        word.capitalize() if like[0].isupper() else word)


def _can_british(title: str) -> bool:
    return bool(_BRITISH.search(title))


def _british(title: str, rng: random.Random) -> str:
    """Every word with a British spelling in it: "Laborers" → "Labourers"."""
    return _BRITISH.sub(lambda m: _same_case(BRITISH[m[1].lower()], m[1]) + m[2], title)


def _can_neutral(title: str) -> bool:
    return bool(_MAN.search(title))


def _neutral(title: str, rng: random.Random) -> str:
    """"-man" as "-person" or "-woman": "Foreman" → "Foreperson"."""
    ending = rng.choice(("person", "woman"))
    return _MAN.sub(lambda m: m[1] + _same_case(ending, m[0][-3:]), title)


def _can_fuse(title: str) -> bool:
    return len(title.split()) > 1


def _fuse(title: str, rng: random.Random) -> str:
    """Two neighbouring words run together, or joined by a hyphen: "Pole-Inspector"."""
    words = title.split()
    i = rng.randrange(len(words) - 1)
    words[i:i + 2] = [words[i] + rng.choice(("", "-")) + words[i + 1]]
    return " ".join(words)


def _gender_tag(title: str, rng: random.Random) -> str:
    return f"{title} {rng.choice(GENDER_TAGS)}"


def _requisition(title: str, rng: random.Random) -> str:
    number = rng.choice(REQUISITIONS).format(n=rng.randint(1000, 99999),
                                             year=rng.randint(2019, 2026))
    return f"{title} {number}"


def _banner(title: str, rng: random.Random) -> str:
    return f"{rng.choice(BANNERS)} {title}"


def _decorate(title: str, rng: random.Random) -> str:
    return rng.choice(DECORATIONS).format(title)


# (applies, apply) in the order they compose: inside the title first, then around it.
STEPS = {
    # invert before a level is added, the typo before abbreviations and suffixes (so it lands
    # in a word of the title), case last
    "seen": [(_can_invert, _invert), (_always, _level), (_can_typo, _typo),
             (_can_abbreviate, _abbreviate), (_always, _suffix), (_always, _case)],
    "unseen": [(_can_british, _british), (_can_neutral, _neutral), (_can_fuse, _fuse),
               (_always, _gender_tag), (_always, _requisition), (_always, _banner),
               (_always, _decorate)],
}
# What a title that came out unchanged gets instead.
FALLBACK = {"seen": _suffix, "unseen": _requisition}


def noisy_title(title: str, rng: random.Random, rules: str = "seen", draws: int = 10) -> str:
    """`title` with one or two kinds of real-world noise from the rule set `rules`; never the
    same string, nor one that differs only in case (the tokenizer lowercases: the model would
    see the title itself). Such an outcome is drawn again (at most `draws` times, then the
    rule set's fallback)."""
    title = " ".join(title.split())
    usable = [i for i, (applies, _) in enumerate(STEPS[rules]) if applies(title)]
    for _ in range(draws):
        chosen = set(rng.sample(usable, rng.choice((1, 2))))
        out = title
        for i, (_, apply) in enumerate(STEPS[rules]):
            if i in chosen:
                out = apply(out, rng)
        if out.lower() != title.lower():
            return out
    return FALLBACK[rules](out, rng)


def noisy_copy(titles: Sequence[str], seed: int = 0, rules: str = "seen") -> list[str]:
    """A noisy version of each title, reproducible for a seed; `rules` "seen" or "unseen"."""
    rng = random.Random(seed)
    return [noisy_title(title, rng, rules) for title in titles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", choices=list(STEPS), default="seen")
    args = parser.parse_args()
    titles = [line.rstrip("\n") for line in sys.stdin]
    sys.stdout.writelines(title + "\n" for title in noisy_copy(titles, args.seed, args.rules))


if __name__ == "__main__":
    main()
