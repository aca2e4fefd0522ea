"""Boots the real pupa image under QEMU behind `pupa-host run` (the job relay) once per test
session, and gives the tests its address.

Environment (test.sh sets them; the defaults suit a checkout where the Rust tests ran):
- PUPA_IMAGE: the firmware image (default target/pupa-test-release/pupa.fd, the image the
  workspace tests build, else target/pupa/pupa.fd); its manifest.json beside it;
- PUPA_HOST_BIN: the `pupa-host` binary (default target/debug/pupa-host).
"""

import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _image() -> Path:
    env = os.environ.get("PUPA_IMAGE")
    if env:
        return Path(env)
    for p in ("target/pupa-test-release/pupa.fd", "target/pupa/pupa.fd"):
        if (ROOT / p).is_file():
            return ROOT / p
    pytest.exit("no pupa image: set PUPA_IMAGE or run clients/python/test.sh", 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def image() -> Path:
    return _image()


@pytest.fixture(scope="session")
def manifest(image) -> Path:
    return image.with_name("manifest.json")


@pytest.fixture(scope="session")
def image_sha384(manifest) -> str:
    return json.loads(manifest.read_text())["image"]["sha384"]


@pytest.fixture(scope="session")
def worker_addr(image, manifest):
    """`pupa-host run` serving the guest; its client address."""
    host = Path(os.environ.get("PUPA_HOST_BIN", ROOT / "target/debug/pupa-host"))
    if not host.is_file():
        pytest.exit(f"{host} missing: cargo build -p pupa-host (or run test.sh)", 2)
    cmd = [
        str(host), "run", "--image", str(image), "--manifest", str(manifest),
        "--listen", f"127.0.0.1:{_free_port()}", "--forward-port", str(_free_port()),
        "--health-period-s", "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = []
    # The relay's log and the guest console, echoed on failure.
    drain = threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)
    drain.start()
    line = proc.stdout.readline().strip()
    prefix = "pupa-host: listening on "
    if not line.startswith(prefix):
        proc.kill()
        proc.wait()
        drain.join(5)
        pytest.exit(f"pupa-host did not start: {line!r}\n{''.join(log[-40:])}", 2)
    try:
        yield line[len(prefix):]
    finally:
        proc.send_signal(signal.SIGTERM)  # pupa-host stops its VM on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
