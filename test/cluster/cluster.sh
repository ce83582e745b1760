#!/usr/bin/env bash
# A single-node Kubernetes cluster for the cluster test, offline and contained.
#
#   cluster.sh up      start it (binaries from build.sh); prints nothing on success
#   cluster.sh down    stop everything up started, by PID, and leave nothing mounted
#   cluster.sh diag D  copy logs and cluster objects into directory D
#   cluster.sh run CMD run CMD where the cluster is reachable (its network namespace)
#
# Containment: every process runs in a network namespace made here (the node's
# address 10.250.0.1 is on a veth pair whose both ends are inside it: no route
# out), and the node's processes (containerd, kubelet, and through them every
# container) share one private mount namespace held by a `sleep` process, so
# their mounts (overlay rootfs, secrets, pod network namespaces) disappear with
# them. Cgroups kubelet made are removed at `down`.
#
# Env: CLUSTER_STATE (default /var/tmp/mcbuild-cluster), CLUSTER_CACHE (build.sh's).
set -euo pipefail
trap 'echo "cluster.sh: line $LINENO: $BASH_COMMAND failed" >&2' ERR
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cache=${CLUSTER_CACHE:-$here/../../.cache/cluster}
S=${CLUSTER_STATE:-/var/tmp/mcbuild-cluster}
NODE_NAME=node
POD_SUBNET=10.244.0.0/24
SERVICE_RANGE=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
KUBE=$cache/kubernetes-$KUBE_VERSION
ETCD=$cache/etcd-$ETCD_VERSION/etcd

log() { printf '%s cluster: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }
innet() { nsenter --net="/run/netns/$NETNS" -- "$@"; }
kubectl() { innet "$KUBE/kubectl" --kubeconfig "$S/pki/admin.kubeconfig" "$@"; }

# start NAME [--node] CMD...: a daemon in the cluster's network namespace (and,
# with --node, the node's mount namespace), its PID recorded for `down`.
start() {
  local name=$1; shift
  local enter=(nsenter --net="/run/netns/$NETNS")
  if [[ ${1:-} == --node ]]; then
    shift
    enter=(nsenter --target "$(pid_of holder)" --net --mount)
  fi
  setsid "${enter[@]}" -- "$@" >"$S/logs/$name.log" 2>&1 </dev/null &
  echo "$name $!" >>"$S/pids"
}
pid_of() { awk -v n="$1" '$1==n{print $2}' "$S/pids" 2>/dev/null | tail -1; }

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

pki() {
  local d=$S/pki
  mkdir -p "$d"
  cd "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca.key -out ca.crt -subj /CN=mcbuild-cluster-ca 2>/dev/null
  # cert NAME SUBJECT [SANS]
  cert() {
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n%s\n' \
      "${3:+subjectAltName=$3}" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "$1.crt" -extfile "$1.ext" 2>/dev/null
  }
  cert apiserver /CN=kube-apiserver "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=admin"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub
  local who
  for who in admin kubelet; do
    cat >"$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mcbuild
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: $d/ca.crt}
users:
- name: $who
  user: {client-certificate: $d/$who.crt, client-key: $d/$who.key}
contexts:
- name: mcbuild
  context: {cluster: mcbuild, user: $who}
current-context: mcbuild
EOF
  done
  cd - >/dev/null
}

network() {
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" link add mcb-node type veth peer name mcb-peer
  ip -n "$NETNS" addr add "$NODE_IP/24" dev mcb-node
  ip -n "$NETNS" link set mcb-node up
  ip -n "$NETNS" link set mcb-peer up
  # The kubernetes Service without kube-proxy: one DNAT to the apiserver, for
  # pods (PREROUTING) and the node's own processes (OUTPUT).
  local chain
  for chain in PREROUTING OUTPUT; do
    innet iptables -t nat -A "$chain" -d "$API_SERVICE_IP" -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:6443"
  done
  innet sysctl -qw net.ipv4.ip_forward=1
}

node_config() {
  mkdir -p "$S/containerd/certs.d/$REGISTRY" "$S/cni/net.d" "$S/kubelet" "$S/pod-logs"
  cat >"$S/containerd/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
  cat >"$S/containerd/config.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
[grpc]
  address = "$S/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$(cat "$S/images/pause")"
  # This VM lacks CAP_SYS_RESOURCE: runc would fail lowering oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$S/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$S/containerd/certs.d"
EOF
  cat >"$S/cni/net.d/10-mcbuild.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "mcbuild", "plugins": [
  {"type": "bridge", "bridge": "mcb0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$S/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
EOF
  : >"$S/resolv.conf"
  cat >"$S/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $S/pki/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $S/pki/kubelet.crt
tlsPrivateKeyFile: $S/pki/kubelet.key
cgroupDriver: cgroupfs
# The host is cgroup v1.
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$S/containerd/containerd.sock
podLogsDir: $S/pod-logs
resolvConf: $S/resolv.conf
clusterDomain: cluster.local
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
}

up() {
  [[ -x $KUBE/kubelet && -x $ETCD ]] || die "binaries missing in $cache: run test/cluster/build.sh"
  if [[ -e $S/pids || -e /run/netns/$NETNS ]]; then
    log "a previous cluster is still up: taking it down first"
    down
  fi
  rm -rf "$S"
  mkdir -p "$S/logs" "$S/images"
  : >"$S/pids"
  pki
  network
  # The node's private mount namespace, with its own /run/netns (pod network
  # namespaces), /run/containerd and /var/lib/cni.
  mkdir -p /var/lib/cni /var/log/containers /run/containerd /run/netns
  start holder sh -c 'exec unshare --mount --propagation private -- sh -c "
    mount -t tmpfs tmpfs /run/netns && mount -t tmpfs tmpfs /run/containerd &&
    mount -t tmpfs tmpfs /var/lib/cni && mount -t tmpfs tmpfs /var/log/containers && exec sleep infinity"'
  wait_for "the node's mount namespace" 10 holder_ready

  start registry "$here/../../bin/tools/registry" serve "$(registry_config)"
  start etcd "$ETCD" --data-dir "$S/etcd" --unsafe-no-fsync \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster default=http://127.0.0.1:2380 --log-level warn
  local p=$S/pki
  start kube-apiserver "$KUBE/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" --client-ca-file "$p/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$p/sa.pub" \
    --service-account-signing-key-file "$p/sa.key" --service-cluster-ip-range "$SERVICE_RANGE" \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" \
    --kubelet-preferred-address-types InternalIP --enable-aggregator-routing=true
  wait_for "registry on $REGISTRY" 20 innet curl -fsS "http://$REGISTRY/v2/"
  wait_for "kube-apiserver" 90 kubectl get --raw /readyz
  start kube-controller-manager "$KUBE/kube-controller-manager" --kubeconfig "$p/admin.kubeconfig" \
    --authentication-kubeconfig "$p/admin.kubeconfig" --authorization-kubeconfig "$p/admin.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key"
  start kube-scheduler "$KUBE/kube-scheduler" --kubeconfig "$p/admin.kubeconfig" \
    --authentication-kubeconfig "$p/admin.kubeconfig" --authorization-kubeconfig "$p/admin.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false

  # Node images (pause first: containerd's sandbox image) into the registry.
  innet env CLUSTER_STATE="$S" CLUSTER_CACHE="$cache" "$here/images.sh"
  node_config
  start containerd --node containerd --config "$S/containerd/config.toml"
  wait_for containerd 30 test -S "$S/containerd/containerd.sock"
  start kubelet --node "$KUBE/kubelet" --config "$S/kubelet/config.yaml" \
    --kubeconfig "$p/kubelet.kubeconfig" --root-dir "$S/kubelet/root" --cert-dir "$S/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  wait_for "node $NODE_NAME Ready" 120 node_ready
  # Nodes' seccomp profiles live under kubelet's root: <root>/seccomp.
  mkdir -p "$S/kubelet/root/seccomp"
}

holder_ready() { grep -q ' /var/log/containers tmpfs ' "/proc/$(pid_of holder)/mounts"; }
node_ready() { [[ $(kubectl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]; }

registry_config() {
  cat >"$S/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $S/registry}, delete: {enabled: true}}
http: {addr: $REGISTRY}
EOF
  echo "$S/registry.yml"
}

# kill_pid PID: TERM, then KILL after 10 seconds.
kill_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  [[ -e $S/pids ]] || { ip netns del "$NETNS" 2>/dev/null || true; return 0; }
  # kubelet first, so nothing restarts what is stopped next.
  local kp; kp=$(pid_of kubelet); [[ -n $kp ]] && kill_pid "$kp"
  # Every container's processes (the pods' cgroups list them), then the
  # containerd shims of this cluster (their command line names its socket),
  # so nothing outlives containerd.
  local pid pids
  pids=$(find /sys/fs/cgroup/pids/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null || true)
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $S/containerd/containerd.sock" || true); do
    kill_pid "$pid"
  done
  local name
  for name in containerd kube-scheduler kube-controller-manager kube-apiserver etcd registry holder; do
    pid=$(pid_of "$name"); [[ -n $pid ]] && kill_pid "$pid"
  done
  # Cgroups kubelet made (cgroup v1: one tree per controller), deepest first.
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  ip netns del "$NETNS" 2>/dev/null || true
  rm -f "$S/pids"
  # What must not be left: a mount under the state directory or a process of ours.
  if grep -q " ${S}[/ ]" /proc/self/mountinfo; then
    log "left mounted under $S:"; grep " ${S}[/ ]" /proc/self/mountinfo >&2; return 1
  fi
  if pgrep -f -- "$S/" >/dev/null; then
    log "left running:"; pgrep -af -- "$S/" >&2; return 1
  fi
}

diag() {
  local out=$1
  mkdir -p "$out"
  cp -r "$S/logs" "$out/daemons" 2>/dev/null || true
  cp -r "$S/pod-logs" "$out/pod-logs" 2>/dev/null || true
  kubectl get events -A --sort-by=.lastTimestamp >"$out/events.txt" 2>&1 || true
  kubectl get pods,taskruns,pipelineruns -A -o wide >"$out/objects.txt" 2>&1 || true
  kubectl get taskruns,pipelineruns -A -o yaml >"$out/runs.yaml" 2>&1 || true
  kubectl get pods -A -o yaml >"$out/pods.yaml" 2>&1 || true
  kubectl describe nodes >"$out/node.txt" 2>&1 || true
  log "diagnostics in $out"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  diag) diag "${2:?cluster.sh diag DIR}" ;;
  run) shift; innet "$@" ;;
  kubectl) shift; kubectl "$@" ;;
  *) echo "usage: $0 up|down|diag DIR|run CMD...|kubectl ARGS..." >&2; exit 2 ;;
esac
