#!/usr/bin/env bash
# The whole test suite: every Rust test, then the official Azure Batch SDK conformance suite
# against a freshly built server. Exits non-zero as soon as any stage fails.
#
#   bash scripts/test.sh [PYTEST ARGS...]     e.g. -k quickstart, -x
#
# Environment:
#   OPENBATCH_BIN     server binary for the conformance suite (default: the debug build made here)
#   CARGO_TARGET_DIR  honoured, as cargo does
#   PYTHON            interpreter used to create the venv (default: python3)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root="$PWD"

stage() {
    printf '\n==== %s ====\n\n' "$*" >&2
}

trap 'status=$?; if [ "$status" -ne 0 ]; then printf "\n==== FAILED (exit %s) ====\n" "$status" >&2; fi' EXIT

stage "1/4 Rust tests: cargo test --workspace"
cargo test --workspace

stage "2/4 Build the server: cargo build -p openbatch"
cargo build -p openbatch

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo_root/$target_dir" ;;
esac
export OPENBATCH_BIN="${OPENBATCH_BIN:-$target_dir/debug/openbatch}"

stage "3/4 Python venv for the conformance suite: .venv-conformance"
venv="$repo_root/.venv-conformance"
requirements="$repo_root/tests/conformance/requirements.txt"
# The stamp is a copy of the requirements the venv was built from: when they change, reinstall.
stamp="$venv/.installed-requirements.txt"
# A venv whose creation was interrupted (or made without ensurepip) has a python but no pip:
# start that one over.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
if ! cmp -s "$requirements" "$stamp"; then
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
    cp "$requirements" "$stamp"
else
    echo "up to date (requirements unchanged since the last install)" >&2
fi

stage "4/4 Conformance suite: pytest tests/conformance (OPENBATCH_BIN=$OPENBATCH_BIN)"
"$venv/bin/python" -m pytest tests/conformance -q "$@"

stage "all tests passed"
