"""Fixtures for the Azure Batch SDK conformance suite.

One real `openbatch server` per test session, on 127.0.0.1 with a port the OS picks and a
throwaway data directory. Tests talk to it only through the official `azure-batch` SDK, the way a
user of Azure Batch would. Every wait has a deadline (`wait_until`), and the SDK client has
connect/read timeouts, so a hung server fails the suite instead of hanging it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

REPO_ROOT = Path(__file__).resolve().parents[2]

# How long the server may take to bind and write credentials.json. A debug build on a busy
# 2-core machine starts in well under a second; the margin is for CI machines under load.
SERVER_START_TIMEOUT_S = 30.0
# SIGTERM makes the server stop its node agents and flush its store; give it that long.
SERVER_STOP_TIMEOUT_S = 20.0
# Local nodes are processes on this machine: they go idle within seconds.
NODES_IDLE_TIMEOUT_S = 60.0
# Per-request limits for the SDK's HTTP transport: a server that stops answering fails the test.
HTTP_CONNECT_TIMEOUT_S = 10
HTTP_READ_TIMEOUT_S = 60

# The virtual machine configuration of Azure-Samples/batch-python-quickstart.
QUICKSTART_VM_CONFIG = m.VirtualMachineConfiguration(
    image_reference=m.BatchVmImageReference(
        publisher="canonical",
        offer="0001-com-ubuntu-server-focal",
        sku="20_04-lts",
        version="latest",
    ),
    node_agent_sku_id="batch.node.ubuntu 20.04",
)

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], Optional[T]],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Fails the test with `what` and the last value seen when `timeout` seconds pass. This is the
    only place in the suite that sleeps.
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


def make_client(endpoint: str, account: str, key: str) -> BatchClient:
    return BatchClient(
        endpoint,
        AzureNamedKeyCredential(account, key),
        connection_timeout=HTTP_CONNECT_TIMEOUT_S,
        read_timeout=HTTP_READ_TIMEOUT_S,
    )


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


def _server_binary() -> Path:
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


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _stop(process: subprocess.Popen, data_dir: Path) -> None:
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


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    binary = _server_binary()
    data_dir = tmp_path_factory.mktemp("openbatch-data")
    log_path = data_dir.parent / "openbatch-server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(binary), "server", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        creds_path = data_dir / "credentials.json"

        def credentials():
            if process.poll() is not None:
                pytest.fail(
                    f"openbatch server exited with {process.returncode} before listening:\n"
                    + _log_tail(log_path)
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
        _stop(process, data_dir)


@pytest.fixture(scope="session")
def client(server: Server) -> BatchClient:
    return make_client(server.endpoint, server.account_name, server.account_key)


def create_pool_and_wait_idle(
    client: BatchClient,
    pool_id: str,
    nodes: int,
    slots: int,
    vm_size: str = "Standard_D2s_v3",
    **pool_options,
) -> list:
    """Create a pool of local nodes and wait until all of them are idle."""
    client.create_pool(
        m.BatchPoolCreateOptions(
            id=pool_id,
            vm_size=vm_size,
            target_dedicated_nodes=nodes,
            task_slots_per_node=slots,
            virtual_machine_configuration=QUICKSTART_VM_CONFIG,
            **pool_options,
        )
    )

    def all_idle():
        listed = list(client.list_nodes(pool_id))
        if len(listed) == nodes and all(n.state == m.BatchNodeState.IDLE for n in listed):
            return listed
        return None

    return wait_until(all_idle, NODES_IDLE_TIMEOUT_S, f"{nodes} idle nodes in pool {pool_id}")


def wait_task_completed(client: BatchClient, job_id: str, task_id: str, timeout: float):
    """Wait for one task to reach `completed` and return it."""

    def completed():
        task = client.get_task(job_id, task_id)
        return task if task.state == m.BatchTaskState.COMPLETED else None

    return wait_until(completed, timeout, f"task {job_id}/{task_id} to complete")


def read_task_file(client: BatchClient, job_id: str, task_id: str, path: str, **kwargs) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, path, **kwargs))
