"""Per-city rules for phone loss reports of social security cards (data/card_loss_rules.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import yaml

from hotline_domain.business import add_working_days

RULES_FILE = Path(__file__).with_name("data") / "card_loss_rules.yaml"


@dataclass(frozen=True)
class LossRule:
    city: str | None
    days: int
    working_days: bool
    formal_where: str

    def lapse_on(self, reported: date) -> date:
        """The last day the phone (temporary) loss report holds."""
        if self.working_days:
            return add_working_days(reported, self.days)
        return reported + timedelta(days=self.days)

    def spoken(self, lapse_on: date) -> str:
        unit = "个工作日" if self.working_days else "天"
        return (
            f"电话挂失是临时挂失，有效期{self.days}{unit}，到{lapse_on.month}月{lapse_on.day}日为止。"
            f"请在这之前带身份证到{self.formal_where}办理正式挂失和补卡。"
        )


@lru_cache(maxsize=1)
def _rules() -> dict:
    return yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))


def loss_rule(city: str | None) -> LossRule:
    rules = _rules()
    entry = rules["cities"].get(city or "", rules["default"])
    return LossRule(city=city if city in rules["cities"] else None, **entry)
