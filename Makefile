# workload-coscheduling: kube-scheduler v1.35.4 with the WorkloadCoscheduling plugin.
# Everything here needs only Go: tools build from the module proxy (hack/tools/go.mod).

GO ?= go
BIN := bin
INTEGRATION_TIMEOUT ?= 30m
TOOLS := -modfile=hack/tools/go.mod
HELM := $(BIN)/helm
KUBE_VERSION := 1.35.4
IMAGE ?= workload-coscheduling/kube-scheduler:0.1.0

.PHONY: all build test unit-test integration-test bench bench-smoke verify generate manifests image clean

all: build

## build: the scheduler binary, bin/kube-scheduler
build:
	$(GO) build -o $(BIN)/kube-scheduler ./cmd/scheduler

## test: verify, then the unit and the integration tests
test: verify unit-test integration-test

## unit-test: the pure logic (gang index, args), no API server
unit-test:
	$(GO) test ./apis/... ./pkg/...

## integration-test: against embedded etcd and the real kube-apiserver, in process
## (the chart tests run bin/helm and bin/kube-scheduler)
integration-test: build $(HELM)
	$(GO) test -timeout $(INTEGRATION_TIMEOUT) ./test/integration/...

## bench: the hot-path micro-benchmarks, then TestPerformance at BENCH_SIZE (quick or full):
## this scheduler, the in-tree 1.35.4 GangScheduling plugin and plain pods, side by side
BENCH_SIZE ?= quick
bench:
	$(GO) test ./pkg/... -run '^$$' -bench . -benchmem
	$(GO) test -timeout 120m ./test/integration/ -run '^TestPerformance$$' -v -args -perf.size=$(BENCH_SIZE) \
		-perf.out=$(CURDIR)/bench-$(BENCH_SIZE).txt

## bench-smoke: TestPerformance at its smallest size (integration-test runs it too)
bench-smoke:
	$(GO) test ./test/integration/ -run '^TestPerformance$$' -args -perf.size=smoke

## helm: bin/helm, the version pinned in hack/tools/go.mod
$(HELM): hack/tools/go.mod
	$(GO) build $(TOOLS) -o $@ helm.sh/helm/v3/cmd/helm

## manifests: render the chart with its defaults into manifests/install.yaml
manifests: $(HELM)
	$(HELM) template workload-coscheduling charts/workload-coscheduling --namespace kube-system \
		--kube-version $(KUBE_VERSION) > manifests/install.yaml

## image: the container image (needs a Docker engine)
image:
	@docker info >/dev/null 2>&1 || { echo "make image needs a running Docker engine, and none answers here (docker info failed)." >&2; exit 1; }
	docker build -f build/scheduler/Dockerfile -t $(IMAGE) .

## verify: gofmt, go vet, go mod tidy, generated code and manifests/install.yaml are clean
verify: $(HELM)
	hack/verify.sh

## generate: regenerate deepcopy, conversion and defaulting code of the args
generate:
	hack/update-codegen.sh

clean:
	rm -rf $(BIN)
