#!/usr/bin/env bash
# Builds the tideline RPM (noarch) with rpmbuild: compiles, stages dist/ with
# the production node_modules, makes the source tarball and runs the spec.
# Usage: packaging/build-rpm.sh [OUTPUT_DIR]   (default: build/rpm)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
output=$(realpath -m "${1:-build/rpm}")
version=$(node -p "require('./package.json').version")
say() { printf 'build-rpm: %s\n' "$*" >&2; }

command -v rpmbuild >/dev/null || { say "rpmbuild not found: install the rpm package (apt-get install rpm)"; exit 1; }

work=$(mktemp -d /var/tmp/tideline-rpm.XXXXXX)
trap 'rm -rf "$work"' EXIT
stage=$work/stage/tideline-$version
mkdir -p "$stage" "$work/SOURCES" "$output"

say "compiling"
npx --no-install tsc -p tsconfig.json
chmod +x dist/src/cli/main.js

say "staging tideline $version"
cp -a dist hooks systemd docs README.md package.json package-lock.json "$stage/"
cp -a packaging/files "$stage/packaging-files"
# Production dependencies only, exactly as locked; none runs install scripts.
(cd "$stage" && timeout 600 npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
find "$stage/dist" -name '*.map' -delete
tar -C "$work/stage" -czf "$work/SOURCES/tideline-$version.tar.gz" "tideline-$version"

say "rpmbuild"
timeout 600 rpmbuild -bb --quiet \
  --define "_topdir $work" \
  --define "tideline_version $version" \
  packaging/tideline.spec >&2
cp "$work"/RPMS/noarch/tideline-"$version"-*.noarch.rpm "$output/"
ls "$output"/tideline-"$version"-*.noarch.rpm
