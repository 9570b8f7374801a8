#!/usr/bin/env bash
# Starts the quick start in the foreground: three simulated vLLM replicas, the
# control plane serving this directory, and one proxy for the Gateway. Logs are
# prefixed by process; Ctrl-C stops everything.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${INFERGATE_BIN:-$(cd "$here/../.." && pwd)/bin}
xds=127.0.0.1:18000
cpadmin=127.0.0.1:18001
admin=127.0.0.1:19000
gateway=default/inference-gateway
port=8080

pids=()
names=()
stopping=
stop() {
  stopping=1
  trap - INT TERM EXIT
  echo
  echo "stopping…"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# start NAME CMD... runs CMD with its output prefixed by NAME.
start() {
  local name=$1; shift
  "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
  names+=("$name")
}

# exited prints the name of a started process that is no longer running.
exited() {
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then echo "${names[$i]}"; return 0; fi
  done
  return 1
}

# waitready NAME URL waits up to 10 s for URL to answer 200, giving up when a
# started process exits.
waitready() {
  for _ in $(seq 1 100); do
    if curl -fsS "$2" >/dev/null 2>&1; then return 0; fi
    if gone=$(exited); then
      echo "the $gone exited while starting; see its log above (is a port in use? $xds, $cpadmin, $admin, :$port, 127.0.0.11-13:8000)" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "the $1 did not become ready within 10 s; see the logs above" >&2
  exit 1
}

start modelsim "$bin/modelsim" --replicas 3 --address 127.0.0.11 --port 8000 --model meta-llama/Llama-3.1-8B-Instruct
start controlplane "$bin/controlplane" --config-dir "$here" --xds-address "$xds" --admin-address "$cpadmin"
# The proxy would find nobody listening and retry (with WARN lines) if it
# started before the control plane serves its first snapshot.
waitready "control plane" "http://$cpadmin/readyz"
start proxy "$bin/proxy" --xds-address "$xds" --gateway "$gateway" --listen-address 127.0.0.1 --admin-address "$admin"
waitready proxy "http://$admin/ready"

cat <<MSG

infergate is serving gateway $gateway on http://127.0.0.1:$port
  control plane (xDS + debug gRPC) $xds, its metrics http://$cpadmin, proxy admin http://$admin
  model servers: simulated vLLM on 127.0.0.11-13:8000

Try a chat completion (the x-gateway-destination-endpoint-served header names the pod):
  curl -si http://127.0.0.1:$port/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"Hello!"}]}'

Streaming:
  curl -N http://127.0.0.1:$port/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"meta-llama/Llama-3.1-8B-Instruct","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'

Edit $here/*.yaml while this runs and the proxy follows. Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
if [ -z "$stopping" ]; then
  echo "a process exited; stopping the rest" >&2
fi
