"""``citycard web serve`` as a real process: uvicorn's access log names the URL of each request, and a
console search by a whole PAN puts it in the URL (``GET /api/cards?pan_suffix=…``); the log shows it
masked, never whole (citycard.logs)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from citycard.cli import run as cli

PAN = "6212260000000000018"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_access_log_masks_a_pan_in_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    monkeypatch.setenv("TEST_PASSWORD", "a-long-enough-password")
    assert cli(["bank", "add", "ICBC", "--bin", "62122600"]) == 0
    assert cli(["web", "user", "add", "op", "--password-env", "TEST_PASSWORD"]) == 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from citycard.cli import main; main()", "web", "serve", "--port", str(port)],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        deadline = time.monotonic() + 30
        while True:
            try:
                body = json.dumps({"username": "op", "password": "a-long-enough-password"}).encode()
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/session", body, {"Content-Type": "application/json"}
                )
                assert opener.open(request, timeout=5).status == 200
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the console never answered"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as refused:  # a whole PAN in a URL: refused, and logged
            opener.open(f"http://127.0.0.1:{port}/api/cards?pan_suffix={PAN}", timeout=5)
        assert refused.value.code == 422
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    log = out + err
    assert 'GET /api/cards?pan_suffix=621226*********0018 HTTP/1.1" 422' in log, log
    assert PAN not in log
