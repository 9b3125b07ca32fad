"""The production shape: nginx (deploy/nginx/aiface-server.conf) in front of gunicorn, on 127.0.0.1.

Skipped where nginx is not installed (``bash .ci/setup --test`` installs
Debian's). nginx runs from a generated main configuration that includes the
repository's server snippet unchanged, with its temporary files and logs in
the test's folder. Waits poll with a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REPO, encode, face_like, free_port, gunicorn_service, healthy, stop, wait_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
SNIPPET = REPO / "deploy" / "nginx" / "aiface-server.conf"
GUNICORN_THREADS = 2
STALLED = 6  # more stalled clients than gunicorn has threads
DEADLINE_S = 120.0

if NGINX is None:
    pytest.skip("nginx is not installed (bash .ci/setup --test installs Debian's nginx)", allow_module_level=True)


def main_config(folder: Path, listen_port: int, upstream_port: int) -> Path:
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers could not write the test's folder as nobody
    config = folder / "nginx.conf"
    config.write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log {folder / 'error.log'} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp['body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    upstream aiface {{ server 127.0.0.1:{upstream_port}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{listen_port};
        include {SNIPPET};
    }}
}}
"""
    )
    return config


def post(port: int, body: bytes, headers: dict | None = None, timeout_s: float = 30.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("POST", "/v1/detect", body=body, headers={"Content-Type": "image/png", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def proxied(tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nginx")
    upstream, listen = free_port(), free_port()
    with gunicorn_service(tiny_model_path, folder / "gunicorn.log", upstream, GUNICORN_THREADS, DEADLINE_S,
                          FACE_DETECTION=0, MAX_IN_FLIGHT=GUNICORN_THREADS):
        config = main_config(folder, listen, upstream)
        check = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen([NGINX, "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        try:
            wait_for(lambda: healthy(listen), "nginx answering", process, DEADLINE_S)
            yield listen
        finally:
            stop(process)


def test_a_request_through_nginx_is_scored_with_the_services_headers(proxied):
    status, headers, body = post(proxied, encode(face_like(1)))
    assert status == 200, body
    assert 0.0 <= body["probability_fake"] <= 1.0
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"


def test_stalled_clients_wait_in_nginx_not_in_gunicorn(proxied):
    stalled = []
    try:
        for _ in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", proxied))
            sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 100000\r\n\r\n" + encode(face_like(2))[:200])
            stalled.append(sock)
        # Gunicorn has two threads and two admission places; six half-sent uploads
        # would hold them all if they reached it. Through nginx, the next request is
        # scored at once.
        started = time.monotonic()
        status, _, body = post(proxied, encode(face_like(3)))
        assert status == 200, body
        assert time.monotonic() - started < 10
    finally:
        for sock in stalled:
            sock.close()


def test_a_body_over_the_limit_is_refused_by_nginx_with_the_services_json(proxied):
    with socket.create_connection(("127.0.0.1", proxied), timeout=30) as sock:
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 30000000\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413
        assert response.getheader("Content-Type") == "application/json"
        body = json.loads(response.read())
    assert body["error"]["code"] == "request_entity_too_large" and "20 MiB" in body["error"]["message"]
