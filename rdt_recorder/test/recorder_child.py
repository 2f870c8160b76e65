"""A live recorder in its own process, for the crash test: records until it is killed."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rdt_core.robots import load_profile  # noqa: E402
from rdt_recorder.streams import StreamPlan  # noqa: E402
from rdt_recorder.writer import EpisodeRecorder  # noqa: E402
from recorder_testdata import LiveFeeder  # noqa: E402

if __name__ == "__main__":
    recorder = EpisodeRecorder(StreamPlan.from_profile(load_profile("kinova_gen3")), sys.argv[1],
                               flush_interval_s=float(sys.argv[2]))
    with LiveFeeder(recorder):
        temp = recorder.start(instruction="crash test")
        print(f"STARTED {temp}", flush=True)
        while True:
            time.sleep(1)
