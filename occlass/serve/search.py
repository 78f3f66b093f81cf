"""Relevance-ranked search over occupation titles (the review page's picker): whole-word and
prefix matches first, then typo matches ("hygenist"), with common job-title abbreviations
expanded ("sw engineer", "mgr"); a code or a code prefix lists the codes under it."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict

import numpy as np

# Abbreviations of job titles (query word → the word it stands for).
ABBREVIATIONS = {
    "acct": "accountant", "admin": "administrative", "asst": "assistant", "assoc": "associate",
    "coord": "coordinator", "cust": "customer", "dev": "developer", "dir": "director",
    "eng": "engineer", "engr": "engineer", "exec": "executive", "hr": "human", "maint":
    "maintenance", "mech": "mechanic", "mgr": "manager", "ops": "operations", "rep":
    "representative", "sec": "secretary", "spec": "specialist", "supv": "supervisor", "svc":
    "service", "sw": "software", "tech": "technician", "vp": "vice",
}
CODE = re.compile(r"\d{2}(-[\d.]*)?")
# A query word's match with a title word: the whole word, the start of one, an abbreviation of
# one, one a typo away.
EXACT, PREFIX, EXPANDED, TYPO = 3.0, 2.0, 2.5, 1.0


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class TitleIndex:
    """Texts (titles, alternate titles) of codes; `kinds` ranks them when matches tie (0 first:
    an occupation's own title before an alternate)."""

    def __init__(self, codes: list[str], texts: list[str], kinds: list[int]):
        self.codes = np.array(codes, dtype=object)
        self.kinds = np.asarray(kinds)
        self.lengths = np.array([len(words(t)) for t in texts], dtype=float)
        self.firsts = [next(iter(words(t)), "") for t in texts]
        posting = defaultdict(list)
        for i, text in enumerate(texts):
            for word in set(words(text)):
                posting[word].append(i)
        self.posting = {w: np.array(ids) for w, ids in posting.items()}
        self.vocabulary = sorted(self.posting)
        self.by_initial = defaultdict(list)
        for word in self.vocabulary:
            self.by_initial[word[0]].append(word)

    def matches(self, word: str) -> dict[str, float]:
        """The vocabulary's words that `word` matches, with how well."""
        found = {}
        if len(word) > 3:
            similar = [w for w in self.by_initial[word[0]] if abs(len(w) - len(word)) <= 2]
            for w in difflib.get_close_matches(word, similar, n=10, cutoff=0.8):
                found[w] = TYPO
        expanded = ABBREVIATIONS.get(word)
        if expanded in self.posting:
            found[expanded] = EXPANDED
        start = np.searchsorted(self.vocabulary, word)
        for w in self.vocabulary[start:]:
            if not w.startswith(word):
                break
            found[w] = EXACT if w == word else PREFIX
        return found

    def search(self, query: str, limit: int, tie_break: dict[str, int]) -> list[tuple[str, int]]:
        """The best `limit` codes for `query`, each with the index of its best-matching text:
        every query word that matches any title must match (words nothing matches, like "Sr",
        are left out), the better the match the sooner, a text that starts with the first word
        sooner; ties go to the text's kind, then `tie_break` (code → rank, e.g. the model's
        ranking of the query), then shorter texts."""
        scores = []
        for word in words(query):
            found = self.matches(word)
            if not found:
                continue
            best = np.zeros(len(self.codes))
            for w, score in found.items():
                ids = self.posting[w]
                best[ids] = np.maximum(best[ids], score)
            scores.append(best)
        if not scores:
            return []
        scores = np.stack(scores)
        hit = np.flatnonzero((scores > 0).all(axis=0))
        first = words(query)[0]
        total = (scores[:, hit].sum(axis=0)
                 + np.array([self.firsts[i].startswith(first) for i in hit], dtype=float) / 2)
        unranked = len(tie_break)
        order = sorted(range(len(hit)), key=lambda j: (
            -total[j], self.kinds[hit[j]], tie_break.get(self.codes[hit[j]], unranked),
            self.lengths[hit[j]], hit[j]))
        seen, found = set(), []
        for j in order:
            code = self.codes[hit[j]]
            if code not in seen:
                seen.add(code)
                found.append((code, int(hit[j])))
                if len(found) == limit:
                    break
        return found
