# What the cluster test runs and where. Tekton and Chains come from
# test/tekton/go.mod, so the in-process tests and the real cluster exercise
# the same code.
KUBE_VERSION=v1.34.4
KUBE_STAGING_VERSION=v0.34.4
ETCD_VERSION=v3.6.16
_gomod="$(dirname "${BASH_SOURCE[0]}")/../tekton/go.mod"
TEKTON_VERSION=$(awk '$1=="github.com/tektoncd/pipeline"{print $2}' "$_gomod")
CHAINS_VERSION=$(awk '$1=="github.com/tektoncd/chains"{print $2}' "$_gomod")
unset _gomod

# The node's address, inside the network namespace the test creates (no
# route out), and the registry pods push to, on it.
NETNS=mcbuild-cluster
NODE_IP=10.250.0.1
REGISTRY=$NODE_IP:5000
