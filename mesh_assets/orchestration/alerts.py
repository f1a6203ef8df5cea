"""Alerts to the team that owns a data product: a log line always, and a JSON POST to the team's webhook when
``mesh.yaml`` ``alerts.webhooks`` names one (mesh_assets.settings.AlertSettings).

The body is a JSON object whose ``text`` field holds the whole message, which Slack and Microsoft Teams incoming
webhooks display as is, plus machine-readable fields: ``kind``, ``team``, ``domain``, ``summary`` and
``details``. Sending never raises: an unreachable webhook is a warning in the log, where the alert already is.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from mesh_assets.settings import AlertSettings

log = logging.getLogger("mesh_assets.orchestration.alerts")


@dataclass(frozen=True)
class Alert:
    """One alert: ``kind`` is ``run_failure``, ``freshness`` (a port missed its SLA) or ``freshness_recovered``;
    ``team`` the owning team (ODCS ``team.name``); ``details`` JSON-serialisable facts (run id, asset keys…)."""

    kind: str
    team: str
    domain: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"[mesh {self.kind}] {self.domain} (team {self.team}): {self.summary}"


def webhook_url(team: str, settings: AlertSettings) -> str | None:
    """The webhook URL of ``team`` (``url``, or the value of the variable ``url_env``); None when it has none."""
    hook = settings.webhooks.get(team)
    if hook is None:
        return None
    if hook.url_env and not os.environ.get(hook.url_env):
        log.warning("alerts.webhooks.%s.url_env names %s, which is not set: the alert is only logged", team,
                    hook.url_env)
        return None
    return hook.url or os.environ[hook.url_env]  # type: ignore[index]


def send_alert(alert: Alert, settings: AlertSettings) -> bool:
    """Log ``alert`` (level ERROR; INFO for a recovery) and POST it to its team's webhook; True if a webhook
    answered 2xx. Timeouts, refused connections and error statuses are logged as warnings, never raised."""
    log.log(logging.INFO if alert.kind.endswith("recovered") else logging.ERROR, "%s", alert.text)
    url = webhook_url(alert.team, settings)
    if url is None:
        return False
    body = json.dumps({"text": alert.text, "kind": alert.kind, "team": alert.team, "domain": alert.domain,
                       "summary": alert.summary, "details": alert.details}, default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "mesh-assets"})
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:  # noqa: S310 (http(s) only)
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        # the URL may carry a token: name the team, never the URL
        log.warning("alert webhook of team %s failed (%s): the alert is only logged", alert.team,
                    getattr(exc, "reason", exc))
        return False
