"""The supervised pool: a worker that crashes, hangs or runs out of memory costs one item, nothing more."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from childshield.hashing.batch import hash_many
from childshield.hashing.discover import Candidate
from childshield.hashing.pool import SupervisedPool
from childshield.hashing.service import HashOptions
from pool_tasks import HOG_BYTES, task, vm_size
from waiting import HANG_GUARD, join, wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")

HEADROOM = 200 << 20  # the memory limit is set this far above a fresh worker's address space


@pytest.fixture(scope="module")
def memory_limit() -> int:
    """An address-space cap 200 MB above what an idle worker already maps (which varies by machine)."""
    ((_, ok, baseline),) = SupervisedPool(vm_size, workers=1).map([0])
    assert ok and isinstance(baseline, int) and baseline > 0
    return baseline + HEADROOM


def _state(pid: int) -> str | None:
    """The process state letter from /proc (None when the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as exited); a worker left running is a hang."""
    return wait_until(lambda: _state(pid) in (None, "Z", "X"), f"worker {pid} to exit")


def test_every_kind_of_failure_costs_only_its_own_item(tmp_path: Path, memory_limit: int) -> None:
    hang_pid = tmp_path / "hang.pid"
    items: list[tuple[str, object]] = [
        ("ok", 0),
        ("ok", 1),
        ("segv", 2),
        ("ok", 3),
        ("hang", str(hang_pid)),
        ("ok", 5),
        ("hog", 6),
        ("ok", 7),
        ("exit", 7),
        ("ok", 9),
        ("raise", 10),
        ("sigkill", 11),
        ("abort", 12),
        ("ok", 13),
        ("ok", 14),
    ]
    pool = SupervisedPool(task, workers=2, timeout=4.0, memory_limit=memory_limit, batch_size=3)
    results = list(pool.map(items))

    assert [item for item, _, _ in results] == items  # every item, once, in input order
    by_kind = {item[0] if item[0] != "ok" else f"ok{item[1]}": (ok, value) for item, ok, value in results}
    for item, ok, value in results:
        if item[0] == "ok":
            assert ok and value == item[1] * 2  # type: ignore[operator]
    ok, message = by_kind["segv"]
    assert not ok and "crashed" in message and "SIGSEGV" in message
    ok, message = by_kind["abort"]
    assert not ok and "SIGABRT" in message
    ok, message = by_kind["sigkill"]
    assert not ok and "SIGKILL" in message and "killed" in message
    ok, message = by_kind["exit"]
    assert not ok and "exit code 7" in message
    ok, message = by_kind["hang"]
    assert not ok and message == "timed out after 4 s"
    ok, message = by_kind["hog"]
    assert not ok and "memory" in message
    ok, message = by_kind["raise"]
    assert not ok and message == "ValueError: bad item 10"
    # Crashes and the hang replace their worker; a Python exception and MemoryError do not.
    assert pool.restarts == 5
    # The hung worker was really stopped, not left sleeping.
    assert _gone(int(hang_pid.read_text()))


def test_rest_of_a_crashed_batch_is_retried_in_a_new_worker() -> None:
    items = [("pid", 0), ("pid", 1), ("pid", 2), ("segv", 3), ("pid", 4), ("pid", 5), ("pid", 6)]
    pool = SupervisedPool(task, workers=1, timeout=30.0, batch_size=8)
    results = list(pool.map(items))

    assert [item for item, _, _ in results] == items
    assert [ok for _, ok, _ in results] == [True, True, True, False, True, True, True]
    pids = [value[1] for _, ok, value in results if ok]  # type: ignore[index]
    assert [value[0] for _, ok, value in results if ok] == [0, 1, 2, 4, 5, 6]  # type: ignore[index]
    before, after = set(pids[:3]), set(pids[3:])
    assert len(before) == 1 and len(after) == 1 and before != after
    assert pool.restarts == 1


def test_many_items_in_order_with_sparse_failures() -> None:
    items: list[tuple[str, object]] = [("segv", k) if k % 17 == 5 else ("ok", k) for k in range(120)]
    pool = SupervisedPool(task, workers=2, timeout=30.0, batch_size=4)
    results = list(pool.map(iter(items)))  # a one-shot iterator, as discovery gives

    assert [item for item, _, _ in results] == items
    for (kind, value), ok, result in results:
        if kind == "ok":
            assert ok and result == value * 2  # type: ignore[operator]
        else:
            assert not ok and "SIGSEGV" in str(result)
    assert pool.restarts == sum(kind == "segv" for kind, _ in items)


def test_memory_limit_is_enforced_in_the_worker(memory_limit: int) -> None:
    assert HOG_BYTES > 2 * HEADROOM
    pool = SupervisedPool(task, workers=1, timeout=60.0, memory_limit=memory_limit)
    results = list(pool.map([("ok", 1), ("hog", 2), ("ok", 3)]))
    assert [(ok, value) for _, ok, value in results if ok] == [(True, 2), (True, 6)]
    _, ok, message = results[1]
    assert not ok and "memory" in str(message)
    assert pool.restarts == 0  # a MemoryError is an error for the item, not a dead worker


def test_without_a_memory_limit_the_hog_succeeds() -> None:
    """Control for the test above: the allocation fails only because of the limit."""
    pool = SupervisedPool(task, workers=1, timeout=60.0, memory_limit=None)
    ((_, ok, value),) = pool.map([("hog", 0)])
    assert ok and value == HOG_BYTES


def test_python_exceptions_do_not_restart_workers() -> None:
    items = [("raise", k) for k in range(6)]
    pool = SupervisedPool(task, workers=2, timeout=30.0, batch_size=2)
    results = list(pool.map(items))
    assert [(ok, value) for _, ok, value in results] == [
        (False, f"ValueError: bad item {k}") for k in range(6)
    ]
    assert pool.restarts == 0


def test_crashes_are_caught_without_a_timeout() -> None:
    """With no per-item timeout only the crash itself can end the wait (this once spun forever)."""
    pool = SupervisedPool(task, workers=1, timeout=None, batch_size=2)
    box: list[object] = []
    runner = threading.Thread(
        target=lambda: box.extend(pool.map([("ok", 1), ("segv", 2), ("ok", 3)])), daemon=True
    )
    runner.start()
    join(runner, "the pool to notice that its worker died")
    assert [ok for _, ok, _ in box] == [True, False, True]  # type: ignore[misc]
    assert "SIGSEGV" in str(box[1][2])  # type: ignore[index]


def test_stopping_early_leaves_no_worker_running() -> None:
    pool = SupervisedPool(task, workers=2, timeout=30.0, batch_size=2)
    stream = pool.map([("pid", k) for k in range(40)])
    seen = []
    for _, ok, value in stream:
        assert ok
        seen.append(value[1])  # type: ignore[index]
        if len(seen) == 5:
            break
    stream.close()  # what a consumer's `break` leads to when the generator is collected
    for pid in set(seen):
        assert pid != os.getpid()
        assert _gone(pid)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SupervisedPool(task, workers=0)


def test_hash_many_survives_an_out_of_memory_decode(tmp_path: Path, memory_limit: int) -> None:
    """A real image that decodes beyond the worker's memory gets an error; the files around it are hashed."""
    from hostile_samples import by_name

    samples = by_name()
    good = tmp_path / "good.png"
    good.write_bytes(samples["valid.png"].data)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(samples["bomb-real-105mp.png"].data)  # about 140 MB more address space to decode
    # In a fresh interpreter: forked from this long-lived test process, a worker inherits a heap with room
    # to spare (freed by earlier tests), where the decode fits without growing the address space at all.
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from childshield.hashing.batch import hash_many
        from childshield.hashing.discover import Candidate
        from childshield.hashing.pool import SupervisedPool
        from childshield.hashing.service import HashOptions
        from pool_tasks import vm_size

        ((_, ok, start),) = SupervisedPool(vm_size, workers=1, fork=True).map([None])
        assert ok, start
        candidates = [Candidate({str(good)!r}, True), Candidate({str(bomb)!r}, True)]
        options = HashOptions(max_pixels=200_000_000)
        for o in hash_many(candidates, options, workers=1, memory_limit=start + (64 << 20), fork=True):
            print(o.ok, str(o.error).replace("\\n", " "))
    """)
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_GUARD, check=False
    )
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and len(lines) == 2, (run.returncode, run.stdout, run.stderr[-2000:])
    assert lines[0].startswith("True") and lines[1].startswith("False") and "memory" in lines[1], lines


def test_a_worker_that_dies_while_idle_is_replaced_without_blame(tmp_path: Path) -> None:
    import functools

    from pool_tasks import die_after_returning, slow_source

    pid_file = str(tmp_path / "dying.pid")
    pool = SupervisedPool(functools.partial(die_after_returning, pid_file), workers=1, batch_size=1)
    results = list(pool.map(slow_source(6, pid_file)))
    assert results == [(i, True, i * 10) for i in range(6)]
    assert pool.restarts == 1


def test_forked_workers_crash_alone_and_are_held_to_the_memory_limit(tmp_path: Path) -> None:
    """``fork``: with no other thread running, workers are forked from this process (so a command's
    worker starts at once), a crash still costs one item, and the memory limit still holds, counting
    the address space the worker starts with (this process's)."""
    from hostile_samples import by_name

    single = threading.active_count() == 1
    pool = SupervisedPool(task, workers=1, timeout=60.0, fork=True)
    results = list(pool.map([("parent", 0), ("segv", 0), ("ok", 4)]))
    assert [ok for _, ok, _ in results] == [True, False, True] and results[2][2] == 8
    if single:
        assert results[0][2] == os.getpid()  # a child of this process, not of the forkserver
    samples = by_name()
    good = tmp_path / "good.png"
    good.write_bytes(samples["valid.png"].data)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(samples["bomb-real-105mp.png"].data)  # about 200 MB more once decoded
    # what a worker of such a pool starts with: this process's address space when forked, a fresh
    # interpreter's where a thread left running by another test made the pool use the forkserver
    ((_, started_ok, start_size),) = SupervisedPool(vm_size, workers=1, fork=True).map([None])
    assert started_ok and isinstance(start_size, int)
    cap = start_size + (64 << 20)
    candidates = [Candidate(str(good), True), Candidate(str(bomb), True)]
    outcomes = list(
        hash_many(candidates, HashOptions(max_pixels=200_000_000), workers=1, memory_limit=cap, fork=True)
    )
    assert outcomes[0].ok and not outcomes[1].ok and "memory" in str(outcomes[1].error)
