"""bench.cpu_sampler: a process's CPU, sampled by CPU time from inside, as py-spy's raw
collapsed stacks that bench.profile reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.cpu_sampler import INTERVAL, CpuSampler
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


WINDOW = """
import os
import signal
import time

def spin(name, seconds=0.3):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

def before():
    spin("before")

def within():
    spin("within")

def after():
    spin("after")

before()
os.kill(os.getpid(), signal.SIGUSR1)  # the window opens
within()
os.kill(os.getpid(), signal.SIGUSR2)  # and closes
after()
"""

SWEEP = """
import gc
import time

def litter():
    gc.disable()
    kept = []
    for _ in range(1_000_000):
        node = {}
        node["self"] = node
        kept.append(node)
    return kept

def sweep(kept):
    del kept[:]
    started = time.process_time()
    gc.collect()
    print(time.process_time() - started)

sweep(litter())
"""


def sampled(tmp_path: Path, script: str) -> tuple[dict[str, int], str]:
    """Run ``script`` under the sampler: samples by stack, and what it printed."""
    (tmp_path / "burn.py").write_text(script)
    output = tmp_path / "burn.folded"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    done = subprocess.run(
        [sys.executable, "-m", "bench.cpu_sampler", str(output), "-m", "burn"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    stacks: dict[str, int] = {}
    for line in output.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        assert all(FRAME.match(frame) for frame in stack.split(";")), stack
        stacks[stack] = stacks.get(stack, 0) + int(n)
    return stacks, done.stdout


def test_only_cpu_spent_is_sampled_and_named_as_py_spy_names_it(tmp_path: Path) -> None:
    stacks, squeezed = sampled(tmp_path, BURN)
    counts: dict[str, int] = {}
    for stack, n in stacks.items():
        counts[stack.split(";")[-1]] = counts.get(stack.split(";")[-1], 0) + n

    def samples_in(function: str) -> int:
        return sum(n for frame, n in counts.items() if frame.startswith(f"{function} (burn.py:"))

    assert samples_in("spin") >= 40  # 0.4 s of CPU at 200 samples a second, less slack
    assert samples_in("rest") <= 2  # asleep: no CPU, hardly a sample
    # one long call into C: its timers came as one signal, its CPU is credited in full
    assert samples_in("squeeze") >= 0.8 * float(squeezed) / INTERVAL


def test_only_the_window_between_sigusr1_and_sigusr2_is_written(tmp_path: Path) -> None:
    stacks, _ = sampled(tmp_path, WINDOW)

    def samples_in(function: str) -> int:
        return sum(n for stack, n in stacks.items() if f";{function} (burn.py:" in stack)

    assert samples_in("within") >= 40
    assert samples_in("before") <= 2  # forgotten when the window opened
    assert samples_in("after") == 0  # sampled no more once it closed


def test_a_garbage_collection_is_a_frame_of_its_own_under_the_code_that_started_it(
    tmp_path: Path,
) -> None:
    stacks, collecting = sampled(tmp_path, SWEEP)

    collected = sum(
        n
        for stack, n in stacks.items()
        if ";sweep (burn.py:" in stack and stack.endswith(";collect (gc:2)")
    )
    assert collected >= 0.8 * float(collecting) / INTERVAL
    assert collected >= 10  # the collection took CPU, or the test proves nothing


def test_samples_add_up_to_the_whole_cpu_and_slivers_are_not_each_a_sample(
    tmp_path: Path,
) -> None:
    sampler = CpuSampler(tmp_path / "x.folded")
    sampler.stacks.update(
        {"a (m.py:1)": 2.4 * INTERVAL, "b (m.py:2)": 0.98 * INTERVAL}
        | {f"sliver (m.py:{n})": 0.05 * INTERVAL for n in range(4)}  # around collections
        | {"late (m.py:9)": -0.01 * INTERVAL}  # a credit the timer's order made negative
    )

    assert sampler.samples() == {"a (m.py:1)": 3, "b (m.py:2)": 1}  # 3.58 units: 4 samples
