"""The simulated ALOHA speaks the aloha profile exactly, is seeded and deterministic, and renders lazily."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rdt_core.robots import load_profile
from rdt_sim.aloha import AlohaSim, CAMERAS
from rdt_sim.rendering import LazyFrame, RenderSettings


@pytest.fixture(scope="module")
def sim():
    s = AlohaSim("transfer_cube", render=RenderSettings(48, 64, shadows=False))
    yield s
    s.close()


def test_joints_gripper_units_and_cameras_are_the_aloha_profiles(sim):
    from gym_aloha.constants import normalize_puppet_gripper_position

    profile = load_profile("aloha")
    assert sim.profile.joint_names == profile.joint_names
    assert sim.camera_roles == [c.role for c in profile.cameras] and set(CAMERAS) == set(sim.camera_roles)
    q = sim.reset(3)
    assert q.shape == (14,) and np.all(q >= profile.lower) and np.all(q <= profile.upper)
    # the gripper joint's openness (profile offset/scale) is gym-aloha's normalised finger position
    left_finger = sim.data.qpos[sim.model.joint("vx300s_left/left_finger").qposadr[0]]
    openness = (q[6] - profile.joints[6].offset) / profile.joints[6].scale
    assert openness == pytest.approx(normalize_puppet_gripper_position(left_finger), abs=1e-9)
    # commanding the profile's closed / open gripper joint positions closes and opens the fingers
    for target, lo, hi in ((profile.joints[6].lower, 0.0, 0.15), (profile.joints[6].upper, 0.9, 1.0)):
        cmd = q.copy()
        cmd[[6, 13]] = target
        sim.command(cmd)
        sim.step(50)
        meas = sim.qpos()
        open_frac = (meas[[6, 13]] - profile.joints[6].offset) / profile.joints[6].scale
        assert np.all((open_frac > lo) & (open_frac < hi)), open_frac
        assert np.abs(meas[sim._arm_cols] - q[sim._arm_cols]).max() < 0.05  # the arms held their pose


def test_seeded_and_deterministic(sim):
    from gym_aloha.utils import sample_box_pose

    rng = np.random.default_rng(0)
    cmds = sim.reset(5) + rng.normal(0, 0.05, (40, 14)) * (np.arange(14) % 7 != 6)
    runs = []
    for _ in range(2):
        sim.reset(5)
        assert np.allclose(sim.object_poses()[0], sample_box_pose(5))  # gym-aloha's poses for this seed
        traj = []
        for c in cmds:
            sim.command(c)
            sim.step()
            traj.append(np.r_[sim.qpos(), sim.object_poses().ravel(), sim.time])
        runs.append(np.array(traj))
    assert np.array_equal(runs[0], runs[1])
    assert runs[0][-1, -1] == pytest.approx(40 * 0.02)
    sim.reset(6)
    assert not np.allclose(sim.object_poses()[0], sample_box_pose(5))


def test_bad_commands_are_refused_with_the_reason(sim):
    with pytest.raises(ValueError, match="14 finite values"):
        sim.command(np.full(14, np.nan))
    with pytest.raises(ValueError, match="14 finite values"):
        sim.command(np.zeros(7))


def test_frames_render_only_when_read_at_the_set_size(sim):
    sim.reset(1)
    frames = sim.frames()
    assert set(frames) == set(sim.camera_roles)
    assert not any(f.rendered for f in frames.values())
    sim.step(10)  # the frames show the state they were taken in, not the sim's current one
    imgs = {role: np.asarray(f) for role, f in frames.items()}
    assert all(f.rendered for f in frames.values())
    for img in imgs.values():
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8 and img.std() > 1
    assert not np.array_equal(imgs["cam_high"], imgs["cam_left_wrist"])
    assert np.array_equal(np.asarray(LazyFrame(sim, frames["cam_high"]._state, "top")), imgs["cam_high"])
    assert not np.array_equal(sim.render("cam_high"), imgs["cam_high"])  # the arms moved since


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_no_offscreen_gl_is_a_clear_error_naming_the_packages():
    code = """
        from rdt_sim.aloha import AlohaSim
        from rdt_sim.rendering import RenderUnavailableError
        try:
            AlohaSim("transfer_cube").render("cam_high")
        except RenderUnavailableError as e:
            print("ERROR:", e)
    """
    # EGL with no vendor library (as on a machine without Mesa's EGL)
    out = _run(code, __EGL_VENDOR_LIBRARY_FILENAMES="/nonexistent/egl_vendor.json", MUJOCO_GL="egl").stdout
    assert "ERROR:" in out and "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri" in out, out

