# workload-coscheduling: kube-scheduler v1.35.4 with the WorkloadCoscheduling plugin.
# Everything here needs only Go: tools build from the module proxy (hack/tools/go.mod).

GO ?= go
BIN := bin
INTEGRATION_TIMEOUT ?= 30m

.PHONY: all build test unit-test integration-test verify generate clean

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
integration-test:
	$(GO) test -timeout $(INTEGRATION_TIMEOUT) ./test/integration/...

## verify: gofmt, go vet, go mod tidy and generated code are clean
verify:
	hack/verify.sh

## generate: regenerate deepcopy, conversion and defaulting code of the args
generate:
	hack/update-codegen.sh

clean:
	rm -rf $(BIN)
