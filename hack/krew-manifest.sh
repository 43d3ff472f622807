#!/usr/bin/env bash
# Prints the krew manifest of kubectl gang for the archives in a release
# directory (make kubectl-gang-release): build/krew/gang.yaml.tmpl with the
# version, and a platform entry per archive with its sha256.
# Usage: hack/krew-manifest.sh VERSION DIR
set -euo pipefail
version=$1 dir=$2
cd "$(dirname "$0")/.."
platforms=""
for archive in "$dir"/kubectl-gang_*.tar.gz; do
  base=$(basename "$archive" .tar.gz)
  os_arch=${base#kubectl-gang_}
  os=${os_arch%_*} arch=${os_arch#*_}
  bin=kubectl-gang
  [ "$os" = windows ] && bin=kubectl-gang.exe
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
  platforms+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: https://github.com/workload-coscheduling/workload-coscheduling/releases/download/v$version/$base.tar.gz
    sha256: $sum
    bin: $bin
"
done
[ -n "$platforms" ] || { echo "krew-manifest: no kubectl-gang_*.tar.gz in $dir" >&2; exit 1; }
manifest=$(<build/krew/gang.yaml.tmpl)
manifest=${manifest//'${VERSION}'/$version}
printf '%s\n' "${manifest//'${PLATFORMS}'/${platforms%$'\n'}}"
