"""bench.cpu_sampler: a process's CPU, sampled by CPU time from inside, as py-spy's raw
collapsed stacks that bench.profile reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.cpu_sampler import INTERVAL
from bench.profile import FRAME

BURN = """
import hashlib
import time

def spin():
    end = time.process_time() + 0.4
    while time.process_time() < end:
        pass

def rest():
    time.sleep(0.4)

def squeeze():  # one long call into C
    hashlib.pbkdf2_hmac("sha256", b"p", b"s", 400_000)

spin()
rest()
started = time.process_time()
squeeze()
print(time.process_time() - started)
"""


def test_only_cpu_spent_is_sampled_and_named_as_py_spy_names_it(tmp_path: Path) -> None:
    (tmp_path / "burn.py").write_text(BURN)
    output = tmp_path / "burn.folded"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}

    squeezed = subprocess.run(
        [sys.executable, "-m", "bench.cpu_sampler", str(output), "-m", "burn"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )

    counts: dict[str, int] = {}
    for line in output.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        assert all(FRAME.match(frame) for frame in frames), frames
        counts[frames[-1]] = counts.get(frames[-1], 0) + int(n)

    def samples_in(function: str) -> int:
        return sum(n for frame, n in counts.items() if frame.startswith(f"{function} (burn.py:"))

    assert samples_in("spin") >= 40  # 0.4 s of CPU at 200 samples a second, less slack
    assert samples_in("rest") <= 2  # asleep: no CPU, hardly a sample
    # one long call into C: its timers came as one signal, its CPU is credited in full
    assert samples_in("squeeze") >= 0.8 * float(squeezed.stdout) / INTERVAL
