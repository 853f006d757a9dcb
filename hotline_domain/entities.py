"""Entity extraction with canonical values, for what callers say on the phone.

Deterministic rules, not a learned model: ID and phone numbers need checksums and digit handling, and
cities and job kinds are closed lists. The Rasa pipeline calls `extract` through a thin component.
"""

from __future__ import annotations

import re
from typing import TypedDict

from hotline_domain.identity import id_candidates, phone_candidates
from hotline_domain.numbers import DIGIT_CHARS, digits_of, quantity_value, to_arabic
from hotline_domain.places import CITY_ALIASES


class Entity(TypedDict):
    entity: str
    value: str | int
    start: int
    end: int


_D = "".join(DIGIT_CHARS)
_YEAR = re.compile(rf"([{_D}十百千]{{2,6}})\s*年(?!代|级|限|轻|底|纪)")
_MONTH = re.compile(rf"(?<![{_D}十])(十[一二]|[{_D}十]|1[0-2]|0?[1-9])\s*月(?!薪|工资|底)")
_GENDER = re.compile(r"(男|女)(?!朋友|儿|孩|生宿舍|婿|方|装|厕)")
_GENDER_WORDS = {"先生": "male", "女士": "female", "小伙子": "male", "姑娘": "female", "大姐": "female", "大哥": "male"}

JOB_TYPES: dict[str, tuple[str, ...]] = {
    # the original statutory retirement age of women depends on this: workers 50, cadres 55
    "worker": ("工人", "普工", "职工", "一线", "车间", "工厂", "流水线", "企业员工", "工勤"),
    "cadre": ("干部", "管理岗", "管理人员", "专业技术", "技术岗", "技术人员", "公务员", "事业单位", "机关", "科员"),
    "flexible": ("灵活就业", "个体户", "自由职业", "自己交社保"),
}

JOB_CATEGORIES: dict[str, tuple[str, ...]] = {
    "司机": ("司机", "驾驶员", "开车", "货车", "网约车", "开大车", "开出租"),
    "电工": ("电工", "水电工", "电路"),
    "焊工": ("焊工", "电焊", "氩弧焊"),
    "厨师": ("厨师", "后厨", "帮厨", "做饭", "面点"),
    "保安": ("保安", "门卫", "安保"),
    "保洁": ("保洁", "清洁工", "打扫卫生", "家政"),
    "服务员": ("服务员", "餐厅", "饭店", "酒店"),
    "销售": ("销售", "导购", "业务员", "卖房", "推销"),
    "普工": ("普工", "流水线", "操作工", "进厂", "车间"),
    "快递员": ("快递", "外卖", "骑手", "配送", "送货"),
    "会计": ("会计", "财务", "出纳"),
    "客服": ("客服", "话务员"),
    "仓管": ("仓管", "仓库", "库管", "搬运", "理货"),
    "护工": ("护工", "护理", "保姆", "月嫂", "育婴", "养老护理"),
    "程序员": ("程序员", "软件", "开发", "IT", "码农"),
    "文员": ("文员", "行政", "前台", "办公室"),
    "教师": ("老师", "教师", "家教", "讲师"),
}

_URGENT = re.compile(
    r"跑路|跑了|卷钱|没法活|活不下去|不想活|跳楼|轻生|打人|动手|威胁|急死|着急|很急|急用|马上|今天就|立刻|"
    r"一群|好多工友|几十个|上百|集体|堵门|讨薪|回家过年|过不了年|半年|一年多|一年了|好几个月|几个月"
)
_CASE = re.compile(
    r"(?:([\u4e00-\u9fa5]{1,2})劳人?仲(?:裁)?(?:案)?字?)?\s*[〔\[(（【]?\s*((?:19|20)\d\d)\s*[〕\])）】]?\s*(?:年)?\s*第?\s*(\d{1,5})\s*号"
)
_CASE_CUE = re.compile(r"案号|案件号|案子号|仲字|劳人仲|劳仲")


def extract(text: str) -> list[Entity]:
    """All entities in `text`, with canonical values and character offsets into `text`."""
    found: list[Entity] = []
    claimed: list[tuple[int, int]] = []

    def add(entity: str, value: str | int, start: int, end: int) -> None:
        found.append(Entity(entity=entity, value=value, start=start, end=end))
        claimed.append((start, end))

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in claimed)

    for digits, start, end in id_candidates(text):
        add("id_number", digits, start, end)
    for digits, start, end in phone_candidates(text):
        if free(start, end):
            add("phone", digits, start, end)
    _extract_case_number(text, add, free)
    _extract_date(text, add, free)
    _extract_words(text, add, free)
    return sorted(found, key=lambda e: e["start"])


def _extract_case_number(text: str, add, free) -> None:  # type: ignore[no-untyped-def]
    arabic = to_arabic(text, min_run=2)
    if not _CASE_CUE.search(text) and "号" not in text:
        return
    m = _CASE.search(arabic)
    if m and (m.group(1) or _CASE_CUE.search(text)):
        # offsets are approximate after rewriting numbers; map the match back by proportion
        start = _orig_offset(text, arabic, m.start())
        end = len(text) if m.end() >= len(arabic) else _orig_offset(text, arabic, m.end())
        if free(start, end):
            add("case_number", f"{m.group(2)}-{int(m.group(3))}", start, end)


def _orig_offset(text: str, arabic: str, pos: int) -> int:
    return min(len(text), round(pos * len(text) / max(1, len(arabic))))


def _extract_date(text: str, add, free) -> None:  # type: ignore[no-untyped-def]
    for m in _YEAR.finditer(text):
        word = m.group(1)
        year = _birth_year(word)
        if year is not None and free(m.start(1), m.end()):
            add("year", year, m.start(1), m.end())
    for m in _MONTH.finditer(text):
        word = m.group(1)
        value = quantity_value(word) if not word.isascii() else int(word)
        if value and 1 <= value <= 12 and free(m.start(1), m.end()):
            add("month", value, m.start(1), m.end())


def _birth_year(word: str) -> int | None:
    """A birth year from a spoken year word: 一九七零 / 1970 / 七零 / 70 / 两千零二."""
    if all(ch in DIGIT_CHARS for ch in word):
        digits = digits_of(word)
        if len(digits) == 2:
            yy = int(digits)
            return 1900 + yy if yy >= 30 else (2000 + yy if yy <= 15 else None)
        value = int(digits) if len(digits) == 4 else None
    else:
        value = quantity_value(word)
    return value if value is not None and 1930 <= value <= 2015 else None


def _extract_words(text: str, add, free) -> None:  # type: ignore[no-untyped-def]
    for alias, city in CITY_ALIASES:
        i = text.find(alias)
        if i >= 0 and free(i, i + len(alias)):
            add("city", city, i, i + len(alias))
    m = _GENDER.search(text)
    if m:
        add("gender", "male" if m.group(1) == "男" else "female", m.start(), m.end())
    else:
        for word, gender in _GENDER_WORDS.items():
            i = text.find(word)
            if i >= 0:
                add("gender", gender, i, i + len(word))
                break
    for table, name in ((JOB_TYPES, "job_type"), (JOB_CATEGORIES, "job_category")):
        best: tuple[int, str, str] | None = None
        for value, words in table.items():
            for word in words:
                i = text.find(word)
                if i >= 0 and (best is None or i < best[0]):
                    best = (i, value, word)
        if best:
            add(name, best[1], best[0], best[0] + len(best[2]))
    m = _URGENT.search(text)
    if m:
        add("urgency", "urgent", m.start(), m.end())
