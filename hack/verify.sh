#!/usr/bin/env bash
# Fails when the tree is not gofmt-clean, go vet finds something, go.mod/go.sum
# are not tidy, or the generated code is stale.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
fail() { echo "verify: $*" >&2; status=1; }

unformatted=$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go'))
[ -z "$unformatted" ] || fail "gofmt would change: $unformatted (run gofmt -w)"

go vet ./... || fail "go vet found problems"
(cd test/e2e && go vet ./...) || fail "go vet found problems in test/e2e"
(cd hack/tools/image && go vet ./...) || fail "go vet found problems in hack/tools/image"

# The repository's modules: the scheduler, its tools (code generators and helm;
# helm-docs; the image builder;
# the control plane of the local cluster; kwok and kind) and the e2e suite,
# which has its own so that e2e-framework's newer dependencies stay out of the
# scheduler's build.
for mod in go.mod hack/tools/go.mod hack/tools/docs/go.mod hack/tools/image/go.mod hack/tools/k8s/go.mod hack/tools/clusters/go.mod test/e2e/go.mod; do
  dir=$(dirname "$mod")
  # go mod tidy -diff prints what tidy would change and fails if anything.
  (cd "$dir" && go mod tidy -diff) || fail "$mod is not tidy (run go mod tidy in $dir)"
done

generated() {
  { find apis -name 'zz_generated.*'; find pkg/generated manifests/crds manifests/podgroup-crd charts/workload-coscheduling/crds \
      charts/workload-coscheduling/files -type f; } | sort | xargs sha256sum
}
before=$(generated)
hack/update-codegen.sh
[ "$before" = "$(generated)" ] || fail "generated code was stale and has been regenerated: review and commit it"

rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
bin/helm template workload-coscheduling charts/workload-coscheduling --namespace kube-system \
  --kube-version 1.35.4 > "$rendered"
diff -u manifests/install.yaml "$rendered" >&2 || fail "manifests/install.yaml is not the chart's render (run make manifests)"

readme=charts/workload-coscheduling/README.md
before=$(sha256sum "$readme")
bin/helm-docs --chart-search-root charts --template-files README.md.gotmpl --log-level warning
[ "$before" = "$(sha256sum "$readme")" ] || fail "$readme was stale and has been regenerated (make chart-readme): review and commit it"

exit $status
