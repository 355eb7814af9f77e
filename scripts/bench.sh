#!/usr/bin/env bash
# `make bench`: runs the benchmarks behind DESIGN.md's targets and prints
# one table of figures. The raw `go test -bench` output is kept in
# bench.out for benchstat. STARFORGE_BENCH_WORKERS sets the idle-worker
# count (default 10,000).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench.out}
go=${GO:-go}
{
	$go test -run '^$' -bench 'RequestToCommand|WebhookToCommand|TrivialBuilds|IdleWorkerRSS' -benchtime 200x ./master/bench/
	$go test -run '^$' -bench 'PollRound200' -benchtime 10x ./master/poller/
	$go test -run '^$' -bench '^BenchmarkSubmit$' -benchtime 200x ./master/job/
	$go test -run '^$' -bench '^BenchmarkLogIngest$' -benchtime 5x ./master/bench/
	$go test -run '^$' -bench 'MasterLogIngest' -benchtime 20x ./master/bench/
	$go test -run '^$' -bench 'IdleWorkers$' -benchtime 1x ./master/bench/
	$go test -run '^$' -bench 'Load1000Builders200Workers' -benchtime 20x ./config/
	$go test -run '^$' -bench 'APIBuilds$|HomePage' -benchtime 200x ./webui/
	$go test -run '^$' -bench 'BuildersPage$|ConsolePage$|StatsPage$|LogFirstScreen|LogLineDelay' -benchtime 50x ./webui/
} | tee "$out" >/dev/null

# metric NAME UNIT: the value of UNIT on the line of benchmark NAME.
metric() {
	awk -v name="$1" -v unit="$2" '$1 ~ "^Benchmark"name"(-[0-9]+)?$" {
		for (i = 3; i < NF; i++) if ($(i+1) == unit) { print $i; exit } }' "$out"
}
ms() { awk -v ns="$(metric "$1" ns/op)" 'BEGIN { if (ns != "") printf "%.2f", ns / 1e6 }'; }

printf '\n%-62s %14s   %s\n' "figure (2-core machine)" "measured" "target"
row() { printf '%-62s %14s   %s\n' "$1" "$2" "$3"; }
row "request -> first command started, p50" "$(metric RequestToCommand p50-ms) ms" "<= 2 ms"
row "request -> first command started, p99" "$(metric RequestToCommand p99-ms) ms" "<= 10 ms"
row "webhook received -> first command started, p50" "$(metric WebhookToCommand p50-ms) ms" "<= 50 ms"
row "webhook received -> first command started, p99" "$(metric WebhookToCommand p99-ms) ms" ""
row "one poll round over 200 unchanged repositories" "$(metric PollRound200 ms/round) ms" ""
row "package job submitted -> stored, p50 (tar.gz of 3 files)" "$(metric Submit p50-ms) ms" ""
row "trivial builds per second, 10 workers" "$(metric TrivialBuilds/workers=10 builds/s)" ""
row "trivial builds per second, 50 workers" "$(metric TrivialBuilds/workers=50 builds/s)" ">= 500"
row "log ingest through the master into storage" "$(metric MasterLogIngest log-MB/s) MB/s" ">= 200 MB/s"
row "log ingest end to end (worker on the same 2 cores)" "$(metric LogIngest log-MB/s) MB/s" ""
row "connected idle workers" "$(metric IdleWorkers workers)" "10,000"
row "  master RSS" "$(metric IdleWorkers master-RSS-MB) MB" "<= 500 MB"
row "  master RSS per worker" "$(metric IdleWorkers KB/worker) KB" "<= 50 KB"
row "  master CPU while idle" "$(metric IdleWorkers idle-CPU-%) %" "<= 5 %"
row "master.star, 1,000 builders and 200 workers: load + validate" "$(ms Load1000Builders200Workers) ms" "<= 200 ms"
row "API list over 100,000 builds (server time)" "$(ms APIBuilds) ms" "<= 50 ms"
row "home page over 100,000 builds (server time)" "$(ms HomePage) ms" "<= 50 ms"
row "builders page over 100,000 builds (server time)" "$(ms BuildersPage) ms" "<= 50 ms"
row "console page over 100,000 builds (server time)" "$(ms ConsolePage) ms" "<= 50 ms"
row "stats page over 100,000 builds, uncached (server time)" "$(ms StatsPage) ms" "<= 50 ms"
row "first screen of a 1,000,000-line log (server time)" "$(metric LogFirstScreen/head ms/op) ms" "<= 100 ms"
row "log line stored -> websocket client, p50" "$(metric LogLineDelay p50-ms) ms" "<= 250 ms (to the browser)"
row "idle starforge-worker RSS" "$(metric IdleWorkerRSS RSS-MB) MB" "<= 20 MB"
echo
echo "raw output: $out"
