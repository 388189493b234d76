"""Recurring tasks: a documented subset of RFC 5545 RRULE, stepped in local wall-clock time.

Pure functions, no database and no Flask. The task service validates a client's rule with
``normalize_rule`` and its zone with ``check_timezone`` (both raise ``RecurrenceError``, a
``ValueError`` whose message is meant for the 400 response), and on completion asks
``next_occurrence`` for the due time and rule of the task that follows.

Decisions (also in ``SUBSET_DOC``):

* An optional leading ``RRULE:`` is removed, so the value of an iCalendar ``RRULE`` line is
  accepted as is; any other property (``DTSTART:``, ``EXDATE:``, several lines) is refused.
* Part names must be upper case (as the brief asks); values are case-insensitive, as RFC 5545
  says, and stored upper-cased. ``INTERVAL=1`` is the default and is left out of the canonical
  form, so ``FREQ=DAILY`` and ``FREQ=DAILY;INTERVAL=1`` are stored identically.
* BYDAY cannot mix plain weekdays with ordinal ones (``MO,-1FR``): RFC 5545 means the union,
  but dateutil (like its port rrule.js, jkbrzt/rrule#71) returns only the days that satisfy
  both, usually none.
* Rules that could never occur again, for which dateutil would search up to the year 9999 on
  every completion, are refused where that is decidable without the due date: BYDAY ordinals
  together with BYMONTHDAY (``5MO`` on the 1st), and DAILY with an INTERVAL that is a multiple
  of 7 plus BYDAY (always the same weekday: that is WEEKLY). BYMONTHDAY with WEEKLY is refused
  as RFC 5545 says. Of what remains, the slowest found in a scan of
  thousands of rules took about 0.05 s (MONTHLY, INTERVAL=12, the 30th, from February).
* The anchor (DTSTART) of each step is the completed occurrence's local wall time, so a task
  carries no series state besides its rule. COUNT counts the occurrences left including this
  one: the next task carries COUNT-1, and after COUNT=1 there is none. UNTIL is inclusive; a
  date UNTIL means through that whole local day.
* A wall time that does not exist (the spring-forward gap) is read with the offset before the
  gap, as RFC 5545 section 3.3.5 says: 02:30 on the change day becomes 03:30. Because the next
  step is anchored on that 03:30, such a series stays at 03:30 afterwards (keeping 02:30 would
  need the series' wall time stored with the task). An ambiguous wall time (the fall-back
  hour) means its first occurrence (``fold=0``), again as RFC 5545 says.
* Occurrences after the year 9999 do not exist (``None``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil.rrule import rrule, rrulestr

MAX_RULE_LENGTH = 500
MAX_TIMEZONE_LENGTH = 64
MAX_INTERVAL = 1000
MAX_COUNT = 1000
RRULE_PREFIX = "RRULE:"
ALLOWED_PARTS = ("FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "COUNT", "UNTIL")
FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# The largest BYDAY ordinal per frequency: a month has at most 5 of a weekday, a year 53.
MAX_ORDINAL = {"MONTHLY": 5, "YEARLY": 53}
# Zone names that are not places: the host's own zone and placeholders.
REFUSED_ZONES = frozenset({"localtime", "posixrules", "Factory"})

SUBSET_DOC = (
    "`recurrence` is an RFC 5545 RRULE value restricted to this subset: FREQ (required: "
    "DAILY, WEEKLY, MONTHLY or YEARLY); INTERVAL (1 to 1000, default 1); BYDAY (weekdays "
    "MO, TU, WE, TH, FR, SA, SU separated by commas; with MONTHLY or YEARLY they may all "
    "carry an ordinal instead, such as 1MO or -1FR, up to 5 (MONTHLY) or 53 (YEARLY), and "
    "then BYMONTHDAY is not allowed; DAILY with an INTERVAL that is a multiple of 7 cannot "
    "have BYDAY: use WEEKLY); BYMONTHDAY (1 to 31 or -31 to -1, not with WEEKLY); COUNT (1 "
    "to 1000) or UNTIL (a UTC date-time YYYYMMDDTHHMMSSZ, or a date YYYYMMDD meaning "
    "through that day in the task's time zone), not both. Part names are upper case, each "
    "given once, separated by ';' without spaces; values are case-insensitive; a leading "
    "'RRULE:' is removed; anything else (DTSTART, WKST, BYMONTH, BYSETPOS, BYHOUR, ...) is "
    "refused, and the rule is at most 500 characters. The rule is stored in canonical form "
    "(upper case, parts in the order above, INTERVAL=1 left out). A recurring task needs "
    "`due_at` and `timezone` (an IANA name such as Europe/Berlin): each occurrence keeps the "
    "local wall-clock time of the one completed before it, across daylight-saving changes; "
    "a time that does not exist that day (spring forward) is moved forward by the gap, an "
    "ambiguous one (fall back) means the first. Completing an occurrence creates the next, "
    "which carries COUNT less one; there is no next occurrence after COUNT=1 or past UNTIL."
)

_SAFE_TEXT = re.compile(r"[A-Za-z0-9=;,+\-]+")
_NUMBER = re.compile(r"[0-9]{1,4}")
_WEEKDAY = re.compile(r"(?P<ordinal>[+-]?[0-9]{1,2})?(?P<day>[A-Z]{2})")
_MONTHDAY = re.compile(r"[+-]?[0-9]{1,2}")
_UNTIL = re.compile(r"(?P<date>[0-9]{8})(?P<time>T[0-9]{6}Z)?")
_UNTIL_TIME = "%Y%m%dT%H%M%SZ"
_UNTIL_DATE = "%Y%m%d"
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")
# Candidates examined before giving up: more than one only where a zone moved its clocks
# back by a whole day (Alaska, 1867), so that a later wall time is not a later instant.
_MAX_CANDIDATES = 8


class RecurrenceError(ValueError):
    """A rule or time zone outside the accepted subset; the message is for the client."""

    def __init__(self, message: str, *, field: str = "recurrence") -> None:
        """Keep the message and the request field it is about (recurrence or timezone)."""
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Occurrence:
    """The task that follows a completed one: when it is due (aware UTC) and its rule."""

    due_at: datetime
    rule: str


@dataclass(frozen=True)
class _Rule:
    """A parsed rule; ``byday`` holds (ordinal or None, weekday index Monday=0)."""

    freq: str
    interval: int = 1
    byday: tuple[tuple[int | None, int], ...] = ()
    bymonthday: tuple[int, ...] = ()
    count: int | None = None
    until: str | None = None

    def text(self, *, bounds: bool = True) -> str:
        """The canonical form; without COUNT and UNTIL when ``bounds`` is false."""
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.byday:
            days = ",".join(f"{'' if n is None else n}{WEEKDAYS[d]}" for n, d in self.byday)
            parts.append(f"BYDAY={days}")
        if self.bymonthday:
            parts.append(f"BYMONTHDAY={','.join(str(n) for n in self.bymonthday)}")
        if bounds and self.count is not None:
            parts.append(f"COUNT={self.count}")
        if bounds and self.until is not None:
            parts.append(f"UNTIL={self.until}")
        return ";".join(parts)


def normalize_rule(text: str) -> str:
    """Validate a rule against the subset and dateutil; return its canonical form."""
    parsed = _parse(text)
    canonical = parsed.text()
    # dateutil reads UNTIL with Z as aware, and wants DTSTART to match.
    aware = parsed.until is not None and parsed.until.endswith("Z")
    start = datetime(2000, 1, 1, tzinfo=UTC if aware else None)
    try:
        rrulestr(canonical, dtstart=start)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise RecurrenceError(f"is not a valid recurrence rule ({exc})") from None
    return canonical


def check_timezone(name: str) -> str:
    """Accept an IANA time zone name known to ``zoneinfo``; return it as given."""
    if not isinstance(name, str) or not name:
        raise RecurrenceError(
            "must be an IANA time zone name such as Europe/Berlin", field="timezone"
        )
    if len(name) > MAX_TIMEZONE_LENGTH:
        raise RecurrenceError(f"must be at most {MAX_TIMEZONE_LENGTH} characters", field="timezone")
    unknown = RecurrenceError(
        "is not a known IANA time zone name (such as Europe/Berlin or UTC)", field="timezone"
    )
    if not _ZONE_NAME.fullmatch(name) or name in REFUSED_ZONES or name not in _known_zones():
        raise unknown
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise unknown from None
    return name


def next_occurrence(rule: str, timezone: str, due_at: datetime) -> Occurrence | None:
    """The occurrence after the one due at ``due_at``, or None when the rule has ended.

    Stepped in the zone's wall-clock time from the completed occurrence's local time; the
    result is the first instant strictly after ``due_at`` that the rule allows.
    """
    if due_at.tzinfo is None or due_at.utcoffset() is None:
        raise ValueError("due_at must be timezone-aware")
    parsed = _parse(rule)
    zone = ZoneInfo(check_timezone(timezone))
    if parsed.count == 1:
        return None
    try:
        anchor = due_at.astimezone(zone).replace(tzinfo=None, fold=0)
    except OverflowError:
        return None
    # dateutil drops microseconds from DTSTART; they are put back on the result.
    start = anchor.replace(microsecond=0)
    steps = rrulestr(f"{parsed.text(bounds=False)};WKST=MO", dtstart=start)
    assert isinstance(steps, rrule)
    for wall in steps.xafter(start, count=_MAX_CANDIDATES):
        wall = wall.replace(microsecond=anchor.microsecond)
        try:
            instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        except OverflowError:
            return None
        if _past_until(parsed.until, wall, instant):
            return None
        if instant > due_at:
            count = None if parsed.count is None else parsed.count - 1
            return Occurrence(due_at=instant, rule=replace(parsed, count=count).text())
    return None


def _past_until(until: str | None, wall: datetime, instant: datetime) -> bool:
    """Whether an occurrence (local wall time and instant) falls after UNTIL."""
    if until is None:
        return False
    if until.endswith("Z"):
        return instant > datetime.strptime(until, _UNTIL_TIME).replace(tzinfo=UTC)
    return wall.date() > datetime.strptime(until, _UNTIL_DATE).date()


@cache
def _known_zones() -> frozenset[str]:
    """The zone names zoneinfo can load (system database or the tzdata package)."""
    return frozenset(available_timezones())


def _show(token: str) -> str:
    """A short quotation of the client's input for a message."""
    return repr(token if len(token) <= 20 else token[:20] + "...")


def _parse(text: str) -> _Rule:
    """Check a rule's syntax and every part's range; raise RecurrenceError otherwise."""
    if not isinstance(text, str):
        raise RecurrenceError("must be a string")
    if len(text) > MAX_RULE_LENGTH:
        raise RecurrenceError(f"must be at most {MAX_RULE_LENGTH} characters")
    body = text.removeprefix(RRULE_PREFIX)
    if not body:
        raise RecurrenceError("must not be empty")
    if not _SAFE_TEXT.fullmatch(body):
        if ":" in body:
            raise RecurrenceError(
                "must be a single RRULE value: DTSTART, EXDATE, RDATE and other "
                "properties are not supported"
            )
        raise RecurrenceError(
            "may contain only letters, digits and the characters = ; , + - "
            "(no spaces, line breaks or control characters)"
        )
    values: dict[str, str] = {}
    for part in body.split(";"):
        name, sep, value = part.partition("=")
        if not part:
            raise RecurrenceError("has an empty part (';' at the start, at the end or twice)")
        if not sep or not name or not value or "=" in value:
            raise RecurrenceError(f"part {_show(part)} must have the form NAME=VALUE")
        if name not in ALLOWED_PARTS:
            if name.upper() in ALLOWED_PARTS:
                raise RecurrenceError(f"part names must be upper case: {_show(name)}")
            raise RecurrenceError(
                f"part {_show(name)} is not supported; the accepted parts are "
                + ", ".join(ALLOWED_PARTS)
            )
        if name in values:
            raise RecurrenceError(f"{name} is given more than once")
        values[name] = value.upper()
    if "FREQ" not in values:
        raise RecurrenceError("FREQ is required")
    freq = values["FREQ"]
    if freq not in FREQUENCIES:
        raise RecurrenceError("FREQ must be one of " + ", ".join(FREQUENCIES))
    if "COUNT" in values and "UNTIL" in values:
        raise RecurrenceError("COUNT and UNTIL cannot both be given")
    rule = _Rule(
        freq=freq,
        interval=_number(values, "INTERVAL", MAX_INTERVAL) or 1,
        byday=_byday(values.get("BYDAY"), freq),
        bymonthday=_bymonthday(values.get("BYMONTHDAY"), freq),
        count=_number(values, "COUNT", MAX_COUNT),
        until=_until(values.get("UNTIL")),
    )
    ordinals = {n is not None for n, _ in rule.byday}
    if len(ordinals) > 1:
        raise RecurrenceError(
            "BYDAY cannot mix weekdays with and without an ordinal (such as MO,-1FR)"
        )
    if rule.bymonthday and True in ordinals:
        raise RecurrenceError(
            "BYDAY with an ordinal (such as 1MO) cannot be combined with BYMONTHDAY"
        )
    if freq == "DAILY" and rule.byday and rule.interval % 7 == 0:
        raise RecurrenceError(
            "FREQ=DAILY with an INTERVAL that is a multiple of 7 always falls on the same "
            "weekday, so BYDAY is not allowed with it: use FREQ=WEEKLY"
        )
    return rule


def _number(values: dict[str, str], name: str, highest: int) -> int | None:
    """An integer part from 1 to ``highest``, or None when absent."""
    value = values.get(name)
    if value is None:
        return None
    if not _NUMBER.fullmatch(value) or not 1 <= int(value) <= highest:
        raise RecurrenceError(f"{name} must be an integer from 1 to {highest}")
    return int(value)


def _byday(value: str | None, freq: str) -> tuple[tuple[int | None, int], ...]:
    """BYDAY entries such as MO or -1FR, sorted by weekday, then first, last."""
    if value is None:
        return ()
    days: set[tuple[int | None, int]] = set()
    for entry in value.split(","):
        match = _WEEKDAY.fullmatch(entry)
        if not match or match["day"] not in WEEKDAYS:
            raise RecurrenceError(
                f"BYDAY entry {_show(entry)} must be a weekday (MO, TU, WE, TH, FR, SA, SU), "
                "optionally after an ordinal such as 1MO or -1FR"
            )
        ordinal = None if match["ordinal"] is None else int(match["ordinal"])
        if ordinal is not None:
            if freq not in MAX_ORDINAL:
                raise RecurrenceError(
                    "BYDAY ordinals such as 1MO are only allowed with FREQ=MONTHLY or YEARLY"
                )
            highest = MAX_ORDINAL[freq]
            if not 1 <= abs(ordinal) <= highest:
                raise RecurrenceError(
                    f"BYDAY ordinals with FREQ={freq} must be from 1 to {highest} "
                    f"or from -{highest} to -1"
                )
        key = (ordinal, WEEKDAYS.index(match["day"]))
        if key in days:
            raise RecurrenceError(f"BYDAY lists {_show(entry)} more than once")
        days.add(key)
    return tuple(sorted(days, key=_byday_order))


def _byday_order(day: tuple[int | None, int]) -> tuple[int, int, int]:
    """Sort key: weekday, then the plain day, then ordinals 1, 2, ..., -1, -2, ..."""
    ordinal, weekday = day
    if ordinal is None:
        return (weekday, 0, 0)
    return (weekday, 1 if ordinal > 0 else 2, abs(ordinal))


def _bymonthday(value: str | None, freq: str) -> tuple[int, ...]:
    """BYMONTHDAY entries, 1 to 31 or -31 to -1, sorted: 1, 2, ..., -1, -2, ..."""
    if value is None:
        return ()
    if freq == "WEEKLY":
        raise RecurrenceError("BYMONTHDAY cannot be used with FREQ=WEEKLY")
    days: set[int] = set()
    for entry in value.split(","):
        if not _MONTHDAY.fullmatch(entry) or not 1 <= abs(int(entry)) <= 31:
            raise RecurrenceError(
                f"BYMONTHDAY entry {_show(entry)} must be from 1 to 31 or from -31 to -1"
            )
        if int(entry) in days:
            raise RecurrenceError(f"BYMONTHDAY lists {_show(entry)} more than once")
        days.add(int(entry))
    return tuple(sorted(days, key=lambda n: (n < 0, abs(n))))


def _until(value: str | None) -> str | None:
    """UNTIL as a UTC date-time (YYYYMMDDTHHMMSSZ) or a date (YYYYMMDD), checked."""
    if value is None:
        return None
    match = _UNTIL.fullmatch(value)
    if not match:
        raise RecurrenceError(
            "UNTIL must be a UTC date-time such as 20261231T235959Z or a date such as 20261231"
        )
    try:
        datetime.strptime(value, _UNTIL_TIME if match["time"] else _UNTIL_DATE)
    except ValueError:
        raise RecurrenceError(f"UNTIL {_show(value)} is not a valid date or time") from None
    return value
