"""`mlconnector sandbox serve --tls`: every emulator over https with a self-signed certificate written next to the
config; a client that trusts that certificate (SSL_CERT_FILE) pings every system, and Entra's discovery document
sends clients on over https."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

MLCONNECTOR = [sys.executable, "-m", "mlconnector"]


def test_sandbox_serve_tls_serves_https_that_clients_trusting_its_certificate_use(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.toml"
    proc = subprocess.Popen([*MLCONNECTOR, "sandbox", "serve", "--tls", "--port", "0", "--seed", "3",
                             "--config-out", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    certificate = tmp_path / "sandbox.tls.pem"
    try:
        deadline = time.monotonic() + 30
        while not (config.exists() and "[pairs.nav-zuora]" in config.read_text()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "sandbox serve wrote no config"
            time.sleep(0.1)
        text = config.read_text()
        assert certificate.exists() and (tmp_path / "sandbox.tls.key").stat().st_mode & 0o077 == 0
        assert "http://" not in text and "https://127.0.0.1:" in text
        env = {k: v for k, v in os.environ.items() if k not in ("MLCONNECTOR_SECRETS_DIR",)}
        env.update(SSL_CERT_FILE=str(certificate), REQUESTS_CA_BUNDLE=str(certificate),
                   CURL_CA_BUNDLE=str(certificate))
        ping = subprocess.run([*MLCONNECTOR, "--config", str(config), "ping"], capture_output=True, text=True,
                              env=env, timeout=120)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert [line.split()[:2] for line in ping.stdout.splitlines() if line.startswith("ok")] == [
            ["ok", name] for name in ("bc", "fo", "gp", "nav", "zoho", "zoho-bc", "zoho-fo", "zoho-gp", "zuora")]
        untrusted = subprocess.run([*MLCONNECTOR, "--config", str(config), "ping", "zoho"], capture_output=True,
                                   text=True, env={**env, "SSL_CERT_FILE": "/nonexistent",
                                                   "SSL_CERT_DIR": str(tmp_path)}, timeout=120)
        assert untrusted.returncode != 0
        tenant = next(line.split('"')[1] for line in text.splitlines() if line.startswith("tenant ="))
        base = next(line.split('"')[1] for line in text.splitlines() if line.startswith("base_url =")
                    and "/v2.0/" in line).split("/v2.0/")[0]
        document = httpx.get(f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
                             verify=ssl.create_default_context(cafile=certificate))
        assert document.json()["token_endpoint"] == f"{base}/{tenant}/oauth2/v2.0/token"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"SSL_CERT_FILE={certificate}" in out
