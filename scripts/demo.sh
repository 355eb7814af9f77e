#!/usr/bin/env bash
# `make demo`: a master on a fresh basedir, one local worker, a local git
# repository the master polls, one forced build; the web UI's URL; Ctrl-C
# stops everything. A commit to the repository is built too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

demo=${STARFORGE_DEMO_DIR:-$root/.demo}
rm -rf "$demo"
mkdir -p "$demo/master" "$demo/worker"
cp examples/quickstart/master.star "$demo/master/master.star"

# A small project in a local git repository, built by the quickstart builder.
repo="$demo/repo"
mkdir -p "$repo"
cat >"$repo/build.sh" <<'SH'
#!/bin/sh
# Prints for a few seconds so the log visibly grows in the browser.
set -e
mkdir -p dist
for i in 1 2 3 4 5 6 7 8 9 10; do
	echo "compiling unit $i of 10"
	sleep 0.5
done
echo "hello from Starforge, built at $(date -u +%FT%TZ)" >dist/hello.txt
echo "build done"
SH
cat >"$repo/test.sh" <<'SH'
#!/bin/sh
grep -q "hello from Starforge" dist/hello.txt && echo "1 passed, 0 failed"
SH
chmod +x "$repo/build.sh" "$repo/test.sh"
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=Demo -c user.email=demo@example.invalid add .
git -C "$repo" -c user.name=Demo -c user.email=demo@example.invalid commit -q -m "Demo project"

pids=()
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "stopping..."
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	echo "stopped; the demo's files are in $demo"
}
trap cleanup INT TERM EXIT

export STARFORGE_DEMO_REPO="$repo"
"$root/bin/starforge" master --basedir "$demo/master" >"$demo/master.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	[ -s "$demo/master/run/http.addr" ] && break
	if ! kill -0 "${pids[0]}" 2>/dev/null; then
		echo "the master did not start:" >&2
		cat "$demo/master.log" >&2
		exit 1
	fi
	sleep 0.1
done
if [ ! -s "$demo/master/run/http.addr" ]; then
	echo "the master did not start listening within 10 s:" >&2
	cat "$demo/master.log" >&2
	exit 1
fi
http=$(cat "$demo/master/run/http.addr")
workers=$(cat "$demo/master/run/worker.addr")

"$root/bin/starforge-worker" \
	--master "$workers" --name local-1 --password quickstart-secret \
	--basedir "$demo/worker" >"$demo/worker.log" 2>&1 &
pids+=($!)

"$root/bin/starforge" force --master "http://$http/" --reason "make demo" hello

cat <<MSG

  Starforge is running.
  Web UI:  http://$http/
  Logs:    $demo/master.log, $demo/worker.log
  Force another build:  $root/bin/starforge force --master http://$http/ --wait hello
  Commit, and it is built within 10 s:
    git -C $repo -c user.name=You -c user.email=you@example.invalid commit --allow-empty -m "Try me"
  Poll at once instead of waiting:  curl -X POST "http://$http/change_hook/poller?poller=hello"

  Press Ctrl-C to stop the master and the worker.
MSG
wait "${pids[0]}"
