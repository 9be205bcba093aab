"""Whether two systems agree, flow by flow: both sides read whole, each source record mapped as a run would map
it and compared with what the target holds; documents also compared as totals per month. Nothing is written;
``queue_fixes`` puts each record that writing again would fix into the replay queue (`mlconnector replay`, or `--now`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mlconnector.config import PairConfig
from mlconnector.errors import ConfigError, RecordError
from mlconnector.fingerprints import comparable
from mlconnector.flows import Flow, PairSpec, SkipRecord, key_value
from mlconnector.http import CallCounter
from mlconnector.state import Link, Replay, State
from mlconnector.sync.bookkeeping import audit_row
from mlconnector.sync.context import MappingContext
from mlconnector.sync.deletes import ERP_ROLE
from mlconnector.sync.keys import key_form
from mlconnector.sync.outcomes import Outcome
from mlconnector.sync.targets import edited_since_written
from mlconnector.systems.base import Connector, Record

# Kinds of disagreement
MISSING = "missing"          # mapped from the source, not in the target
DIFFERS = "differs"          # linked, the target holds other values than the source maps to
UNLINKED = "unlinked"        # in the target under a source record's key, but linked to nothing
ORPHAN = "orphan"            # in the target, linked to nothing and holding no source record's key
GONE = "gone"                # linked, but the source record no longer exists
DUPLICATE_SOURCE = "duplicate in source"  # two source records that map to one key
DUPLICATE_TARGET = "duplicate in target"  # two target records holding one key
CANNOT_MAP = "cannot map"    # a source record the flow's mapping refuses (a run fails it into the replay queue)
KINDS = (MISSING, DIFFERS, UNLINKED, ORPHAN, GONE, DUPLICATE_SOURCE, DUPLICATE_TARGET, CANNOT_MAP)
# What --fix can queue for the next run: the source record is written again through the same path.
FIXABLE = (MISSING, DIFFERS, UNLINKED)


@dataclass
class Difference:
    kind: str
    key: str | None
    source_id: str | None = None
    target_id: str | None = None
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)  # (field, the source maps to, the target holds)
    stale_link: bool = False  # the state file links the source record to a target record that is gone
    pending: bool = False  # two-way: the target record was edited since the last run, which carries it back
    note: str = ""


@dataclass
class MonthTotal:
    month: str
    currency: str
    source_count: int = 0
    source_sum: float = 0.0
    target_count: int = 0
    target_sum: float = 0.0

    @property
    def agrees(self) -> bool:
        return self.source_count == self.target_count and round(self.source_sum - self.target_sum, 2) == 0


@dataclass
class FlowReport:
    flow: str
    source_records: int = 0
    target_records: int = 0
    agreeing: int = 0
    left_out: int = 0  # source records the flow leaves out by design (a vendor, for the customers flow)
    kept_after_delete: int = 0  # records one side kept (flag, unlink) when the other side deleted theirs
    not_compared: str = ""  # why the flow could not be compared (a side that cannot be read back)
    differences: list[Difference] = field(default_factory=list)
    totals: list[MonthTotal] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(d.kind for d in self.differences)
        return {kind: found[kind] for kind in KINDS if found[kind]}

    @property
    def agrees(self) -> bool:
        return not self.differences and all(t.agrees for t in self.totals)


@dataclass
class ReconcileReport:
    pair: str
    flows: dict[str, FlowReport] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)  # API credits spent, for systems that charge them
    queued: int = 0  # records --fix put into the replay queue

    @property
    def agrees(self) -> bool:
        return all(report.agrees for report in self.flows.values())

    @property
    def fixable(self) -> bool:
        """Whether writing the source records again would settle every difference (see FIXABLE); a month's totals off
        are taken to follow from the flow's records that differ (a document edited, deleted), which --fix writes again.
        Totals off in a flow whose records all agree have no record to write: not fixable."""
        return all(d.kind in FIXABLE and not d.pending for flow in self.flows.values() for d in flow.differences) and \
            all(t.agrees or flow.differences for flow in self.flows.values() for t in flow.totals)

    def to_dict(self) -> dict[str, Any]:
        """The report as `reconcile --json` prints it."""
        return {
            "pair": self.pair, "agrees": self.agrees, "calls": self.calls, "credits": self.credits,
            "queued": self.queued,
            "flows": {name: {
                "agrees": flow.agrees, "source_records": flow.source_records, "target_records": flow.target_records,
                "agreeing": flow.agreeing, "left_out": flow.left_out, "kept_after_delete": flow.kept_after_delete,
                "not_compared": flow.not_compared or None, "differences": flow.counts,
                "records": [{"kind": d.kind, "key": d.key, "source_id": d.source_id, "target_id": d.target_id,
                             "note": d.note or None, "fields": [{"field": f, "source": s, "target": t} for f, s, t in d.fields]}
                            for d in flow.differences],
                "totals": [{"month": t.month, "currency": t.currency or None, "agrees": t.agrees,
                            "source_count": t.source_count, "source_sum": round(t.source_sum, 2),
                            "target_count": t.target_count, "target_sum": round(t.target_sum, 2)} for t in flow.totals],
            } for name, flow in self.flows.items()},
        }


def reconcile(pair: PairSpec, config: PairConfig, connectors: Mapping[str, Connector], state: State,
              counter: CallCounter, flows: Iterable[Flow]) -> ReconcileReport:
    """Read both sides of each flow whole and say where they disagree."""
    before = counter.snapshot()
    systems = {c.name: c for c in connectors.values()}
    spent = {name: c.credits_used for name, c in systems.items()}
    for connector in systems.values():
        connector.small_first_pages = False  # nothing is written while it reads: full pages, fewest calls
    context = MappingContext(pair, config, state, connectors, {})
    report = ReconcileReport(pair.name)
    for flow in flows:
        if flow.many_to_one:
            report.flows[flow.name] = FlowReport(flow.name, not_compared="several source records write one target "
                                                 "record (the newest wins): nothing to compare record by record")
            continue
        try:
            report.flows[flow.name] = _reconcile_flow(pair, config, connectors, state, context, flow)
        except ConfigError as exc:  # a system that takes these records but cannot give them back (GP's orders)
            report.flows[flow.name] = FlowReport(flow.name, not_compared=str(exc))
    report.calls = counter.since(before)
    report.credits = {name: c.credits_used - spent[name] for name, c in systems.items() if c.credits_used > spent[name]}
    return report


def _reconcile_flow(pair: PairSpec, config: PairConfig, connectors: Mapping[str, Connector], state: State,
                    context: MappingContext, flow: Flow) -> FlowReport:
    source, target = connectors[flow.source], connectors[flow.target]
    key_field = flow.key_field(config.options)
    report = FlowReport(flow.name)
    ignore_case = target.capabilities.keys_ignore_case  # as the target compares keys
    mapped: dict[str, tuple[str | None, dict[str, Any]]] = {}  # source id -> (its key as the target compares it, payload)
    shown: dict[str, str] = {}  # a key as the target compares it -> as a record holds it, for the report
    seen: set[str] = set()  # every source id read
    sources: list[Record] = []  # kept only for documents' totals (memory: a whole read of customers is large)
    for record in source.changes(flow.source_entity, None):
        report.source_records += 1
        seen.add(record.id)
        try:
            payload = flow.map(record, context)
        except SkipRecord:
            report.left_out += 1  # nor summed: a draft invoice is no document the target should hold
            continue
        except (RecordError, KeyError, ValueError, TypeError) as exc:
            report.differences.append(Difference(CANNOT_MAP, None, record.id, note=str(exc)))
            if flow.totals is not None:
                sources.append(record)
            continue
        if flow.totals is not None:
            sources.append(record)
        key = _key(key_value(payload, key_field), ignore_case, shown)
        mapped[record.id] = (key, payload)
    # The target read names every field the flow writes (a Zoho read selects its fields), lines aside, and what the
    # totals sum.
    summed = [f for f in (flow.totals.target_date, flow.totals.target_amount, flow.totals.target_currency)
              if f] if flow.totals else []
    target.also_read(flow.target_entity, list(dict.fromkeys(
        [*(f.strip() for f in key_field.split(",")), *(name for _, payload in mapped.values() for name, value in payload.items()
                      if not isinstance(value, list)), *summed])))
    targets: dict[str, Record] = {}
    by_key: dict[str, list[str]] = defaultdict(list)
    target_keys: dict[str, str | None] = {}
    for record in target.changes(flow.target_entity, None):
        if flow.owns is not None and not flow.owns(record):
            continue
        report.target_records += 1
        target_id = target.link_id(flow.target_entity, record)
        targets[target_id] = record
        key = target_keys[target_id] = _key(key_value(record.data, key_field), ignore_case, shown)
        if key:
            by_key[key].append(target_id)
    by_id = {record.id: record for record in sources}
    links = state.links(pair.name, flow.name, list(mapped) + state.linked_ids(pair.name, flow.name, "source"))
    known = _known_targets(state, pair, flow)
    # Kept by the opposite flow when their ERP records were deleted: not to be written into the ERP again.
    kept_back = state.kept_after_delete(pair.name, flow.echo_of) if flow.echo_of and flow.target == ERP_ROLE else {}
    source_keys: dict[str, list[str]] = defaultdict(list)
    for source_id, (key, _) in mapped.items():
        if key:
            source_keys[key].append(source_id)

    def difference(kind: str, key: str | None, *args: Any, **kwargs: Any) -> None:
        report.differences.append(Difference(kind, shown.get(key, key) if key else None, *args, **kwargs))

    for key, ids in source_keys.items():
        if len(ids) > 1:
            difference(DUPLICATE_SOURCE, key, ", ".join(sorted(ids)))
    for key, ids in by_key.items():
        if len(ids) > 1:
            difference(DUPLICATE_TARGET, key, None, ", ".join(sorted(ids)))
    for source_id, (key, payload) in mapped.items():
        link = links.get(source_id)
        if source_id in kept_back and not (link and link.target_id):
            report.kept_after_delete += 1
        elif link is not None and link.target_id in targets:
            fields = _differing(payload, targets[link.target_id]) + _amount_differs(flow, by_id.get(source_id),
                                                                                  targets[link.target_id])
            if fields:
                edited = bool(flow.echo_of) and _edited_since_sync(state, pair, flow, link, targets[link.target_id],
                                                                    payload)
                difference(DIFFERS, key, source_id, link.target_id, fields, pending=edited,
                           note=f"edited in {target.name} since the last run, which carries it (conflict rule)"
                           if edited else "")
            else:
                report.agreeing += 1
        elif key and by_key.get(key):
            difference(UNLINKED, key, source_id, by_key[key][0], stale_link=link is not None)
        elif flow.may_be_absent is not None and flow.may_be_absent(payload):
            report.agreeing += 1
            by_id.pop(source_id, None)
        else:
            difference(MISSING, key, source_id, link.target_id if link else None, stale_link=link is not None)
    for source_id, link in links.items():
        if source_id not in seen and link.target_id in targets:
            difference(GONE, target_keys.get(str(link.target_id)), source_id, link.target_id)
    matched_keys = {key for key, _ in mapped.values() if key}
    kept = _kept_targets(state, pair, flow)
    for target_id, record in targets.items():
        key = target_keys[target_id]
        if target_id in known or key in matched_keys or not _is_flows(flow, record, context):
            continue
        if target_id in kept:
            report.kept_after_delete += 1
        else:
            difference(ORPHAN, key, None, target_id)
    if flow.totals is not None:
        homes = (_home(source, flow.source_entity, flow, config), _home(target, flow.target_entity, flow, config))
        report.totals = _totals(flow, by_id.values(), targets.values(), homes)
    return report


def _home(connector: Connector, entity: str, flow: Flow, config: PairConfig) -> str:
    """The currency of a side's records that name none: as its system says, else as the pair's option says; "" when
    the flow's totals are not by currency."""
    spec = flow.totals
    if spec is None or not spec.by_currency:
        return ""
    option = config.options.get(spec.local_currency_option) if spec.local_currency_option else None
    return str(connector.home_currency(entity) or option or "").upper()


def _key(value: Any, ignore_case: bool, shown: dict[str, str]) -> str | None:
    if value in (None, ""):
        return None
    key = key_form(value, ignore_case)
    shown.setdefault(key, str(value))
    return key


def _edited_since_sync(state: State, pair: PairSpec, flow: Flow, link: Link, current: Record,
                       payload: Mapping[str, Any]) -> bool:
    """In a two-way pair, whether the target record changed since the two sides last agreed: then it is the other
    side's edit, which the opposite flow carries (or the conflict rule settles), not ours to write over."""
    if current.modified is None:
        return False
    if link.hash is not None:
        return edited_since_written(link, current, payload)
    opposite = state.link(pair.name, flow.echo_of or "", str(link.target_id))
    return bool(opposite and opposite.source_version and current.modified > opposite.source_version)


def _known_targets(state: State, pair: PairSpec, flow: Flow) -> set[str]:
    """Target records some flow of the pair accounts for: written there by a flow into the same entity, or read
    from there by a flow out of it (an account born in Zoho, linked by the way back)."""
    known: set[str] = set()
    for other in pair.flows:
        if other.target == flow.target and other.target_entity == flow.target_entity:
            known.update(state.linked_ids(pair.name, other.name, "target"))
        if other.source == flow.target and other.source_entity == flow.target_entity:
            known.update(state.linked_ids(pair.name, other.name, "source"))
    return known


def _kept_targets(state: State, pair: PairSpec, flow: Flow) -> set[str]:
    """Target records a flow into the same entity kept (flag, unlink) when their sources were deleted."""
    return {target_id for other in pair.flows
            if other.target == flow.target and other.target_entity == flow.target_entity
            for target_id in state.kept_after_delete(pair.name, other.name)}


def _is_flows(flow: Flow, record: Record, context: MappingContext) -> bool:
    """Whether a target record is one this flow would hold at all: where the opposite flow maps it and says it is
    another flow's (a vendor's Account, for the customers flow), it is not this flow's orphan."""
    if not flow.echo_of:
        return True
    try:
        context.pair.flow(flow.echo_of).map(record, context)
    except SkipRecord:
        return False
    except (RecordError, KeyError, ValueError, TypeError):
        return True
    return True


def _differing(payload: Mapping[str, Any], held: Record) -> list[tuple[str, Any, Any]]:
    """(field, expected, held) where the target holds other than what the source maps to; a document's lines are
    compared by the month's totals, not line by line, and a field the target's read does not return is not
    compared."""
    out = []
    for name, value in payload.items():
        if isinstance(value, list) or name not in held.data:
            continue
        have = held.get(name)
        if comparable(value) != comparable(have) and not _same_number(value, have):
            out.append((name, value, have))
    return out


def _amount_differs(flow: Flow, source: Record | None, held: Record) -> list[tuple[str, Any, Any]]:
    """A document whose amount the target computes (Zoho's Grand_Total from its lines): a line edited there shows as
    the document's amount, which writing the document again puts right."""
    spec = flow.totals
    if spec is None or source is None or spec.target_amount not in held.data:
        return []
    want, have = source.get(spec.source_amount), held.get(spec.target_amount)
    if want in (None, "") or _same_number(want, have):
        return []
    return [(spec.target_amount, want, have)]


def _same_number(a: Any, b: Any) -> bool:
    try:
        return isinstance(a, (int, float, Decimal)) and not isinstance(a, bool) and round(float(a) - float(b), 6) == 0
    except (TypeError, ValueError):
        return False


def _totals(flow: Flow, sources: Iterable[Record], targets: Iterable[Record],
            homes: tuple[str, str] = ("", "")) -> list[MonthTotal]:
    """Count and sum per (month, currency) on each side: amounts in one currency are never added to another's."""
    spec = flow.totals
    assert spec is not None
    months: dict[tuple[str, str], MonthTotal] = {}

    def add(record: Record, date: str, amount: str, currency: str | None, side: str) -> None:
        day = str(record.get(date) or "")[:7]
        if not day:
            return
        unit = (str(record.get(currency) or "") if currency else "").upper() or homes[side == "target"]
        total = months.setdefault((day, unit), MonthTotal(day, unit))
        value = float(record.get(amount) or 0)
        if side == "source":
            total.source_count, total.source_sum = total.source_count + 1, total.source_sum + value
        else:
            total.target_count, total.target_sum = total.target_count + 1, total.target_sum + value

    for record in sources:
        add(record, spec.source_date, spec.source_amount, spec.source_currency, "source")
    for record in targets:
        add(record, spec.target_date, spec.target_amount, spec.target_currency, "target")
    return [months[k] for k in sorted(months)]


def queue_fixes(report: ReconcileReport, pair: PairSpec, connectors: Mapping[str, Connector], state: State,
                run_id: str) -> list[tuple[str, str]]:
    """Each record that disagrees and that writing it again would fix goes into the replay queue (error class
    ``reconcile``), with an audit row saying so; returns (flow, source id) of those queued."""
    queued: list[tuple[str, str]] = []
    with state.transaction():
        for name, flow_report in report.flows.items():
            flow = pair.flow(name)
            source, target = connectors[flow.source], connectors[flow.target]
            names = (source.name or flow.source, target.name or flow.target)
            fixes = [d for d in flow_report.differences if d.kind in FIXABLE and d.source_id and not d.pending]
            if not fixes:
                continue
            # Unchanged records are not written again unless the state forgets writing them; a link to a target
            # record that is gone would send the write there.
            state.forget_written(pair.name, name, [d.source_id or "" for d in fixes if d.kind == DIFFERS])
            state.unlink(pair.name, name, [d.source_id or "" for d in fixes if d.stale_link])
            state.queue_replays(pair.name, name, [
                Replay(d.source_id or "", names[0], flow.source_entity, "reconcile",
                       f"reconcile: {d.kind}" + (f" ({', '.join(f for f, _, _ in d.fields)})" if d.fields else ""),
                       run_id, d.key) for d in fixes])
            state.add_audits([audit_row(run_id, pair.name, flow, *names, d.source_id or "", d.target_id,
                                        Outcome.SKIPPED, note=f"reconcile: {d.kind}, queued for the next run",
                                        record_key=d.key) for d in fixes])
            queued += [(name, d.source_id or "") for d in fixes]
    return queued

