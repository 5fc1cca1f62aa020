"""The README's quick start, followed to the letter: run, open the printed URL, log in, manage upstreams.

The gateway is the real command on the shipped config/proxy.toml (ports moved
to free ones); the operator is a plain HTTP client that only knows what the
log told it: the dashboard's address and the first admin password.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from mqttproxy.webapp.pages import form_values
from tests.helpers import TIMEOUT
from tests.mosquitto import free_port
from tests.webapp.api_client import Http

REPOSITORY = Path(__file__).resolve().parents[2]
DASHBOARD = re.compile(r"dashboard: (http://\S+)")
PASSWORD = re.compile(r"created the dashboard operator 'admin' with password (\S+) ")
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


@contextmanager
def quick_start(directory: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """``mqttproxy run`` in ``directory``, which holds the shipped config; (process, URL, password)."""
    (directory / "config").mkdir()
    shutil.copy(REPOSITORY / "config" / "proxy.toml", directory / "config" / "proxy.toml")
    env = {key: value for key, value in os.environ.items() if key != "MQTTPROXY_ADMIN_PASSWORD"}
    env["PYTHONPATH"] = str(REPOSITORY)
    # Never the default ports 1883 and 3000 in tests.
    command = [sys.executable, "-m", "mqttproxy", "run", "--mqtt-port", "0", "--web-port", "0"]
    process = subprocess.Popen(
        command, cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    lines: list[str] = []
    drain: threading.Thread | None = None
    try:
        url = password = None
        deadline = time.monotonic() + TIMEOUT
        while url is None or password is None:
            assert time.monotonic() < deadline, f"no dashboard address or password in: {lines}"
            line = process.stderr.readline()
            assert line, f"the gateway exited ({process.wait()}): {lines}"
            lines.append(line)
            url = url or next(iter(DASHBOARD.findall(line)), None)
            password = password or next(iter(PASSWORD.findall(line)), None)
        # Keep reading the log, so that the gateway never blocks on a full pipe.
        drain = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
        drain.start()
        yield process, url, password
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if drain is not None:
            drain.join(TIMEOUT)
        process.stderr.close()


def test_a_newcomer_logs_in_and_manages_an_upstream(tmp_path: Path) -> None:
    with quick_start(tmp_path) as (process, url, password):
        address = urlsplit(url)
        assert (address.scheme, address.hostname, address.path) == ("http", "localhost", "/")
        assert address.port
        http = Http(address.port)  # on 127.0.0.1: localhost

        page = http.get("/")
        assert page.status == 302
        assert page.headers["Location"] == "/login?next=/"
        logged_in = http.login("admin", password)
        assert logged_in.status == 303
        assert logged_in.headers["Location"] == "/"
        overview = http.get("/")
        assert overview.status == 200
        assert "No upstream brokers yet." in overview.text
        match = _CSRF_META.search(overview.text)
        assert match
        csrf = match.group(1)

        # The add form as a browser sends it: its defaults, the new broker's fields, checked boxes only.
        # The upstream is not there: the gateway keeps trying in the background.
        form = {name: value for name, value in form_values().items() if not isinstance(value, bool)}
        form |= {name: "on" for name, value in form_values().items() if value is True}
        form |= {"csrf_token": csrf, "id": "cloud", "name": "Cloud", "address": "127.0.0.1"}
        form["port"] = str(free_port())
        added = http.request("POST", "/brokers/new", form=form)
        assert added.status == 303, added.text
        assert '<tr data-broker="cloud">' in http.get("/brokers").text

        paused = http.request("POST", "/brokers/cloud/toggle", form={"csrf_token": csrf})
        assert paused.headers["Location"] == "/brokers?flash=paused&broker=cloud"
        assert "Broker cloud paused." in http.get(paused.headers["Location"]).text
        deleted = http.request("POST", "/brokers/cloud/delete", form={"csrf_token": csrf, "confirmed": "yes"})
        assert deleted.headers["Location"] == "/brokers?flash=deleted&broker=cloud"
        assert '<tr data-broker="cloud">' not in http.get("/brokers").text

        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    assert (tmp_path / "data" / "brokers.json").exists()  # the shipped config's data directory
