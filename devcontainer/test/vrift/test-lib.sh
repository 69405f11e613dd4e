#!/bin/bash
# Minimal stand-in for dev-container-features-test-lib (same check/reportResults output),
# used when the scenario scripts run through `devcontainer exec` instead of
# `devcontainer features test`.
FAILED=()
check() {
  local label="$1"; shift
  echo "🧪 Testing '$label'"
  if "$@"; then echo "✅  Passed '$label'!"; else echo "❌ $label check failed."; FAILED+=("$label"); fi
}
reportResults() {
  if [ ${#FAILED[@]} -ne 0 ]; then echo "💥  Failed tests: ${FAILED[*]}"; exit 1; fi
  echo "Test Passed!"; exit 0
}
