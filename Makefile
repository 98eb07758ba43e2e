# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install ssdd, run the demo study (`ssdd reproduce -c study_demo`): teacher ->
#               MKDT's experts -> distill (Boost, KRR-ST, MKDT, random) -> evaluate -> report on scikit-learn's
#               digits (CPU)
#   make test   create .venv, install ssdd with its test extras, run ruff and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ssdd-installed
PACKS  ?= ../shared/data

.PHONY: install demo test lint data benchmark clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ssdd check
	$(BIN)/ssdd reproduce --config study_demo
	@echo "demo finished: runs/demo/report.html (open it in a browser) and runs/demo/report.md;" \
	  "every stage is cached under runs/demo/, so a second 'make demo' takes seconds"

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Decode the packed real datasets beside the checkout into data/ (needed by benchmarks, not by tests).
data: $(STAMP)
	@test -f $(PACKS)/unpack.py || { echo "make data: no packed datasets at PACKS=$(PACKS) (only the development" \
	  "workspace has them): set PACKS=DIR, or give data.* your own copy (README, 'Data': data.source=torchvision" \
	  "with data.download=true, or a .npz written by ssdd.data.save_npz)"; exit 2; }
	@for name in cifar100 cifar10 flowers102_32; do \
	  test -f data/$$name.npz || $(BIN)/python $(PACKS)/unpack.py $$name data/$$name.npz; done

TEACHER ?= artifacts/teachers/cifar100_convnet32_cpu
benchmark: $(STAMP) data
	$(BIN)/python benchmarks/teacher_throughput.py --images 1280 \
	  --models resnet18:64 resnet18:16 resnet10:32 convnet:128:3:flatten convnet:32:3:pool --projector "[1024,1024,1024]"
	$(BIN)/python benchmarks/teacher_probe.py $(TEACHER)
	$(BIN)/python benchmarks/augment_vs_kornia.py
	$(BIN)/python benchmarks/distill_speed.py --teacher $(TEACHER) --m 100 1000 --steps 10 --batch-size 256 \
	  --pool-width 32 --out benchmarks/results/distill_speed_cpu_preset.json
	$(BIN)/python benchmarks/boost_speed.py --config distill_boost_cpu --teacher $(TEACHER) --budget 100 --steps 5

clean:
	rm -rf runs .pytest_cache .ruff_cache
