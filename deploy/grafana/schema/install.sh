#!/usr/bin/env bash
# Installs the npm packages of the dashboard schema check (package-lock.json: Grafana's own dashboard
# types, @grafana/schema, and the TypeScript compiler) into the cache, once; a second run, with the
# same lock file, downloads nothing. tests/unit/deploy/test_grafana.py finds them there.
#
#   bash deploy/grafana/schema/install.sh      prints the directory holding node_modules
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="${DRIFTLINE_CACHE_DIR:-$HOME/.cache/driftline}/grafana-schema"
if ! cmp -s "$here/package-lock.json" "$target/package-lock.json" || [[ ! -x "$target/node_modules/.bin/tsc" ]]; then
    command -v npm >/dev/null 2>&1 || { echo "install.sh: npm is missing (Debian: apt-get install npm)" >&2; exit 1; }
    mkdir -p "$target"
    cp "$here/package.json" "$here/package-lock.json" "$target/"
    echo "installing the dashboard schema check's npm packages into $target" >&2
    (cd "$target" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$target"
