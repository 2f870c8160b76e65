# Fresh-machine entry points: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch on our machines; on a CUDA machine use e.g. TORCH_SPEC="torch>=2.1".
TORCH_SPEC ?= torch==2.13.0
PACKAGES := rdt_core rdt_policy_node rdt_recorder rdt_training rdt_bringup rdt_sim
STAMP := $(VENV)/.rdt-installed
# Which ROS 2 is sourced decides how the venv sees it:
# - none (a laptop): a plain venv;
# - one installed into this venv itself (../shared/ros2/install.sh .venv, then env.sh: our dev and CI machines):
#   a plain venv too; it is never re-created over itself;
# - an apt install (/opt/ros/<distro>/setup.bash: robot PC, Docker): rclpy comes through PYTHONPATH, but the
#   python3-* packages it and rosidl's generators use (empy, lark, catkin_pkg, ...) are Debian's, so the venv
#   needs --system-site-packages (switched on in an existing venv too).
ROS_IN_VENV := $(findstring $(abspath $(VENV)),$(AMENT_PREFIX_PATH))
APT_ROS := $(if $(ROS_DISTRO),$(if $(ROS_IN_VENV),,1),)
VENV_FLAGS := $(if $(APT_ROS),--system-site-packages,)

.PHONY: venv test demo bench clean

$(STAMP): requirements.txt requirements-dev.txt $(foreach p,$(PACKAGES),$(p)/setup.py)
	test -x $(PY) || python3 -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps $(foreach p,$(PACKAGES),-e $(p))
	touch $@

venv: $(STAMP)
ifneq ($(APT_ROS),)
	@grep -qx 'include-system-site-packages = true' $(VENV)/pyvenv.cfg || { \
	  sed -i 's/^include-system-site-packages = .*/include-system-site-packages = true/' $(VENV)/pyvenv.cfg; \
	  echo "ROS 2 $(ROS_DISTRO) is sourced: $(VENV) now sees the system site-packages (rclpy's Python deps)"; }
endif

test: venv
	bash scripts/colcon_test.sh

demo: venv
	$(PY) -m rdt_bringup.demo --out out/demo

bench: venv
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build install log out
