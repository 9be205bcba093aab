"""Incidents alerted on, open until they recover (see mlconnector.alerts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlconnector.state.common import iso, parse_iso


class IncidentQueries:
    """Part of a state store (``state.base``)."""

    def incident(self, key: str) -> dict[str, Any] | None:
        row = self._execute("SELECT key, opened, last_sent, event, text FROM alert_incidents WHERE key = ?",
                            [key]).fetchone()
        if row is None:
            return None
        return {"key": row[0], "opened": parse_iso(row[1]), "last_sent": parse_iso(row[2]), "event": row[3],
                "text": row[4]}

    def open_incidents(self, prefix: str = "") -> list[str]:
        return [row[0] for row in self._execute("SELECT key FROM alert_incidents WHERE key LIKE ? ORDER BY key",
                                                [prefix.replace("%", "") + "%"]).fetchall()]

    def save_incident(self, key: str, event: str, text: str, now: datetime) -> None:
        """Open the incident, or note that it was alerted again."""
        self._execute(
            "INSERT INTO alert_incidents (key, opened, last_sent, event, text) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET last_sent = excluded.last_sent, event = excluded.event, "
            "text = excluded.text", [key, iso(now), iso(now), event, text])

    def close_incident(self, key: str) -> bool:
        """True when the incident was open."""
        return self._execute("DELETE FROM alert_incidents WHERE key = ?", [key]).rowcount > 0
