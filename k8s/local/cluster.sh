#!/usr/bin/env bash
# The local cluster: a single-node Kubernetes run as host processes on this machine, the way
# upstream's hack/local-up-cluster.sh runs one, for machines without Docker (CI's).
#
#   k8s/local/cluster.sh up       start it (idempotent); prints the KUBECONFIG path last
#   k8s/local/cluster.sh down     stop every process it started, remove what it made
#   k8s/local/cluster.sh status   say which of its processes run
#   k8s/local/cluster.sh kubeconfig  print the KUBECONFIG path (exit 3 when it is not up)
#   k8s/local/cluster.sh logs     print the last lines of every component's log and the events
#
# Beside the cluster it runs an image registry at localhost:5000 (distribution), for what
# skaffold builds: `skaffold dev -p local` pushes there and pods pull from there.
#
# Everything lives under $TFXKFP_CLUSTER_DIR (default /var/lib/tfx-kfp-gke): etcd's data,
# certificates, kubeconfigs, containerd's and kubelet's directories, the model store and the
# logs. Outside it, and undone by `down`: the bridge tfxkfp0 (the node's address and the pod
# network), iptables rules (kube-proxy's and the CNI plugins'), cgroups under kubepods/, pod
# network namespaces, the bind mount of the store at /var/local/tfx, where the local-cluster
# component's PersistentVolumes (k8s/components/local-cluster) expect it, and the bind mount
# of the dynamically provisioned volumes at /var/local/tfx-volumes (local-path-storage.yaml).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${TFXKFP_CLUSTER_DIR:-/var/lib/tfx-kfp-gke}

NODE_NAME=tfx-kfp-gke-local
# The pod network and the node's own address on its bridge; off buildah's 10.88.0.0/16.
POD_CIDR=10.244.0.0/16
NODE_IP=10.244.0.1
BRIDGE=tfxkfp0
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
CNI_NETWORK=tfx-kfp-gke
API_PORT=6443
# The image registry skaffold pushes to and containerd pulls from (both on this machine;
# containerd speaks plain HTTP to localhost registries).
REGISTRY=localhost:5000
ETCD_CLIENT_URL=http://127.0.0.1:2379
STORE_MOUNT=/var/local/tfx
# Where local-path-provisioner (local-path-storage.yaml) makes each claim's directory.
VOLUMES_MOUNT=/var/local/tfx-volumes
# The registry's blobs: a build cache like the image tarballs, so it outlives `down`.
registry_storage=${TFXKFP_CACHE:-$HOME/.cache/tfx-kfp-gke}/registry
# What the node needs from Debian: the container runtime, CNI plugins, the image builder,
# netfilter tools, and a C toolchain for the static pause binary and KFP's cgo programs.
HOST_PACKAGES=(containerd runc containernetworking-plugins buildah debootstrap
               iptables conntrack gcc libc6-dev curl openssl)
# Free disk the node needs under $state when it starts empty: the imported images, volumes,
# runs and what skaffold pushes (the cluster tier's peak is in the README). When the disk
# runs low, kubelet deletes unused images, and containerd 1.6 cannot pin the imported ones
# (the pause image among them), which nothing here can pull back.
MIN_FREE_GIB=${TFXKFP_MIN_FREE_GIB:-20}
# Bounded waits, in seconds, on the conditions named where they are used.
START_SECONDS=120
DOWN_SECONDS=90

pki=$state/pki
pids=$state/pids
logs=$state/logs
containerd_sock=$state/containerd/containerd.sock
kubeconfig=$state/kubeconfig/admin.kubeconfig

say() { printf 'cluster: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- processes ------------------------------------------------------------------------

running() {  # running NAME: its pid file names a live process
  local pid
  pid=$(cat "$pids/$1.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null
}

start() {  # start NAME COMMAND...: run detached from this shell, log and pid under $state
  local name=$1; shift
  if running "$name"; then return; fi
  setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pids/$name.pid"
  say "started $name (pid $!, log $logs/$name.log)"
}

wait_for() {  # wait_for WHAT COMMAND...: retry COMMAND until it succeeds or START_SECONDS pass
  local what=$1; shift
  local deadline=$((SECONDS + START_SECONDS))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "$what: not ready after ${START_SECONDS}s; last log lines:"
      tail -n 30 "$logs/$what.log" >&2 || true
      exit 1
    fi
    sleep 1
  done
}

stop() {  # stop NAME: TERM, then KILL after DOWN_SECONDS/3, by the pid it was started with
  local name=$1 pid
  pid=$(cat "$pids/$name.pid" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    local deadline=$((SECONDS + DOWN_SECONDS / 3))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    say "stopped $name (pid $pid)"
  fi
  rm -f "$pids/$name.pid"
}

write_file() {  # write_file PATH: standard input to PATH, leaving PATH alone when unchanged
  # kube-proxy exits when its config file changes, and a running cluster's `up` rewrites it.
  cat >"$1.new"
  if cmp -s "$1.new" "$1"; then rm "$1.new"; else mv "$1.new" "$1"; fi
}

# --- certificates and kubeconfigs -------------------------------------------------------

issue_cert() {  # issue_cert NAME SUBJECT [SUBJECT_ALT_NAMES]: a key and a cert signed by the CA
  local name=$1 subject=$2 sans=${3:-}
  [ -s "$pki/$name.crt" ] && return
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subject" \
    -out "$pki/$name.csr" 2>/dev/null
  local extensions="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth"
  [ -n "$sans" ] && extensions+=$'\n'"subjectAltName=$sans"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 365 -sha256 -extfile <(echo "$extensions") \
    -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr"
}

make_pki() {
  mkdir -p "$pki" && chmod 700 "$pki"
  if [ ! -s "$pki/ca.crt" ]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -days 365 -sha256 \
      -subj "/CN=tfx-kfp-gke-local-ca" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  fi
  issue_cert apiserver "/CN=kube-apiserver" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP"
  # system:masters: the administrator, and the API server's client identity towards kubelets.
  issue_cert admin "/O=system:masters/CN=tfx-kfp-gke-admin"
  issue_cert controller-manager "/CN=system:kube-controller-manager"
  issue_cert scheduler "/CN=system:kube-scheduler"
  issue_cert kube-proxy "/CN=system:kube-proxy"
  # The Node authorizer and NodeRestriction admit the kubelet by this exact name.
  issue_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "DNS:$NODE_NAME,IP:$NODE_IP,IP:127.0.0.1"
  if [ ! -s "$pki/service-account.key" ]; then
    openssl genrsa -out "$pki/service-account.key" 2048 2>/dev/null
    openssl rsa -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub" 2>/dev/null
  fi
}

write_kubeconfig() {  # write_kubeconfig NAME SERVER: a kubeconfig for the NAME client cert
  local name=$1 server=$2
  mkdir -p "$state/kubeconfig"
  write_file "$state/kubeconfig/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: $NODE_NAME
    cluster:
      certificate-authority: $pki/ca.crt
      server: $server
users:
  - name: $name
    user:
      client-certificate: $pki/$name.crt
      client-key: $pki/$name.key
contexts:
  - name: $NODE_NAME
    context:
      cluster: $NODE_NAME
      user: $name
current-context: $NODE_NAME
EOF
}

# --- node runtime -----------------------------------------------------------------------

write_runtime_configs() {
  mkdir -p "$state/containerd" "$state/cni/conf" "$state/cni/ipam"
  # restrict_oom_score_adj: this VM lacks CAP_SYS_RESOURCE, so runc could not give any
  # container a lower oom_score_adj than containerd's own (kubelet asks -997 for Guaranteed
  # pods); every sandbox would fail. cgroupfs: no systemd on the machine.
  write_file "$state/containerd/config.toml" <<EOF
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
[grpc]
  address = "$containerd_sock"
[ttrpc]
  address = "$containerd_sock.ttrpc"
[debug]
  address = "$state/containerd/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$state/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/conf"
    max_conf_num = 1
EOF
  write_file "$state/cni/conf/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$state/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

prepare_host() {
  # The node's address lives on the pod bridge, so it exists before the first pod and every
  # address the cluster uses is one this script made.
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Pods reach Services through kube-proxy's NAT: traffic between pods on one bridge must pass
  # iptables (br_netfilter) and the host must forward.
  [ -s "$state/sysctl.saved" ] || sysctl -e net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables \
    | tr -d ' ' >"$state/sysctl.saved"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  mkdir -p "$state/store/data/social_network_ads" "$state/store/serving/social_network_ads"
  # Steps (uid 1000) and TF Serving (uid 10001) write and read here, as on kind.
  chmod -R a+rwX "$state/store"
  mkdir -p "$STORE_MOUNT" "$state/volumes" "$VOLUMES_MOUNT"
  mountpoint -q "$STORE_MOUNT" || mount --bind "$state/store" "$STORE_MOUNT"
  mountpoint -q "$VOLUMES_MOUNT" || mount --bind "$state/volumes" "$VOLUMES_MOUNT"
  # Pods get no name server but the cluster's: this machine has no upstream to forward to.
  printf 'nameserver %s\n' "$DNS_SERVICE_IP" | write_file "$state/resolv.conf"
}

write_node_configs() {
  mkdir -p "$state/kubelet"
  write_file "$state/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
containerRuntimeEndpoint: unix://$containerd_sock
cgroupDriver: cgroupfs
# cgroup v1 on this VM: kubelet 1.35 refuses it unless told; 1.34 warns.
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE: a negative oom_score_adj for kubelet itself would be refused.
oomScoreAdj: 0
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
resolvConf: $state/resolv.conf
# Images here cannot be pulled again (only the registry's can): when the disk ran low during
# a rebuild, kubelet's reclaim deleted the sandbox image and no pod could start after. So no
# image garbage collection (100 turns it off), and eviction only when the disk is nearly
# full, in absolute sizes: the defaults' percentages leave gigabytes unused on a large disk.
evictionHard: {memory.available: 500Mi, nodefs.available: 2Gi, imagefs.available: 2Gi}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 95
EOF
  write_file "$state/kubelet/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $state/kubeconfig/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
oomScoreAdj: 0
# Leave the host's conntrack table size alone (its sysctl may be read-only here).
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF
}

write_registry_config() {
  mkdir -p "$state/registry" "$registry_storage"
  write_file "$state/registry/config.yml" <<EOF
version: 0.1
log: {level: info, formatter: text}
storage:
  filesystem: {rootdirectory: $registry_storage}
  # Tags skaffold pushed for old code can be deleted (then garbage-collected) by hand.
  delete: {enabled: true}
http:
  addr: 127.0.0.1:${REGISTRY##*:}
EOF
}

check_free_space() {
  local free
  free=$(df --output=avail -BG "$state" | tail -n 1 | tr -dc 0-9)
  [ "$free" -ge "$MIN_FREE_GIB" ] || die "only $free GiB free on the disk under $state; the" \
    "cluster needs $MIN_FREE_GIB GiB (TFXKFP_MIN_FREE_GIB) for its images, volumes and runs"
}

load_images() {
  # Images come from docker-archive tarballs built here (k8s/local/build-images.sh); the
  # registry beside the cluster holds only what skaffold pushes. A tarball's name is a hash
  # of the image's inputs, and several images keep their upstream tag across rebuilds
  # (ghcr.io/kubeflow/kfp-api-server:2.16.1), so what containerd holds is recorded by tarball:
  # an image is imported when its tarball is not the one imported last.
  local imported=$state/images.imported image_key image archive_key
  touch "$imported"
  # No pod runs the Python base itself; the images built on it carry its layers.
  for image_key in $(grep -oE '^[A-Z_]+_IMAGE' "$images_env" | grep -vx PYTHON_BASE_IMAGE); do
    image=${!image_key}
    archive_key=${image_key%_IMAGE}_ARCHIVE
    grep -qxF "$image ${!archive_key}" "$imported" && continue
    say "importing $image"
    ctr -a "$containerd_sock" -n k8s.io images import "${!archive_key}" >/dev/null
    { awk -v image="$image" '$1 != image' "$imported"; echo "$image ${!archive_key}"; } \
      >"$imported.new"
    mv "$imported.new" "$imported"
  done
}

# --- up ---------------------------------------------------------------------------------

install_host_packages() {
  local package missing=()
  for package in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

up() {
  [ "$(id -u)" = 0 ] || die "must run as root (it starts kubelet, containerd and edits iptables)"
  command -v go >/dev/null || die "the Go toolchain is needed to build Kubernetes, CoreDNS and the dev tools"
  install_host_packages
  mkdir -p "$state" "$pids" "$logs"
  bin_dirs=$("$here/build-binaries.sh")
  kube_bin=$(sed -n 1p <<<"$bin_dirs") registry_bin=$(sed -n 5p <<<"$bin_dirs")
  etcd_bin=$(sed -n 10p <<<"$bin_dirs")
  "$here/build-images.sh" >&2
  [ -s "$state/images.imported" ] || check_free_space
  images_env=$repo/build/local-images.env
  set -a
  # shellcheck source=/dev/null  # written by build-images.sh
  . "$images_env"
  set +a
  export PATH="$kube_bin:$PATH"

  make_pki
  write_kubeconfig admin "https://127.0.0.1:$API_PORT"
  for client in controller-manager scheduler kube-proxy kubelet; do
    write_kubeconfig "$client" "https://127.0.0.1:$API_PORT"
  done
  write_runtime_configs
  prepare_host
  write_node_configs
  write_registry_config

  start etcd "$etcd_bin/etcd" --name "$NODE_NAME" --data-dir "$state/etcd" \
    --listen-client-urls "$ETCD_CLIENT_URL" --advertise-client-urls "$ETCD_CLIENT_URL" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381
  wait_for etcd curl -fsS http://127.0.0.1:2381/health

  start kube-apiserver kube-apiserver \
    --etcd-servers "$ETCD_CLIENT_URL" \
    --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/service-account.pub" \
    --service-account-signing-key-file "$pki/service-account.key" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --profiling=false
  wait_for kube-apiserver curl -fsS --cacert "$pki/ca.crt" "https://127.0.0.1:$API_PORT/readyz"

  start kube-controller-manager kube-controller-manager \
    --kubeconfig "$state/kubeconfig/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/kubeconfig/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/kubeconfig/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --service-account-private-key-file "$pki/service-account.key" \
    --root-ca-file "$pki/ca.crt" --use-service-account-credentials \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR"
  start kube-scheduler kube-scheduler \
    --kubeconfig "$state/kubeconfig/scheduler.kubeconfig" \
    --authentication-kubeconfig "$state/kubeconfig/scheduler.kubeconfig" \
    --authorization-kubeconfig "$state/kubeconfig/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
  wait_for kube-controller-manager curl -fsSk https://127.0.0.1:10257/healthz
  wait_for kube-scheduler curl -fsSk https://127.0.0.1:10259/healthz

  start registry "$registry_bin/registry" serve "$state/registry/config.yml"
  wait_for registry curl -fsS "http://$REGISTRY/v2/"

  start containerd containerd --config "$state/containerd/config.toml"
  wait_for containerd ctr -a "$containerd_sock" version
  load_images

  start kubelet kubelet --config "$state/kubelet/config.yaml" \
    --kubeconfig "$state/kubeconfig/kubelet.kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --root-dir "$state/kubelet/root"
  start kube-proxy kube-proxy --config "$state/kubelet/kube-proxy.yaml"
  wait_for kubelet curl -fsS http://127.0.0.1:10248/healthz
  wait_for kube-proxy curl -fsS http://127.0.0.1:10256/healthz

  export KUBECONFIG=$kubeconfig
  kubectl apply --server-side -f "$here/coredns.yaml" >/dev/null
  kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout="${START_SECONDS}s" >/dev/null
  kubectl -n kube-system rollout status deployment/coredns --timeout="${START_SECONDS}s" >/dev/null \
    || { kubectl -n kube-system describe pods -l k8s-app=kube-dns >&2; exit 1; }
  # The default StorageClass, whose provisioner makes a directory per claim.
  kubectl apply --server-side -f "$here/local-path-storage.yaml" >/dev/null
  kubectl -n local-path-storage rollout status deployment/local-path-provisioner \
    --timeout="${START_SECONDS}s" >/dev/null \
    || { kubectl -n local-path-storage describe pods >&2; exit 1; }
  # Namespaces with their Pod Security labels and the store's PersistentVolumes.
  kubectl apply -k "$repo/k8s/overlays/local" >/dev/null
  # The volume controller binds pre-bound claims on its next pass (every 15 s).
  kubectl -n kubeflow wait --for=jsonpath='{.status.phase}'=Bound pvc/tfx-store \
    --timeout="${START_SECONDS}s" >/dev/null
  kubectl -n tfx-serving wait --for=jsonpath='{.status.phase}'=Bound pvc/tfx-models \
    --timeout="${START_SECONDS}s" >/dev/null
  say "up: node $NODE_NAME Ready, CoreDNS and the local-path provisioner serving; KUBECONFIG below"
  echo "$kubeconfig"
}

# --- down -------------------------------------------------------------------------------

our_mounts() {  # mount points under $state and the two bind mounts, deepest first
  awk -v state="$state" -v store="$STORE_MOUNT" -v volumes="$VOLUMES_MOUNT" \
    '$2 == store || $2 == volumes || index($2, state "/") == 1 { print $2 }' /proc/self/mounts \
    | sort -r
}

remove_pods() {
  # With the controllers stopped nothing recreates them: kubelet then tears each sandbox down
  # through CRI, which runs the CNI plugins' DEL (veth, IP lease, NAT and hostPort rules).
  running kube-apiserver && running kubelet || return 0
  export KUBECONFIG=$kubeconfig
  local kubectl=$kube_bin/kubectl
  "$kubectl" delete pods --all-namespaces --all --grace-period=0 --force --wait=false \
    >/dev/null 2>&1 || true
  local deadline=$((SECONDS + DOWN_SECONDS / 3))
  while ctr -a "$containerd_sock" -n k8s.io containers ls -q 2>/dev/null | grep -q . \
      && ((SECONDS < deadline)); do
    sleep 1
  done
}

kill_leftovers() {
  # Whatever survived: container processes (by the kubelet's cgroups) and shims (by socket).
  local procs
  for procs in /sys/fs/cgroup/*/kubepods; do
    [ -d "$procs" ] || continue
    # shellcheck disable=SC2038  # xargs reads pids from the files, not file names
    find "$procs" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null \
      || true
  done
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $containerd_sock" 2>/dev/null || true
}

remove_iptables_rules() {
  # kube-proxy --cleanup leaves kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
  # KUBE-IPTABLES-HINT); the bridge plugin's masquerade chains and portmap's are CNI-*.
  # Empty those chains, delete the built-in chains' rules that jump to them (by number,
  # highest first), then the chains.
  local command table chain builtin number chains
  for command in iptables ip6tables; do
    command -v "$command" >/dev/null || continue
    for table in filter nat mangle; do
      chains=$("$command" -t "$table" -S 2>/dev/null | sed -nE 's/^-N ((KUBE|CNI)-[^ ]+)$/\1/p') || continue
      for chain in $chains; do "$command" -t "$table" -F "$chain"; done
      for builtin in $("$command" -t "$table" -S | sed -nE 's/^-P ([^ ]+) .*/\1/p'); do
        for number in $("$command" -t "$table" -S "$builtin" | tail -n +2 \
            | grep -nE -- '-j (KUBE|CNI)-' | cut -d: -f1 | sort -rn); do
          "$command" -t "$table" -D "$builtin" "$number"
        done
      done
      for chain in $chains; do "$command" -t "$table" -X "$chain"; done
    done
  done
}

down() {
  [ -d "$state" ] || { say "nothing to stop: $state does not exist"; return; }
  kube_bin=$("$here/build-binaries.sh" --dirs | sed -n 1p)
  stop kube-controller-manager
  stop kube-scheduler
  remove_pods
  stop kubelet
  stop kube-proxy
  "$kube_bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  kill_leftovers
  stop containerd
  stop kube-apiserver
  stop etcd
  stop registry
  remove_iptables_rules
  local cgroup mount
  for cgroup in /sys/fs/cgroup/*/kubepods; do
    if [ -d "$cgroup" ]; then find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
  while read -r mount; do umount -l "$mount" || true; done < <(our_mounts)
  for netns in /var/run/netns/cni-*; do
    [ -e "$netns" ] || continue
    umount "$netns" 2>/dev/null || true
    rm -f "$netns"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  [ -s "$state/sysctl.saved" ] && xargs -r sysctl -qw <"$state/sysctl.saved"
  rm -rf "$state"
  say "down: processes stopped, $BRIDGE, iptables rules, cgroups, mounts and $state removed"
}

status() {
  local name code=0
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler registry containerd kubelet \
      kube-proxy; do
    if running "$name"; then echo "$name running (pid $(cat "$pids/$name.pid"))"
    else echo "$name not running"; code=3; fi
  done
  [ $code = 0 ] && echo "KUBECONFIG=$kubeconfig"
  return $code
}

logs() {
  # What a person looks at when something failed: each log's tail, the disk (kubelet deletes
  # images when it runs low), the node, events, pods.
  local log
  printf '\n===== disk\n'; df -h "$state" 2>/dev/null || true
  for log in "$logs"/*.log; do
    [ -e "$log" ] || continue
    printf '\n===== %s (last 40 lines)\n' "$log"
    tail -n 40 "$log"
  done
  if [ -s "$kubeconfig" ] && running kube-apiserver; then
    kube_bin=$("$here/build-binaries.sh" --dirs | sed -n 1p)
    export KUBECONFIG=$kubeconfig
    printf '\n===== nodes\n'; "$kube_bin/kubectl" describe nodes | tail -n 40 || true
    printf '\n===== pods\n'; "$kube_bin/kubectl" get pods -A -o wide || true
    printf '\n===== events\n'; "$kube_bin/kubectl" get events -A --sort-by=.lastTimestamp | tail -n 60 || true
    kfp_logs
  fi
}

kfp_logs() {
  # KFP's and Argo's side of a failed run: each workflow's nodes, and the log of every
  # container of every pod in the namespace (KFP's services, Argo's controller, and each
  # run's driver and step pods, whose main container runs the launcher).
  local kubectl=$kube_bin/kubectl pod container
  "$kubectl" get namespace kubeflow >/dev/null 2>&1 || return 0
  printf '\n===== kubeflow: Argo workflows\n'
  "$kubectl" -n kubeflow get workflows.argoproj.io -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,MESSAGE:.status.message' 2>/dev/null || true
  "$kubectl" -n kubeflow get workflows.argoproj.io -o jsonpath='{range .items[*].status.nodes.*}{.displayName}{"\t"}{.type}{"\t"}{.phase}{"\t"}{.message}{"\n"}{end}' 2>/dev/null \
    | awk -F '\t' '$3 != "Succeeded"' || true
  for pod in $("$kubectl" -n kubeflow get pods -o name 2>/dev/null); do
    for container in $("$kubectl" -n kubeflow get "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}'); do
      printf '\n===== kubeflow %s container %s (last 40 lines)\n' "${pod#pod/}" "$container"
      "$kubectl" -n kubeflow logs "$pod" -c "$container" --tail 40 2>&1 || true
    done
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  kubeconfig) status >/dev/null && echo "$kubeconfig" ;;
  logs) logs ;;
  *) echo "usage: $0 up|down|status|kubeconfig|logs" >&2; exit 2 ;;
esac
