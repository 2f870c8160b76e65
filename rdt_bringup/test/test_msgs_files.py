"""rdt_msgs checked without ROS: the .msg/.srv files follow the rosidl naming rules, name only types that
exist in ROS 2 Jazzy (or in rdt_msgs), document every field, are all listed in CMakeLists.txt, and a
message built from them round-trips through CDR (rosbags' typestore, the same code that reads bags)."""
import re
from pathlib import Path
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

MSGS_DIR = Path(__file__).resolve().parents[2] / "rdt_msgs"

# rosidl_adapter's rules (legacy .msg/.srv syntax).
FIELD_NAME = re.compile(r"^(?!.*__)(?!.*_$)[a-z][a-z0-9_]*$")
CONSTANT_NAME = re.compile(r"^[A-Z](?:[A-Z0-9_]*[A-Z0-9])?$")
TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "string", "wstring",
}
INT_RANGES = {
    "int8": (-2**7, 2**7 - 1), "uint8": (0, 2**8 - 1), "byte": (0, 2**8 - 1), "char": (0, 2**8 - 1),
    "int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-2**31, 2**31 - 1),
    "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1),
}
LINE = re.compile(
    r"^(?P<type>[A-Za-z0-9_/]+)(?P<array>\[(?:<=)?\d*\])?\s+(?P<name>\S+?)\s*(?:=\s*(?P<value>.*?))?\s*$")


def split_comment(line: str) -> tuple[str, str]:
    """Split off a '#' comment that is not inside a quoted string constant value."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None:
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def check_definition(text: str, package: str, known_types: set[str]) -> list[str]:
    """Problems in one .msg body (or one half of a .srv), each naming the line; empty when it is valid.

    Checks what rosidl would reject (names, types, constant values) plus our rule that every field is
    documented by a comment on its line or by a comment block right above it (fields grouped under one
    comment, without a blank line between, share it).
    """
    problems, names = [], set()
    under_comment = False  # inside a block (no blank line) that starts with a comment line
    for number, raw in enumerate(text.splitlines(), start=1):
        code, comment = split_comment(raw.strip())
        if not code:
            under_comment = bool(comment) or (under_comment and bool(raw.strip()))
            continue
        m = LINE.match(code)
        if not m:
            problems.append(f"line {number}: cannot parse {raw!r}")
            continue
        type_, name, value = m["type"], m["name"], m["value"]
        if type_ not in PRIMITIVES:
            parts = type_.split("/")
            full = f"{parts[0]}/msg/{parts[-1]}" if len(parts) in (2, 3) else None
            if full is None or not TYPE_NAME.match(parts[-1]):
                problems.append(f"line {number}: type {type_!r} is neither a primitive nor pkg/Type")
            elif full not in known_types:
                problems.append(f"line {number}: unknown type {type_!r} (not in ROS 2 Jazzy nor {package})")
        if name in names:
            problems.append(f"line {number}: duplicate name {name!r}")
        names.add(name)
        if value is not None:  # constant
            if not CONSTANT_NAME.match(name):
                problems.append(f"line {number}: constant {name!r} must be UPPER_CASE")
            if type_ not in PRIMITIVES or m["array"]:
                problems.append(f"line {number}: constant {name!r} must have a primitive, non-array type")
            elif type_ in INT_RANGES:
                try:
                    lo, hi = INT_RANGES[type_]
                    if not lo <= int(value, 0) <= hi:
                        problems.append(f"line {number}: {value} out of range for {type_}")
                except ValueError:
                    problems.append(f"line {number}: {value!r} is not an integer")
            elif type_ in ("float32", "float64"):
                try:
                    float(value)
                except ValueError:
                    problems.append(f"line {number}: {value!r} is not a number")
            elif type_ == "bool" and value.lower() not in ("true", "false", "0", "1"):
                problems.append(f"line {number}: {value!r} is not a bool")
            elif type_ in ("string", "wstring") and value[:1] in "\"'" and value[-1:] != value[:1]:
                problems.append(f"line {number}: unterminated string constant {value!r}")
        else:
            if not FIELD_NAME.match(name):
                problems.append(f"line {number}: field {name!r} must be lower_snake_case "
                                "(no double or trailing underscore)")
            if not (comment or under_comment):
                problems.append(f"line {number}: field {name!r} has no comment documenting it")
    return problems


def interface_files():
    return sorted(MSGS_DIR.glob("msg/*.msg")) + sorted(MSGS_DIR.glob("srv/*.srv"))


def definition_parts(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".srv":
        parts = re.split(r"^---\s*$", text, flags=re.M)
        assert len(parts) == 2, f"{path.name}: a service needs exactly one '---' line"
        return parts
    return [text]


@pytest.fixture(scope="module")
def typestore():
    """The ROS 2 Jazzy types plus rdt_msgs' messages, parsed by rosbags."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(MSGS_DIR.glob("msg/*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"rdt_msgs/msg/{path.stem}"))
    store.register(types)
    return store


def test_the_interfaces_the_suite_needs_exist():
    assert {p.name for p in interface_files()} == {
        "ActionChunk.msg", "EpisodeStatus.msg", "PolicyStatus.msg", "ResetSim.srv", "SetInstruction.srv",
        "StartEpisode.srv"}


@pytest.mark.parametrize("path", interface_files(), ids=lambda p: p.name)
def test_interface_file_is_valid_and_documented(path):
    known = set(get_typestore(Stores.ROS2_JAZZY).types) | {
        f"rdt_msgs/msg/{p.stem}" for p in MSGS_DIR.glob("msg/*.msg")}
    assert TYPE_NAME.match(path.stem), f"{path.name}: interface names are CamelCase"
    for part in definition_parts(path):
        assert check_definition(part, "rdt_msgs", known) == []
        # rosbags' parser (a full .msg grammar) accepts it too.
        get_types_from_msg(part, f"rdt_msgs/msg/{path.stem}Part")


def test_checker_rejects_what_rosidl_rejects():
    known = set(get_typestore(Stores.ROS2_JAZZY).types)
    bad = "\n".join([
        "float32 BadField  # upper case field",
        "uint8 lower=3  # lower case constant",
        "uint8 TOO_BIG=300  # out of range",
        "geometry_msgs/Nope pose  # unknown type",
        "float64 undocumented",
        "string trailing_  # trailing underscore",
        "string[] ARR=x  # array constant",
    ])
    problems = "\n".join(check_definition(bad, "rdt_msgs", known))
    for needle in ("'BadField'", "'lower'", "out of range", "unknown type", "'undocumented' has no comment",
                   "'trailing_'", "array type"):
        assert needle in problems
    assert check_definition("# the pose\ngeometry_msgs/Pose pose\nuint8 OK=3\n", "x", known) == []


def constants(store, name):
    return {c[0]: c[2] for c in store.fielddefs[name][0]}


def test_state_constants_are_the_documented_ones(typestore):
    assert set(constants(typestore, "rdt_msgs/msg/PolicyStatus").values()) == {
        "IDLE", "WARMING_UP", "MOVING_TO_START", "RUNNING", "HOLDING", "PAUSED", "DRY_RUN", "ERROR"}
    for name, value in constants(typestore, "rdt_msgs/msg/PolicyStatus").items():
        assert name == value
    assert set(constants(typestore, "rdt_msgs/msg/EpisodeStatus").values()) == {
        "RECORDING", "IDLE", "FINALIZING", "ERROR"}


def test_action_chunk_round_trips_through_cdr(typestore):
    Chunk = typestore.types["rdt_msgs/msg/ActionChunk"]
    Header = typestore.types["std_msgs/msg/Header"]
    Time = typestore.types["builtin_interfaces/msg/Time"]
    actions = np.arange(64 * 8, dtype=np.float64).reshape(64, 8) / 7.0
    msg = Chunk(
        header=Header(stamp=Time(sec=12, nanosec=500), frame_id=""),
        joint_names=[f"joint_{i}" for i in range(1, 8)] + ["finger_joint"],
        horizon=64, dof=8, actions=actions.ravel(), control_frequency=25.0,
        ready_stamp=Time(sec=12, nanosec=300_000_500), inference_latency=np.float32(0.3),
        first_action_index=7)
    back = typestore.deserialize_cdr(typestore.serialize_cdr(msg, Chunk.__msgtype__), Chunk.__msgtype__)
    assert back.joint_names == msg.joint_names and back.first_action_index == 7
    np.testing.assert_array_equal(back.actions.reshape(back.horizon, back.dof), actions)
    assert back.ready_stamp.nanosec == 300_000_500


def test_status_messages_round_trip_through_cdr(typestore):
    Status = typestore.types["rdt_msgs/msg/PolicyStatus"]
    Episode = typestore.types["rdt_msgs/msg/EpisodeStatus"]
    Header = typestore.types["std_msgs/msg/Header"]
    Time = typestore.types["builtin_interfaces/msg/Time"]
    header = Header(stamp=Time(sec=1, nanosec=2), frame_id="")
    status = Status(header=header, state="HOLDING", hold_reason="camera cam_high stale",
                    inference_latency_ms=np.float32(310.0), inference_latency_p50_ms=np.float32(300.0),
                    inference_latency_p99_ms=np.float32(350.0), observation_names=["cam_high", "joints"],
                    observation_ages=np.array([0.4, 0.01], np.float32), max_camera_skew=np.float32(0.02),
                    chunks_received=3, chunk_index=17, instruction="pick up the cube", dry_run=False)
    back = typestore.deserialize_cdr(typestore.serialize_cdr(status, Status.__msgtype__), Status.__msgtype__)
    assert back.state == "HOLDING" and back.observation_names == ["cam_high", "joints"]
    np.testing.assert_allclose(back.observation_ages, [0.4, 0.01], rtol=1e-6)
    episode = Episode(header=header, state="RECORDING", episode_index=4, path="/tmp/episode_4.hdf5.tmp",
                      steps=100, duration=np.float32(4.0), rate=np.float32(25.0), dropped_steps=1,
                      rejected_steps=2, stream_names=["cam_high"], stream_misses=np.array([1], np.uint32),
                      stream_max_skew_ms=np.array([12.5], np.float32), message="")
    back = typestore.deserialize_cdr(typestore.serialize_cdr(episode, Episode.__msgtype__), Episode.__msgtype__)
    assert back.episode_index == 4 and list(back.stream_misses) == [1] and back.rejected_steps == 2


def test_services_have_the_documented_fields():
    fields = {}
    for path in MSGS_DIR.glob("srv/*.srv"):
        request, response = definition_parts(path)
        fields[path.stem] = tuple(
            [LINE.match(split_comment(l.strip())[0])["name"] for l in part.splitlines()
             if split_comment(l.strip())[0]] for part in (request, response))
    assert fields["SetInstruction"] == (["path_or_name"], ["success", "message"])
    assert fields["StartEpisode"] == (["instruction", "max_duration"], ["success", "message", "path"])


def test_cmake_and_package_xml_build_every_interface():
    cmake = (MSGS_DIR / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"((?:msg|srv)/\w+\.(?:msg|srv))"', cmake))
    assert listed == {str(p.relative_to(MSGS_DIR)) for p in interface_files()}
    deps = re.search(r"DEPENDENCIES([^)]*)\)", cmake).group(1).split()
    used = {m.split("/")[0] for p in interface_files()
            for m in re.findall(r"^\s*([a-z_]+)/\w+", p.read_text(), flags=re.M)}
    assert used <= set(deps), f"add {used - set(deps)} to DEPENDENCIES"
    for dep in deps:
        assert f"find_package({dep} REQUIRED)" in cmake
    root = ET.parse(MSGS_DIR / "package.xml").getroot()
    assert root.findtext("export/build_type") == "ament_cmake"
    assert "rosidl_default_generators" in [e.text for e in root.findall("buildtool_depend")]
    assert "rosidl_default_runtime" in [e.text for e in root.findall("exec_depend")]
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert set(deps) <= {e.text for e in root.findall("depend")}
