# infergate — build, run, test. `make run` and `make test` are the two commands
# a fresh machine needs; everything they depend on is installed/built here.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

MODULES    := proto controlplane dataplane e2e
BIN        := $(CURDIR)/bin
# Keep Go's build cache where it is even though tests move XDG_CACHE_HOME.
export GOCACHE := $(shell go env GOCACHE)
# Heavy version-keyed builds (etcd, kube-apiserver, helm) live outside the
# clone so a fresh checkout reuses them, like Go's own build cache.
export INFERGATE_CACHE ?= $(HOME)/.cache/infergate
# Tests must not write to $HOME: client-go and friends cache under these.
TEST_ENV := XDG_CACHE_HOME=$(CURDIR)/.cache/xdg KUBECACHEDIR=$(CURDIR)/.cache/kube INFERGATE_BIN=$(BIN)

BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

GO_TEST_FLAGS ?= -count=1 -p 2 -timeout 20m

.PHONY: all build run test test-unit test-e2e test-conformance test-fuzz fuzz conformance bench bench-routing bench-routesim bench-proxy bench-controlplane proto proto-check lint boundaries tracked-files tools k8s-bins crds dashboards deploy-check clean

all: build

build:
	@mkdir -p $(BIN)
	cd controlplane && go build -o $(BIN)/controlplane ./cmd/controlplane
	cd controlplane && go build -o $(BIN)/infergatectl ./cmd/infergatectl
	cd dataplane && go build -o $(BIN)/proxy ./cmd/proxy
	cd e2e && go build -o $(BIN)/modelsim ./cmd/modelsim

# Control plane + one proxy + three simulated vLLM replicas, in the foreground.
run: build
	@examples/quickstart/run.sh

test: lint test-unit test-fuzz test-e2e test-conformance

test-unit:
	@for m in $(MODULES); do echo "== go test $$m (unit)"; (cd $$m && $(TEST_ENV) go test $(GO_TEST_FLAGS) -short ./...); done
	@echo "== go test dataplane/server on net/http's server (--http1-server stdlib)"
	cd dataplane && $(TEST_ENV) INFERGATE_TEST_HTTP1_SERVER=stdlib go test $(GO_TEST_FLAGS) -short ./server

# Every fuzz target of every module (found in the source), FUZZTIME each
# (default 60 s), one after the other; FUZZ_MATCH=regexp selects, FUZZ_SAVE=1
# keeps what the fuzzer found in the targets' testdata/fuzz corpora. See
# .ci/fuzz. `make test` runs each for a few seconds (test-fuzz).
FUZZTIME ?= 60s
fuzz:
	$(TEST_ENV) FUZZTIME=$(FUZZTIME) .ci/fuzz

test-fuzz:
	@echo "== fuzz: every target briefly (make fuzz runs them longer)"
	$(TEST_ENV) FUZZTIME=3s .ci/fuzz

test-e2e: build k8s-bins
	@echo "== go test e2e (real binaries, envtest kube-apiserver, simulator fleet)"
	cd e2e && $(TEST_ENV) KUBEBUILDER_ASSETS=$$(cat $(CURDIR)/.cache/kubebuilder-assets) go test $(GO_TEST_FLAGS) -run . ./...

# gateway-api's own conformance suite (GATEWAY-HTTP profile, features read
# from the GatewayClass status) and the Inference Extension's (profile
# Gateway, its picker lwepp built from the module proxy) against the
# control plane and proxies on envtest kube-apiservers, the harness playing
# kubelet, EndpointSlice controller and load balancer. Prints a line per
# test and a summary per suite; the full log goes to .cache/conformance/.
# `make conformance` also writes the reports to e2e/conformance/report.yaml
# and inference-report.yaml; `make test` runs both suites without them.
# CONFORMANCE_TESTS picks the suites (a go test -run pattern); pass suite
# flags with CONFORMANCE_ARGS, e.g. "-run-test=HTTPRouteWeight" (with one
# suite selected); CONFORMANCE_CHANNEL=experimental installs the
# experimental-channel Gateway API CRDs.
CONFORMANCE_TESTS ?= TestGatewayAPIConformance|TestInferenceExtensionConformance
CONFORMANCE_ARGS ?=
CONFORMANCE_CHANNEL ?= standard
define run_conformance
	@rm -rf $(CURDIR)/.cache/conformance/pods && mkdir -p $(CURDIR)/.cache/conformance/pods
	@echo "== conformance: gateway-api, inference extension (full log: .cache/conformance/go-test.log)"
	cd e2e/conformance && $(TEST_ENV) INFERGATE_CONFORMANCE=1 \
	  CONFORMANCE_REPORT=$(1) CONFORMANCE_INFERENCE_REPORT=$(2) CONFORMANCE_CHANNEL=$(CONFORMANCE_CHANNEL) \
	  CONFORMANCE_LOG_DIR=$(CURDIR)/.cache/conformance/pods KUBEBUILDER_ASSETS=$$(cat $(CURDIR)/.cache/kubebuilder-assets) \
	  go test -count=1 -parallel 16 -timeout 30m -run '$(CONFORMANCE_TESTS)' $(if $(CONFORMANCE_ARGS),-args $(CONFORMANCE_ARGS)) 2>&1 \
	  | tee $(CURDIR)/.cache/conformance/go-test.log | grep --line-buffered -E '^([0-9:]{8} conformance:|k8sbin:|\| |(ok|FAIL)\s)'
endef

conformance: build k8s-bins
	$(call run_conformance,$(CURDIR)/e2e/conformance/report.yaml,$(CURDIR)/e2e/conformance/inference-report.yaml)

test-conformance: build k8s-bins
	$(call run_conformance,,)

# etcd + kube-apiserver, the Inference Extension's conformance picker lwepp
# and its reference picker epp (the benchmark's epp strategy), built from
# the Go module proxy, cached by version. Built here, before any test runs:
# a first build takes minutes on 2 cores, which a test's own deadline
# must not pay (TestEPPStrategy timed out on a fresh machine building epp).
k8s-bins:
	@mkdir -p $(CURDIR)/.cache
	@cd e2e && go run ./cluster/cmd/k8sbin > $(CURDIR)/.cache/kubebuilder-assets
	@echo "kube-apiserver + etcd: $$(cat $(CURDIR)/.cache/kubebuilder-assets)"
	@cd e2e && echo "lwepp: $$(go run ./cluster/cmd/k8sbin -tool lwepp)"
	@cd e2e && echo "epp: $$(go run ./cluster/cmd/k8sbin -tool epp)"

# Micro-benchmarks: translation (1k routes), xDS fan-out to 10/100 proxies,
# the proxy's request path and router, picking, and the simulator's own cost.
bench:
	cd controlplane && go test -run '^$$' -bench . -benchmem ./translate ./snapshot
	cd controlplane && go test -run '^$$' -bench Fanout -benchtime 30x ./xds
	cd dataplane && go test -run '^$$' -bench . -benchmem ./...
	cd e2e && go test -run '^$$' -bench FleetStreamingCPU -benchtime 2x ./modelsim

# Routing quality: simulated fleets, 11 workloads x the registered strategies
# (baselines, ours on 1 and 4 proxies, the oracle), repeats where a verdict is
# in doubt; writes e2e/bench/results/report.md + SVGs (see e2e/bench/README.md).
bench-routing:
	cd e2e && go run ./cmd/loadgen -out bench/results

# Routing decisions in virtual time: the same 11 workloads and fleets through
# the real pickers in front of the simulator's scheduler, 15 seeds per cell,
# machine load does not change the numbers (~23 min on 2 cores); writes
# e2e/bench/results/routesim.md (see e2e/bench/README.md).
bench-routesim:
	cd e2e && go run ./cmd/routesim -seeds 15 -out bench/results

# Proxy overhead: direct vs infergate vs bare ReverseProxy vs nginx (Debian
# package, installed when missing); writes e2e/bench/results/proxy.md.
bench-proxy:
	@command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx; }
	cd e2e && go run ./bench/proxy

# The control plane at cluster scale (issue #17): a real kube-apiserver with
# 50 Gateways, 5,000 HTTPRoutes, 500 InferencePools and 10,000 Pods, the
# control plane as its own process, 100 simulated proxies; times changes to
# all affected proxies ACKed, bytes, CPU, RSS and a 100 pods/s churn. Writes
# e2e/bench/results/controlplane.md (~15 min; flags: BENCH_CP_ARGS).
BENCH_CP_ARGS ?=
bench-controlplane: build k8s-bins
	cd e2e && $(TEST_ENV) KUBEBUILDER_ASSETS=$$(cat $(CURDIR)/.cache/kubebuilder-assets) go run ./bench/controlplane -out bench/results $(BENCH_CP_ARGS)

# Chart CRDs from the module cache at the pinned versions (commit the result).
crds:
	cd e2e && go run ./deploycheck/cmd/gencrds -dir ../deploy/helm/infergate/crds

# The chart's Grafana dashboards from e2e/deploycheck/dashboards.go (commit
# the result; TestDashboardsUpToDate fails when they are stale).
dashboards:
	cd e2e && go run ./deploycheck/cmd/gendashboards -dir ../deploy/helm/infergate/dashboards

# Stale-CRD check, helm lint + template (helm v3.22.0 from the module proxy,
# cached by version), server-side dry-run of the rendered chart and the
# provisioning e2e against the envtest kube-apiserver. Also part of test-e2e.
deploy-check: k8s-bins
	cd e2e && go run ./deploycheck/cmd/gencrds -check -dir ../deploy/helm/infergate/crds
	cd e2e && $(TEST_ENV) KUBEBUILDER_ASSETS=$$(cat $(CURDIR)/.cache/kubebuilder-assets) go test $(GO_TEST_FLAGS) -run . ./deploycheck/...

# Pinned code generators, built from the Go module proxy into bin/.
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: tools
	cd proto && PATH=$(BIN):$$PATH $(BIN)/buf generate

# Fails when the checked-in generated Go differs from what the .proto files give.
proto-check: tools
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	cp -r proto/. $$tmp/; \
	(cd $$tmp && PATH=$(BIN):$$PATH $(BIN)/buf generate --template buf.gen.yaml); \
	if ! diff -r -q -x '*.proto' -x '*.yaml' -x 'go.*' proto $$tmp >/dev/null; then \
	  diff -r -x '*.proto' -x '*.yaml' -x 'go.*' proto $$tmp | head -40; \
	  echo "generated protobuf Go is stale: run 'make proto' and commit"; exit 1; fi
	@echo "protobuf Go up to date"

lint: proto-check
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && go vet ./...); done
	@for m in $(MODULES); do (cd $$m && go mod tidy -diff >/dev/null) || { echo "$$m: go.mod/go.sum not tidy: run 'go mod tidy' in $$m"; exit 1; }; done
	@echo "modules tidy"
	@$(MAKE) --no-print-directory boundaries tracked-files

# No build output in the repository: a tracked executable (ELF) or a file
# over 1 MiB is almost always a binary committed by mistake (a 92 MB
# bench-controlplane build once was). Outside a git checkout there is
# nothing to check.
tracked-files:
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "not a git checkout: tracked files not checked"; exit 0; }; \
	bad=$$(git ls-files -z | xargs -0 -r sh -c 'for f; do [ -f "$$f" ] || continue; \
	  if [ "$$(head -c4 "$$f" | od -An -tx1 | tr -d " \n")" = 7f454c46 ]; then echo "$$f: an executable"; \
	  elif [ $$(stat -c %s "$$f") -gt 1048576 ]; then echo "$$f: over 1 MiB"; fi; done' sh); \
	if [ -n "$$bad" ]; then echo "build output tracked by git (git rm --cached it, and ignore it):"; echo "$$bad"; exit 1; fi; \
	echo "no binaries or files over 1 MiB tracked"

# The planes share only the proto module (snapshot types, the contracts both
# validate with, the xDS client): no package of one plane — tests included —
# imports the other, and proto imports neither.
define check_boundary
	@bad=$$(cd $(1) && go list -deps -test ./... | grep -E '^github.com/infergate/infergate/($(2))(/|$$)' || true); \
	if [ -n "$$bad" ]; then echo "$(1) must not import $(2):"; echo "$$bad"; \
	  (cd $(1) && go list -test -f '{{.ImportPath}}: {{join .Imports " "}}' ./... | grep -E 'infergate/infergate/($(2))' | head -20); exit 1; fi
endef
boundaries:
	$(call check_boundary,controlplane,dataplane)
	$(call check_boundary,dataplane,controlplane)
	$(call check_boundary,proto,dataplane|controlplane|e2e)
	@echo "plane boundaries hold (controlplane ↮ dataplane; proto imports neither)"

clean:
	rm -rf $(BIN) $(CURDIR)/.cache
