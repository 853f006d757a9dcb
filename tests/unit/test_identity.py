from datetime import date

import pytest

from hotline_domain.identity import IdNumber, IdNumberError, check_char, mask_id, redact
from hotline_domain.seed import make_id


def test_checksum_of_the_standard_example() -> None:
    # GB 11643-1999 worked example
    assert check_char("11010519491231002") == "X"
    assert IdNumber.parse("11010519491231002x").value == "11010519491231002X"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("11010519491231002", "length"), ("110105194912310021", "checksum"), ("110105194913310027", "date")],
)
def test_wrong_ids_are_caught_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(IdNumberError) as caught:
        IdNumber.parse(raw)
    assert caught.value.reason == reason
    assert caught.value.spoken  # something to tell the caller


def test_birth_date_gender_age_and_masking() -> None:
    number = IdNumber.parse(make_id("440304", date(1990, 11, 2), 471))
    assert number.birth_date == date(1990, 11, 2)
    assert number.gender == "male"
    assert number.age_on(date(2025, 11, 1)) == 34
    assert number.age_on(date(2025, 11, 2)) == 35
    assert number.masked == "440304********" + number.value[-4:]
    assert str(number) == number.masked and number.value not in str(number)


def test_redact_masks_ids_phones_and_passwords() -> None:
    line = "id=110105196805121230 phone 13812345678 password: 135790 ok"
    cleaned = redact(line)
    assert "110105196805121230" not in cleaned and mask_id("110105196805121230") in cleaned
    assert "13812345678" not in cleaned and "138****5678" in cleaned
    assert "135790" not in cleaned
