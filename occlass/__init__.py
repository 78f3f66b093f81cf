"""occlass: classify job titles into O*NET-SOC 2019 occupations."""
