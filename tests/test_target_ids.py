"""The target ids the PostgreSQL store keeps for target_of: every id comes back exactly as it went in, and ids that
differ as text never share a key."""

from __future__ import annotations

import uuid

from mlconnector.state.target_ids import TargetIds, pack

IDS = ["3000000000000000001", "0123", "123", "0", "00", "-5", "١٢٣", "abc", "",
       str(uuid.UUID(int=123)), str(uuid.UUID(int=123)).upper(), "6f1c2a3b-0000-4000-8000-0000000000bc"]


def test_every_id_comes_back_as_it_went_in_and_no_two_share_a_key():
    kept = TargetIds((source, f"t-{source}") for source in IDS)
    assert [kept.get(source) for source in IDS] == [f"t-{source}" for source in IDS]
    assert len({pack(source) for source in IDS}) == len(IDS)
    kept.put("123", "3000000000000000002")
    kept.drop("0123")
    assert kept.get("123") == "3000000000000000002" and kept.get("0123") is None and kept.get("unknown") is None
    guid_target = TargetIds([("C00010", "0000007b-0000-0000-0000-000000000000")])
    assert guid_target.get("C00010") == "0000007b-0000-0000-0000-000000000000"
