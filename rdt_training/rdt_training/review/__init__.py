"""Look at what was recorded before training on it (console script ``rdt-dataset-review``).

    rdt-dataset-review DIR --out REVIEW_DIR        # then open REVIEW_DIR/index.html (no server)

A static page: an index of every episode (duration, the recorder's quality report, idle time, joint speed,
gripper use, thumbnails, outliers against the dataset's median; sortable), and one page per episode with
the three cameras side by side as an H.264 video, joint / gripper / timing plots on the video's time axis
with a cursor that follows playback, the alignment skew, the attributes, and the ``rdt-dataset-edit``
commands that curate it. ``--rerun FILE.rrd`` writes an episode as a rerun recording.
"""
from .build import ReviewError, build_review

__all__ = ["build_review", "ReviewError"]
