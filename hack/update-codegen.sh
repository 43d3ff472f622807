#!/usr/bin/env bash
# Regenerates the code of the plugin args (deepcopy, conversion, defaulting)
# and of the portable Workload API (deepcopy, clientset, listers, informers,
# CRD) with the code-generator and controller-tools pinned in
# hack/tools/go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."

tool() { go tool -modfile=hack/tools/go.mod "$@"; }
header=hack/boilerplate.go.txt

tool deepcopy-gen --go-header-file "$header" --output-file zz_generated.deepcopy.go \
  ./apis/config ./apis/config/v1
tool defaulter-gen --go-header-file "$header" --output-file zz_generated.defaults.go \
  ./apis/config/v1
tool conversion-gen --go-header-file "$header" --output-file zz_generated.conversion.go \
  ./apis/config/v1

# The portable Workload API (apis/scheduling/v1alpha1) and scheduler-plugins'
# PodGroup (apis/schedulerplugins/v1alpha1): deepcopy, one typed clientset,
# listers and informers under pkg/generated, and the CustomResourceDefinitions
# (controller-gen). The portable Workload's goes to manifests/crds and the
# chart's crds/ (helm installs it before the release; it never upgrades or
# deletes it); the PodGroup's to manifests/podgroup-crd and the chart's files/,
# which a template renders only when asked (the cluster may have it from
# scheduler-plugins already).
pkg=github.com/workload-coscheduling/workload-coscheduling
apis=(./apis/scheduling/v1alpha1 ./apis/schedulerplugins/v1alpha1)
tool deepcopy-gen --go-header-file "$header" --output-file zz_generated.deepcopy.go "${apis[@]}"
rm -rf pkg/generated
tool client-gen --go-header-file "$header" --clientset-name versioned --input-base "" \
  --input "$pkg/apis/scheduling/v1alpha1" --input "$pkg/apis/schedulerplugins/v1alpha1" \
  --output-dir pkg/generated/clientset --output-pkg "$pkg/pkg/generated/clientset"
tool lister-gen --go-header-file "$header" --output-dir pkg/generated/listers --output-pkg "$pkg/pkg/generated/listers" \
  "${apis[@]}"
tool informer-gen --go-header-file "$header" --versioned-clientset-package "$pkg/pkg/generated/clientset/versioned" \
  --listers-package "$pkg/pkg/generated/listers" --output-dir pkg/generated/informers --output-pkg "$pkg/pkg/generated/informers" \
  "${apis[@]}"
tool controller-gen crd:crdVersions=v1 paths=./apis/scheduling/... output:crd:dir=manifests/crds
mkdir -p charts/workload-coscheduling/crds
cp manifests/crds/*.yaml charts/workload-coscheduling/crds/
tool controller-gen crd:crdVersions=v1 paths=./apis/schedulerplugins/... output:crd:dir=manifests/podgroup-crd
mkdir -p charts/workload-coscheduling/files
cp manifests/podgroup-crd/*.yaml charts/workload-coscheduling/files/
