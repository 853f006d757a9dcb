"""Resident ID numbers (GB 11643-1999) and phone numbers in what callers say; masking is in `privacy`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from hotline_domain.numbers import digit_runs
from hotline_domain.privacy import mask_id, mask_phone, redact, redact_partial

# masking lives in hotline_domain.privacy; these names stay importable from here for existing callers
__all__ = [
    "IdNumber",
    "IdNumberError",
    "check_char",
    "id_candidates",
    "mask_id",
    "mask_phone",
    "phone_candidates",
    "redact",
    "redact_partial",
]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"


def check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


class IdNumberError(ValueError):
    """An ID number that cannot be right: wrong length, bad date or failed checksum."""

    def __init__(self, reason: str, spoken: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "length", "date" or "checksum"
        self.spoken = spoken  # short Chinese explanation for the caller


@dataclass(frozen=True)
class IdNumber:
    """A validated 18-character resident ID number."""

    value: str

    @classmethod
    def parse(cls, raw: str) -> IdNumber:
        """Validate an 18-character ID (digits, last may be X); raise IdNumberError when it is wrong."""
        value = raw.strip().upper()
        if not re.fullmatch(r"\d{17}[\dX]", value):
            raise IdNumberError("length", f"身份证号应该是十八位，我听到的是{len(value)}位")
        try:
            date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        except ValueError:
            raise IdNumberError("date", "这个身份证号里的出生日期不对") from None
        if check_char(value[:17]) != value[17]:
            raise IdNumberError("checksum", "这个身份证号校验不通过，可能有一位听错了")
        return cls(value)

    @property
    def birth_date(self) -> date:
        return date(int(self.value[6:10]), int(self.value[10:12]), int(self.value[12:14]))

    @property
    def gender(self) -> str:
        """'male' or 'female', from the parity of the 17th digit."""
        return "male" if int(self.value[16]) % 2 else "female"

    @property
    def region(self) -> str:
        return self.value[:6]

    def age_on(self, day: date) -> int:
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))

    @property
    def tail(self) -> str:
        return self.value[-4:]

    @property
    def masked(self) -> str:
        return mask_id(self.value)

    def __str__(self) -> str:  # never print the whole number by accident
        return self.masked


def id_candidates(text: str) -> list[tuple[str, int, int]]:
    """ID-like runs (17 digits + digit or X, also 15-19 long for misheard ones) in spoken or typed text."""
    return [(d, s, e) for d, s, e in digit_runs(text, allow_x=True) if 15 <= len(d) <= 19]


def phone_candidates(text: str) -> list[tuple[str, int, int]]:
    """Mainland mobile numbers (11 digits starting 1[3-9]) and landlines with area code, spoken or typed."""
    found = []
    for digits, start, end in digit_runs(text):
        if re.fullmatch(r"1[3-9]\d{9}", digits) or re.fullmatch(r"0\d{9,11}", digits):
            found.append((digits, start, end))
    return found
