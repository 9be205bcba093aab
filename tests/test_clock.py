"""The one time parser and the vendors' forms over it: every stamp a system sends, as aware UTC."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from mlconnector.clock import parse_iso, parse_utc
from mlconnector.systems.dynamics.odata import parse_time as bc_time
from mlconnector.systems.finops.odata import parse_time as fo_time
from mlconnector.systems.zoho.reads import parse_zoho_time as zoho_time

NOON = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def test_every_form_a_system_sends_is_read_as_aware_utc():
    assert parse_utc("2026-01-31T12:00:00Z") == NOON                       # OData, Zoho's and Zuora's Z
    assert parse_utc("2026-01-31T04:00:00.000-08:00") == NOON              # ZOQL: the tenant's zone
    assert parse_utc("2026-01-31 12:00:00") == NOON                        # no zone: UTC
    assert parse_utc(datetime(2026, 1, 31, 6, 0, tzinfo=timezone(timedelta(hours=-6)))) == NOON  # zeep's
    assert parse_utc(date(2026, 1, 31)) == NOON.replace(hour=0)            # a date: its midnight
    assert parse_utc("2026-01-31T04:00:00-08:00").tzinfo is timezone.utc
    assert [parse_utc(v) for v in (None, "", "not a time", 0)] == [None] * 4


def test_the_vendors_blank_dates_and_zoho_s_offsets_stay_their_own():
    assert bc_time("0001-01-01T00:00:00Z") is None and bc_time("2026-01-31T12:00:00Z") == NOON
    assert fo_time("1900-01-01T12:00:00Z") is None and fo_time("2026-01-31T12:00:00Z") == NOON
    assert bc_time(20260131) is None and fo_time(None) is None            # never a stamp: only text is one
    kolkata = zoho_time("2026-01-31T17:30:00+05:30")
    assert kolkata == NOON and kolkata.utcoffset() == timedelta(hours=5, minutes=30)   # Zoho's offset kept
    assert zoho_time("2026-01-31T12:00:00") is None and parse_iso("2026-01-31T12:00:00").tzinfo is None
