"""Recurrence rules: the accepted subset, canonical form, zones, and stepping in local time.

Pure unit tests of ``taskapi.services.recurrence``: no database, so they run once. The DST
tables use 2026: Europe/Berlin changes on March 29 and October 25 (last Sundays), and
America/New_York on March 8 (second Sunday) and November 1 (first Sunday).
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, date, datetime, timedelta
from functools import cache
from types import EllipsisType
from zoneinfo import ZoneInfo

import pytest

from taskapi.services.recurrence import (
    ALLOWED_PARTS,
    FREQUENCIES,
    MAX_RULE_LENGTH,
    SUBSET_DOC,
    WEEKDAYS,
    Occurrence,
    RecurrenceError,
    check_timezone,
    next_occurrence,
    normalize_rule,
)

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    st = None

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(*args: int) -> datetime:
    """An aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(instant: datetime, zone: str) -> datetime:
    """The instant as a naive wall-clock time in a zone."""
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def series(rule: str, zone: str, due_at: datetime, limit: int = 50) -> list[datetime]:
    """Complete occurrence after occurrence; the due times that follow, until the rule ends."""
    found = []
    for _ in range(limit):
        following = next_occurrence(rule, zone, due_at)
        if following is None:
            break
        found.append(following.due_at)
        rule, due_at = following.rule, following.due_at
    return found


# -- the subset ---------------------------------------------------------------------------

GOOD_RULES = [
    ("FREQ=DAILY", "FREQ=DAILY"),
    ("FREQ=DAILY;INTERVAL=1", "FREQ=DAILY"),
    ("RRULE:FREQ=DAILY;COUNT=5", "FREQ=DAILY;COUNT=5"),
    ("FREQ=daily;INTERVAL=0003", "FREQ=DAILY;INTERVAL=3"),
    ("COUNT=2;FREQ=WEEKLY", "FREQ=WEEKLY;COUNT=2"),
    ("FREQ=WEEKLY;BYDAY=TH,MO;INTERVAL=2", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH"),
    ("FREQ=WEEKLY;BYDAY=su,sa,fr,th,we,tu,mo", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU"),
    ("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR", "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR"),
    ("FREQ=DAILY;INTERVAL=7", "FREQ=DAILY;INTERVAL=7"),
    ("FREQ=DAILY;BYMONTHDAY=1,-1", "FREQ=DAILY;BYMONTHDAY=1,-1"),
    ("FREQ=MONTHLY;BYDAY=-1FR", "FREQ=MONTHLY;BYDAY=-1FR"),
    ("FREQ=MONTHLY;BYDAY=-1FR,+1MO,2MO,5SU", "FREQ=MONTHLY;BYDAY=1MO,2MO,-1FR,5SU"),
    ("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13", "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13"),
    ("FREQ=MONTHLY;BYMONTHDAY=-1,31,01,15", "FREQ=MONTHLY;BYMONTHDAY=1,15,31,-1"),
    ("FREQ=YEARLY;BYDAY=53MO,-53SU", "FREQ=YEARLY;BYDAY=53MO,-53SU"),
    ("FREQ=YEARLY;INTERVAL=1000;COUNT=1000", "FREQ=YEARLY;INTERVAL=1000;COUNT=1000"),
    ("FREQ=DAILY;UNTIL=20261231", "FREQ=DAILY;UNTIL=20261231"),
    ("FREQ=DAILY;UNTIL=20261231t235959z", "FREQ=DAILY;UNTIL=20261231T235959Z"),
    ("FREQ=YEARLY;UNTIL=20280229T000000Z", "FREQ=YEARLY;UNTIL=20280229T000000Z"),
]


@pytest.mark.parametrize(("text", "canonical"), GOOD_RULES)
def test_accepted_rules_come_back_in_canonical_form(text: str, canonical: str) -> None:
    assert normalize_rule(text) == canonical
    assert normalize_rule(canonical) == canonical
    assert normalize_rule("RRULE:" + canonical) == canonical


def test_equal_rules_written_differently_are_stored_equal() -> None:
    spellings = [
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=4",
        "RRULE:COUNT=4;BYDAY=TH,MO;INTERVAL=2;FREQ=WEEKLY",
        "BYDAY=th,mo;FREQ=weekly;COUNT=04;INTERVAL=02",
    ]
    assert {normalize_rule(text) for text in spellings} == {
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=4"
    }


BAD_RULES = [
    ("", "must not be empty"),
    ("RRULE:", "must not be empty"),
    ("FREQ=DAILY;", "empty part"),
    (";FREQ=DAILY", "empty part"),
    ("FREQ=DAILY;;COUNT=2", "empty part"),
    ("FREQ", "NAME=VALUE"),
    ("FREQ=", "NAME=VALUE"),
    ("=DAILY", "NAME=VALUE"),
    ("FREQ=DAILY=WEEKLY", "NAME=VALUE"),
    ("freq=DAILY", "upper case"),
    ("FREQ=DAILY;Count=2", "upper case"),
    ("rrule:FREQ=DAILY", "single RRULE value"),
    ("RRULE:RRULE:FREQ=DAILY", "single RRULE value"),
    ("DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY", "single RRULE value"),
    ("FREQ=DAILY;DTSTART=20260101T090000Z", "'DTSTART' is not supported"),
    ("FREQ=MONTHLY;BYSETPOS=-1;BYDAY=MO", "'BYSETPOS' is not supported"),
    ("FREQ=DAILY;BYHOUR=9", "'BYHOUR' is not supported"),
    ("FREQ=YEARLY;BYMONTH=2", "'BYMONTH' is not supported"),
    ("FREQ=WEEKLY;WKST=SU", "'WKST' is not supported"),
    ("FREQ=DAILY;X-NAME=1", "'X-NAME' is not supported"),
    ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given more than once"),
    ("FREQ=WEEKLY;BYDAY=MO;BYDAY=TU", "BYDAY is given more than once"),
    ("COUNT=2", "FREQ is required"),
    ("FREQ=HOURLY", "FREQ must be one of DAILY, WEEKLY, MONTHLY, YEARLY"),
    ("FREQ=SECONDLY", "FREQ must be one of"),
    ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be an integer from 1 to 1000"),
    ("FREQ=DAILY;INTERVAL=1001", "INTERVAL must be an integer from 1 to 1000"),
    ("FREQ=DAILY;INTERVAL=-1", "INTERVAL must be an integer from 1 to 1000"),
    ("FREQ=DAILY;INTERVAL=99999999999999999999", "INTERVAL must be an integer"),
    ("FREQ=DAILY;COUNT=0", "COUNT must be an integer from 1 to 1000"),
    ("FREQ=DAILY;COUNT=1001", "COUNT must be an integer from 1 to 1000"),
    ("FREQ=DAILY;COUNT=2;UNTIL=20261231", "COUNT and UNTIL cannot both be given"),
    ("FREQ=WEEKLY;BYDAY=XX", "must be a weekday"),
    ("FREQ=WEEKLY;BYDAY=MO,", "must be a weekday"),
    ("FREQ=WEEKLY;BYDAY=MONDAY", "must be a weekday"),
    ("FREQ=WEEKLY;BYDAY=MO,MO", "lists 'MO' more than once"),
    ("FREQ=MONTHLY;BYDAY=1MO,+1MO", "more than once"),
    ("FREQ=WEEKLY;BYDAY=1MO", "only allowed with FREQ=MONTHLY or YEARLY"),
    ("FREQ=DAILY;BYDAY=-1FR", "only allowed with FREQ=MONTHLY or YEARLY"),
    ("FREQ=MONTHLY;BYDAY=0MO", "from 1 to 5 or from -5 to -1"),
    ("FREQ=MONTHLY;BYDAY=6MO", "from 1 to 5 or from -5 to -1"),
    ("FREQ=YEARLY;BYDAY=-54MO", "from 1 to 53 or from -53 to -1"),
    ("FREQ=MONTHLY;BYDAY=MO,-1FR", "cannot mix weekdays with and without an ordinal"),
    ("FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1", "cannot be combined with BYMONTHDAY"),
    ("FREQ=DAILY;INTERVAL=14;BYDAY=MO", "multiple of 7"),
    ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY cannot be used with FREQ=WEEKLY"),
    ("FREQ=MONTHLY;BYMONTHDAY=0", "from 1 to 31 or from -31 to -1"),
    ("FREQ=MONTHLY;BYMONTHDAY=32", "from 1 to 31 or from -31 to -1"),
    ("FREQ=MONTHLY;BYMONTHDAY=-32", "from 1 to 31 or from -31 to -1"),
    ("FREQ=MONTHLY;BYMONTHDAY=1,01", "lists '01' more than once"),
    ("FREQ=DAILY;UNTIL=20261231T235959", "UNTIL must be a UTC date-time"),
    ("FREQ=DAILY;UNTIL=2026-12-31", "UNTIL must be a UTC date-time"),
    ("FREQ=DAILY;UNTIL=261231", "UNTIL must be a UTC date-time"),
    ("FREQ=DAILY;UNTIL=20260230", "is not a valid date or time"),
    ("FREQ=DAILY;UNTIL=20261231T246000Z", "is not a valid date or time"),
    ("FREQ=DAILY;UNTIL=00000101", "is not a valid date or time"),
    ("FREQ=DAILY; COUNT=2", "no spaces"),
    (" FREQ=DAILY", "no spaces"),
    ("FREQ=DAILY\n", "line breaks"),
    ("FREQ=DAILY\r\nCOUNT=2", "line breaks"),
    ("FREQ=DAILY\x00", "control characters"),
    ("FREQ=DA\u0130LY", "letters, digits"),
    ("FREQ=DAILY;COUNT=\uff12", "letters, digits"),
]


@pytest.mark.parametrize(("text", "message"), BAD_RULES)
def test_rules_outside_the_subset_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(RecurrenceError, match=re.escape(message)) as caught:
        normalize_rule(text)
    assert caught.value.field == "recurrence"
    assert caught.value.message == str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_overlong_rules_are_refused_before_anything_else() -> None:
    days = ",".join(f"{n}{day}" for day in WEEKDAYS for n in range(1, 54))
    long_rule = f"FREQ=YEARLY;BYDAY={days}"
    assert len(long_rule) > MAX_RULE_LENGTH
    fitting = long_rule[: long_rule.rindex(",", 0, MAX_RULE_LENGTH + 1)]
    assert normalize_rule(fitting).startswith("FREQ=YEARLY;BYDAY=1MO,2MO")
    with pytest.raises(RecurrenceError, match="at most 500 characters"):
        normalize_rule(long_rule)
    with pytest.raises(RecurrenceError, match="at most 500 characters"):
        normalize_rule("\x00" * 10_000)


def test_messages_quote_little_of_the_input() -> None:
    with pytest.raises(RecurrenceError) as caught:
        normalize_rule("FREQ=DAILY;" + "X" * 400 + "=1")
    assert len(str(caught.value)) < 200


def test_subset_doc_names_every_accepted_part_and_frequency() -> None:
    assert ALLOWED_PARTS == ("FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "COUNT", "UNTIL")
    for word in (*ALLOWED_PARTS, *FREQUENCIES, "RRULE:", "500", "IANA"):
        assert word in SUBSET_DOC
    assert "\n" not in SUBSET_DOC


# -- time zones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [BERLIN, NEW_YORK, "UTC", "Etc/GMT-14", "America/Argentina/Buenos_Aires", "Asia/Kolkata"],
)
def test_iana_zones_are_accepted_as_given(name: str) -> None:
    assert check_timezone(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "local",
        "localtime",
        "Factory",
        "posixrules",
        "europe/berlin",
        "Europe/Berlin ",
        " Europe/Berlin",
        "Europe/Berlin\x00",
        "Europe/Berlin\n",
        "../etc/passwd",
        "Europe/../UTC",
        "/etc/localtime",
        "/usr/share/zoneinfo/UTC",
        "Europe//Berlin",
        "Europe/",
        "Mars/Olympus_Mons",
        "CEST",
        "+02:00",
        "Europe/Berlin" * 6,
        "A" * 100_000,
    ],
)
def test_unknown_or_unsafe_zones_are_refused(name: str) -> None:
    with pytest.raises(RecurrenceError) as caught:
        check_timezone(name)
    assert caught.value.field == "timezone"
    assert len(str(caught.value)) < 100


def test_next_occurrence_checks_its_zone_and_its_due_time() -> None:
    with pytest.raises(RecurrenceError) as caught:
        next_occurrence("FREQ=DAILY", "Nowhere/City", utc(2026, 1, 1, 9))
    assert caught.value.field == "timezone"
    with pytest.raises(RecurrenceError, match="FREQ must be one of"):
        next_occurrence("FREQ=HOURLY", BERLIN, utc(2026, 1, 1, 9))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_occurrence("FREQ=DAILY", BERLIN, datetime(2026, 1, 1, 9))


# -- daylight-saving changes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "before", "after", "which"),
    [
        (BERLIN, datetime(2026, 3, 29, 1, 59), datetime(2026, 3, 29, 3, 0), "last"),
        (BERLIN, datetime(2026, 10, 25, 2, 59), datetime(2026, 10, 25, 2, 0), "last"),
        (NEW_YORK, datetime(2026, 3, 8, 1, 59), datetime(2026, 3, 8, 3, 0), "second"),
        (NEW_YORK, datetime(2026, 11, 1, 1, 59), datetime(2026, 11, 1, 1, 0), "first"),
    ],
)
def test_the_tables_below_use_the_real_change_days(
    zone: str, before: datetime, after: datetime, which: str
) -> None:
    """One minute after the last wall time before the change comes the first one after."""
    instant = before.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)
    assert local(instant + timedelta(minutes=1), zone) == after
    assert after.weekday() == calendar.SUNDAY
    nth = {"first": 1, "second": 2}.get(which)
    if nth is None:
        assert (after + timedelta(weeks=1)).month != after.month
    else:
        assert (after.day - 1) // 7 + 1 == nth


DST_STEPS = [
    # zone, rule, the completed occurrence (UTC), the next (UTC): always 09:00 local.
    (BERLIN, "FREQ=WEEKLY", utc(2026, 3, 23, 8), utc(2026, 3, 30, 7)),
    (BERLIN, "FREQ=WEEKLY", utc(2026, 10, 19, 7), utc(2026, 10, 26, 8)),
    (BERLIN, "FREQ=WEEKLY;BYDAY=MO", utc(2026, 3, 23, 8), utc(2026, 3, 30, 7)),
    (BERLIN, "FREQ=DAILY", utc(2026, 3, 28, 8), utc(2026, 3, 29, 7)),
    (BERLIN, "FREQ=DAILY", utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)),
    (BERLIN, "FREQ=DAILY", utc(2026, 10, 24, 7), utc(2026, 10, 25, 8)),
    (NEW_YORK, "FREQ=WEEKLY", utc(2026, 3, 2, 14), utc(2026, 3, 9, 13)),
    (NEW_YORK, "FREQ=WEEKLY", utc(2026, 10, 26, 13), utc(2026, 11, 2, 14)),
    (NEW_YORK, "FREQ=WEEKLY;BYDAY=MO", utc(2026, 10, 26, 13), utc(2026, 11, 2, 14)),
    (NEW_YORK, "FREQ=DAILY", utc(2026, 3, 7, 14), utc(2026, 3, 8, 13)),
    (NEW_YORK, "FREQ=DAILY", utc(2026, 10, 31, 13), utc(2026, 11, 1, 14)),
    (NEW_YORK, "FREQ=DAILY", utc(2026, 11, 1, 14), utc(2026, 11, 2, 14)),
]


@pytest.mark.parametrize(("zone", "rule", "done", "expected"), DST_STEPS)
def test_nine_oclock_stays_nine_oclock_across_the_change(
    zone: str, rule: str, done: datetime, expected: datetime
) -> None:
    assert local(done, zone).hour == 9
    following = next_occurrence(rule, zone, done)
    assert following == Occurrence(due_at=expected, rule=rule)
    assert following.due_at.tzinfo is UTC
    assert local(following.due_at, zone).hour == 9


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK])
def test_a_year_of_mondays_at_nine(zone: str) -> None:
    start = datetime(2026, 1, 5, 9, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    due = series("FREQ=WEEKLY;BYDAY=MO", zone, start, limit=104)
    assert len(due) == 104
    walls = [local(d, zone) for d in due]
    assert all(w.weekday() == calendar.MONDAY and (w.hour, w.minute) == (9, 0) for w in walls)
    assert [w.date() for w in walls] == [date(2026, 1, 12) + timedelta(weeks=n) for n in range(104)]
    assert {d.hour for d in due} == ({7, 8} if zone == BERLIN else {13, 14})


def test_a_daily_task_in_the_spring_gap_moves_forward_by_the_gap() -> None:
    """02:30 does not exist on the change day: RFC 5545 reads it with the offset before."""
    # Europe/Berlin: 02:30 CET on Saturday is 01:30Z; Sunday 02:30 would be 02:30 CET, that is
    # 01:30Z again, shown as 03:30 CEST.
    sunday = next_occurrence("FREQ=DAILY", BERLIN, utc(2026, 3, 28, 1, 30))
    assert sunday is not None
    assert sunday.due_at == utc(2026, 3, 29, 1, 30)
    assert local(sunday.due_at, BERLIN) == datetime(2026, 3, 29, 3, 30)
    # Anchored on the 03:30 it became, the series keeps that wall time (documented).
    monday = next_occurrence(sunday.rule, BERLIN, sunday.due_at)
    assert monday is not None
    assert local(monday.due_at, BERLIN) == datetime(2026, 3, 30, 3, 30)
    # America/New_York: 02:30 EST is 07:30Z, and so is Sunday's 03:30 EDT.
    gap = next_occurrence("FREQ=DAILY", NEW_YORK, utc(2026, 3, 7, 7, 30))
    assert gap is not None
    assert gap.due_at == utc(2026, 3, 8, 7, 30)
    assert local(gap.due_at, NEW_YORK) == datetime(2026, 3, 8, 3, 30)


@pytest.mark.parametrize(
    ("zone", "saturday", "first", "second", "monday"),
    [
        # 01:30 happens twice on November 1 in New York: 05:30Z (EDT), then 06:30Z (EST).
        (NEW_YORK, utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30),
         utc(2026, 11, 2, 6, 30)),
        # 02:30 happens twice on October 25 in Berlin: 00:30Z (CEST), then 01:30Z (CET).
        (BERLIN, utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30),
         utc(2026, 10, 26, 1, 30)),
    ],
)  # fmt: skip
def test_an_ambiguous_wall_time_means_the_first_one(
    zone: str, saturday: datetime, first: datetime, second: datetime, monday: datetime
) -> None:
    assert local(first, zone) == local(second, zone)
    sunday = next_occurrence("FREQ=DAILY", zone, saturday)
    assert sunday is not None
    assert sunday.due_at == first
    assert series("FREQ=DAILY", zone, first, limit=1) == [monday]
    # A task that was due at the second one also goes on to Monday at the same wall time.
    assert series("FREQ=DAILY", zone, second, limit=1) == [monday]


def test_any_aware_due_time_is_accepted_and_utc_comes_back() -> None:
    berlin_nine = datetime(2026, 3, 28, 9, 0, 0, 123456, tzinfo=ZoneInfo(BERLIN))
    following = next_occurrence("FREQ=DAILY", BERLIN, berlin_nine)
    assert following is not None
    assert following.due_at == utc(2026, 3, 29, 7, 0, 0, 123456)
    assert following.due_at.tzinfo is UTC


# -- endings: COUNT and UNTIL -------------------------------------------------------------


def test_count_counts_down_to_the_end() -> None:
    first = next_occurrence("FREQ=DAILY;COUNT=3", BERLIN, utc(2026, 1, 1, 8))
    assert first == Occurrence(utc(2026, 1, 2, 8), "FREQ=DAILY;COUNT=2")
    second = next_occurrence(first.rule, BERLIN, first.due_at)
    assert second == Occurrence(utc(2026, 1, 3, 8), "FREQ=DAILY;COUNT=1")
    assert next_occurrence(second.rule, BERLIN, second.due_at) is None
    assert len(series("FREQ=WEEKLY;BYDAY=MO,TH;COUNT=3", NEW_YORK, utc(2026, 1, 5, 14))) == 2
    assert series("FREQ=YEARLY;COUNT=1000", BERLIN, utc(2026, 1, 1, 8), limit=5)[-1] == utc(
        2031, 1, 1, 8
    )


def test_until_as_a_utc_time_is_inclusive() -> None:
    rule = "FREQ=DAILY;UNTIL=20260105T080000Z"
    assert series(rule, BERLIN, utc(2026, 1, 2, 8)) == [
        utc(2026, 1, 3, 8),
        utc(2026, 1, 4, 8),
        utc(2026, 1, 5, 8),
    ]
    assert series("FREQ=DAILY;UNTIL=20260105T075959Z", BERLIN, utc(2026, 1, 2, 8)) == [
        utc(2026, 1, 3, 8),
        utc(2026, 1, 4, 8),
    ]
    following = next_occurrence(rule, BERLIN, utc(2026, 1, 2, 8))
    assert following is not None
    assert following.rule == rule
    assert next_occurrence(rule, BERLIN, utc(2027, 1, 1, 8)) is None


def test_until_as_a_date_means_through_that_local_day() -> None:
    """23:30 in New York on January 5 is 04:30Z on January 6, and is still included."""
    rule = "FREQ=DAILY;UNTIL=20260105"
    due = series(rule, NEW_YORK, utc(2026, 1, 3, 4, 30))
    assert [local(d, NEW_YORK) for d in due] == [
        datetime(2026, 1, 3, 23, 30),
        datetime(2026, 1, 4, 23, 30),
        datetime(2026, 1, 5, 23, 30),
    ]
    assert due[-1] == utc(2026, 1, 6, 4, 30)


# -- BYDAY, BYMONTHDAY, INTERVAL, leap days -----------------------------------------------


def test_every_other_week_on_monday_and_thursday() -> None:
    rule = "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH"
    monday = datetime(2026, 1, 5, 9, tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)
    walls = [local(d, BERLIN) for d in series(rule, BERLIN, monday, limit=5)]
    assert [w.date() for w in walls] == [
        date(2026, 1, 8),
        date(2026, 1, 19),
        date(2026, 1, 22),
        date(2026, 2, 2),
        date(2026, 2, 5),
    ]
    assert {(w.hour, w.minute) for w in walls} == {(9, 0)}
    # Due on a day the rule does not name (a Wednesday): the next matching day after it.
    wednesday = datetime(2026, 1, 7, 9, tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)
    following = next_occurrence(rule, BERLIN, wednesday)
    assert following is not None
    assert local(following.due_at, BERLIN) == datetime(2026, 1, 8, 9)


@pytest.mark.parametrize("rule", ["FREQ=MONTHLY;BYMONTHDAY=31", "FREQ=MONTHLY"])
def test_monthly_on_the_31st_skips_shorter_months(rule: str) -> None:
    start = datetime(2026, 1, 31, 9, tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)
    days = [local(d, BERLIN).date() for d in series(rule, BERLIN, start, limit=6)]
    assert days == [date(2026, m, 31) for m in (3, 5, 7, 8, 10, 12)]


def test_monthly_on_the_last_day() -> None:
    start = datetime(2027, 10, 31, 9, tzinfo=ZoneInfo(NEW_YORK)).astimezone(UTC)
    walls = [local(d, NEW_YORK) for d in series("FREQ=MONTHLY;BYMONTHDAY=-1", NEW_YORK, start, 6)]
    assert [w.date() for w in walls] == [
        date(2027, 11, 30),
        date(2027, 12, 31),
        date(2028, 1, 31),
        date(2028, 2, 29),
        date(2028, 3, 31),
        date(2028, 4, 30),
    ]
    assert {w.hour for w in walls} == {9}


def test_monthly_on_the_last_friday_and_the_first_monday() -> None:
    start = utc(2026, 1, 1, 12)
    last_fridays = [
        local(d, "UTC").date() for d in series("FREQ=MONTHLY;BYDAY=-1FR", "UTC", start, 3)
    ]
    assert last_fridays == [date(2026, 1, 30), date(2026, 2, 27), date(2026, 3, 27)]
    first_mondays = [
        local(d, "UTC").date() for d in series("FREQ=MONTHLY;BYDAY=1MO", "UTC", start, 3)
    ]
    assert first_mondays == [date(2026, 1, 5), date(2026, 2, 2), date(2026, 3, 2)]


def test_yearly_on_february_29_waits_for_leap_years() -> None:
    start = datetime(2024, 2, 29, 9, tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)
    days = [local(d, BERLIN).date() for d in series("FREQ=YEARLY", BERLIN, start, limit=3)]
    assert days == [date(2028, 2, 29), date(2032, 2, 29), date(2036, 2, 29)]
    # 2100 is not a leap year.
    start = datetime(2096, 2, 29, 9, tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)
    following = next_occurrence("FREQ=YEARLY", BERLIN, start)
    assert following is not None
    assert local(following.due_at, BERLIN) == datetime(2104, 2, 29, 9)


def test_a_rule_that_can_never_occur_again_ends_quickly() -> None:
    """Every twelfth month from February never has a 30th: no next task, and no long search."""
    started = time.perf_counter()
    assert (
        next_occurrence("FREQ=MONTHLY;INTERVAL=12;BYMONTHDAY=30", BERLIN, utc(2026, 2, 2, 8))
        is None
    )
    assert time.perf_counter() - started < 2


def test_nothing_after_the_year_9999() -> None:
    assert next_occurrence("FREQ=YEARLY", BERLIN, utc(9999, 6, 1, 8)) is None
    # 23:00 on December 31, 9999 in New York is beyond datetime's range in UTC.
    assert next_occurrence("FREQ=DAILY", NEW_YORK, utc(9999, 12, 31, 3)) is None
    # Kiritimati is UTC+14: the due time is already in the year 10000 there.
    assert next_occurrence("FREQ=DAILY", "Pacific/Kiritimati", utc(9999, 12, 31, 12)) is None


# -- properties ---------------------------------------------------------------------------

PROPERTY_ZONES = [
    BERLIN,
    NEW_YORK,
    "UTC",
    "Australia/Lord_Howe",  # a 30-minute daylight-saving shift
    "America/Santiago",  # changes at midnight
    "Pacific/Apia",  # skipped December 30, 2011
    "Asia/Kolkata",
    "America/St_Johns",
]


def _matches(day: date, rule: str, anchor: date) -> bool:
    """Whether a local date is one the rule names (for INTERVAL=1: the rule's days)."""
    parts = dict(part.split("=") for part in rule.split(";"))
    freq = parts["FREQ"]
    entries = parts["BYDAY"].split(",") if "BYDAY" in parts else []
    monthdays = [int(n) for n in parts["BYMONTHDAY"].split(",")] if "BYMONTHDAY" in parts else []
    if not entries and not monthdays:
        if freq == "WEEKLY":
            return day.weekday() == anchor.weekday()
        if freq == "MONTHLY":
            return day.day == anchor.day
        if freq == "YEARLY":
            return (day.month, day.day) == (anchor.month, anchor.day)
        return True
    last = calendar.monthrange(day.year, day.month)[1]
    if monthdays and day.day not in monthdays and day.day - last - 1 not in monthdays:
        return False
    if not entries:
        return True
    weekday = WEEKDAYS[day.weekday()]
    if entries[0][-2:] == entries[0]:
        return weekday in entries
    if freq == "MONTHLY":
        nth, nth_last = (day.day - 1) // 7 + 1, -((last - day.day) // 7 + 1)
    else:
        yearday = day.timetuple().tm_yday
        length = 366 if calendar.isleap(day.year) else 365
        nth, nth_last = (yearday - 1) // 7 + 1, -((length - yearday) // 7 + 1)
    return f"{nth}{weekday}" in entries or f"{nth_last}{weekday}" in entries


def _wall_date(instant: datetime, zone: str, wall_time: datetime) -> date | None:
    """The local date whose wall time ``wall_time`` resolves to the instant (fold=0)."""
    shown = instant.astimezone(ZoneInfo(zone)).date()
    # The day before first: where a whole day was skipped (Pacific/Apia, 2011-12-30) both
    # days' wall times stand for the same instant, and the earlier day is the occurrence.
    for day in (shown - timedelta(days=1), shown):
        wall = datetime.combine(day, wall_time.time(), tzinfo=ZoneInfo(zone))
        if wall.astimezone(UTC) == instant:
            return day
    return None


def _counted_down(rule: str) -> str:
    """The rule the next task carries: COUNT less one."""
    parts = rule.split(";")
    return ";".join(f"COUNT={int(p[6:]) - 1}" if p.startswith("COUNT=") else p for p in parts)


def _past_until(rule: str, day: date, instant: datetime) -> bool:
    """Whether an occurrence on a local day at an instant is after the rule's UNTIL."""
    until = dict(part.split("=") for part in rule.split(";")).get("UNTIL")
    if until is None:
        return False
    if until.endswith("Z"):
        return instant > datetime.strptime(until, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return day > datetime.strptime(until, "%Y%m%d").date()


def _day_by_day(rule: str, zone: str, anchor: datetime) -> Occurrence | EllipsisType | None:
    """For INTERVAL=1: the next day the rule names, at the anchor's wall time (fold=0).

    Ellipsis when no such day comes within twelve years.
    """
    if "COUNT=1" in rule.split(";"):
        return None
    for n in range(1, 12 * 366):
        day = anchor.date() + timedelta(days=n)
        if _matches(day, rule, anchor.date()):
            wall = datetime.combine(day, anchor.time(), tzinfo=ZoneInfo(zone))
            instant = wall.astimezone(UTC)
            if _past_until(rule, day, instant):
                return None
            return Occurrence(due_at=instant, rule=_counted_down(rule))
    return ...


@cache
def _changes(zone: str) -> list[datetime]:
    """The instants (to the minute) when the zone's UTC offset changed, 2020 to 2030."""
    tz = ZoneInfo(zone)
    found = []
    moment = datetime(2020, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(tz).utcoffset()
    while moment < datetime(2031, 1, 1, tzinfo=UTC):
        later = moment + timedelta(hours=6)
        if later.astimezone(tz).utcoffset() != offset:
            low, high = moment, later
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            found.append(high.replace(second=0, microsecond=0))
            offset = later.astimezone(tz).utcoffset()
        moment = later
    return found


def _check_next(rule: str, zone: str, due_at: datetime) -> None:
    """Strictly later, canonical, counted down, at the anchor's wall time, on a rule day."""
    assert normalize_rule(rule) == rule
    anchor = local(due_at, zone)
    following = next_occurrence(rule, zone, due_at)
    if "INTERVAL=" not in rule:
        # Every day the rule names is an occurrence: compare with a day-by-day search.
        expected = _day_by_day(rule, zone, anchor)
        if expected is not ...:
            assert following == expected
    if "COUNT=1" in rule.split(";"):
        assert following is None
    if following is None:
        return
    assert following.due_at > due_at
    assert following.due_at.utcoffset() == timedelta(0)
    assert normalize_rule(following.rule) == following.rule
    assert following.rule == _counted_down(rule)
    # The anchor's wall time on some local day, or where that wall time does not exist,
    # the instant it stands for (moved forward by the gap).
    day = _wall_date(following.due_at, zone, anchor)
    assert day is not None, (anchor, local(following.due_at, zone))
    assert day > anchor.date()
    assert not _past_until(rule, day, following.due_at)
    assert _matches(day, rule, anchor.date())
    if local(following.due_at, zone).time() != anchor.time():
        wall = datetime.combine(day, anchor.time())
        instant = wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
        shown = instant.astimezone(ZoneInfo(zone))
        assert shown.replace(tzinfo=None) != wall, "only a wall time in a gap may move"


if st is not None:

    @st.composite
    def allowed_rules(draw: st.DrawFn) -> str:
        """A rule inside the subset, small intervals more often than large ones."""
        freq = draw(st.sampled_from(FREQUENCIES))
        interval = draw(st.one_of(st.just(1), st.integers(1, 4), st.integers(1, 1000)))
        parts = [f"FREQ={freq}", f"INTERVAL={interval}"]
        ordinals = freq in ("MONTHLY", "YEARLY") and draw(st.booleans())
        if ordinals:
            highest = 5 if freq == "MONTHLY" else 53
            ordinal = st.integers(1, highest) | st.integers(-highest, -1)
            days = draw(
                st.sets(st.tuples(ordinal, st.sampled_from(WEEKDAYS)), min_size=1, max_size=3)
            )
            parts.append("BYDAY=" + ",".join(f"{n}{d}" for n, d in days))
        elif not (freq == "DAILY" and interval % 7 == 0) and draw(st.booleans()):
            days = draw(st.sets(st.sampled_from(WEEKDAYS), min_size=1, max_size=7))
            parts.append("BYDAY=" + ",".join(days))
        if freq != "WEEKLY" and not ordinals and draw(st.booleans()):
            monthday = st.integers(1, 31) | st.integers(-31, -1)
            parts.append(
                "BYMONTHDAY=" + ",".join(map(str, draw(st.sets(monthday, min_size=1, max_size=3))))
            )
        ending = draw(st.sampled_from(["", "COUNT", "UNTIL"]))
        if ending == "COUNT":
            parts.append(f"COUNT={draw(st.integers(1, 5))}")
        elif ending == "UNTIL":
            until = draw(st.datetimes(datetime(1971, 1, 1), datetime(2110, 1, 1)))
            parts.append(
                "UNTIL=" + until.strftime(draw(st.sampled_from(["%Y%m%d", "%Y%m%dT%H%M%SZ"])))
            )
        order = draw(st.permutations(parts))
        return ";".join(order)

    @settings(max_examples=400, deadline=None, database=None)
    @given(
        text=allowed_rules(),
        zone=st.sampled_from(PROPERTY_ZONES),
        due=st.datetimes(datetime(1971, 1, 1), datetime(2099, 12, 31)),
    )
    def test_next_occurrence_properties(text: str, zone: str, due: datetime) -> None:
        """Any allowed rule, zone and due time (1971 to 2099)."""
        _check_next(normalize_rule(text), zone, due.replace(tzinfo=UTC))

    SIMPLE_RULES = ["FREQ=DAILY", "FREQ=WEEKLY", "FREQ=DAILY;COUNT=2", "FREQ=WEEKLY;BYDAY=SA,SU"]

    @settings(max_examples=400, deadline=None, database=None)
    @given(text=st.sampled_from(SIMPLE_RULES) | allowed_rules(), data=st.data())
    def test_next_occurrence_properties_near_clock_changes(text: str, data: st.DataObject) -> None:
        """Due times a day or a week before a change, near its hour: gaps and folds come often."""
        zone = data.draw(st.sampled_from([z for z in PROPERTY_ZONES if _changes(z)]))
        change = data.draw(st.sampled_from(_changes(zone)))
        days = data.draw(st.sampled_from([1, 7]) | st.integers(0, 8))
        minutes = data.draw(st.integers(-120, 120))
        due_at = change - timedelta(days=days, minutes=minutes)
        _check_next(normalize_rule(text), zone, due_at)

else:  # pragma: no cover

    def test_next_occurrence_properties() -> None:
        pytest.skip("hypothesis is not installed")

    def test_next_occurrence_properties_near_clock_changes() -> None:
        pytest.skip("hypothesis is not installed")
