"""The package's ROS metadata and its Python metadata agree (colcon and rosdep read package.xml)."""
import re
from pathlib import Path
import xml.etree.ElementTree as ET

PKG_DIR = Path(__file__).resolve().parents[1]


def test_package_xml_names_the_package_and_ament_python():
    root = ET.parse(PKG_DIR / "package.xml").getroot()
    assert root.findtext("name") == "rdt_bringup"
    assert root.find("export/build_type").text == "ament_python"
    setup = (PKG_DIR / "setup.py").read_text()
    assert re.search(r'package_name = "rdt_bringup"', setup)
    assert root.findtext("version") in setup
