"""occlass: classify job titles into O*NET-SOC 2019 occupations."""

from occlass import precision  # noqa: F401  (registers the config resolver ${cpu_precision:})
