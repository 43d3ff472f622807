#!/usr/bin/env bash
# Regenerates the deepcopy, conversion and defaulting code of the plugin args
# with the code-generator version pinned in hack/tools/go.mod.
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
