import pytest

from hotline_domain.numbers import digit_runs, digits_of, quantity_value, to_arabic


@pytest.mark.parametrize(
    ("spoken", "digits"),
    [("幺三八", "138"), ("洞拐勾", "079"), ("两两两", "222"), ("１２３", "123"), ("一 二、三-四", "1234")],
)
def test_digits_of_code_words(spoken: str, digits: str) -> None:
    assert digits_of(spoken) == digits


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("十五", 15),
        ("二十", 20),
        ("两千零二十四", 2024),
        ("一九七零", 1970),
        ("一百零五", 105),
        ("一万零五百", 10500),
        ("三万五千", 35000),
        ("千万", None),
        ("万一", None),
        ("好", None),
    ],
)
def test_quantity_value(word: str, value: int | None) -> None:
    assert quantity_value(word) == value


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("我交了十五年", "我交了15年"),
        ("两千零二十四年三月", "2024年3月"),
        ("电话幺三八幺二三四五六七八", "电话13812345678"),
        ("七零年的", "70年的"),
        ("两三年了", "两三年了"),  # a span, not a year
        ("等一下", "等一下"),
        ("万一不行", "万一不行"),
        ("十分感谢", "十分感谢"),
        ("三个月没发工资", "3个月没发工资"),
    ],
)
def test_to_arabic(text: str, normalised: str) -> None:
    assert to_arabic(text) == normalised


def test_digit_runs_keep_trailing_x_for_ids() -> None:
    [(digits, start, end)] = digit_runs("号码是幺幺零幺零五幺九八零零幺零幺幺二三叉", allow_x=True)
    assert digits == "11010519800101123X"
    assert (start, end) == (3, 21)


@pytest.mark.parametrize(
    ("text", "question", "answer"),
    [
        ("是的", None, True),
        ("对", None, True),
        ("没错", None, True),
        ("好的确认", "confirm", True),
        ("不是", None, False),
        ("不对，先不挂了", "confirm", False),
        ("不用了", "elder_offer", False),
        ("没有", None, False),
        ("办了", "registered_unemployed", True),
        ("还没去登记", "registered_unemployed", False),
        ("交满了", "insured_one_year", True),
        ("才交了八个月", "insured_one_year", False),
        ("交了三年了", "insured_one_year", True),
        ("被公司裁了", "involuntary", True),
        ("不是，我自己辞职的", "involuntary", False),
        ("合同到期不续签", "involuntary", True),
        ("北京", None, None),
        ("", None, None),
    ],
)
def test_yes_no_answers(text: str, question: str | None, answer: bool | None) -> None:
    from hotline_domain.answers import yes_no

    assert yes_no(text, question) is answer
