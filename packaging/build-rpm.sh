#!/usr/bin/env bash
# Builds the tideline RPM (noarch) with rpmbuild: compiles, stages dist/ with
# the production node_modules, makes the source tarball and runs the spec.
# Usage: packaging/build-rpm.sh [OUTPUT_DIR]   (default: build/rpm)
# TIDELINE_RPM_VERSION overrides package.json's version (the upgrade test
# builds two versions of one tree).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
output=$(realpath -m "${1:-build/rpm}")
version=${TIDELINE_RPM_VERSION:-$(node -p "require('./package.json').version")}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { printf 'build-rpm: version %s is not N.N.N\n' "$version" >&2; exit 2; }
say() { printf 'build-rpm: %s\n' "$*" >&2; }

command -v rpmbuild >/dev/null || { say "rpmbuild not found: install the rpm package (apt-get install rpm)"; exit 1; }

work=$(mktemp -d /var/tmp/tideline-rpm.XXXXXX)
trap 'rm -rf "$work"' EXIT
stage=$work/stage/tideline-$version
mkdir -p "$stage" "$work/SOURCES" "$output"

say "compiling"
npm run --silent build
chmod +x dist/cli/tideline.cjs

say "staging tideline $version"
cp -a dist hooks systemd docs README.md package.json package-lock.json "$stage/"
cp -a packaging/files "$stage/packaging-files"
# `tideline --version` reads package.json: it says the version the package has.
node -e 'const fs = require("fs"); const file = process.argv[1]; const pkg = JSON.parse(fs.readFileSync(file, "utf8")); pkg.version = process.argv[2]; fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");' "$stage/package.json" "$version"
say "manual page and bash completion, from the command's own help"
node dist/cli/tideline.cjs man-page --package-version "$version" > "$stage/packaging-files/tideline.1"
node dist/cli/tideline.cjs completion > "$stage/packaging-files/tideline.bash-completion"
# Production dependencies only, exactly as locked; none runs install scripts.
(cd "$stage" && timeout 600 npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
find "$stage/dist" -name '*.map' -delete
# What a distribution's own packaging would do to node_modules (rpmlint checks
# it): no dotfiles (editor, CI and git-hook settings of the dependencies),
# interpreters named by path rather than through env, and an executable bit
# only on what is a script.
find "$stage/node_modules" -name '.*' -prune -exec rm -rf {} +
# Type declarations and TypeScript sources only serve compilers; zod ships its
# sources beside three compiled copies.
find "$stage/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.ts' -o -name '*.map' \) -delete
rm -rf "$stage/node_modules/zod/src"
find "$stage/dist" "$stage/node_modules" -type f \( -name '*.js' -o -name '*.cjs' -o -name '*.mjs' -o -path '*/bin/*' -o -perm /111 \) | while read -r file; do
  first=$(head -c 64 "$file" | head -n 1)
  case $first in
    '#!/usr/bin/env node'*) sed -i '1s|^#!/usr/bin/env node|#!/usr/bin/node|' "$file"; chmod 0755 "$file" ;;
    '#!/usr/bin/env sh'*) sed -i '1s|^#!/usr/bin/env sh|#!/bin/sh|' "$file"; chmod 0755 "$file" ;;
    '#!'*) chmod 0755 "$file" ;;
    *) chmod 0644 "$file" ;;
  esac
done
tar -C "$work/stage" -czf "$work/SOURCES/tideline-$version.tar.gz" "tideline-$version"

say "rpmbuild"
timeout 600 rpmbuild -bb --quiet \
  --define "_topdir $work" \
  --define "tideline_version $version" \
  packaging/tideline.spec >&2
cp "$work"/RPMS/noarch/tideline-"$version"-*.noarch.rpm "$output/"
ls "$output"/tideline-"$version"-*.noarch.rpm
