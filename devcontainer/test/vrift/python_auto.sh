#!/bin/bash
# Scenario python_auto: default options on a bookworm + python3 image. Runs inside the dev
# container (devcontainer features test, or test/devcontainer/feature.test.ts via exec).
set -e
source dev-container-features-test-lib 2>/dev/null || source "$(dirname "$0")/test-lib.sh"

check "LD_PRELOAD set by containerEnv" test "$LD_PRELOAD" = /usr/lib/vrift/libvrift.so
check "no Node.js needed" bash -c '! command -v node'
check "old path is a symlink into /vrift" test "$(readlink /usr/lib/python3.11)" = /vrift/usr/lib/python3.11
check "python3 imports from /vrift" python3 -c 'import json, email.parser; assert json.__file__.startswith("/vrift/usr/lib/python3.11/"), json.__file__'
check "blob matches the kernel (vrift-mkblob --verify)" vrift-mkblob --verify
code='import json, email.parser, http.client, xml.dom.minidom, asyncio, decimal, logging.handlers, unittest'
count() { # $1: LD_PRELOAD value -> stat-family syscalls naming a /vrift path
  LD_PRELOAD="$1" strace -f -qq -e trace=%stat,%lstat,%fstat -o /tmp/vrift-trace python3 -c "$code" >/dev/null
  grep -c '"/vrift' /tmp/vrift-trace || true
}
on=$(count /usr/lib/vrift/libvrift.so)
off=$(count '')
echo "stat-family syscalls on /vrift paths: $off without the shim, $on with it"
check "stat calls on /vrift served by the shim (>= 90% fewer)" test $((on * 10)) -le "$off" -a "$off" -gt 100
reportResults
