#!/usr/bin/env bash
# Ensure a Python 2.7 virtualenv with the Autobahn|Testsuite exists and print
# the path of its `wstest` (the only thing written to stdout).
#
#   scripts/autobahn-setup.sh            # -> /root/.cache/wsx-autobahn-venv/bin/wstest
#
# Environment:
#   WSX_AUTOBAHN_VENV  venv location (default: $HOME/.cache/wsx-autobahn-venv)
#   WSX_PYTHON2        Python 2.7 interpreter to build the venv with
#                      (default: $(pyenv root)/versions/2.7.18/bin/python, or
#                      $PYENV_ROOT / $HOME/.pyenv when pyenv is not on PATH)
#
# The suite only runs on Python 2.7 (see the README, "What ./scripts/test.sh needs"). An existing
# venv is reused when its wstest runs and reports the pinned version;
# otherwise it is (re)created, which takes about 2 minutes and needs PyPI.
set -euo pipefail

AUTOBAHN_VERSION=25.10.1
VENV=${WSX_AUTOBAHN_VENV:-$HOME/.cache/wsx-autobahn-venv}
WSTEST=$VENV/bin/wstest

log() { echo "autobahn-setup: $*" >&2; }

# True when $WSTEST runs and is the pinned suite version.
wstest_works() {
    [[ -x $WSTEST ]] || return 1
    local out
    out=$("$WSTEST" --autobahnversion 2>&1) || return 1
    grep -q "AutobahnTestSuite ${AUTOBAHN_VERSION}\$" <<<"$out"
}

find_python2() {
    if [[ -n ${WSX_PYTHON2:-} ]]; then
        echo "$WSX_PYTHON2"
        return
    fi
    local roots=()
    if command -v pyenv >/dev/null 2>&1; then
        roots+=("$(pyenv root)")
    fi
    roots+=("${PYENV_ROOT:-$HOME/.pyenv}" "$HOME/.pyenv")
    local r
    for r in "${roots[@]}"; do
        if [[ -x $r/versions/2.7.18/bin/python ]]; then
            echo "$r/versions/2.7.18/bin/python"
            return
        fi
    done
    return 1
}

# Serialise concurrent setups (e.g. two scripts started at once) on the same venv.
mkdir -p "$(dirname "$VENV")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV.lock"
    flock 9
fi

if wstest_works; then
    log "reusing $VENV"
    echo "$WSTEST"
    exit 0
fi

PY2=$(find_python2) || {
    log "ERROR: no Python 2.7.18 found (tried pyenv root, \$PYENV_ROOT, \$HOME/.pyenv); set WSX_PYTHON2"
    exit 1
}
log "using $PY2 ($("$PY2" --version 2>&1))"

if [[ -e $VENV ]]; then
    # Only ever delete something that looks like a virtualenv (or is empty).
    if [[ -d $VENV ]] && rmdir "$VENV" 2>/dev/null; then
        :
    elif [[ -f $VENV/pyvenv.cfg || -f $VENV/bin/activate ]]; then
        log "existing $VENV is broken or has another suite version; recreating it"
        rm -rf "$VENV"
    else
        log "ERROR: $VENV exists but is not a virtualenv; refusing to touch it"
        exit 1
    fi
fi

# Exactly the sequence from shared/README.md (virtualenv into the user site of
# the pyenv Python, then a venv with the pinned suite).
if ! "$PY2" -m virtualenv --version >/dev/null 2>&1; then
    log "installing virtualenv for $PY2"
    "$PY2" -m pip install --user virtualenv >&2
fi
log "creating venv $VENV"
if ! { "$PY2" -m virtualenv "$VENV" >&2 &&
    "$VENV/bin/pip" install "autobahntestsuite==${AUTOBAHN_VERSION}" >&2; }; then
    log "ERROR: venv creation failed; removing the half-built $VENV"
    rm -rf "$VENV"
    exit 1
fi

if ! wstest_works; then
    log "ERROR: $WSTEST does not work after installation:"
    "$WSTEST" --autobahnversion >&2 || true
    exit 1
fi
log "installed AutobahnTestSuite ${AUTOBAHN_VERSION} in $VENV"
echo "$WSTEST"
