#!/usr/bin/env bash
# Build KenLM's lmplz, build_binary and query into .tools/kenlm/ and install the `kenlm` Python module into the
# active virtual environment, both from PyPI's kenlm source package. See scripts/kenlm/README.md.
#
#   . .venv/bin/activate && bash scripts/kenlm/build.sh
#
# Environment: KENLM_VERSION (default 0.3.0), KENLM_TOOLS_DIR (default <repo>/.tools/kenlm), JOBS (default 2).
set -euo pipefail

KENLM_VERSION="${KENLM_VERSION:-0.3.0}"
JOBS="${JOBS:-2}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_DIR="${KENLM_TOOLS_DIR:-$REPO_ROOT/.tools/kenlm}"
APT_PACKAGES=(
    build-essential cmake
    libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
    zlib1g-dev libbz2-dev liblzma-dev
)

die() { echo "build.sh: $*" >&2; exit 1; }
stage() { echo "== [${SECONDS} s] $*"; }

[[ -n "${VIRTUAL_ENV:-}" ]] || die "activate the project's virtual environment first (. .venv/bin/activate)"
command -v pip >/dev/null || die "pip not found in the active environment"

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    stage "installing Debian packages: ${missing[*]}"
    sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

sdist="$TOOLS_DIR/kenlm-$KENLM_VERSION.tar.gz"
if [[ ! -f "$sdist" ]]; then
    stage "downloading the kenlm $KENLM_VERSION source package"
    mkdir -p "$TOOLS_DIR"
    # `--no-binary kenlm`, not `:all:`: the latter would also compile kenlm's build dependency cmake from source.
    pip download "kenlm==$KENLM_VERSION" --no-binary kenlm --no-deps --dest "$TOOLS_DIR"
fi

src="$TOOLS_DIR/src"
rm -rf "$src"
mkdir -p "$src"
tar -xzf "$sdist" -C "$src" --strip-components=1
[[ -f "$src/lm/builder/lmplz_main.cc" ]] \
    || die "$sdist has no estimation sources (lm/builder/lmplz_main.cc); lmplz cannot be built from it"

stage "building lmplz, build_binary and query (-j$JOBS)"
cmake -S "$src" -B "$TOOLS_DIR/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6
cmake --build "$TOOLS_DIR/build" --parallel "$JOBS" --target lmplz build_binary query

installed="$(python -c 'import importlib.metadata as m; print(m.version("kenlm"))' 2>/dev/null || true)"
if [[ "$installed" == "$KENLM_VERSION" ]]; then
    stage "kenlm $KENLM_VERSION is already installed in $VIRTUAL_ENV"
else
    stage "installing the kenlm Python module into $VIRTUAL_ENV"
    pip install "$sdist"
fi
python -c "import kenlm" || die "the kenlm module was installed but does not import"

bin="$TOOLS_DIR/build/bin"
for tool in lmplz build_binary query; do
    [[ -x "$bin/$tool" ]] || die "$bin/$tool was not built"
done
stage "done"
echo "KenLM binaries: $bin (lmplz, build_binary, query)"
echo "benchmarks/kenlm_peer.py finds them there; elsewhere, set KENLM_BIN=$bin"
