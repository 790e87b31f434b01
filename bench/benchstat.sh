#!/usr/bin/env bash
# Compares herald's hot-path micro-benchmarks between two commits with
# benchstat: WebSocket frame encode/decode and prepared fan-out (ws), hub
# fan-out to 10k subscribers (internal/hub), JSON push encode, command
# decode and TCP frame decode (internal/wire), netpoll writev fan-out
# (internal/netpoll).
#
#   bench/benchstat.sh                 HEAD against the working tree
#   bench/benchstat.sh OLD             commit OLD against the working tree
#   bench/benchstat.sh OLD NEW         two commits
#
# Each commit is checked out with `git worktree add --detach` in a
# temporary directory (removed on exit). BENCHSTAT_CHECKOUT=archive
# extracts it with `git archive` instead, which leaves the repository's
# metadata untouched. COUNT (default 6) and BENCHTIME (default 200ms)
# are passed to go test; keep them small on a shared machine.
set -euo pipefail

old=${1:-HEAD}
new=${2:-}
count=${COUNT:-6}
benchtime=${BENCHTIME:-200ms}
checkout=${BENCHSTAT_CHECKOUT:-worktree}
pattern='^Benchmark(FrameEncode|FrameDecode|PreparedFanout|Fanout10k|AppendPushPublication|DecodeCommand|FrameDecoder|WriteFanout)$'
packages=(./ws ./internal/hub ./internal/wire ./internal/netpoll)

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
benchdir="$root/bench"
tmp=$(mktemp -d)
worktrees=()
cleanup() {
	for w in "${worktrees[@]}"; do
		git -C "$root" worktree remove --force "$w" >/dev/null 2>&1 || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# tree COMMIT DIR: a checkout of COMMIT at DIR.
tree() {
	if [ "$checkout" = archive ]; then
		mkdir -p "$2"
		git -C "$root" archive "$1" | tar -x -C "$2"
	else
		git -C "$root" worktree add --detach "$2" "$1" >/dev/null
		worktrees+=("$2")
	fi
}

# run DIR OUT: the benchmarks of the tree at DIR into OUT.
run() {
	echo "benchmarking $1 (count $count, benchtime $benchtime)" >&2
	(cd "$1" && go test -run '^$' -bench "$pattern" -benchmem -count "$count" -benchtime "$benchtime" "${packages[@]}") >"$2"
}

tree "$old" "$tmp/old"
run "$tmp/old" "$tmp/old.txt"
if [ -n "$new" ]; then
	tree "$new" "$tmp/new"
	run "$tmp/new" "$tmp/new.txt"
else
	run "$root" "$tmp/new.txt"
fi
# benchstat runs from the bench module so it never enters herald's go.mod.
(cd "$benchdir" && go run golang.org/x/perf/cmd/benchstat@latest "old=$tmp/old.txt" "new=$tmp/new.txt")
