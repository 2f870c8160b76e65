# Fresh-machine entry points: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch on our machines; on a CUDA machine use e.g. TORCH_SPEC="torch>=2.1".
TORCH_SPEC ?= torch==2.13.0
PACKAGES := rdt_core rdt_policy_node rdt_recorder rdt_training rdt_bringup rdt_sim
STAMP := $(VENV)/.rdt-installed
# With ROS 2 sourced the venv must see rclpy and the generated messages.
VENV_FLAGS := $(if $(ROS_DISTRO),--system-site-packages,)

.PHONY: venv test demo bench clean

$(STAMP): requirements.txt requirements-dev.txt $(foreach p,$(PACKAGES),$(p)/setup.py)
	python3 -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps $(foreach p,$(PACKAGES),-e $(p))
	touch $@

venv: $(STAMP)

test: venv
	bash scripts/colcon_test.sh

demo: venv
	$(PY) -m rdt_bringup.demo --out out/demo

bench: venv
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build install log out
