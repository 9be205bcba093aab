"""Reads through Web Services: customers, vendors (and their contacts) and journal entries by ModifiedDate windows
(the list of summaries, then each card by key), the chart of accounts read whole, a record by its key. A run reads
each vendor list and card once; its other vendor flows take them from it."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from mlconnector.clock import parse_utc
from mlconnector.errors import ConfigError, RemoteError
from mlconnector.systems.base import Record
from mlconnector.systems.gp.records import DOCUMENTS, Shapes, _id, _items, _text, outstanding_payables
from mlconnector.systems.gp.seen import SeenList
from mlconnector.systems.gp.webservices import WebServices

MAX_WINDOW = timedelta(days=3660)
# Vendor lists and cards a run has read, kept for the run's other vendor flows (vendors to Accounts, to Vendors and
# their contacts each read the same cards): at most this many answers, the least recently used dropped.
VENDOR_READS_KEPT = 1_000
ENTITIES = ("customers", "vendors", "vendorContacts", "glAccounts", "glTransactions", "salesOrders", "salesQuotes")
DATED_ENTITIES = ("customers", "vendors", "vendorContacts", "glTransactions")  # read by ModifiedDate windows
# After a day's end in UTC, how long until it has ended in every time zone GP servers keep (UTC-12), plus an
# hour for the server's clock and ours to disagree: no change is dated on that day after this.
DAY_ENDS_EVERYWHERE = timedelta(hours=13)
_NOT_FOUND = re.compile(r"could not be found|does not exist", re.I)


def _end_of_day(day: date) -> datetime:
    """Where a change dated ``day`` is placed: the last millisecond of that day, read as UTC."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc) \
        - timedelta(milliseconds=1)


class WebServicesReads:
    """Records read through the SOAP service, in ModifiedDate windows or by key."""

    def __init__(self, name: str, soap: WebServices, shapes: Shapes, seen: SeenList, *, precision: str,
                 window: timedelta, window_records: int, history_start: datetime, gl_account_types: list[Any],
                 coarse_stamps: Callable[[str], bool]) -> None:
        self.name = name
        self.call = soap.call
        self.seen = seen
        self.precision = precision
        self.window = window
        self.window_records = window_records
        self.history_start = history_start
        self.gl_account_types = gl_account_types
        self.coarse_stamps = coarse_stamps
        self._customer, self._vendor, self._vendor_contacts = shapes.customer, shapes.vendor, shapes.vendor_contacts
        self._gl_transaction, self._sales_order = shapes.gl_transaction, shapes.sales_order
        self._vendor_reads: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._vendor_reads_lock = threading.Lock()
        self._dated_reads: dict[str, datetime] = {}  # entity -> the ``until`` of its last read by date

    def _stamp(self, modified: datetime | None, until: datetime) -> datetime | None:
        """A record's modified time for the engine. GP keeps card changes as a date: such a record is placed at
        the end of its day, but never at or past ``until`` (the engine's watermark must not pass the read)."""
        if modified is None:
            return None
        if self.precision == "date":
            modified = _end_of_day(modified.date())
        return min(modified, until - timedelta(milliseconds=1))

    def read_clock(self, entity: str) -> datetime | None:
        """Where the last read of a dated entity lets the engine close its window: at the end of the earliest
        day that may still change. GP dates a change by the server's own day; a day has ended everywhere once it
        is over in UTC-12 (with an hour more for clock skew), and no change can be dated on it after that. A
        card dated on an ended day is then not read again (its stamp is the end of its day), while a day that
        may still change is read on every run. None where the newest record read decides, as usual."""
        until = self._dated_reads.get(entity)
        if until is None:
            return None
        return min(until, _end_of_day((until - DAY_ENDS_EVERYWHERE).date()))

    def _bounds(self, since: datetime | None, until: datetime) -> tuple[datetime, datetime]:
        start = since or self.history_start
        end = until
        if self.precision == "date":
            # GP stamps the server's local day only: read a day wider on both sides (time zones ahead of and
            # behind UTC); the stamps handed to the engine stay below ``until``.
            start = datetime.combine(start.date() - timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
            end = datetime.combine(until.date() + timedelta(days=2), datetime.min.time(), tzinfo=timezone.utc)
        return start, end

    def _range(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"From": start, "To": end - timedelta(milliseconds=1)}

    def changes(self, entity: str, since: datetime | None, until: datetime) -> Iterator[Record]:
        """Records changed in [since, until), ascending by (modified, id), read in ModifiedDate windows of
        ``window_days`` (GP returns whole lists: the window bounds each answer); the chart of accounts whole."""
        if entity == "glAccounts":
            yield from self._gl_account_changes(since, until)
            return
        if entity not in DATED_ENTITIES:
            raise ConfigError(f"{self.name}: reading {entity} is not supported (readable: customers, vendors, "
                              "vendorContacts, glAccounts, glTransactions)")
        if self.coarse_stamps(entity):
            self._dated_reads[entity] = until
        start, end_of_reads = self._bounds(since, until)
        window = self.window
        while start < end_of_reads:
            end = min(start + window, end_of_reads)
            summaries = self.summaries(entity, {"ModifiedDate": self._range(start, end)})
            rows = []
            for summary in summaries:
                stamp = self._stamp(parse_utc(summary.get("ModifiedDate")), until)
                if stamp is None or (since is not None and stamp < since) or stamp >= until:
                    continue
                rows.append((stamp, self.summary_id(entity, summary)))
            if entity == "vendors":
                rows = self._with_payables_changes(rows, self._range(start, end), since, until)
            for stamp, record_id in sorted(rows):
                yield from self._full(entity, record_id, stamp)
            start = end
            # Quiet stretches (years of history on a first load) are read in wider windows, busy ones narrower.
            if len(summaries) * 4 < self.window_records:
                window = min(window * 4, MAX_WINDOW)
            elif len(summaries) > self.window_records:
                window = max(window / 2, timedelta(days=1))

    def _with_payables_changes(self, rows: list[tuple[datetime, str]], window: dict[str, Any],
                               since: datetime | None, until: datetime) -> list[tuple[datetime, str]]:
        """A vendor whose payables documents changed in the window counts as changed (its outstanding payables
        moved although its card did not): each vendor once, at its latest change."""
        latest = {record_id: stamp for stamp, record_id in sorted(rows)}
        answer = self.call("GetPayablesDocumentList", criteria={"ModifiedDate": window})
        for row in _items(answer, "PayablesDocumentSummary"):
            stamp = self._stamp(parse_utc(row.get("ModifiedDate")), until) if isinstance(row, Mapping) else None
            vendor = _id(row.get("VendorKey")) if isinstance(row, Mapping) else None
            if stamp is None or vendor is None or (since is not None and stamp < since) or stamp >= until:
                continue
            latest[vendor] = max(stamp, latest.get(vendor, stamp))
        return [(stamp, record_id) for record_id, stamp in latest.items()]

    def payables(self, vendor_id: str) -> float:
        """The vendor's outstanding payables from its open payables documents
        (https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc508580(v=msdn.10))."""
        answer = self.call("GetPayablesDocumentList", criteria={
            "VendorId": {"EqualValue": vendor_id},
            "TransactionState": {"Items": {"PayablesTransactionState": ["Open"]}}})
        return outstanding_payables(_items(answer, "PayablesDocumentSummary"))

    def _vendor_with_payables(self, card: Any, stamp: datetime | None) -> Record:
        vendor = self._vendor(card, stamp)
        return Record(vendor.system, vendor.entity, vendor.id, vendor.modified,
                      {**vendor.data, "outstandingPayables": self.payables(vendor.id)})

    def summaries(self, entity: str, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        operation, item = {"customers": ("GetCustomerList", "CustomerSummary"),
                           "vendors": ("GetVendorList", "VendorSummary"),
                           "vendorContacts": ("GetVendorList", "VendorSummary"),
                           "glTransactions": ("GetGLTransactionList", "GLTransactionSummary")}[entity]
        if operation == "GetVendorList":
            answer = self._vendor_read((operation, repr(sorted(criteria.items()))),
                                       lambda: self.call(operation, criteria=criteria))
        else:
            answer = self.call(operation, criteria=criteria)
        return [row for row in _items(answer, item) if isinstance(row, Mapping)]

    def _vendor_card(self, record_id: str, stamp: datetime | None) -> Any:
        """A vendor's card, read once per run for the version its list summary shows."""
        return self._vendor_read(("GetVendorByKey", record_id, stamp),
                                 lambda: self.call("GetVendorByKey", key={"Id": record_id}))

    def _vendor_read(self, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        """An answer about vendors this run already had, else ``read()``'s, kept for the run's other vendor flows.
        A card changed again later the same day is the next run's to read: GP dates carry no time, so the next
        run reads that day's cards again."""
        with self._vendor_reads_lock:
            if key in self._vendor_reads:
                self._vendor_reads.move_to_end(key)
                return self._vendor_reads[key]
        answer = read()
        with self._vendor_reads_lock:
            self._vendor_reads[key] = answer
            while len(self._vendor_reads) > VENDOR_READS_KEPT:
                self._vendor_reads.popitem(last=False)
        return answer

    @staticmethod
    def summary_id(entity: str, summary: Mapping[str, Any]) -> str:
        if entity == "glTransactions":
            return str(_id(summary.get("Key"), "JournalId"))
        return str(_id(summary.get("Key")))

    def _full(self, entity: str, record_id: str, stamp: datetime | None) -> Iterator[Record]:
        if entity == "customers":
            yield self._customer(self.call("GetCustomerByKey", key={"Id": record_id}), stamp)
        elif entity == "vendors":
            yield self._vendor_with_payables(self._vendor_card(record_id, stamp), stamp)
        elif entity == "vendorContacts":
            yield from self._vendor_contacts(self._vendor(self._vendor_card(record_id, stamp), stamp))
        elif entity == "glTransactions":
            yield self._gl_transaction(self.call("GetGLTransactionByKey", key={"JournalId": int(record_id)}), stamp)

    def gl_accounts(self) -> list[dict[str, Any]]:
        criteria = {"AccountType": {"Items": {"string": self.gl_account_types}}} if self.gl_account_types else {}
        out = []
        for row in _items(self.call("GetGLAccountList", criteria=criteria), "GLAccountSummary"):
            if isinstance(row, Mapping):
                number = str(_id(row.get("Key")))
                out.append({"id": number, "number": number, "alias": _text(row.get("Alias")),
                            "description": _text(row.get("Description")), "isActive": bool(row.get("IsActive", True)),
                            "accountType": _text(row.get("AccountType")),
                            "modifiedDate": parse_utc(row.get("ModifiedDate"))})
        return out

    def _gl_account_changes(self, since: datetime | None, until: datetime) -> Iterator[Record]:
        """The whole chart of accounts, compared with the last read: an account is new or changed when its
        content differs; it then counts as modified at the moment this connector first saw that content. An
        account whose content was first seen before ``since`` is already synced and is not handed out again."""
        accounts = [(a["id"], a) for a in self.gl_accounts()]
        for stamp, account in self.seen.changes("glAccounts", accounts, since, until):
            yield Record(self.name, "glAccounts", account["id"], stamp, account)

    def get(self, entity: str, id: str) -> Record | None:
        """The current record by its key; None when GP no longer has it."""
        try:
            if entity == "glAccounts":
                found = next((a for a in self.gl_accounts() if a["id"] == id), None)
                return Record(self.name, entity, id, None, found) if found else None
            if entity == "vendorContacts":
                vendor_id, _, address_id = id.partition("/")
                vendor = self._vendor(self.call("GetVendorByKey", key={"Id": vendor_id}), None)
                return next((c for c in self._vendor_contacts(vendor) if c.get("addressId") == address_id), None)
            if entity in DOCUMENTS:
                return self._sales_order(self.call(DOCUMENTS[entity][2], key={"Id": id}), entity)
            if entity not in ("customers", "vendors", "glTransactions"):
                raise ConfigError(f"{self.name}: unknown entity {entity!r}; known: {', '.join(ENTITIES)}")
            return next(iter(self._full(entity, id, None)), None)
        except RemoteError as exc:
            if exc.code == "ValidationException" and _NOT_FOUND.search(exc.message):
                return None
            raise
