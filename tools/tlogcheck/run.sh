#!/bin/sh
# Check the live transparency log with Go's reference implementation (tlogcheck), end to end:
# build tlogcheck, start `avatar-registry run` in a fresh DATA_DIR, make registrations and changes through the
# API, then verify checkpoint, proofs, tiles and entry bundles with Go's x/mod sumdb note and tlog, a
# certificate with `log verify`, and two monitor polls. Needs golang-go and golang-golang-x-mod-dev (Debian).
set -eu
cd "$(dirname "$0")/../.."
BIN="${TMPDIR:-/tmp}/tlogcheck"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${TMPDIR:-/tmp}/tlogcheck-gocache" go build -o "$BIN" ./tools/tlogcheck
exec .venv/bin/python tools/tlogcheck/live_check.py --tlogcheck "$BIN" "$@"
