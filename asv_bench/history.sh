#!/usr/bin/env bash
# Benchmark every commit of a range with asv, then compare the first and the last and build the
# HTML report. Needs nothing from the network beyond the package index.
#
#   bash asv_bench/history.sh [RANGE]        (default: the last 5 commits, HEAD~5..HEAD)
#
# Each commit is checked out in a temporary worktree and installed (building its extension) into
# one virtual environment; asv then runs this checkout's benchmark suite against it and files the
# figures under that commit (-E existing:same --set-commit-hash). Commits older than the benchmark
# workers (cywhip/_bench.py) cannot be measured by this suite.
set -euo pipefail
range="${1:-HEAD~5..HEAD}"
root="$(git rev-parse --show-toplevel)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet asv numpy

cd "$root/asv_bench"
asv machine --yes >/dev/null
commits=$(git -C "$root" rev-list --reverse "$range")
for commit in $commits; do
    echo "== $(git -C "$root" log -1 --format='%h %s' "$commit")"
    git -C "$root" worktree add --quiet --detach "$work/src" "$commit"
    python -m pip install --quiet "$work/src"
    asv run -E existing:same --set-commit-hash "$commit" --show-stderr || echo "(some benchmarks failed at $commit)"
    python -m pip uninstall --quiet --yes cywhip
    git -C "$root" worktree remove --force "$work/src"
done
first=$(echo "$commits" | head -n 1)
last=$(echo "$commits" | tail -n 1)
asv compare "$first" "$last"
asv publish
echo "HTML report: $root/asv_bench/html/index.html (asv preview serves it)"
