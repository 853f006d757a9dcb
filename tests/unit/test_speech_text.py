import re

import pytest

from voice_gateway.speech_text import cardinal, speakable


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "零"),
        (10, "十"),
        (12, "十二"),
        (20, "二十"),
        (105, "一百零五"),
        (110, "一百一十"),
        (1005, "一千零五"),
        (2000, "两千"),
        (3500, "三千五百"),
        (10500, "一万零五百"),
        (20000, "两万"),
        (123456, "十二万三千四百五十六"),
        (100000000, "一亿"),
    ],
)
def test_cardinal(n: int, words: str) -> None:
    assert cardinal(n) == words


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("这里是12333人社服务热线", "这里是幺二三三三人社服务热线"),
        ("好的，身份证尾号1230。", "好的，身份证尾号幺二三零。"),
        ("受理编号是2611 2900 01。", "受理编号是二六幺幺，二九零零，零幺。"),
        ("有效期5天，到12月4日为止。", "有效期五天，到十二月四日为止。"),
        ("预计2026年5月可以退休", "预计二零二六年五月可以退休"),
        ("法定退休年龄是60岁4个月", "法定退休年龄是六十岁四个月"),
        ("个人账户累计记入56321元", "个人账户累计记入五万六千三百二十一元"),
        ("养老金3254.5元", "养老金三千二百五十四点五元"),
        ("月薪4500到6800元", "月薪四千五百到六千八百元"),
        ("我的电话13812345678", "我的电话幺三八幺二三四五六七八"),
        ("身份证11010519491231002X", "身份证幺幺零幺零五幺九四九幺二三幺零零二叉"),
        ("费率20%，最低60%", "费率百分之二十，最低百分之六十"),
        ("请拨打12393咨询", "请拨打幺二三九三咨询"),
    ],
)
def test_speakable(text: str, spoken: str) -> None:
    assert speakable(text) == spoken


def test_every_bot_text_of_the_domain_is_left_without_digits() -> None:
    import yaml

    from voice_gateway.config import PROJECT_ROOT

    domain = yaml.safe_load((PROJECT_ROOT / "dialogue" / "domain.yml").read_text(encoding="utf-8"))
    for name, variants in domain["responses"].items():
        for variant in variants:
            assert not re.search(r"[0-9]", speakable(variant["text"])), name


def test_every_action_prompt_is_left_without_digits() -> None:
    import runpy

    from voice_gateway.config import PROJECT_ROOT

    prompts = runpy.run_path(str(PROJECT_ROOT / "dialogue" / "actions" / "prompts.py"))
    texts = [value for name, value in prompts.items() if name.isupper() and isinstance(value, str)]
    assert len(texts) > 10
    for text in texts:
        assert not re.search(r"[0-9]", speakable(text)), text
