#!/usr/bin/env bash
# Runs the suite against one database backend; exit code 5 (no tests collected) is a failure here.
set -uo pipefail
backend=${1:?usage: pytest.sh sqlite|postgres}
shift
cd "$(dirname "$0")/../.."
echo "=== test suite on $backend ==="
MINSHENG_TEST_DB=$backend .venv/bin/python -m pytest -p no:cacheprovider "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests on $backend: treating as a failure" >&2
  exit 1
fi
exit $rc
