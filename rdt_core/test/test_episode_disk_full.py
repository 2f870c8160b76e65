"""A really full disk (a 20 MiB tmpfs, or a per-file size limit where mounting is not allowed): the writing
process lives on, and every step committed before the disk filled is in the episode after close or recover."""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from rdt_core.episode import (DiskFullError, EpisodeMeta, EpisodeReader, EpisodeWriter, encode_jpeg, recover,
                              temp_path_for, validate_episode)
from rdt_core.testing import small_disk

MiB = 2 ** 20

WRITER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from rdt_core.episode import DiskFullError, EpisodeMeta, EpisodeWriter, encode_jpeg
    final, min_free, flush_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    cams = ["cam_high", "cam_right_wrist", "cam_left_wrist"]
    meta = EpisodeMeta(robot="test_bot", joint_names=["a", "b"], camera_names=cams, control_frequency=25.0)
    rng = np.random.default_rng(0)
    noise = [encode_jpeg(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in range(8)]  # ~40 KB each
    w = EpisodeWriter(final, meta, flush_interval_s=flush_s, min_free_bytes=min_free)
    i, t0 = 0, time.monotonic()
    try:
        while i < 100000:          # 100 steps/s of three ~40 KB frames: 12 MB/s, the disk fills in seconds
            w.append(1_000 + i, [i, -i], [i + 1, -i], {c: noise[(i + k) % 8] for k, c in enumerate(cams)})
            i += 1
            time.sleep(max(0.0, t0 + i / 100 - time.monotonic()))
    except OSError as exc:
        print(json.dumps({"stopped": i, "flushed": w.flushed_steps, "error": type(exc).__name__,
                          "message": str(exc)}), flush=True)
    try:
        path = w.close()
        print(json.dumps({"closed": str(path)}), flush=True)
    except Exception as exc:
        print(json.dumps({"close_failed": type(exc).__name__, "message": str(exc)}), flush=True)
    print(json.dumps({"alive": True}), flush=True)
""")


def run_writer(disk, final, min_free, flush_s):
    proc = subprocess.run([sys.executable, "-c", WRITER_SCRIPT, str(final), str(min_free), str(flush_s)],
                          capture_output=True, text=True, timeout=300, **disk.popen_kwargs())
    assert proc.returncode == 0, f"the writer process died ({proc.returncode}):\n{proc.stderr[-2000:]}"
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines and lines[-1] == {"alive": True}, proc.stdout + proc.stderr
    return {k: v for ln in lines for k, v in ln.items()}


def check_steps(path, flushed):
    rep = validate_episode(path)
    assert rep.ok, str(rep)
    with EpisodeReader(path) as r:
        assert r.num_steps >= flushed
        np.testing.assert_array_equal(r.timestamps, 1_000 + np.arange(r.num_steps))
        np.testing.assert_array_equal(r.qpos[:, 0], np.arange(r.num_steps))
    return rep.num_steps


@pytest.mark.parametrize("kind", ["auto", "rlimit"])
@pytest.mark.parametrize("min_free,flush_s", [(0, 0.0), (0, 0.5), (4 * MiB, 0.5)])
def test_any_threshold_on_a_small_disk_keeps_the_process_and_every_committed_step(tmp_path, min_free, flush_s, kind):
    """"auto": a 20 MiB tmpfs where mounting is permitted (the free-space check stops the episode while there
    is room to build it); "rlimit": a 20 MiB per-file limit (writes fail; every committed step is kept)."""
    with small_disk(tmp_path, kind=kind) as disk:
        final = disk.path / "episode_0.hdf5"
        out = run_writer(disk, final, min_free, flush_s)
        assert out["flushed"] > 10 and "stopped at" in out["message"], out
        if disk.kind == "tmpfs":   # stopped by the free-space check, with room to build the HDF5 file
            assert out["error"] == "DiskFullError" and out.get("closed") == str(final), out
        elif "closed" not in out:  # a write failed at the limit (SQLite: "disk I/O error"); so did the build
            assert out["close_failed"] == "DiskFullError" and "free at least" in out["message"], out
            assert recover(temp_path_for(final)) == final
        assert check_steps(final, out["flushed"]) == out["flushed"]
        assert sorted(p.name for p in disk.path.iterdir()) == ["episode_0.hdf5"]


def test_a_filler_process_taking_the_disk_never_loses_a_committed_step(tmp_path):
    with small_disk(tmp_path) as disk:
        if disk.kind != "tmpfs":
            pytest.skip("a filler process needs a real small filesystem (mount is not permitted here); the "
                        "size-limit variant is covered by the threshold test")
        final = disk.path / "episode_0.hdf5"
        filler = disk.path / "filler.bin"
        stop = threading.Event()

        def fill():       # another writer takes the space (8 MB/s) while the episode is being recorded
            while not temp_path_for(final).exists() and not stop.is_set():
                time.sleep(0.01)
            time.sleep(1.0)
            with open(filler, "wb") as f:
                while not stop.is_set():
                    try:
                        f.write(os.urandom(256 * 1024))
                        f.flush()
                    except OSError:
                        pass
                    time.sleep(0.03)
        t = threading.Thread(target=fill, daemon=True)
        t.start()
        try:
            out = run_writer(disk, final, 0, 0.5)
        finally:
            stop.set()
            t.join()
        assert out["error"] == "DiskFullError", out
        if "closed" not in out:                        # no room left to build it: the log says what to free
            assert out["close_failed"] == "DiskFullError" and "free at least" in out["message"], out
            assert temp_path_for(final).exists() and not final.exists()
            with pytest.raises(DiskFullError, match=r"free at least \d+ MiB more") as err:
                recover(temp_path_for(final))           # still full: a sentence, not an HDF5 message
            assert "HDF5" not in str(err.value) and temp_path_for(final).exists()
            filler.unlink()
            assert recover(temp_path_for(final)) == final
        filler.unlink(missing_ok=True)
        assert check_steps(final, out["flushed"]) >= out["flushed"]
        assert sorted(p.name for p in disk.path.iterdir()) == ["episode_0.hdf5"]


def test_no_room_even_for_the_header_is_a_sentence_at_close_and_at_recover(tmp_path):
    """The disk full to the last byte when the HDF5 file is built (another process took it): close and recover
    say how much to free instead of HDF5's "Unable to synchronously create file", and keep the steps."""
    with small_disk(tmp_path) as disk:
        if disk.kind != "tmpfs":
            pytest.skip("filling a disk to the last byte needs a real small filesystem; mount is not permitted here")
        final = disk.path / "episode_0.hdf5"
        meta = EpisodeMeta(robot="test_bot", joint_names=["a", "b"], camera_names=["cam_high"],
                           control_frequency=25.0)
        frame = encode_jpeg(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
        w = EpisodeWriter(final, meta, flush_interval_s=0.0, min_free_bytes=0)
        for i in range(30):
            w.append(1_000 + i, [i, -i], [i + 1, -i], {"cam_high": frame})
        w.flush()
        filler = disk.path / "filler.bin"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)    # every byte that is left (unbuffered writes)
        try:
            for size in (64 * 1024, 1):
                try:
                    while os.write(fd, b"x" * size):
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)
        with pytest.raises(DiskFullError, match=r"free at least \d+ MiB more") as at_close:
            w.close()
        with pytest.raises(DiskFullError, match=r"free at least \d+ MiB more") as at_recover:
            recover(temp_path_for(final))
        for err in (at_close, at_recover):
            assert "HDF5" not in str(err.value) and "Unable to" not in str(err.value), err.value
        assert temp_path_for(final).exists() and not final.exists()
        filler.unlink()
        assert recover(temp_path_for(final)) == final
        assert check_steps(final, 30) == 30
        assert sorted(p.name for p in disk.path.iterdir()) == ["episode_0.hdf5"]
