"""A team's tracking server: refuse missing or wrong credentials in one line, before any work.

Plain HTTP (no MLflow, no TensorFlow): one authenticated request to the REST API with the
credentials MLflow's client would send (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD).
Whether the server is there at all is the store check's job; this only asks whether it lets us in.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request

from fashion_lab.config import ConfigError


def check_credentials(tracking_cfg, timeout: float = 10.0) -> None:
    """Raise ConfigError when an http(s) tracking server refuses this client (401/403)."""
    uri = str(tracking_cfg.uri)
    if not tracking_cfg.enabled or not uri.startswith(("http://", "https://")):
        return
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError as error:
        if error.code == 401:
            given = f"user {user!r} was refused" if user and password else "no credentials were given"
            raise ConfigError(f"tracking.uri={uri}: the server requires a login (HTTP 401) and {given}; set "
                              f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD") from None
        if error.code == 403:
            raise ConfigError(f"tracking.uri={uri}: user {user!r} may not use this server (HTTP 403); ask its "
                              f"admin for access") from None
    except (urllib.error.URLError, OSError):
        return  # unreachable: the store check reports that
