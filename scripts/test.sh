#!/usr/bin/env bash
# The whole test suite: the test tools first (Python venvs, with moto's S3 server; Azurite), then
# every Rust test (the storage backends' tests use Azurite and moto from where this script installs
# them), then the official Azure Batch SDK conformance suites against a freshly built server:
# azure-batch 15.x (tests/conformance, with Azurite as blob storage) and azure-batch 14.x
# (tests/conformance/sdk14, its own venv). Exits non-zero as soon as any stage fails.
#
#   bash scripts/test.sh [PYTEST ARGS...]     e.g. -k quickstart, -x   (given to both suites)
#
# Environment:
#   OPENBATCH_BIN     server binary for the conformance suites (default: the debug build made here)
#   CARGO_TARGET_DIR  honoured, as cargo does
#   PYTHON            interpreter used to create the venvs (default: python3)
#   AZURITE_BLOB_BIN  an azurite-blob to use instead of installing one with npm
#   MOTO_SERVER_BIN   a moto_server for the S3 backend tests (default: the one in .venv-conformance)
#
# Needs: Rust, python3 with venv, Node.js and npm (for Azurite). .ci/run installs what is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root="$PWD"

stage() {
    printf '\n==== %s ====\n\n' "$*" >&2
}

trap 'status=$?; if [ "$status" -ne 0 ]; then printf "\n==== FAILED (exit %s) ====\n" "$status" >&2; fi' EXIT

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo_root/$target_dir" ;;
esac
export OPENBATCH_BIN="${OPENBATCH_BIN:-$target_dir/debug/openbatch}"

# ensure_venv VENV REQUIREMENTS: a venv with exactly REQUIREMENTS installed, reused while they are
# unchanged. The stamp is a copy of the requirements the venv was built from.
ensure_venv() {
    local venv="$1" requirements="$2"
    local stamp="$venv/.installed-requirements.txt"
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
        echo "$(basename "$venv"): up to date (requirements unchanged since the last install)" >&2
    fi
}

stage "1/6 Python venvs: .venv-conformance (azure-batch 15.x), .venv-conformance-14 (azure-batch 14.x)"
venv="$repo_root/.venv-conformance"
venv14="$repo_root/.venv-conformance-14"
ensure_venv "$venv" "$repo_root/tests/conformance/requirements.txt"
ensure_venv "$venv14" "$repo_root/tests/conformance/requirements-14.txt"

stage "2/6 Azurite (blob storage emulator): npm ci into tests/conformance/.work"
if [ -n "${AZURITE_BLOB_BIN:-}" ]; then
    echo "using AZURITE_BLOB_BIN=$AZURITE_BLOB_BIN" >&2
else
    # tests/conformance/azurite holds package.json and package-lock.json (azurite pinned, and every
    # transitive package with it). The stamp is a copy of the lockfile written after a successful
    # install: reinstall when the committed one changes or the install is missing or incomplete.
    azurite_src="$repo_root/tests/conformance/azurite"
    work="$repo_root/tests/conformance/.work"
    stamp="$work/node_modules/.openbatch-installed-lock.json"
    if [ -x "$work/node_modules/.bin/azurite-blob" ] && cmp -s "$azurite_src/package-lock.json" "$stamp"; then
        echo "up to date (package-lock.json unchanged since the last install)" >&2
    else
        if ! command -v npm >/dev/null 2>&1; then
            echo "npm not found: Azurite needs Node.js and npm (Debian: apt-get install nodejs npm;" \
                ".ci/run installs them)" >&2
            exit 1
        fi
        mkdir -p "$work"
        cp "$azurite_src/package.json" "$azurite_src/package-lock.json" "$work/"
        npm ci --prefix "$work" --no-audit --no-fund --loglevel=error
        cp "$azurite_src/package-lock.json" "$stamp"
    fi
fi

# The storage crate's tests start Azurite and moto's S3 server themselves (and skip, saying so,
# when they are missing).
export MOTO_SERVER_BIN="${MOTO_SERVER_BIN:-$venv/bin/moto_server}"
if [ -n "${AZURITE_BLOB_BIN:-}" ]; then export AZURITE_BLOB_BIN; fi

stage "Dashboard: node --test tests/dashboard (the browser's Shared Key signing, reference vectors)"
if ! command -v node >/dev/null 2>&1; then
    echo "node not found: the dashboard's tests need Node.js (.ci/run installs it)" >&2
    exit 1
fi
node --test tests/dashboard/*.test.mjs

stage "3/6 Rust tests: cargo test --workspace"
cargo test --workspace

stage "4/6 Build the server: cargo build -p openbatch"
cargo build -p openbatch

# run_suite NAME PYTHON PATH [PYTEST ARGS...]: pytest's "no tests collected" (exit 5) is a
# failure, except when the caller narrowed the run with their own arguments (-k matching only
# the other suite's tests).
run_suite() {
    local name="$1" python="$2" path="$3"
    shift 3
    local status=0
    "$python" -m pytest "$path" -q "$@" || status=$?
    if [ "$status" -eq 5 ] && [ "$#" -gt 0 ]; then
        echo "$name: no test matched the given arguments" >&2
        return 0
    fi
    return "$status"
}

stage "5/6 Conformance suite, azure-batch 15.x: pytest tests/conformance (OPENBATCH_BIN=$OPENBATCH_BIN)"
run_suite "azure-batch 15.x" "$venv/bin/python" tests/conformance "$@"

stage "6/6 Conformance suite, azure-batch 14.x: pytest tests/conformance/sdk14"
run_suite "azure-batch 14.x" "$venv14/bin/python" tests/conformance/sdk14 "$@"

stage "all tests passed"
