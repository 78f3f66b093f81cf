import random
import re

import pytest

from occlass.data.augment import TRANSFORMS, TitleNoise

TITLES = [
    "Pole Inspector", "Mine Development Engineer", "Registered Nurses", "Electrician",
    "Teachers, Postsecondary", "Senior Software Engineer", "Zipper Machine Operator",
]
# Fifty O*NET-like titles, a few one-word titles among them.
ONET_TITLES = [
    "Chief Executives", "Sales Managers", "Food Service Managers", "Human Resources Managers",
    "Security Managers", "Gambling Managers", "Investment Fund Managers", "Curators",
    "File Clerks", "Penetration Testers", "Nuclear Medicine Technologists",
    "Emergency Management Directors", "Media Programming Directors", "Counselors, All Other",
    "Extraction Workers, All Other", "Natural Sciences Managers", "Biomass Power Plant Managers",
    "Training and Development Managers", "Quality Control Systems Managers", "Sociologist",
    "Research Engineer", "Solar Technician", "Marketing Coordinator", "Executive Director",
    "Aerospace Engineer", "Infrastructure Engineer", "Measurement Technician", "Trainmaster",
    "Clinical Data Manager", "Board Operator", "On-Site Manager", "Tankerman",
    "Process Technician", "Systems Integration Engineer", "Environmental Consultant",
    "Assistant Professor", "Development Director", "Sustainability Chief",
    "Meter Reader Inspector", "Nurse Epidemiologist", "Electrician", "Pole Inspector",
    "Registered Nurse", "Licensed Practical Nurse", "Customer Service Representative",
    "Warehouse Worker", "Cashier", "Line Cook", "Bus Driver", "Dental Hygienist",
]
SEEDS = range(20)


def words(text):
    return re.findall(r"[^\s,]+", text)


def osa_distance(a, b):
    """Edit distance counting an adjacent swap as one edit (optimal string alignment)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def outputs(transform, title):
    return [transform(title, random.Random(seed)) for seed in SEEDS]


def test_transform_names_in_order():
    assert list(TRANSFORMS) == ["invert", "abbreviate", "seniority", "company_location",
                                "shift_pay", "list_or", "casing", "typo"]


def test_osa_distance():
    assert osa_distance("Inspector", "Inpsector") == 1
    assert osa_distance("Inspector", "Inspectr") == 1
    assert osa_distance("Inspector", "Inspector") == 0
    assert osa_distance("abc", "cba") == 2


@pytest.mark.parametrize("title", [t for t in TITLES if " " in t])
def test_invert_puts_last_word_first_and_keeps_the_words(title):
    for out in outputs(TRANSFORMS["invert"], title):
        assert words(out)[0] == words(title)[-1]
        assert sorted(words(out)) == sorted(words(title))
    assert {"Inspector, Pole", "Inspector Pole"} == set(outputs(TRANSFORMS["invert"],
                                                                "Pole Inspector"))


def test_invert_leaves_one_word_titles():
    assert outputs(TRANSFORMS["invert"], "Electrician") == ["Electrician"] * len(SEEDS)


def test_abbreviate_replaces_every_known_word():
    replaced = re.compile(r"\b(senior|software|engineer)\b", re.IGNORECASE)
    for title in ("Senior Software Engineer", "SENIOR software engineer"):
        for out in outputs(TRANSFORMS["abbreviate"], title):
            assert len(out) < len(title)
            assert not replaced.search(out)
            assert set(out.split()) & {"Sr", "Sr.", "SW", "S/W", "Eng", "Engr"}


def test_abbreviate_phrases_whole_words_only():
    abbreviate = TRANSFORMS["abbreviate"]
    rng = random.Random(0)
    assert abbreviate("Registered Nurse", rng) == "RN"
    assert abbreviate("Certified Nursing Assistant", rng) == "CNA"
    assert abbreviate("Vice President of Information Technology", rng) == "VP of IT"
    assert abbreviate("Customer Service Representative", rng) == "CS Rep"
    assert abbreviate("Pole Inspector", rng) == "Pole Inspector"
    assert abbreviate("Seniority Clerk", rng) == "Seniority Clerk"
    assert abbreviate("Sales Managers", rng) == "Sales Mgrs"


@pytest.mark.parametrize("name", ["seniority", "company_location", "shift_pay", "list_or"])
@pytest.mark.parametrize("title", TITLES)
def test_additive_transforms_keep_the_title(name, title):
    for out in outputs(TRANSFORMS[name], title):
        assert title.lower() in out.lower()
        assert len(out) > len(title)


def test_seniority_adds_a_documented_prefix_or_suffix():
    prefixes = ("Senior", "Sr.", "Junior", "Lead", "Principal", "Chief", "Head", "Trainee",
                "Intern", "Entry Level", "Staff")
    suffixes = ("I", "II", "III", "IV", "1", "2", "3", "- Level 2", "(Entry Level)")
    title = "Pole Inspector"
    outs = outputs(TRANSFORMS["seniority"], title)
    before = [out for out in outs if out in {f"{p} {title}" for p in prefixes}]
    after = [out for out in outs if out in {f"{title} {s}" for s in suffixes}]
    assert before and after and len(before) + len(after) == len(outs)


@pytest.mark.parametrize("title", TITLES)
def test_casing_changes_only_case(title):
    for out in outputs(TRANSFORMS["casing"], title):
        assert out != title
        assert out.lower() == title.lower()
        assert out in (title.upper(), title.lower(), title.title())


@pytest.mark.parametrize("title", TITLES)
def test_typo_is_one_edit_inside_a_long_word(title):
    for out in outputs(TRANSFORMS["typo"], title):
        assert osa_distance(out, title) == 1
        pairs = list(zip(out.split(), title.split(), strict=True))
        assert all(new[0] == old[0] for new, old in pairs)
        changed = [old for new, old in pairs if new != old]
        assert len(changed) == 1 and len(changed[0].strip(",")) >= 4


def test_typo_leaves_short_words():
    assert outputs(TRANSFORMS["typo"], "Bus Cab") == ["Bus Cab"] * len(SEEDS)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transforms_are_seeded(name):
    transform = TRANSFORMS[name]
    title = "Senior Software Engineer"
    assert outputs(transform, title) == outputs(transform, title)
    assert len(set(outputs(transform, title))) >= 2


def test_noise_is_seeded():
    noise = TitleNoise(probability=1)
    first = [noise(t, random.Random(3)) for t in ONET_TITLES]
    assert first == [noise(t, random.Random(3)) for t in ONET_TITLES]
    assert first != [noise(t, random.Random(4)) for t in ONET_TITLES]
    assert len({noise("Pole Inspector", random.Random(seed)) for seed in SEEDS}) >= 10


def test_probability_zero_is_identity():
    noise, rng = TitleNoise(probability=0), random.Random(0)
    assert [noise(t, rng) for t in ONET_TITLES] == ONET_TITLES


def test_probability_one_changes_almost_every_title():
    noise, rng = TitleNoise(probability=1), random.Random(0)
    changed = sum(noise(t, rng) != t for t in ONET_TITLES)
    assert changed >= 45


def test_probability_half_changes_some():
    noise, rng = TitleNoise(), random.Random(0)
    changed = sum(noise(t, rng) != t for t in ONET_TITLES * 4)
    assert 60 <= changed <= 140


def test_only_the_chosen_transforms_apply():
    noise, rng = TitleNoise(probability=1, transforms=["casing"], max_transforms=3), random.Random(0)
    for title in ONET_TITLES:
        out = noise(title, rng)
        assert out != title and out.lower() == title.lower()


def test_never_empty():
    noise, rng = TitleNoise(probability=1, max_transforms=len(TRANSFORMS)), random.Random(0)
    for title in ONET_TITLES * 5 + ["A", "x"]:
        assert noise(title, rng).strip()


@pytest.mark.parametrize("probability", [-0.1, 1.5, float("nan")])
def test_bad_probability_raises(probability):
    with pytest.raises(ValueError, match="probability"):
        TitleNoise(probability=probability)


def test_unknown_transform_raises_naming_the_valid_ones():
    with pytest.raises(ValueError, match="unknown.*shout.*valid: invert, abbreviate"):
        TitleNoise(transforms=["casing", "shout"])


@pytest.mark.parametrize("kwargs", [{"transforms": []}, {"max_transforms": 0}])
def test_nothing_to_apply_raises(kwargs):
    with pytest.raises(ValueError, match="at least one"):
        TitleNoise(**kwargs)
