#!/usr/bin/env bash
# registry.sh - start or stop a throwaway `docker-registry` (Debian package docker-registry,
# /usr/bin/docker-registry, distribution 2.8) on 127.0.0.1 for tests and manual checks.
# The registry listens on loopback only and stores blobs in a temp directory that `stop`
# removes. The Docker engine and skopeo (with --tls-verify=false) speak plain HTTP to
# 127.0.0.0/8 without configuration; vrift does the same for loopback registries.
#
# Usage:
#   scripts/registry.sh start [--port N] [--htpasswd USER:PASSWORD]
#                             [--token REALM_URL --token-service NAME --token-issuer NAME
#                              --token-cert PEM]
#       prints "VRIFT_REGISTRY=127.0.0.1:PORT" and "VRIFT_REGISTRY_DIR=<dir>" on stdout
#       (eval-able); PORT defaults to a free port. Waits (bounded) until /v2/ answers.
#   scripts/registry.sh stop DIR      stop the registry started with state directory DIR
#   scripts/registry.sh htpasswd USER PASSWORD   print one bcrypt htpasswd line
#
# htpasswd lines use bcrypt (the only hash docker-registry accepts): `htpasswd -nbB` from
# apache2-utils when installed, else python3's crypt module (glibc/libxcrypt bcrypt). Cost 4
# (the minimum): the registry checks the hash on every request, and these are throwaway
# test credentials.
set -euo pipefail

reg_log() { printf 'registry: %s\n' "$*" >&2; }
reg_die() { printf 'registry: error: %s\n' "$*" >&2; exit 1; }

reg_free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

reg_htpasswd() {
  local user="$1" pass="$2"
  if command -v htpasswd >/dev/null 2>&1; then
    htpasswd -nbB -C 4 "$user" "$pass" | head -n 1
  elif command -v python3 >/dev/null 2>&1; then
    python3 -W ignore -c 'import crypt,sys; print(sys.argv[1] + ":" + crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' "$user" "$pass"
  else
    reg_die "making a bcrypt htpasswd line: neither htpasswd (apt-get install apache2-utils) nor python3 is installed"
  fi
}

reg_start() {
  local port="" htpw="" realm="" service="vrift-test-registry" issuer="vrift-test-issuer" cert=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port="$2"; shift 2 ;;
      --htpasswd) htpw="$2"; shift 2 ;;
      --token) realm="$2"; shift 2 ;;
      --token-service) service="$2"; shift 2 ;;
      --token-issuer) issuer="$2"; shift 2 ;;
      --token-cert) cert="$2"; shift 2 ;;
      *) reg_die "unknown option $1; see the head of $0" ;;
    esac
  done
  command -v docker-registry >/dev/null 2>&1 || reg_die "starting the registry: docker-registry is not installed; apt-get install docker-registry"
  [ -n "$port" ] || port=$(reg_free_port)
  local dir
  dir=$(mktemp -d /tmp/vrift-registry.XXXXXX)
  mkdir -p "$dir/storage"
  local auth=""
  if [ -n "$htpw" ]; then
    reg_htpasswd "${htpw%%:*}" "${htpw#*:}" >"$dir/htpasswd"
    auth=$(printf 'auth:\n  htpasswd:\n    realm: vrift-test\n    path: %s\n' "$dir/htpasswd")
  elif [ -n "$realm" ]; then
    [ -n "$cert" ] || reg_die "--token needs --token-cert PEM (the certificate whose key signs the tokens)"
    auth=$(printf 'auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n' "$realm" "$service" "$issuer" "$cert")
  fi
  cat >"$dir/config.yml" <<CFG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
CFG
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  local i
  for i in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null || node -e 'require("http").get(process.argv[1],()=>process.exit(0)).on("error",()=>process.exit(1))' "http://127.0.0.1:$port/v2/"; then
      printf 'VRIFT_REGISTRY=127.0.0.1:%s\nVRIFT_REGISTRY_DIR=%s\n' "$port" "$dir"
      return 0
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { tail -n 20 "$dir/log" >&2; reg_die "starting the registry: docker-registry exited; log above ($dir/log)"; }
    sleep 0.1
  done
  reg_die "starting the registry: no answer on 127.0.0.1:$port after 10 s; see $dir/log"
}

reg_stop() {
  local dir="${1:?usage: $0 stop DIR}"
  case "$dir" in /tmp/vrift-registry.*) ;; *) reg_die "stopping the registry: $dir is not a directory made by '$0 start'";; esac
  if [ -f "$dir/pid" ]; then
    local pid; pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; reg_start "$@" ;;
  stop) shift; reg_stop "$@" ;;
  htpasswd) shift; reg_htpasswd "${1:?user}" "${2:?password}" ;;
  *) reg_die "usage: $0 start [options] | stop DIR | htpasswd USER PASSWORD" ;;
esac
