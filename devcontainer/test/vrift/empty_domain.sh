#!/bin/bash
# Scenario empty_domain: paths=none installs the shim with an empty /vrift domain.
set -e
source dev-container-features-test-lib 2>/dev/null || source "$(dirname "$0")/test-lib.sh"

check "LD_PRELOAD set by containerEnv" test "$LD_PRELOAD" = /usr/lib/vrift/libvrift.so
check "/vrift is empty" test -z "$(ls -A /vrift)"
check "python3 untouched" test ! -L /usr/lib/python3.11
check "python3 runs under the shim" python3 -c 'import json'
check "blob matches the kernel" vrift-mkblob --verify
check "no dpkg hook (dpkgHook=false)" test ! -e /etc/dpkg/dpkg.cfg.d/vrift
reportResults
