# workload-coscheduling: kube-scheduler v1.35.4 with the WorkloadCoscheduling plugin.
# Everything here needs only Go: tools build from the module proxy (hack/tools/*/go.mod).

GO ?= go
BIN := bin
# The oldest Go that builds every module here (hack/tools/clusters needs 1.26):
# an older one stops make at once, saying so, rather than deep in a build.
GO_MIN := 1.26
GO_VERSION := $(shell $(GO) env GOVERSION 2>/dev/null)
ifeq ($(shell printf '%s\n%s\n' 'go$(GO_MIN)' '$(GO_VERSION)' | sort -V -C && echo ok),)
$(error Go $(GO_MIN) or newer is needed; '$(GO) env GOVERSION' says '$(GO_VERSION)')
endif
INTEGRATION_TIMEOUT ?= 30m
TOOLS := -modfile=hack/tools/go.mod
HELM := $(BIN)/helm
KUBE_VERSION := 1.35.4
VERSION := 0.1.0
IMAGE ?= workload-coscheduling/kube-scheduler:$(VERSION)
# The image's architectures: make image builds both, make test the first.
IMAGE_ARCHS ?= amd64
IMAGE_DIR := $(BIN)/image
comma := ,
empty :=
space := $(empty) $(empty)
# Stamped into every Kubernetes binary built here, as the release build does
# (kwokctl reads the version to pick component flags).
KUBE_LDFLAGS := -ldflags '-X k8s.io/component-base/version.gitVersion=v$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35 \
	-X k8s.io/component-base/version.gitTreeState=clean'
# The local cluster: the control plane from k8s.io/kubernetes v$(KUBE_VERSION) (hack/tools/k8s),
# kwokctl and kwok from sigs.k8s.io/kwok (hack/tools/clusters).
K8S_TOOLS := -modfile=hack/tools/k8s/go.mod
LOCAL_TOOLS := $(BIN)/kwokctl $(BIN)/kwok $(BIN)/k8s/etcd $(BIN)/k8s/kube-apiserver \
	$(BIN)/k8s/kube-controller-manager $(BIN)/k8s/default-scheduler $(BIN)/k8s/kubectl

.PHONY: all build test unit-test integration-test e2e-local e2e bench bench-smoke verify generate manifests \
	image image-archive image-test push docker-image kubectl-gang-release chart-readme clean local-tools local-up local-down demo kubectl-gang soak fuzz

all: build

## build: the scheduler binary, bin/kube-scheduler (static, as the image runs it)
build:
	CGO_ENABLED=0 $(GO) build -trimpath $(KUBE_LDFLAGS) -o $(BIN)/kube-scheduler ./cmd/scheduler

## kubectl-gang: the kubectl plugin, bin/kubectl-gang (put bin/ on PATH: kubectl gang list)
kubectl-gang:
	$(GO) build -o $(BIN)/kubectl-gang ./cmd/kubectl-gang

## kubectl-gang-release: kubectl-gang archives per platform and their krew manifest, in bin/release
KUBECTL_GANG_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
kubectl-gang-release:
	rm -rf $(BIN)/release && mkdir -p $(BIN)/release
	for platform in $(KUBECTL_GANG_PLATFORMS); do \
		os=$${platform%/*}; arch=$${platform#*/}; exe=; [ $$os = windows ] && exe=.exe; \
		dir=$(BIN)/release/kubectl-gang_$${os}_$${arch}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -o $$dir/kubectl-gang$$exe ./cmd/kubectl-gang || exit 1; \
		tar -C $$dir -czf $$dir.tar.gz kubectl-gang$$exe || exit 1; \
	done
	hack/krew-manifest.sh $(VERSION) $(BIN)/release > $(BIN)/release/gang.yaml

## demo: the samples on a live gang table; starts (and removes) the local cluster unless
## KUBECONFIG names a cluster (then SCHEDULER_NAME is the schedulerName of ours there)
SCHEDULER_NAME ?= workload-coscheduling
demo: build local-tools
	$(GO) build -o $(BIN)/demo ./cmd/demo
	$(BIN)/demo -scheduler-name $(SCHEDULER_NAME)

## local-up: a local Kubernetes $(KUBE_VERSION) cluster (kwokctl, simulated nodes) running this scheduler
local-up: build local-tools
	$(GO) build -o $(BIN)/local-cluster ./cmd/local-cluster
	$(BIN)/local-cluster up

## local-down: stop the local cluster and remove its files
local-down:
	$(GO) build -o $(BIN)/local-cluster ./cmd/local-cluster
	$(BIN)/local-cluster down

## local-tools: the binaries the local cluster runs, built from the module proxy
local-tools: $(HELM) $(LOCAL_TOOLS)

$(BIN)/kwokctl $(BIN)/kwok: hack/tools/clusters/go.mod
	$(GO) -C hack/tools/clusters build -o $(CURDIR)/$@ sigs.k8s.io/kwok/cmd/$(notdir $@)

$(BIN)/kind: hack/tools/clusters/go.mod
	$(GO) -C hack/tools/clusters build -o $(CURDIR)/$@ sigs.k8s.io/kind

$(BIN)/k8s/etcd: hack/tools/k8s/go.mod
	$(GO) build $(K8S_TOOLS) -o $@ go.etcd.io/etcd/server/v3

$(BIN)/k8s/default-scheduler: hack/tools/k8s/go.mod
	$(GO) build $(K8S_TOOLS) $(KUBE_LDFLAGS) -o $@ k8s.io/kubernetes/cmd/kube-scheduler

$(BIN)/k8s/kube-apiserver $(BIN)/k8s/kube-controller-manager $(BIN)/k8s/kubectl: hack/tools/k8s/go.mod
	$(GO) build $(K8S_TOOLS) $(KUBE_LDFLAGS) -o $@ k8s.io/kubernetes/cmd/$(notdir $@)

## test: verify, then the unit tests, the image, the integration and local end-to-end tests
test: verify unit-test image-test integration-test e2e-local

## unit-test: the pure logic (gang index, args), no API server
unit-test:
	$(GO) test -count=1 ./apis/... ./pkg/...

## integration-test: against embedded etcd and the real kube-apiserver, in process
## (the chart tests run bin/helm and bin/kube-scheduler)
integration-test: build $(HELM)
	$(GO) test -count=1 -timeout $(INTEGRATION_TIMEOUT) ./test/integration/...

## e2e-local: the end-to-end suite (test/e2e) on the local cluster
e2e-local: build local-tools
	$(GO) -C test/e2e test -count=1 -timeout 20m . -args -e2e.env=local

## e2e: the same suite on a kind cluster (needs Docker): builds the image archive, loads it,
## installs the chart with helm, deletes the cluster at the end
e2e: image-test $(HELM) $(BIN)/kind
	$(GO) -C test/e2e test -count=1 -timeout 40m . -v -args -e2e.env=kind -e2e.image=$(IMAGE) \
		-e2e.image-archive=$(CURDIR)/$(IMAGE_DIR)/kube-scheduler-linux-amd64.tar

## soak: TestReliability with a churn soak of SOAK_DURATION (make test runs it for 45s)
SOAK_DURATION ?= 10m
soak: build
	$(GO) test -count=1 -timeout 60m ./test/integration/ -run '^TestReliability$$/churn' -v -args -soak.duration=$(SOAK_DURATION)

## fuzz: each fuzz target for FUZZTIME (make test runs their seed corpora)
FUZZTIME ?= 1m
fuzz:
	$(GO) test ./apis/config/v1/ -run '^$$' -fuzz '^FuzzArgsDecoding$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/workloadref/ -run '^$$' -fuzz '^FuzzResolve$$' -fuzztime $(FUZZTIME)

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

## helm-docs: bin/helm-docs, the version pinned in hack/tools/docs/go.mod
$(BIN)/helm-docs: hack/tools/docs/go.mod
	$(GO) -C hack/tools/docs build -o $(CURDIR)/$@ github.com/norwoodj/helm-docs/cmd/helm-docs

## chart-readme: charts/workload-coscheduling/README.md from values.yaml and README.md.gotmpl
chart-readme: $(BIN)/helm-docs
	$(BIN)/helm-docs --chart-search-root charts --template-files README.md.gotmpl --log-level warning

## manifests: render the chart with its defaults into manifests/install.yaml
manifests: $(HELM)
	$(HELM) template workload-coscheduling charts/workload-coscheduling --namespace kube-system \
		--kube-version $(KUBE_VERSION) > manifests/install.yaml

## image-archive: the image without a container engine, an OCI archive per architecture of
## IMAGE_ARCHS in bin/image (the static binary on an empty base; hack/tools/image)
image-archive: $(BIN)/image-tool
	for arch in $(IMAGE_ARCHS); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath $(KUBE_LDFLAGS) \
			-o $(BIN)/linux-$$arch/kube-scheduler ./cmd/scheduler || exit 1; \
	done
	$(BIN)/image-tool -image $(IMAGE) -rootfs build/scheduler/rootfs -out $(IMAGE_DIR) -version $(VERSION) \
		-revision "$$(git rev-parse HEAD 2>/dev/null)" -created "$$(git log -1 --format=%cI 2>/dev/null)" \
		$(foreach arch,$(IMAGE_ARCHS),-binary $(arch)=$(BIN)/linux-$(arch)/kube-scheduler)

## image-test: the archives opened and checked as a cluster would run them
image-test: image-archive
	$(GO) -C hack/tools/image test -count=1 . -args -dir=$(CURDIR)/$(IMAGE_DIR) -kube-version=$(KUBE_VERSION) \
		-archs=$(subst $(space),$(comma),$(strip $(IMAGE_ARCHS)))

## image: the image for amd64 and arm64, checked (bin/image/kube-scheduler.tar names both).
## Load it: kind load image-archive bin/image/kube-scheduler-linux-amd64.tar
image: IMAGE_ARCHS := amd64 arm64
image: image-test

## push: bin/image/kube-scheduler.tar (make image) to IMAGE, as an image index, with the credentials
## of docker login (~/.docker/config.json); no Docker engine needed
push: $(BIN)/image-tool
	$(BIN)/image-tool push $(IMAGE_DIR)/kube-scheduler.tar $(IMAGE)

$(BIN)/image-tool: hack/tools/image/go.mod hack/tools/image/main.go
	$(GO) -C hack/tools/image build -o $(CURDIR)/$@ .

## docker-image: the same image built by Docker from build/scheduler/Dockerfile (needs a Docker engine)
docker-image:
	@docker info >/dev/null 2>&1 || { echo "make docker-image needs a running Docker engine, and none answers here (docker info failed)." >&2; exit 1; }
	docker build -f build/scheduler/Dockerfile --build-arg KUBE_VERSION=$(KUBE_VERSION) -t $(IMAGE) .

## verify: gofmt, go vet, go mod tidy, generated code, manifests/install.yaml and the chart README are clean
verify: $(HELM) $(BIN)/helm-docs
	hack/verify.sh

## generate: regenerate deepcopy, conversion and defaulting code of the args
generate:
	hack/update-codegen.sh

clean:
	rm -rf $(BIN) .local
