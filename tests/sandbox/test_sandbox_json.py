"""The emulators' JSON: orjson where it can, the standard library's answer where orjson refuses."""

from __future__ import annotations

import json

import pytest
from starlette.responses import JSONResponse as StarletteJSONResponse

from mlconnector.sandbox.common import JSONResponse, loads


def test_responses_carry_the_same_json_as_starlettes() -> None:
    content = {"data": [{"Account_Name": "Zoë & Søn ☃", "id": "5725767000000412001", "n": 3, "x": 1.5,
                         "ok": True, "none": None, "nested": {"a": [1, 2]}}], "info": {"more_records": False}}
    ours, theirs = JSONResponse(content), StarletteJSONResponse(content)
    assert json.loads(ours.body) == json.loads(theirs.body) == content
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json"
    assert b" " not in ours.body.replace(b"Zo\xc3\xab & S\xc3\xb8n \xe2\x98\x83", b"")  # compact, UTF-8 as is


def test_loads_takes_what_the_standard_parser_takes() -> None:
    assert loads(b'{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}
    assert loads('{"n": -12, "f": 0.25}') == {"n": -12, "f": 0.25}
    nan = loads(b'{"v": NaN}')["v"]
    assert nan != nan
    with pytest.raises(ValueError):
        loads(b'{"a": ')
