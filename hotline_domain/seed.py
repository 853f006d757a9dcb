"""Deterministic demo data: 1,200 citizens with valid ID numbers and their records, plus open jobs.

The same seed always gives the same people. Dates that must look recent (pension payments, card orders,
job postings) are laid out relative to the month the database is created. `DEMO_CALLERS` are documented
people with known service passwords, for demos, the operator's smoke test and the tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Table

from hotline_domain import schema
from hotline_domain.business import hash_password
from hotline_domain.identity import check_char

SEED = 12333
CITIZEN_COUNT = 1200
# The demo callers' hashes have the full cost (business.SCRYPT_N). The other citizens' passwords follow from the
# public SEED, so no hash cost protects them, and the full one would hold up the first start for ~110 s: theirs
# are cheap scrypt (under 1 ms each), replaced by a full-cost hash the first time one of them verifies.
CROWD_HASH_COST = {"n": 2**8}

REGION_CODES = {
    "北京": "110105",
    "上海": "310104",
    "广州": "440106",
    "深圳": "440304",
    "成都": "510107",
    "武汉": "420106",
    "杭州": "330106",
    "南京": "320106",
    "西安": "610113",
    "重庆": "500103",
}
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
_BANKS = ("工商银行", "建设银行", "农业银行", "中国银行")
_FIRM_NAMES = ("宏达", "鑫源", "华兴", "远航", "金桥")
_TRADES = ("建筑", "物流", "餐饮", "电子")
_EMPLOYER_NAMES = ("恒信", "安达", "新希望", "明远", "瑞丰", "众诚")
_EMPLOYER_KINDS = ("服务", "科技", "实业", "物业", "餐饮")
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂兰华红玉建国文斌宇浩凯鹏飞婷雪梅林海波辉晨阳"


@dataclass(frozen=True)
class DemoCaller:
    name: str
    id_number: str
    password: str
    note: str


def make_id(region: str, born: date, sequence: int) -> str:
    """An ID number with a valid GB 11643 check character; an odd `sequence` is a man."""
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_char(first17)


DEMO_CALLERS = (
    DemoCaller("张伟", make_id("110105", date(1968, 5, 12), 123), "135790", "北京 男 在职 缴费三十多年 社保卡正常"),
    DemoCaller(
        "李秀英", make_id("310104", date(1958, 3, 8), 242), "246802", "上海 女 已退休 六十五岁以上 本月养老金待发"
    ),
    DemoCaller(
        "王芳", make_id("440106", date(1985, 9, 20), 366), "112233", "广州 女 补卡已制好待领 仲裁案2025-118待开庭"
    ),
    DemoCaller(
        "刘强", make_id("440304", date(1990, 11, 2), 471), "778899", "深圳 男 仲裁案2024-123已裁决 焊工三级证书"
    ),
    DemoCaller("陈静", make_id("510107", date(1975, 1, 15), 582), "101010", "成都 女 工人 新卡制作中未激活"),
)


def _months_back(today: date, n: int) -> str:
    index = today.year * 12 + today.month - 1 - n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def seed_rows(today: date | None = None) -> list[tuple[Table, list[dict[str, Any]]]]:
    """All demo rows, table by table, in an order that respects foreign keys."""
    today = today or date.today()
    rng = random.Random(SEED)
    people: list[dict[str, Any]] = []
    passwords: dict[str, str] = {}
    for demo in DEMO_CALLERS:
        born = date(int(demo.id_number[6:10]), int(demo.id_number[10:12]), int(demo.id_number[12:14]))
        city = next(c for c, code in REGION_CODES.items() if code == demo.id_number[:6])
        gender = "male" if int(demo.id_number[16]) % 2 else "female"
        job_type = "worker" if demo.name in ("张伟", "陈静", "刘强") else "cadre"
        people.append(_person(rng, demo.name, demo.id_number, born, gender, city, job_type))
        passwords[demo.id_number] = demo.password
    seen = {p["id_number"] for p in people}
    while len(people) < CITIZEN_COUNT:
        city = rng.choice(list(REGION_CODES))
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 54 * 365))
        gender = rng.choice(("male", "female"))
        sequence = rng.randrange(0, 500) * 2 + (1 if gender == "male" else 0)
        id_number = make_id(REGION_CODES[city], born, sequence)
        if id_number in seen:
            continue
        seen.add(id_number)
        name = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
        job_type = rng.choices(("worker", "cadre", "flexible"), weights=(6, 3, 1))[0]
        people.append(_person(rng, name, id_number, born, gender, city, job_type))
        passwords[id_number] = f"{rng.randrange(0, 10**6):06d}"
    for i, person in enumerate(people):
        cost = {} if i < len(DEMO_CALLERS) else CROWD_HASH_COST
        person["password_hash"] = hash_password(passwords[person["id_number"]], **cost)

    contributions, payments, cards, orders, cases, certificates = [], [], [], [], [], []
    for i, p in enumerate(people):
        demo = i < len(DEMO_CALLERS)
        retired = _is_retired(p, today)
        contributions += _contributions(rng, p, today)
        if retired:
            payments += _payments(rng, p, today, pending_latest=(p["name"] == "李秀英"))
        status = "not_activated" if p["name"] == "陈静" or (not demo and rng.random() < 0.08) else "active"
        cards.append(
            {
                "card_no": f"{p['id_number'][:2]}{rng.randrange(10**9):09d}{i % 10}",
                "id_number": p["id_number"],
                "city": p["city"],
                "status": status,
                "issued_on": today - timedelta(days=rng.randrange(30, 3000)),
            }
        )
        if p["name"] in ("王芳", "陈静") or (not demo and rng.random() < 0.1):
            orders.append(_card_order(rng, p, today, "ready" if p["name"] == "王芳" else None))
        if p["name"] in ("王芳", "刘强") or (not demo and rng.random() < 0.03):
            cases.append(_case(rng, p, today, len(cases)))
        if p["name"] == "刘强" or (not demo and rng.random() < 0.2):
            certificates.append(_certificate(rng, p, len(certificates)))
    return [
        (schema.citizens, people),
        (schema.contributions, contributions),
        (schema.pension_payments, payments),
        (schema.cards, cards),
        (schema.card_orders, orders),
        (schema.arbitration_cases, cases),
        (schema.skill_certificates, certificates),
        (schema.jobs, _jobs(rng, today)),
    ]


def _person(
    rng: random.Random, name: str, id_number: str, born: date, gender: str, city: str, job_type: str
) -> dict[str, Any]:
    return {
        "id_number": id_number,
        "name": name,
        "gender": gender,
        "birth_date": born,
        "city": city,
        "phone": f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
        "salt": _legacy_salt_draw(rng),
        "password_hash": "",
        "job_type": job_type,
    }


def _legacy_salt_draw(rng: random.Random) -> str:
    """Nothing (scrypt hashes carry their salt); drawn still, so that the rest of the demo data stays as it was."""
    rng.randrange(16**8)
    return ""


def _is_retired(p: dict[str, Any], today: date) -> bool:
    age = today.year - p["birth_date"].year
    if p["gender"] == "male":
        return age >= 61
    return age >= (51 if p["job_type"] == "worker" else 56)


def _contributions(rng: random.Random, p: dict[str, Any], today: date) -> list[dict[str, Any]]:
    start = max(1992, p["birth_date"].year + rng.randrange(18, 26))
    end = min(today.year - 1, p["birth_date"].year + (60 if p["gender"] == "male" else 55))
    rows = []
    for year in range(start, end + 1):
        months = 12 if rng.random() > 0.12 else rng.randrange(3, 12)
        base = round(1200 * 1.07 ** (year - 1992) * rng.uniform(0.8, 1.6), -1)
        rows.append(
            {
                "id_number": p["id_number"],
                "year": year,
                "months": months,
                "base": base,
                "personal_amount": round(base * 0.08 * months, 2),
                "city": p["city"],
            }
        )
    return rows


def _payments(rng: random.Random, p: dict[str, Any], today: date, *, pending_latest: bool) -> list[dict[str, Any]]:
    amount = round(rng.uniform(2200, 6500), 2)
    rows = []
    for n in range(6):
        month = _months_back(today, n)
        pending = n == 0 and (pending_latest or today.day < 15)
        rows.append(
            {
                "id_number": p["id_number"],
                "month": month,
                "amount": amount,
                "status": "pending" if pending else "paid",
                "paid_on": None if pending else date(int(month[:4]), int(month[5:]), 15),
                "note": "每月十五日前后发放" if pending else None,
            }
        )
    return rows


def _card_order(rng: random.Random, p: dict[str, Any], today: date, status: str | None) -> dict[str, Any]:
    status = status or rng.choice(("accepted", "producing", "ready", "collected"))
    applied = today - timedelta(days=rng.randrange(5, 40))
    return {
        "id_number": p["id_number"],
        "kind": rng.choice(("new", "replacement")),
        "status": status,
        "applied_on": applied,
        "ready_on": applied + timedelta(days=20) if status in ("ready", "collected") else None,
        "pickup_place": f"{p['city']}市{rng.choice(_BANKS)}{rng.choice('东西南北中')}区支行",
    }


def _case(rng: random.Random, p: dict[str, Any], today: date, index: int) -> dict[str, Any]:
    fixed = {"王芳": ("2025-118", "hearing_scheduled"), "刘强": ("2024-123", "awarded")}
    number, status = fixed.get(p["name"], (f"{rng.choice((2024, 2025))}-{200 + index}", None))
    status = status or rng.choice(("accepted", "hearing_scheduled", "mediating", "awarded", "closed"))
    return {
        "case_number": number,
        "id_number": p["id_number"],
        "respondent": f"{p['city']}{rng.choice(_FIRM_NAMES)}{rng.choice(_TRADES)}有限公司",
        "commission": f"{p['city']}市劳动人事争议仲裁委员会",
        "filed_on": today - timedelta(days=rng.randrange(20, 200)),
        "status": status,
        "hearing_on": today + timedelta(days=rng.randrange(3, 30)) if status == "hearing_scheduled" else None,
    }


def _certificate(rng: random.Random, p: dict[str, Any], index: int) -> dict[str, Any]:
    title = (
        "焊工" if p["name"] == "刘强" else rng.choice(("电工", "焊工", "育婴员", "中式烹调师", "保育员", "电子商务师"))
    )
    level = "三级" if p["name"] == "刘强" else rng.choice(("五级", "四级", "三级", "二级"))
    return {
        "certificate_no": f"S{p['id_number'][:6]}{index:06d}{rng.randrange(1000):03d}",
        "id_number": p["id_number"],
        "title": title,
        "level": level,
        "issued_on": date(rng.randrange(2015, 2026), rng.randrange(1, 13), 1),
        "issuer": f"{p['city']}市职业技能鉴定中心",
    }


_JOB_TITLES = {
    "司机": ("货车司机", "网约车司机", "公交驾驶员"),
    "电工": ("维修电工", "物业电工"),
    "焊工": ("电焊工", "氩弧焊工"),
    "厨师": ("中餐厨师", "面点师"),
    "保安": ("小区保安", "商场安保员"),
    "保洁": ("写字楼保洁", "家政保洁员"),
    "服务员": ("餐厅服务员", "酒店客房服务员"),
    "销售": ("门店导购", "销售代表"),
    "普工": ("电子厂普工", "包装操作工"),
    "快递员": ("快递派送员", "外卖骑手"),
    "会计": ("出纳", "主办会计"),
    "客服": ("电话客服", "在线客服"),
    "仓管": ("仓库管理员", "理货员"),
    "护工": ("养老护理员", "育婴师"),
    "程序员": ("Java开发工程师", "测试工程师"),
    "文员": ("行政文员", "前台接待"),
    "教师": ("培训讲师", "幼儿园老师"),
}


def _jobs(rng: random.Random, today: date) -> list[dict[str, Any]]:
    rows = []
    for city in REGION_CODES:
        for category, titles in _JOB_TITLES.items():
            for _ in range(rng.randrange(1, 4)):
                low = rng.randrange(30, 90) * 100
                rows.append(
                    {
                        "city": city,
                        "category": category,
                        "title": rng.choice(titles),
                        "employer": f"{city}{rng.choice(_EMPLOYER_NAMES)}{rng.choice(_EMPLOYER_KINDS)}公司",
                        "district": rng.choice(("东城区", "西区", "高新区", "开发区", "南区", "城北")),
                        "salary_min": low,
                        "salary_max": low + rng.randrange(10, 40) * 100,
                        "posted_on": today - timedelta(days=rng.randrange(0, 20)),
                    }
                )
    return rows
