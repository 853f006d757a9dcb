import hashlib
import time
from datetime import date

import pytest
from sqlalchemy import select, update

from hotline_domain import schema
from hotline_domain.business import (
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    BackendError,
    BusinessDb,
    add_working_days,
    hash_password,
    needs_rehash,
    verify_password,
)
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


def _stored(db: BusinessDb, id_number: str) -> dict:
    with db.engine.connect() as conn:
        t = schema.citizens
        return dict(conn.execute(select(t).where(t.c.id_number == id_number)).one()._mapping)


def test_service_passwords_are_scrypt_with_their_parameters_recorded(db: BusinessDb) -> None:
    caller = DEMO_CALLERS[1]
    stored = _stored(db, caller.id_number)["password_hash"]
    scheme, n, r, p, salt, key = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert len(salt) == 22 and len(key) == 43 and len(stored) <= 128  # 16 and 32 bytes, base64; fits the column
    assert caller.password not in stored and not needs_rehash(stored)
    assert hash_password(caller.password) != hash_password(caller.password)  # a new salt every time


def test_verify_checks_the_parameters_written_in_the_hash() -> None:
    cheap = hash_password("246802", n=2**4, r=1, p=1)
    assert verify_password("246802", cheap) and not verify_password("246803", cheap)
    assert needs_rehash(cheap)
    scheme, _n, r, p, salt, key = cheap.split("$")
    assert not verify_password("246802", "$".join((scheme, "32", r, p, salt, key)))  # other n: other key
    for broken in ("", "scrypt$16$1$1$!!$!!", "scrypt$15$1$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "plain246802"):
        assert not verify_password("246802", broken)
    huge = "$".join((scheme, str(2**30), r, p, salt, key))  # a row asking for 128 GiB is refused, not computed
    assert not verify_password("246802", huge)


def test_one_verify_costs_tens_of_milliseconds() -> None:
    stored = hash_password("135790")
    started = time.perf_counter()
    assert verify_password("135790", stored)
    elapsed = time.perf_counter() - started
    assert 0.02 < elapsed < 2.0  # ~90 ms on the 2-core dev machine: slow for a guesser, fine for a caller


def test_an_old_sha256_hash_verifies_once_and_is_upgraded(db: BusinessDb) -> None:
    caller = DEMO_CALLERS[2]
    legacy = hashlib.sha256(("0a1b2c3d" + caller.password).encode()).hexdigest()
    with db.engine.begin() as conn:
        t = schema.citizens
        conn.execute(update(t).where(t.c.id_number == caller.id_number).values(password_hash=legacy, salt="0a1b2c3d"))
    assert not db.check_password(caller.id_number, "000000")
    assert _stored(db, caller.id_number)["password_hash"] == legacy  # a wrong password changes nothing
    assert db.check_password(caller.id_number, caller.password)
    upgraded = _stored(db, caller.id_number)
    assert upgraded["password_hash"].startswith(f"scrypt${SCRYPT_N}$") and upgraded["salt"] == ""
    assert db.check_password(caller.id_number, caller.password)
    assert not db.check_password(caller.id_number, "000000")


def test_a_cheap_seeded_hash_is_upgraded_on_first_verify(db: BusinessDb) -> None:
    person = next(p for p in seed_rows(date(2026, 1, 1))[0][1] if p["name"] not in {c.name for c in DEMO_CALLERS})
    stored = _stored(db, person["id_number"])["password_hash"]
    assert needs_rehash(stored)  # the synthetic crowd is seeded cheaply (seed.CROWD_HASH_COST)
    with db.engine.begin() as conn:
        t = schema.citizens
        conn.execute(
            update(t).where(t.c.id_number == person["id_number"]).values(password_hash=hash_password("654321", n=2**8))
        )
    assert db.check_password(person["id_number"], "654321")
    assert not needs_rehash(_stored(db, person["id_number"])["password_hash"])


def test_an_unknown_id_costs_a_verify_too(db: BusinessDb) -> None:
    started = time.perf_counter()
    assert not db.check_password("11010519491231002X", "123456")
    assert time.perf_counter() - started > 0.02  # no quick "no such person" to probe which IDs exist


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
