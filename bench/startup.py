"""Start-up time of the whole service on the embedded database (DESIGN §9: < 5 s after the first start).

Runs `avatar-registry run` in a fresh DATA_DIR: once to initialise, then N more times, each time until the
"ready" line and until /readyz answers 200; stops it with SIGTERM each time.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, write_results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_once(data: Path) -> float:
    port, live = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATA_DIR=str(data), REGISTRY_PORT=str(port), LIVECHECK_PORT=str(live))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("ready in"):
                break
        else:
            raise RuntimeError("service exited before it was ready")
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.02)
        return time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stdout.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as d:
        data = Path(d) / "data"
        first = start_once(data)
        print(f"first start (initialises the database)\t{first:.2f} s", flush=True)
        later = []
        for i in range(args.runs):
            later.append(start_once(data))
            print(f"start {i + 2}\t{later[-1]:.2f} s", flush=True)
    figures = {
        "first_start_s": round(first, 3),
        "later_start_p50_s": round(percentile(later, 50), 3),
        "later_start_max_s": round(max(later), 3),
        "runs": args.runs,
        "target_s": 5.0,
        "met": max(later) < 5.0,
    }
    print("\t".join(f"{k}={v}" for k, v in figures.items()))
    print("wrote", write_results("startup", figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
