from datetime import date

import pytest

from hotline_domain.business import BackendError, BusinessDb, add_working_days
from hotline_domain.card_rules import loss_rule
from hotline_domain.identity import IdNumber
from hotline_domain.seed import CITIZEN_COUNT, DEMO_CALLERS, seed_rows


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> BusinessDb:
    return BusinessDb(f"sqlite:///{tmp_path_factory.mktemp('db') / 'business.sqlite3'}")


def test_seed_is_deterministic_and_every_id_is_valid() -> None:
    first, second = seed_rows(date(2026, 1, 1)), seed_rows(date(2026, 1, 1))
    people = first[0][1]
    assert len(people) == CITIZEN_COUNT >= 1000
    assert [p["id_number"] for p in people] == [p["id_number"] for p in second[0][1]]
    for person in people:
        IdNumber.parse(person["id_number"])  # raises on a bad checksum
    assert len({p["id_number"] for p in people}) == len(people)


def test_demo_callers_can_log_in_and_others_cannot(db: BusinessDb) -> None:
    for caller in DEMO_CALLERS:
        assert db.check_password(caller.id_number, caller.password)
        assert not db.check_password(caller.id_number, "000000")
    assert not db.check_password("11010519491231002X", "123456")


def test_records_behind_the_demo_callers(db: BusinessDb) -> None:
    zhang, li, wang, liu, chen = (c.id_number for c in DEMO_CALLERS)
    assert db.contribution_summary(zhang)["months"] > 12 * 25
    assert db.latest_pension_payments(li)[0]["status"] == "pending"
    assert db.card_orders(wang)[0]["status"] == "ready"
    assert {c["case_number"] for c in db.arbitration_cases(liu)} == {"2024-123"}
    assert db.certificates(liu)[0]["title"] == "焊工"
    assert db.active_card(chen)["status"] == "not_activated"
    jobs = db.jobs("成都", "司机")
    assert 1 <= len(jobs) <= 3 and all(j["city"] == "成都" and j["category"] == "司机" for j in jobs)


def test_card_loss_report_freezes_the_card_once(db: BusinessDb) -> None:
    caller = DEMO_CALLERS[0].id_number
    report = db.report_card_loss(caller, date(2026, 12, 1))
    assert len(report.reference) == 10 and report.reference.isdigit()
    assert db.active_card(caller) is None
    with pytest.raises(LookupError):
        db.report_card_loss(caller, date(2026, 12, 1))


def test_a_database_that_cannot_be_reached_raises_backend_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(BackendError):
        BusinessDb(f"sqlite:///{blocker}/db.sqlite3")


def test_working_days_and_city_rules() -> None:
    friday = date(2026, 11, 27)
    assert add_working_days(friday, 1) == date(2026, 11, 30)
    assert add_working_days(friday, 5) == date(2026, 12, 4)
    guangzhou = loss_rule("广州")
    assert guangzhou.working_days and guangzhou.lapse_on(friday) == add_working_days(friday, 15)
    unknown = loss_rule("拉萨")
    assert unknown.city is None and unknown.lapse_on(friday) == date(2026, 12, 4)
    assert "有效期" in guangzhou.spoken(guangzhou.lapse_on(friday))
