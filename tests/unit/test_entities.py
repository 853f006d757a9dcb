import pytest

from hotline_domain.entities import extract


def values(text: str) -> dict[str, object]:
    return {e["entity"]: e["value"] for e in extract(text)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我身份证号是幺幺零幺零五幺九八零零幺零幺幺二三四", {"id_number": "110105198001011234"}),
        ("身份证110105196805121230", {"id_number": "110105196805121230"}),
        ("号码是一一零一零五 一九四九一二三一 零零二叉", {"id_number": "11010519491231002X"}),
        ("我电话是幺三八 幺二三四 五六七八", {"phone": "13812345678"}),
        ("我是一九七零年三月出生的女工人", {"year": 1970, "month": 3, "gender": "female", "job_type": "worker"}),
        ("六五年的男的", {"year": 1965, "gender": "male"}),
        ("两千零二年十二月", {"year": 2002, "month": 12}),
        ("我在成都市想找个司机的活", {"city": "成都", "job_category": "司机"}),
        ("魔都有没有保安的工作", {"city": "上海", "job_category": "保安"}),
        ("案号是京劳人仲字二零二四第一二三号", {"case_number": "2024-123"}),
        ("案号2025年第118号", {"case_number": "2025-118"}),
        ("老板跑路了工资一直不给", {"urgency": "urgent"}),
    ],
)
def test_entities_with_canonical_values(text: str, expected: dict[str, object]) -> None:
    found = values(text)
    for name, value in expected.items():
        assert found.get(name) == value, (text, found)


def test_durations_are_not_birth_years() -> None:
    assert "year" not in values("我交了十五年社保")
    assert "year" not in values("交了两三年")


def test_offsets_point_at_the_words() -> None:
    text = "我想在深圳找电工"
    for entity in extract(text):
        assert text[entity["start"] : entity["end"]] in ("深圳", "电工")


@pytest.mark.parametrize("text", ["", "😀😀😀", "hello world", "啊" * 10000, "!!!???"])
def test_junk_gives_no_entities_and_no_error(text: str) -> None:
    assert extract(text) == [] or all(e["entity"] != "id_number" for e in extract(text))
