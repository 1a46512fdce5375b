#!/usr/bin/env python3
"""How much does running N trivial tasks through openbatch cost, next to `xargs -P 2`?

Starts an openbatch server, makes a pool of 1 node with 2 task slots, and for each repeat:

* openbatch: creates a job, submits N `/bin/true` tasks through the REST API (the official SDK's
  `create_task_collection`, 100 tasks per request), and polls `get_job_task_counts` every 50 ms
  until all N are completed. The time is from the first submit to the poll that saw all N
  completed, so it includes submission, scheduling, the node agent's process starts and the
  result reporting.
* xargs: `xargs -P 2 -I{} /bin/true` over N input lines: the same N processes, 2 at a time, with
  nothing in between.

Prints every run, the median of each over the repeats, and their ratio. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

REPO_ROOT = Path(__file__).resolve().parents[1]

COLLECTION_SIZE = 100  # the REST API's maximum per addtaskcollection request
POLL_INTERVAL_S = 0.05
SERVER_START_TIMEOUT_S = 30.0
NODE_IDLE_TIMEOUT_S = 60.0
# Generous: a debug build on a loaded 2-core machine runs a few hundred tasks a second at worst.
SECONDS_PER_TASK_LIMIT = 0.1
MIN_RUN_TIMEOUT_S = 120.0

POOL_ID = "bench-pool"
VM_CONFIG = m.VirtualMachineConfiguration(
    image_reference=m.BatchVmImageReference(
        publisher="canonical", offer="ubuntu", sku="22_04-lts", version="latest"
    ),
    node_agent_sku_id="batch.node.ubuntu 22.04",
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a process, from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return (0.0, 0.0)
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ((utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


def deadline_loop(timeout: float, what: str, interval: float):
    """Yields until the caller breaks; raises TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def server_binary() -> Path:
    if "OPENBATCH_BIN" in os.environ:
        binary = Path(os.environ["OPENBATCH_BIN"])
        if not binary.is_absolute():
            binary = REPO_ROOT / binary
    else:
        release = REPO_ROOT / "target/release/openbatch"
        binary = release if release.is_file() else REPO_ROOT / "target/debug/openbatch"
    if not binary.is_file():
        sys.exit(f"openbatch binary not found at {binary}: build it or set OPENBATCH_BIN")
    return binary


class Server:
    """An `openbatch server` on 127.0.0.1:0 with a throwaway data directory."""

    def __init__(self, binary: Path):
        self.binary = binary
        self.tmp = tempfile.TemporaryDirectory(prefix="openbatch-bench-")
        self.data_dir = Path(self.tmp.name) / "data"
        self.log_path = Path(self.tmp.name) / "server.log"
        self.process: subprocess.Popen | None = None

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far: the server, its node agents, their task launchers, and the
        tasks (reaped by the launchers)."""
        out = {"server": proc_cpu(self.process.pid)[0], "agent": 0.0, "launcher": 0.0, "tasks": 0.0}
        for pid_file in (self.data_dir / "nodes").glob("*/agent.pid"):
            try:
                agent = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            out["agent"] += proc_cpu(agent)[0]
            for child in children_of(agent):
                own, reaped = proc_cpu(child)
                out["launcher"] += own
                out["tasks"] += reaped
        return out

    def __enter__(self) -> BatchClient:
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "server", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        creds_path = self.data_dir / "credentials.json"
        for _ in deadline_loop(SERVER_START_TIMEOUT_S, "the server to start", 0.05):
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                creds = json.loads(creds_path.read_text())
                break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
        return BatchClient(
            creds["endpoint"],
            AzureNamedKeyCredential(creds["accountName"], creds["accountKey"]),
            connection_timeout=10,
            read_timeout=120,
        )

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Agents outlive a killed server by design; end any that did.
        for pid_file in (self.data_dir / "nodes").glob("*/agent.pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, OSError):
                pass
        self.tmp.cleanup()


def create_pool(client: BatchClient) -> None:
    client.create_pool(
        m.BatchPoolCreateOptions(
            id=POOL_ID,
            vm_size="Standard_D2s_v3",
            target_dedicated_nodes=1,
            task_slots_per_node=2,
            virtual_machine_configuration=VM_CONFIG,
        )
    )
    for _ in deadline_loop(NODE_IDLE_TIMEOUT_S, "the node to be idle", 0.1):
        nodes = list(client.list_nodes(POOL_ID))
        if len(nodes) == 1 and nodes[0].state == m.BatchNodeState.IDLE:
            return


def run_openbatch(client: BatchClient, server: "Server", job_id: str, n: int, submit_threads: int) -> dict:
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=POOL_ID)))
    width = len(str(n - 1))
    tasks = [m.BatchTaskCreateOptions(id=f"t{i:0{width}d}", command_line="/bin/true") for i in range(n)]
    chunks = [tasks[i : i + COLLECTION_SIZE] for i in range(0, n, COLLECTION_SIZE)]

    def submit(chunk) -> None:
        result = client.create_task_collection(job_id, m.BatchTaskGroup(task_values=chunk))
        failed = [r for r in result.result_values if r.status != m.BatchTaskAddStatus.SUCCESS]
        if failed:
            raise RuntimeError(f"{len(failed)} tasks were not added, e.g. {failed[0]}")

    cpu_before = server.cpu()
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if submit_threads <= 1:
        for chunk in chunks:
            submit(chunk)
    else:
        with ThreadPoolExecutor(submit_threads) as pool:
            list(pool.map(submit, chunks))
    submitted = time.perf_counter() - start

    timeout = max(MIN_RUN_TIMEOUT_S, n * SECONDS_PER_TASK_LIMIT)
    for _ in deadline_loop(timeout, f"{n} tasks to complete", POLL_INTERVAL_S):
        counts = client.get_job_task_counts(job_id).task_counts
        if counts.completed >= n:
            break
    total = time.perf_counter() - start
    cpu_after = server.cpu()
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    cpu["client"] = (client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime)
    if counts.failed:
        raise RuntimeError(f"{counts.failed} of {n} /bin/true tasks failed")

    return {"submit_s": submitted, "total_s": total, "cpu_s": cpu}


def run_xargs(n: int) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of xargs and its processes."""
    lines = "".join(f"{i}\n" for i in range(n)).encode()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", "2", "-I{}", "/bin/true"], input=lines, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per run (default 10000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the median is reported (default 1)")
    parser.add_argument(
        "--submit-threads",
        type=int,
        default=4,
        help="threads submitting task collections in parallel; 1 submits sequentially (default 4)",
    )
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = parser.parse_args()
    if args.tasks < 1 or args.repeat < 1:
        parser.error("--tasks and --repeat must be at least 1")

    binary = server_binary()
    log(f"server binary: {binary}")
    runs = []
    server = Server(binary)
    with server as client:
        create_pool(client)
        for k in range(args.repeat):
            ob = run_openbatch(client, server, f"bench-job-{k}", args.tasks, args.submit_threads)
            xa, xa_cpu = run_xargs(args.tasks)
            runs.append(
                {
                    "openbatch_s": ob["total_s"],
                    "submit_s": ob["submit_s"],
                    "xargs_s": xa,
                    "openbatch_cpu_s": ob["cpu_s"],
                    "xargs_cpu_s": xa_cpu,
                }
            )
            per_task = ", ".join(f"{name} {1e6 * s / args.tasks:.0f}" for name, s in ob["cpu_s"].items())
            print(
                f"run {k + 1}/{args.repeat}: openbatch {ob['total_s']:.3f}s "
                f"(submitted in {ob['submit_s']:.3f}s), xargs {xa:.3f}s\n"
                f"  CPU per task (us): openbatch: {per_task}; xargs with its processes {1e6 * xa_cpu / args.tasks:.0f}",
                flush=True,
            )
        # Deleted only now: a node removes a deleted job's task directories in the background,
        # which would run into the next repeat's timing.
        for k in range(args.repeat):
            client.begin_delete_job(f"bench-job-{k}", polling_interval=0.2).result()

    ob_median = statistics.median(r["openbatch_s"] for r in runs)
    xa_median = statistics.median(r["xargs_s"] for r in runs)
    submit_median = statistics.median(r["submit_s"] for r in runs)
    n = args.tasks
    print()
    print(f"tasks: {n}, pool: 1 node x 2 slots, submit threads: {args.submit_threads}, repeats: {args.repeat}")
    print(f"openbatch (median): {ob_median:.3f}s  ({n / ob_median:,.0f} tasks/s; submission {submit_median:.3f}s)")
    print(f"xargs -P 2 (median): {xa_median:.3f}s  ({n / xa_median:,.0f} tasks/s)")
    print(f"ratio openbatch/xargs: {ob_median / xa_median:.2f}x")
    if args.json:
        print(
            json.dumps(
                {
                    "binary": str(binary),
                    "tasks": n,
                    "repeat": args.repeat,
                    "submit_threads": args.submit_threads,
                    "runs": runs,
                    "openbatch_median_s": ob_median,
                    "xargs_median_s": xa_median,
                    "ratio": ob_median / xa_median,
                }
            )
        )


if __name__ == "__main__":
    main()
