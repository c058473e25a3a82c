#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md, one after another (each wants the machine to itself), on the
# local PostgreSQL. Output goes to bench/results/<name>.txt as well as the terminal.
#   bench/run_all.sh                 # all (about 40 minutes on 2 cores; archive_scale adds ~20)
#   bench/run_all.sh platform grading_engine   # only these
set -uo pipefail
cd "$(dirname "$0")/.."
deploy/scripts/ensure-postgres.sh
mkdir -p bench/results
declare -A CMD=(
  [platform]="bench.platform_throughput --seconds 20"
  [intake]="bench.intake_throughput"
  [intake_status]="bench.intake_status_changes"
  [grading_engine]="bench.grading_engine"
  [grading_latency]="bench.grading_latency"
  [db_sessions]="bench.db_sessions"
  [table_rows]="bench.table_rows"
  [http_clients]="bench.http_clients"
  [grading_memory]="bench.grading_memory --index-only --messages 54000 --warmup 6000"
  [workflow_supervision]="bench.workflow_supervision"
  [workflow_stats]="bench.workflow_stats"
  [notify]="bench.notify_alerts"
  [archive_seal]="bench.archive_seal"
  [archive_scale]="bench.archive_scale"
  [soak]="bench.soak --seconds 300"
)
ORDER=(platform intake intake_status grading_engine grading_latency grading_memory db_sessions table_rows http_clients workflow_supervision workflow_stats notify archive_seal archive_scale soak)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${ORDER[@]}")
status=0
for name in "${names[@]}"; do
  cmd=${CMD[$name]:-}
  if [ -z "$cmd" ]; then echo "unknown benchmark $name (one of: ${ORDER[*]})" >&2; exit 2; fi
  echo "=== $name: python -m $cmd ($(date -Is))"
  # shellcheck disable=SC2086
  .venv/bin/python -m $cmd 2>&1 | tee "bench/results/$name.txt" || status=1
done
exit $status
