"""The configured mapping rules as plain data (mlconnector.fieldmap.rules): values as the file writes them, the
transforms' edges. End to end, through the CLI and the emulators: tests/pairs/test_field_mappings*.py."""

from __future__ import annotations

import pytest

from mlconnector.errors import RecordError
from mlconnector.fieldmap.rules import parse_mappings


def rules(table: dict):
    return parse_mappings("bc-zoho", {"customers": table}, "c.toml")["customers"]


def test_values_compare_as_the_file_writes_them():
    flow = rules({"add": {"Tier": {"from": "code", "lookup": {"true": "Yes", "5": "Five"}}},
                  "filter": {"active": True, "group": ["10", 20]}})
    tier = flow.add["Tier"]
    assert tier.value({"code": True}, "Tier") == "Yes" and tier.value({"code": 5.0}, "Tier") == "Five"
    assert tier.value({"code": "other"}, "Tier") == "other"  # a lookup keeps what it does not hold
    assert flow.rejects({"active": True, "group": 20.0}) is None
    assert flow.rejects({"active": True, "group": " 10 "}) is None
    assert flow.rejects({"active": False, "group": "10"}) == "active equals true"
    assert flow.rejects({"active": True, "group": None}) == "group in ['10', 20]"


def test_each_transform_at_its_edges():
    flow = rules({"add": {
        "Name": {"concat": ["first", "middle", "last"]},
        "Pick": {"from": "code", "picklist": {"A": "Active"}, "default": "Other"},
        "Strict": {"from": "code", "picklist": {"A": "Active"}},
        "Day": {"from": "when", "date_format": "%d.%m.%Y"},
        "Whole": {"from": "amount", "decimals": 0},
        "Short": {"from": "text", "trim": True, "case": "upper", "truncate": 3},
        "Fixed": {"constant": "ERP"}}})
    add = flow.add
    record = {"first": "Ada", "middle": " ", "last": "Lovelace", "code": "B", "when": "2026-03-01T23:30:00Z",
              "amount": "12.5", "text": "  abcdef "}
    assert add["Name"].value(record, "Name") == "Ada Lovelace"  # an empty part is left out
    assert add["Pick"].value(record, "Pick") == "Other"
    with pytest.raises(RecordError, match="Strict: 'B' is not in its picklist map"):
        add["Strict"].value(record, "Strict")
    assert add["Day"].value(record, "Day") == "01.03.2026"
    assert add["Whole"].value(record, "Whole") == 13  # rounded half up, a whole number
    assert add["Short"].value(record, "Short") == "ABC"
    assert add["Fixed"].value({}, "Fixed") == "ERP"
    with pytest.raises(RecordError, match="'n/a' is not a number"):
        add["Whole"].value({"amount": "n/a"}, "Whole")
    with pytest.raises(RecordError, match="not an ISO date"):
        add["Day"].value({"when": "yesterday"}, "Day")
    assert add["Whole"].steps.names() == ["decimals=0"] and add["Short"].steps.names() == [
        "trim", "case=upper", "truncate=3"]


def test_a_field_without_a_value_is_left_out_and_the_pairs_own_empty_key_kept():
    flow = rules({"add": {"Tier": "code"}, "override": {"Phone": "mobile"}, "drop": ["Website"],
                  "transform": {"Region": {"default": "Other"}}})
    payload = flow.apply({"code": "", "mobile": None}, {"Phone": "1", "Website": "w", "number": None})
    assert payload == {"number": None, "Region": "Other"}
