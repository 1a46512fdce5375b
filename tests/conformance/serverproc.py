"""The processes the conformance suites run against, shared by every SDK's suite.

* `running_server`: one real `openbatch server` on 127.0.0.1 with a port the OS picks and a
  throwaway data directory.
* `running_azurite`: Azurite's blob service (the Azure Storage emulator, installed with npm into
  tests/conformance/.work by scripts/test.sh), standing in for the storage account of the Azure
  Batch quickstart.

Nothing here depends on a version of the `azure-batch` SDK: `tests/conformance/conftest.py`
(azure-batch 15.x) and `tests/conformance/sdk14/conftest.py` (azure-batch 14.x, another venv) both
build their fixtures on it. Every wait has a deadline (`wait_until`), so a hung process fails the
suite instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE_DIR = Path(__file__).resolve().parent

# How long the server may take to bind and write credentials.json. A debug build on a busy
# 2-core machine starts in well under a second; the margin is for CI machines under load.
SERVER_START_TIMEOUT_S = 30.0
# SIGTERM makes the server stop its node agents and flush its store; give it that long.
SERVER_STOP_TIMEOUT_S = 20.0
# Local nodes are processes on this machine: they go idle within seconds.
NODES_IDLE_TIMEOUT_S = 60.0
# Per-request limits for the SDKs' HTTP transports: a server that stops answering fails the test.
HTTP_CONNECT_TIMEOUT_S = 10
HTTP_READ_TIMEOUT_S = 60

# Azurite is a Node.js program: starting it takes a second or two, more on a loaded CI machine.
AZURITE_START_TIMEOUT_S = 60.0
AZURITE_STOP_TIMEOUT_S = 10.0
# The storage emulator's well-known development account (the same in every Azurite install).
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# Where scripts/test.sh installs Azurite (`npm install --prefix tests/conformance/.work`).
AZURITE_DEFAULT_BIN = CONFORMANCE_DIR / ".work" / "node_modules" / ".bin" / "azurite-blob"

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], Optional[T]],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Fails the test with `what` and the last value seen when `timeout` seconds pass. This is the
    only place in the suites that sleeps.
    """
    deadline = time.monotonic() + timeout
    last: Optional[T] = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what} (last value: {last!r})")
        time.sleep(interval)


def unique_id(prefix: str) -> str:
    """Resource ids unique across tests, so tests never see each other's pools, jobs or tasks."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- openbatch server ------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    data_dir: Path
    log_path: Path
    endpoint: str
    account_name: str
    account_key: str

    def log_text(self) -> str:
        """Everything the server and its local node agents logged so far."""
        parts = [self.log_path.read_text(errors="replace")]
        for agent_log in sorted((self.data_dir / "nodes").glob("*/agent.log")):
            parts.append(agent_log.read_text(errors="replace"))
        return "\n".join(parts)


def server_binary() -> Path:
    binary = Path(os.environ.get("OPENBATCH_BIN", "target/debug/openbatch"))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.is_file():
        pytest.exit(
            f"openbatch binary not found at {binary}: build it with `cargo build -p openbatch` "
            "or point OPENBATCH_BIN at it",
            returncode=2,
        )
    return binary


def _read_credentials(path: Path) -> Optional[dict]:
    # The server may be halfway through writing the file when we look.
    try:
        creds = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if all(k in creds for k in ("accountName", "accountKey", "endpoint")):
        return creds
    return None


def _stop_server(process: subprocess.Popen, data_dir: Path) -> None:
    """SIGTERM, then SIGKILL; then make sure no local node agent outlives the server."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    # A server that shut down cleanly has stopped its agents already. One that was killed leaves
    # them running (agents outlive a server restart by design), so end them by their recorded pid.
    for pid_file in (data_dir / "nodes").glob("*/agent.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError, FileNotFoundError):
            pass


@contextlib.contextmanager
def running_server(
    tmp_path_factory: pytest.TempPathFactory, env: Optional[dict] = None, name: str = "openbatch"
) -> Iterator[Server]:
    """Start an openbatch server for the session; stop it (and its node agents) afterwards.

    `env` adds environment variables for the server (development settings such as
    `OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE`, or `OPENBATCH_STORAGE_*` to point its auto-storage
    elsewhere); `name` keeps the data directories and logs of several servers apart.
    """
    binary = server_binary()
    data_dir = tmp_path_factory.mktemp(f"{name}-data")
    # One log per server: a test module may start a second one beside the session's.
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(binary), "server", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        creds_path = data_dir / "credentials.json"

        def credentials():
            if process.poll() is not None:
                pytest.fail(
                    f"openbatch server exited with {process.returncode} before listening:\n"
                    + log_tail(log_path)
                )
            return _read_credentials(creds_path)

        creds = wait_until(credentials, SERVER_START_TIMEOUT_S, f"{creds_path} to be written")
        yield Server(
            process=process,
            data_dir=data_dir,
            log_path=log_path,
            endpoint=creds["endpoint"],
            account_name=creds["accountName"],
            account_key=creds["accountKey"],
        )
    finally:
        _stop_server(process, data_dir)


# --- Azurite (blob storage) ------------------------------------------------------------------


@dataclass
class Azurite:
    process: subprocess.Popen
    location: Path
    log_path: Path
    port: int
    account_name: str = AZURITE_ACCOUNT_NAME
    account_key: str = AZURITE_ACCOUNT_KEY

    @property
    def account_url(self) -> str:
        """The blob endpoint, path-style: http://127.0.0.1:PORT/devstoreaccount1."""
        return f"http://127.0.0.1:{self.port}/{self.account_name}"

    def blob_url(self, container: str, blob: str, sas: str = "") -> str:
        url = f"{self.account_url}/{container}/{blob}"
        return f"{url}?{sas}" if sas else url

    @property
    def credential(self) -> dict:
        """What `BlobServiceClient(account_url, credential=...)` takes for Shared Key."""
        return {"account_name": self.account_name, "account_key": self.account_key}


def azurite_binary() -> Path:
    binary = Path(os.environ.get("AZURITE_BLOB_BIN", str(AZURITE_DEFAULT_BIN)))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.exists():
        pytest.fail(
            f"azurite-blob not found at {binary}: install it with `npm install --prefix "
            "tests/conformance/.work --save-exact azurite@3.37.0` (scripts/test.sh does) or point "
            "AZURITE_BLOB_BIN at it"
        )
    return binary


_AZURITE_LISTENING = re.compile(r"successfully listens on https?://[^\s:/]+:(\d+)")


@contextlib.contextmanager
def running_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Start Azurite's blob service on a port the OS picks; stop it afterwards.

    `--skipApiVersionCheck`: azure-storage-blob sends newer storage API versions than Azurite
    knows. `--disableTelemetry`: there is no network to send it to. `--silent`: no access log.
    """
    binary = azurite_binary()
    location = tmp_path_factory.mktemp("azurite")
    log_path = location.parent / "azurite.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--location",
                str(location),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening_port():
            if process.poll() is not None:
                pytest.fail(
                    f"azurite-blob exited with {process.returncode} before listening:\n"
                    + log_tail(log_path)
                )
            match = _AZURITE_LISTENING.search(log_path.read_text(errors="replace"))
            return int(match.group(1)) if match else None

        port = wait_until(
            listening_port, AZURITE_START_TIMEOUT_S, "azurite-blob to listen", interval=0.2
        )
        yield Azurite(process=process, location=location, log_path=log_path, port=port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=AZURITE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=AZURITE_STOP_TIMEOUT_S)
