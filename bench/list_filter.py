"""Listing the failed tasks of a 100,000-task job with $filter, next to listing every task.

Tasks are added to a job whose pool has no nodes (so they stay active), then 1% of them are
terminated, which completes them as failed. The timed operations are the SDK's own paging
through `list_tasks`: with `$filter=executionInfo/result eq 'failure'`, and without a filter.
The filter is evaluated on the server's records and only matching tasks are serialized, so the
filtered listing should cost a small fraction of the full one.

    OPENBATCH_BIN=target/release/openbatch .venv-conformance/bin/python bench/list_filter.py --tasks 100000
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.batch import BatchClient, models as m
from azure.core.credentials import AzureNamedKeyCredential


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--failed-every", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    binary = os.environ.get("OPENBATCH_BIN", "target/release/openbatch")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        log = open(Path(tmp) / "server.log", "w")
        srv = subprocess.Popen([binary, "server", "--data-dir", str(data), "--listen", "127.0.0.1:0"], stdout=log, stderr=log)
        try:
            creds = data / "credentials.json"
            deadline = time.time() + 30
            while not creds.exists():
                if time.time() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.05)
            time.sleep(0.1)
            c = json.loads(creds.read_text())
            client = BatchClient(c["endpoint"], AzureNamedKeyCredential(c["accountName"], c["accountKey"]))
            client.create_pool(m.BatchPoolCreateOptions(id="empty", vm_size="Standard_D2s_v3", target_dedicated_nodes=0))
            client.create_job(m.BatchJobCreateOptions(id="big", pool_info=m.BatchPoolInfo(pool_id="empty")))
            t0 = time.time()
            chunks = [
                [m.BatchTaskCreateOptions(id=f"t{i:06d}", command_line="/bin/true") for i in range(s, min(s + 100, args.tasks))]
                for s in range(0, args.tasks, 100)
            ]
            with ThreadPoolExecutor(4) as ex:
                list(ex.map(lambda ch: client.create_task_collection("big", m.BatchTaskGroup(task_values=ch)), chunks))
            failed_ids = [f"t{i:06d}" for i in range(0, args.tasks, args.failed_every)]
            with ThreadPoolExecutor(4) as ex:
                list(ex.map(lambda t: client.terminate_task("big", t), failed_ids))
            print(f"setup: {args.tasks} tasks, {len(failed_ids)} failed, in {time.time() - t0:.1f}s", file=sys.stderr)

            def timed(**kw):
                t = time.perf_counter()
                n = sum(1 for _ in client.list_tasks("big", **kw))
                return time.perf_counter() - t, n

            filt, full = [], []
            for _ in range(args.repeat):
                dt, n = timed(filter="executionInfo/result eq 'failure'")
                assert n == len(failed_ids), (n, len(failed_ids))
                filt.append(dt)
                dt, n = timed()
                assert n == args.tasks
                full.append(dt)
            f, a = statistics.median(filt), statistics.median(full)
            print(f"list failed tasks with $filter (median of {args.repeat}): {f:.3f}s for {len(failed_ids)} tasks")
            print(f"list every task, no filter     (median of {args.repeat}): {a:.3f}s for {args.tasks} tasks")
            print(f"ratio filtered/full: {f / a:.3f}")
        finally:
            srv.terminate()
            srv.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
