"""Pseudo job postings: an occupation's unused task statements in ad boilerplate.

Training's category texts use the first task statements of each occupation; a posting draws its
responsibilities only from the second half of the list, so it tells the model nothing it was
trained on. The boilerplate around them names no occupation. Two disjoint styles: evaluated
ads (`EVALUATED` templates, every other of those tasks from the first) and the ads the
confidence model is fitted on (`FITTING` templates, the other tasks), which can be made harder
with tasks of a related occupation and duties any job has.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

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

# The fitting ads' own boilerplate: none of its sentences or headers is in the evaluated ads.
FIT_BLURBS = [
    ("Headquartered downtown with satellite offices nearby, our firm has been trusted by local "
     "families and businesses for three generations."),
    ("We are an employee-owned cooperative: every team member shares in our success, and our "
     "turnover is among the lowest in the industry."),
    ("Backed by strong investors and growing quickly, we are building a team that likes to "
     "solve hard problems together."),
    ("Our organization operates around the clock, seven days a week, and we rely on dependable "
     "people who take ownership of their shift."),
    ("We serve customers in more than twenty countries and pride ourselves on a friendly, "
     "multilingual and inclusive workplace."),
    ("As a public agency, we are accountable to the residents we serve and offer the stability "
     "of public service."),
]
FIT_BENEFITS = [
    ("Competitive hourly rate, paid weekly, with shift differentials for evenings and "
     "weekends."),
    ("Medical plan from day one, employer-paid life insurance, a matched savings plan and "
     "three weeks of paid leave."),
    ("Annual raises, a yearly boot and tool allowance, and paid certification courses."),
    ("Remote-friendly schedule, home office stipend, stock options and unlimited paid time "
     "off."),
    ("Defined-benefit retirement, public service loan forgiveness eligibility and a "
     "four-day work week option."),
]
FIT_CLOSINGS = [
    ("Qualified applicants of every background are welcome; we do not discriminate on any "
     "basis prohibited by federal, state or local law."),
    "Send your resume today; interviews are held on a rolling basis.",
    ("Offers are contingent on reference checks. Accommodations in the hiring process are "
     "available on request."),
    "Ready to start? Apply online in five minutes; no cover letter needed.",
]
FIT_REQUIREMENTS = [
    "Diploma, degree or relevant training.",
    "{years} or more years doing similar work.",
    "Comfortable with computers and common office software.",
    "Able to lift 25 pounds and stand for long periods.",
    "Reliable transportation and flexible availability.",
    "Customer-focused attitude and a willingness to learn.",
    "Fluency in a second language is a plus.",
]
GENERIC_DUTIES = [
    "Follow all safety rules and company policies",
    "Keep accurate records and complete required paperwork",
    "Communicate clearly with supervisors, coworkers and customers",
    "Attend training sessions and team meetings",
    "Maintain a clean and organized work area",
    "Perform other duties as assigned",
]


class Templates(NamedTuple):
    """The boilerplate of one style of ad."""

    blurbs: list[str]
    benefits: list[str]
    closings: list[str]
    requirements: list[str]
    duties: tuple[str, ...]        # headers of the task list
    asks: tuple[str, ...]          # headers of the requirements
    offers: tuple[str, ...]        # headers of the benefits ("" for none)
    about: str                     # header of a blurb at the end


EVALUATED = Templates(BLURBS, BENEFITS, EQUAL_OPPORTUNITY, REQUIREMENTS, ("Responsibilities:",),
                      ("Requirements:", "Qualifications:"),
                      ("Benefits:\n", "What we offer:\n", ""), "About us:\n")
FITTING = Templates(FIT_BLURBS, FIT_BENEFITS, FIT_CLOSINGS, FIT_REQUIREMENTS,
                    ("What you'll do:", "Key duties:", "In this role you will:"),
                    ("You bring:", "Must have:"), ("Pay and perks:\n", "Why join us:\n", ""),
                    "Who we are:\n")


def posting_tasks(tasks: list[str], n_tasks: int = 3) -> list[str]:
    """The share of an occupation's task statements that training never uses: the second half
    of the list, and never any of the first `n_tasks` (those go into category texts)."""
    return list(tasks[max(n_tasks, len(tasks) // 2):])


def task_half(tasks: list[str], fitting: bool) -> list[str]:
    """The evaluated ads' share of `tasks` (every other one, from the first) or the fitting
    ads' (the rest)."""
    return list(tasks[1::2] if fitting else tasks[0::2])


def pseudo_posting(title: str, tasks: list[str], rng: random.Random, n_tasks: int = 5,
                   templates: Templates = EVALUATED) -> str:
    """An ad-like text around up to `n_tasks` of `tasks`, sampled and in random order.

    A company blurb, a header ("Responsibilities:") with the tasks as bullets, optional
    requirements, then benefits and a closing (an equal-opportunity statement), in the
    boilerplate of `templates`. `title` is not written into the text (the caller passes it as
    the title column).
    """
    bullet = rng.choice(BULLETS)
    chosen = rng.sample(list(tasks), min(n_tasks, len(tasks)))
    duties = rng.choice(templates.duties) + "\n" + "\n".join(
        bullet + task.strip().rstrip(".") + "." for task in chosen)
    blurb = rng.choice(templates.blurbs)
    parts = [duties]
    if rng.random() < 0.6:
        years = rng.randint(2, 5)
        lines = rng.sample(templates.requirements, rng.randint(1, 3))
        header = rng.choice(templates.asks)
        parts.append(header + "\n" + "\n".join(bullet + line.format(years=years)
                                               for line in lines))
    if rng.random() < 0.8:
        parts.insert(0, blurb)  # most ads open with the company, some close with it
    else:
        parts.append(templates.about + blurb)
    benefits = rng.choice(templates.benefits)
    header = rng.choice(templates.offers)
    parts.append(header + benefits)
    parts.append(rng.choice(templates.closings))
    return "\n\n".join(parts)


def _harder(own: list[str], related: list[list[str]], rng: random.Random,
            n_tasks: int) -> list[str]:
    """Up to `n_tasks` tasks, at least one the occupation's own; one or two of them (where
    there is room) from one related occupation, and sometimes a duty any job has."""
    chosen = rng.sample(own, min(n_tasks, len(own)))
    related = [r for r in related if r]
    if related and len(chosen) > 1:
        other = rng.choice(related)
        borrowed = rng.sample(other, min(rng.randint(1, 2), len(other), len(chosen) - 1))
        chosen = chosen[:len(chosen) - len(borrowed)] + borrowed
    if rng.random() < 0.5:
        chosen.append(rng.choice(GENERIC_DUTIES))
    return chosen


def pseudo_postings(titles: Sequence[str], codes: Sequence[str], tasks: dict[str, list[str]],
                    seed: int = 0, n_tasks: int = 5, category_n_tasks: int = 3,
                    fitting: bool = False,
                    related: dict[str, list[str]] | None = None) -> list[str]:
    """One posting text per (title, code), its tasks drawn from the evaluated (or, `fitting`,
    the fitting) half of `posting_tasks(tasks[code], category_n_tasks)` in that style's
    templates; seeded; '' where a code has no such tasks. With `related` (code → related
    codes, O*NET's Related Occupations), fitting ads borrow tasks (`_harder`)."""
    if len(titles) != len(codes):
        raise ValueError(f"{len(titles)} titles but {len(codes)} codes")
    rng = random.Random(seed)
    templates = FITTING if fitting else EVALUATED

    def available(code: str) -> list[str]:
        return task_half(posting_tasks(tasks.get(code, []), category_n_tasks), fitting)

    texts = []
    for title, code in zip(titles, codes):
        own, limit = available(code), n_tasks
        if own and related is not None:
            own = _harder(own, [available(c) for c in related.get(code, [])], rng, n_tasks)
            limit = len(own)
        texts.append(pseudo_posting(title, own, rng, limit, templates) if own else "")
    return texts
