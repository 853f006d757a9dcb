"""Worked examples from the schedule attached to the NPC Standing Committee decision of 2024-09-13."""

import pytest

from hotline_domain.retirement import statutory_retirement


@pytest.mark.parametrize(
    ("born", "gender", "job", "age", "retire"),
    [
        # men, 60 -> 63, one month every four months
        ((1964, 12), "male", None, (60, 0), (2024, 12)),  # reached 60 before 2025: unchanged
        ((1965, 1), "male", None, (60, 1), (2025, 2)),
        ((1965, 4), "male", None, (60, 1), (2025, 5)),
        ((1965, 5), "male", None, (60, 2), (2025, 7)),
        ((1966, 1), "male", None, (60, 4), (2026, 5)),
        ((1970, 6), "male", None, (61, 5), (2031, 11)),  # 65 months into the reform: 17 months later
        ((1976, 8), "male", None, (62, 11), (2039, 7)),
        ((1976, 9), "male", None, (63, 0), (2039, 9)),  # first cohort at the full 63
        ((1990, 3), "male", None, (63, 0), (2053, 3)),
        # women of original age 55 (cadres), 55 -> 58
        ((1969, 12), "female", "cadre", (55, 0), (2024, 12)),
        ((1970, 1), "female", "cadre", (55, 1), (2025, 2)),
        ((1981, 9), "female", "cadre", (58, 0), (2039, 9)),
        ((1975, 6), "female", "flexible", (56, 5), (2031, 11)),
        # women of original age 50 (workers), 50 -> 55, one month every two months
        ((1974, 12), "female", "worker", (50, 0), (2024, 12)),
        ((1975, 1), "female", "worker", (50, 1), (2025, 2)),
        ((1975, 3), "female", "worker", (50, 2), (2025, 5)),
        ((1976, 1), "female", "worker", (50, 7), (2026, 8)),
        ((1984, 10), "female", "worker", (54, 11), (2039, 9)),
        ((1984, 11), "female", "worker", (55, 0), (2039, 11)),
    ],
)
def test_schedule(born, gender, job, age, retire) -> None:  # type: ignore[no-untyped-def]
    result = statutory_retirement(born[0], born[1], gender, job)
    assert (result.age_years, result.age_months) == age
    assert (result.year, result.month) == retire


def test_spoken_answer_is_one_sentence_with_the_age_and_month() -> None:
    text = statutory_retirement(1966, 1, "male").spoken()
    assert "60岁4个月" in text and "2026年5月" in text and text.count("。") == 1


@pytest.mark.parametrize(("month", "gender"), [(13, "male"), (0, "female"), (5, "unknown")])
def test_bad_input_is_refused(month: int, gender: str) -> None:
    with pytest.raises(ValueError):
        statutory_retirement(1970, month, gender)
