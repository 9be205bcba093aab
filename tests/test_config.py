"""connections.toml: parsing, the errors a user sees, and secrets refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlconnector.config import load_config, resolve_config_path
from mlconnector.secrets import is_secret_key
from mlconnector.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_a_full_file_parses_into_typed_objects(tmp_path):
    config = load_config(write(tmp_path, '''
[state]
path = "~/sync/state.db"
[systems.nav]
kind = "nav"
base_url = "http://nav:7048/NAV"
[systems.zoho]
kind = "zoho"
data_centre = "eu"
[pairs.nav-zoho]
systems = { erp = "nav", crm = "zoho" }
flows = ["customers"]
overlap_seconds = 120
batch_size = 50
credit_budget = 20000
[pairs.nav-zoho.options]
account_type_field = "Account_Type"
'''))
    assert config.system("zoho").kind == "zoho" and config.system("zoho").setting("data_centre") == "eu"
    pair = config.pair("nav-zoho")
    assert (pair.systems["crm"], pair.flows, pair.overlap_seconds, pair.batch_size, pair.credit_budget) == \
        ("zoho", ("customers",), 120, 50, 20000)
    assert pair.options == {"account_type_field": "Account_Type"}
    assert config.state_path == Path("~/sync/state.db").expanduser()


@pytest.mark.parametrize("text, expected", [
    ('[systems.zoho]\ndata_centre = "eu"\n', "systems.zoho.kind is missing"),
    ('[systems.zoho]\nkind = "zoho"\n[pairs.p]\nbatch_size = "ten"\n', "pairs.p.batch_size must be a whole number"),
    ('[systems.zoho]\nkind = "zoho"\n[pairs.p]\nsystems = { crm = "zohoo" }\n', "pairs.p.systems.crm = 'zohoo' names no"),
    ('[pairs.p]\nbatchsize = 10\n', "pairs.p.batchsize is not a known key"),
    ('[sytems.x]\nkind = "zoho"\n', "unknown top-level table [sytems]"),
    ('[systems.zoho\nkind = "zoho"\n', "not valid TOML"),
])
def test_bad_files_name_the_key_and_the_fix(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert expected in str(caught.value) and str(path) in str(caught.value)


def test_a_secret_in_the_file_is_refused_with_a_pointer_to_secrets_set(tmp_path):
    path = write(tmp_path, '[systems.nav-prod]\nkind = "nav"\npassword = "hunter2"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "mlconnector secrets set nav-prod password" in message
    assert "MLCONNECTOR_NAV_PROD_PASSWORD" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("key, secret", [
    ("client_secret", True), ("refresh_token", True), ("password", True), ("web_service_key", True),
    ("api_key", True), ("token_url", False), ("key_field", False), ("client_id", False), ("company", False),
])
def test_which_keys_count_as_secret(key, secret):
    assert is_secret_key(key) is secret


def test_config_path_comes_from_option_then_env_then_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCONNECTOR_CONFIG", str(tmp_path / "env.toml"))
    assert resolve_config_path("explicit.toml") == Path("explicit.toml")
    assert resolve_config_path() == tmp_path / "env.toml"
    monkeypatch.delenv("MLCONNECTOR_CONFIG")
    assert resolve_config_path() == Path("connections.toml")


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="run `mlconnector init`"):
        load_config(tmp_path / "none.toml")


def test_secrets_table_says_where_secrets_live_relative_to_the_file(tmp_path, monkeypatch):
    from mlconnector.api import Runtime
    from mlconnector.secrets import init_secret_file

    monkeypatch.delenv("MLCONNECTOR_SECRETS_DIR", raising=False)
    path = write(tmp_path, '[secrets]\nbackend = "file"\ndir = "demo-secrets"\n[state]\npath = "demo.db"\n')
    config = load_config(path)
    assert config.secrets_dir == tmp_path / "demo-secrets" and config.state_path == tmp_path / "demo.db"
    init_secret_file(tmp_path / "demo-secrets")
    store = Runtime(config_path=path).secret_store()
    store.set("zoho", "client_secret", "s3cret-value")
    assert "encrypted file" in store.location and str(tmp_path / "demo-secrets") in store.location
    assert b"s3cret-value" not in (tmp_path / "demo-secrets" / "secrets.enc").read_bytes()
    with pytest.raises(ConfigError, match="secrets.backend"):
        load_config(write(tmp_path, '[secrets]\nbackend = "vault"\n'))


def test_mapping_tables_name_record_fields_so_a_field_called_like_a_secret_is_not_refused(tmp_path):
    path = write(tmp_path, '[pairs.bc-zoho.mappings.customers]\nadd = { Customer_Key = "number" }\n'
                           'filter = { Access_Token = { is_set = false } }\n'
                           '[pairs.bc-zoho.options]\nclient_secret = "x"\n')
    with pytest.raises(ConfigError) as caught:  # the pair's settings are still checked
        load_config(path)
    assert "pairs.bc-zoho.options.client_secret looks like a secret" in str(caught.value)
    path = write(tmp_path, '[pairs.bc-zoho.mappings.customers]\nadd = { Customer_Key = "number" }\n')
    [rules] = load_config(path).pair("bc-zoho").mappings.values()
    assert list(rules.add) == ["Customer_Key"]
