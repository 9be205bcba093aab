"""Bugs the reliability suite found, pinned down on their own."""

from __future__ import annotations

from mlconnector.secrets import SecretStore, init_secret_file


def test_a_secret_stored_by_another_process_is_seen_by_a_running_one(tmp_path):
    # `listen` starts first; the first sync then stores the Zoho channel token and BC's clientState. The
    # receiver used to keep answering 403/503 to every genuine notification until it was restarted.
    init_secret_file(tmp_path)
    listener = SecretStore(backend="file", directory=tmp_path, environ={})
    sync = SecretStore(backend="file", directory=tmp_path, environ={})
    assert listener.get("zoho", "notify_token") is None
    sync.set("zoho", "notify_token", "token-stored-by-the-sync")
    assert listener.get("zoho", "notify_token") == "token-stored-by-the-sync"


def test_two_processes_writing_the_secrets_file_never_drop_each_others_secrets(tmp_path):
    # Two pairs run side by side; each caches its access token in the same encrypted file.
    init_secret_file(tmp_path)
    nav_zoho = SecretStore(backend="file", directory=tmp_path, environ={})
    bc_zoho = SecretStore(backend="file", directory=tmp_path, environ={})
    nav_zoho.get("zoho", "refresh_token")  # both have read the file
    bc_zoho.get("zoho-bc", "refresh_token")
    bc_zoho.set("bc", "client_state", "state-of-the-bc-subscriptions")
    nav_zoho.set("zoho", "access_token_cache", "{}")
    fresh = SecretStore(backend="file", directory=tmp_path, environ={})
    assert fresh.get("bc", "client_state") == "state-of-the-bc-subscriptions"
    assert fresh.get("zoho", "access_token_cache") == "{}"


def test_a_document_sent_again_keeps_its_lines_once(make_rig):
    # kill -9 after Zoho took an invoice but before the state file recorded it: the next run sends it again.
    # Zoho adds the line items of an update to those it has, so the lines used to double.
    rig = make_rig(erps=("bc",))
    first = rig.cli("sync", "bc-zoho")
    assert first.returncode == 0, first.stderr
    lines = {i["ERP_Number"]: len(i["Invoiced_Items"]) for i in rig.zoho("bc-zoho").records("Invoices")}
    with rig.state() as state:
        state.db.execute("DELETE FROM links WHERE pair = 'bc-zoho' AND flow = 'invoices'")
        state.db.execute("DELETE FROM watermarks WHERE pair = 'bc-zoho' AND flow = 'invoices'")
    again = rig.cli("sync", "bc-zoho")
    assert again.returncode == 0, again.stderr
    assert {i["ERP_Number"]: len(i["Invoiced_Items"]) for i in rig.zoho("bc-zoho").records("Invoices")} == lines
