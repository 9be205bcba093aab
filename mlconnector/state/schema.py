"""The state file's schema: numbered migrations, applied once (under a file lock) when a process opens it."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

migrations = Migrations("mlconnector")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create({"id": str, "pair": str, "started": str, "finished": str, "status": str,
                       "exit_code": int, "dry_run": int, "summary": str}, pk="id")
    db["runs"].create_index(["pair", "started"])
    db["watermarks"].create({"pair": str, "flow": str, "value": str, "updated": str}, pk=("pair", "flow"))
    db["links"].create({"pair": str, "flow": str, "source_id": str, "target_id": str,
                        "source_version": str, "hash": str, "target_version": str, "updated": str},
                       pk=("pair", "flow", "source_id"))
    db["links"].create_index(["pair", "flow", "target_id"])
    db["audit"].create({"id": int, "run_id": str, "time": str, "pair": str, "flow": str,
                        "source_system": str, "source_entity": str, "source_id": str,
                        "target_system": str, "target_entity": str, "target_id": str,
                        "action": str, "status": str, "error_class": str, "error": str,
                        "note": str, "payload": str}, pk="id")
    db["audit"].create_index(["pair", "time"])
    db["audit"].create_index(["run_id"])
    db["audit"].create_index(["source_id"])
    db["replay"].create({"pair": str, "flow": str, "source_id": str, "source_system": str,
                         "source_entity": str, "error_class": str, "error": str, "attempts": int,
                         "first_failed": str, "last_failed": str, "run_id": str},
                        pk=("pair", "flow", "source_id"))
    db["inbox"].create({"id": int, "received": str, "system": str, "entity": str, "ids": str,
                        "operation": str, "channel_id": str, "since": str, "processed": str}, pk="id")
    db["inbox"].create_index(["system", "processed"])
    db["channels"].create({"system": str, "entity": str, "channel_id": str, "expires": str,
                           "notify_url": str, "extra": str, "updated": str}, pk=("system", "channel_id"))


@migrations()
def m002_inbox_per_pair(db: sqlite_utils.Database) -> None:
    # One notification may concern several pairs (both read the same CRM module); each drains its own copy.
    db["inbox"].add_column("pair", str)
    db["inbox"].create_index(["pair", "processed"])


@migrations()
def m003_link_fields(db: sqlite_utils.Database) -> None:
    # Which fields we wrote: lets an echo check compare content when timestamps are too coarse.
    db["links"].add_column("fields", str)


@migrations()
def m004_create_intents(db: sqlite_utils.Database) -> None:
    # A create the target numbers itself (no natural key to upsert on), recorded before it is sent: if the
    # run dies before the link lands, the next run finds that record instead of creating a second one.
    db["intents"].create({"pair": str, "flow": str, "source_id": str, "run_id": str, "started": str},
                         pk=("pair", "flow", "source_id"))


@migrations()
def m005_link_source_hash(db: sqlite_utils.Database) -> None:
    # A fingerprint of the source record last synced, for sources that stamp no modification time (NAV's
    # posted documents): an unchanged one is then known without mapping it again.
    db["links"].add_column("source_hash", str)


@migrations()
def m006_link_target_content(db: sqlite_utils.Database) -> None:
    # The target record as our write left it (its fields and their fingerprint), where the target's answer
    # told it: the opposite flow reads it back and knows our own write by content, whatever its stamps say.
    db["links"].add_column("target_fields", str)
    db["links"].add_column("target_hash", str)


@migrations()
def m007_target_keys(db: sqlite_utils.Database) -> None:
    # The natural key each source record is written under, as the target compares keys: two source records
    # holding one key would be merged into one target record, so each is refused until the data is fixed.
    db["links"].add_column("target_key", str)
    db["links"].create_index(["pair", "flow", "target_key"])
    db["replay"].add_column("target_key", str)
    db["replay"].create_index(["pair", "flow", "target_key"])


@migrations()
def m008_inbox_digest(db: sqlite_utils.Database) -> None:
    # A notification waiting is stored once: copies of it (a sender's retries, a replay) share its digest.
    db["inbox"].add_column("digest", str)
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS inbox_waiting_digest ON inbox (pair, digest) "
               "WHERE processed IS NULL")


@migrations()
def m009_setup_findings(db: sqlite_utils.Database) -> None:
    # What `mlconnector setup PAIR` last found missing, per flow: sync refuses those flows until setup finds them.
    db["setup_missing"].create({"pair": str, "flow": str, "line": str, "checked": str}, pk=("pair", "flow", "line"))


@migrations()
def m010_health(db: sqlite_utils.Database) -> None:
    # A row the receiver's /health rewrites: a real commit, so a state file that cannot be written shows there.
    db["health"].create({"name": str, "checked": str}, pk="name")


@migrations()
def m011_field_changes(db: sqlite_utils.Database) -> None:
    # What each link last wrote, field by field (kept short), so an update's audit row can say what it changed;
    # and the record's business key on audit rows (a customer number, not a GUID).
    db["links"].add_column("written", str)
    db["audit"].add_column("changes", str)
    db["audit"].add_column("record_key", str)


@migrations()
def m012_deletion_checks(db: sqlite_utils.Database) -> None:
    # Per flow, how far its source's deletion feed was read, and when its ids were last read whole to find
    # deletions by absence (at most once per deletes_every_hours).
    db["deletion_checks"].create({"pair": str, "flow": str, "feed_since": str, "scanned": str}, pk=("pair", "flow"))


@migrations()
def m013_kept_after_delete(db: sqlite_utils.Database) -> None:
    # Target records a flow kept (flag or unlink) when their source records were deleted: accounted for, so
    # reconcile does not take them for orphans, and the flow the other way does not carry them back (it would undo
    # the deletion) until the two are linked again.
    db["kept_after_delete"].create({"pair": str, "flow": str, "target_id": str, "system": str, "policy": str,
                                    "noted": str}, pk=("pair", "flow", "target_id"))


@migrations()
def m014_run_kind(db: sqlite_utils.Database) -> None:
    # What a run was (sync, replay, drain): `status --check` judges a pair by its last sync, which a drain of a
    # notification every minute must not stand in for. Older rows (NULL) were syncs, replays or drains alike.
    db["runs"].add_column("kind", str)


@migrations()
def m015_channel_failures(db: sqlite_utils.Database) -> None:
    # A push channel that could not be subscribed or renewed, until one attempt succeeds: `status --check` and
    # the receiver's /health name it, since the entity is then only polled.
    db["channel_failures"].create({"system": str, "entity": str, "error": str, "since": str, "last": str},
                                  pk=("system", "entity"))


@migrations()
def m016_reconcile_results(db: sqlite_utils.Database) -> None:
    # The last `reconcile` of each pair: whether both sides agreed, and how many differences it found.
    db["reconcile_results"].create({"pair": str, "checked": str, "agrees": int, "differences": int}, pk="pair")


@migrations()
def m017_alert_incidents(db: sqlite_utils.Database) -> None:
    # An incident alerted on (a pair's runs failing, a channel that cannot be renewed), open until it recovers: a
    # cron job failing every 15 minutes alerts once, not 96 times a day.
    db["alert_incidents"].create({"key": str, "opened": str, "last_sent": str, "event": str, "text": str}, pk="key")


@migrations()
def m018_mapping_digests(db: sqlite_utils.Database) -> None:
    # Per flow, the configured mappings and filter its records were last mapped with (a digest): a change re-maps
    # the flow's records once, and those whose payload changed are written.
    db["mapping_digests"].create({"pair": str, "flow": str, "digest": str, "updated": str}, pk=("pair", "flow"))


@migrations()
def m019_shared_ledger(db: sqlite_utils.Database) -> None:
    # Events in a rolling window and amounts spent in one, for a state several hosts share (state/ledger.py). The
    # SQLite store's connectors keep theirs in a file beside it instead; the tables keep the two schemas one.
    db["ledger_events"].create({"key": str, "happened": str})
    db["ledger_events"].create_index(["key", "happened"])
    db["ledger_amounts"].create({"key": str, "minute": str, "amount": int}, pk=("key", "minute"))
    db["ledger_documents"].create({"name": str, "body": str}, pk="name")


@migrations()
def m020_field_checks(db: sqlite_utils.Database) -> None:
    # Per flow, the configured mappings (a digest, with the systems) whose fields a run last found in the systems'
    # metadata, and when: runs check again only once the mappings change or a day has passed.
    db["field_checks"].create({"pair": str, "flow": str, "digest": str, "checked": str}, pk=("pair", "flow"))
