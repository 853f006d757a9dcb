"""Statutory retirement age under the gradual raise in force from 2025-01-01.

全国人民代表大会常务委员会关于实施渐进式延迟法定退休年龄的决定 (2024-09-13) and its attached schedule:
over fifteen years from 2025-01-01, men's age goes from 60 to 63 and the women's 55 from 55 to 58 by one month
every four months; the women's 50 goes to 55 by one month every two months. Whoever reached the original
age before 2025 retires at the original age. The month counts from the month the original age is reached.
"""

from __future__ import annotations

from dataclasses import dataclass

REFORM_START = (2025, 1)

# original age in years, months of raise per step, cap on the raise in months
_RULES = {
    ("male", None): (60, 4, 36),
    ("female", "cadre"): (55, 4, 36),
    ("female", "flexible"): (55, 4, 36),
    ("female", "worker"): (50, 2, 60),
}


@dataclass(frozen=True)
class RetirementAge:
    original_years: int
    delay_months: int
    year: int  # the year and month the caller reaches the statutory age
    month: int

    @property
    def age_years(self) -> int:
        return self.original_years + self.delay_months // 12

    @property
    def age_months(self) -> int:
        return self.delay_months % 12

    def spoken(self) -> str:
        """One sentence for the caller, with numbers in digits (normalised for speech later)."""
        age = f"{self.age_years}岁" + (f"{self.age_months}个月" if self.age_months else "")
        if self.delay_months == 0:
            return f"按规定，您的法定退休年龄是{age}，也就是{self.year}年{self.month}月退休，不受延迟退休影响。"
        return (
            f"按渐进式延迟退休的规定，您的法定退休年龄是{age}，比原来的{self.original_years}岁"
            f"延后{self.delay_months}个月，预计{self.year}年{self.month}月可以退休。"
        )


def statutory_retirement(birth_year: int, birth_month: int, gender: str, job_type: str | None = None) -> RetirementAge:
    """Retirement age and month for someone born in `birth_year`-`birth_month`.

    `gender` is 'male' or 'female'; for women `job_type` is 'worker' (original age 50), 'cadre' or 'flexible' (55).
    """
    if gender not in ("male", "female"):
        raise ValueError(f"gender must be male or female, not {gender!r}")
    if not 1 <= birth_month <= 12:
        raise ValueError(f"birth month out of range: {birth_month}")
    key = (gender, None) if gender == "male" else (gender, job_type or "worker")
    if key not in _RULES:
        raise ValueError(f"unknown job type {job_type!r}")
    years, step, cap = _RULES[key]
    original = (birth_year + years) * 12 + birth_month - 1  # month index when the original age is reached
    since_reform = original - (REFORM_START[0] * 12 + REFORM_START[1] - 1)
    delay = 0 if since_reform < 0 else min(cap, since_reform // step + 1)
    retire = original + delay
    return RetirementAge(original_years=years, delay_months=delay, year=retire // 12, month=retire % 12 + 1)
