"""Pseudo job postings for evaluation: an occupation's unused task statements in ad boilerplate.

Training's category texts use the first task statements of each occupation; a posting draws its
responsibilities only from the second half of the list, so it tells the model nothing it was
trained on. The boilerplate around them names no occupation.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

BLURBS = [
    ("We are a family-owned company that has served our community for more than 40 years. "
     "Our people are the reason customers keep coming back, and we invest in them accordingly. "
     "Come grow with us."),
    ("Founded in 2009, we have grown from a single location to more than 30 sites across three "
     "states. We are proud of our collaborative culture and our commitment to doing things right "
     "the first time."),
    ("Our mission is simple: deliver exceptional service to every client, every day. We are a "
     "fast-paced, growing organization looking for motivated individuals who take pride in "
     "their work."),
    ("We are a nonprofit organization dedicated to strengthening the communities we serve. Our "
     "staff bring compassion, integrity and expertise to everything they do, and we support "
     "them with training and room to advance."),
    ("Join an award-winning team recognized as one of the region's best places to work for five "
     "years running. We value teamwork, continuous improvement and a healthy work-life balance."),
    ("We are a leading national provider with over 2,500 employees and a reputation for "
     "quality. Our team members enjoy stable schedules, supportive leadership and clear paths "
     "for promotion."),
    ("At our company, safety, respect and accountability are more than words on a wall. We "
     "hire people who share those values and give them the tools they need to succeed."),
    ("We are a small but growing business with a close-knit team and an open-door policy. "
     "Every person here makes a real difference, and your ideas will be heard from day one."),
]

BENEFITS = [
    ("We offer a competitive salary, medical, dental and vision insurance, a 401(k) with company "
     "match, and paid time off starting on your first day."),
    ("Benefits include health insurance, life and disability coverage, paid holidays, and "
     "tuition reimbursement. Eligible employees may also participate in our annual bonus "
     "program."),
    ("Full-time employees receive comprehensive medical coverage, an employee assistance "
     "program, generous paid time off and a retirement plan with employer contributions."),
    ("Pay is competitive and based on experience. We provide weekly pay, overtime "
     "opportunities, uniforms, and a referral bonus for every new hire you bring to the team."),
    ("Our total rewards package includes medical, dental and vision plans, a health savings "
     "account, paid parental leave, wellness incentives and employee discounts."),
    ("Enjoy flexible scheduling, paid training, 10 paid holidays per year and a pension plan. "
     "Tuition assistance is available for job-related coursework."),
    ("We provide a sign-on bonus for qualified candidates, 401(k) matching up to 5%, paid sick "
     "leave and a supportive environment with opportunities for advancement."),
    ("Perks include a modern workplace, free parking, a monthly wellness stipend and paid "
     "volunteer days, along with full health benefits and paid vacation."),
]

EQUAL_OPPORTUNITY = [
    ("We are an Equal Opportunity Employer. All qualified applicants will receive consideration "
     "for employment without regard to race, color, religion, sex, sexual orientation, gender "
     "identity, national origin, disability or veteran status."),
    ("EOE/M/F/Disability/Veterans. We celebrate diversity and are committed to creating an "
     "inclusive environment for all employees."),
    ("We are committed to equal employment opportunity and do not discriminate on the basis of "
     "any characteristic protected by law. Reasonable accommodations are available upon request "
     "during the application process."),
    ("This employer participates in E-Verify. We are proud to be an equal opportunity workplace "
     "and encourage applications from people of all backgrounds."),
    ("Applicants are considered without regard to age, ancestry, genetic information, marital "
     "status or any other protected status. If you need assistance applying, please contact "
     "our human resources office."),
]

REQUIREMENTS = [
    "High school diploma or GED required.",
    "Bachelor's degree or an equivalent combination of education and experience.",
    "Associate's degree or technical certificate preferred.",
    "{years}+ years of related experience.",
    "At least {years} years of experience in a similar role.",
    "Valid driving license and a clean driving record.",
    "Must pass a background check and drug screen.",
    "Must be authorized to work in the United States.",
    "Strong communication skills and attention to detail.",
    "Ability to work independently and as part of a team.",
]

BULLETS = ("- ", "• ", "* ", "")


def posting_tasks(tasks: list[str], n_tasks: int = 3) -> list[str]:
    """The share of an occupation's task statements that training never uses: the second half
    of the list, and never any of the first `n_tasks` (those go into category texts)."""
    return list(tasks[max(n_tasks, len(tasks) // 2):])


def pseudo_posting(title: str, tasks: list[str], rng: random.Random, n_tasks: int = 5) -> str:
    """An ad-like text around up to `n_tasks` of `tasks`, sampled and in random order.

    A company blurb, "Responsibilities:" with the tasks as bullets, optional requirements, then
    benefits and an equal-opportunity statement. `title` is not written into the text (the
    caller passes it as the title column).
    """
    bullet = rng.choice(BULLETS)
    chosen = rng.sample(list(tasks), min(n_tasks, len(tasks)))
    duties = "Responsibilities:\n" + "\n".join(
        bullet + task.strip().rstrip(".") + "." for task in chosen)
    blurb = rng.choice(BLURBS)
    parts = [duties]
    if rng.random() < 0.6:
        years = rng.randint(2, 5)
        lines = rng.sample(REQUIREMENTS, rng.randint(1, 3))
        header = rng.choice(("Requirements:", "Qualifications:"))
        parts.append(header + "\n" + "\n".join(bullet + line.format(years=years)
                                               for line in lines))
    if rng.random() < 0.8:
        parts.insert(0, blurb)  # most ads open with the company, some close with it
    else:
        parts.append("About us:\n" + blurb)
    benefits = rng.choice(BENEFITS)
    header = rng.choice(("Benefits:\n", "What we offer:\n", ""))
    parts.append(header + benefits)
    parts.append(rng.choice(EQUAL_OPPORTUNITY))
    return "\n\n".join(parts)


def pseudo_postings(titles: Sequence[str], codes: Sequence[str], tasks: dict[str, list[str]],
                    seed: int = 0, n_tasks: int = 5, category_n_tasks: int = 3) -> list[str]:
    """One posting text per (title, code), its tasks drawn from
    `posting_tasks(tasks[code], category_n_tasks)`; seeded; '' where a code has no such tasks."""
    if len(titles) != len(codes):
        raise ValueError(f"{len(titles)} titles but {len(codes)} codes")
    rng = random.Random(seed)
    texts = []
    for title, code in zip(titles, codes):
        available = posting_tasks(tasks.get(code, []), category_n_tasks)
        texts.append(pseudo_posting(title, available, rng, n_tasks) if available else "")
    return texts
