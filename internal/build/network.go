package build

import (
	"errors"

	nettypes "go.podman.io/common/libnetwork/types"
)

// errNoNetworkBackend is returned by every call into noNetwork: RUN steps share
// the host's network namespace, so buildah never needs to set up a network.
var errNoNetworkBackend = errors.New("mcbuild runs RUN steps in the host network namespace; no network backend is available")

// noNetwork stands in for netavark. Without it buildah looks for netavark even
// for FROM scratch builds: buildah.NewBuilder (buildah v1.45, new.go), which
// every stage goes through, fills a nil NetworkInterface from
// go.podman.io/common's network.NetworkBackend, and that fails when the
// netavark helper binary is not installed. A step image should not need it.
type noNetwork struct{}

var _ nettypes.ContainerNetwork = noNetwork{}

func (noNetwork) NetworkCreate(nettypes.Network, *nettypes.NetworkCreateOptions) (nettypes.Network, error) {
	return nettypes.Network{}, errNoNetworkBackend
}
func (noNetwork) NetworkUpdate(string, nettypes.NetworkUpdateOptions) error {
	return errNoNetworkBackend
}
func (noNetwork) NetworkRemove(string) error { return errNoNetworkBackend }
func (noNetwork) NetworkList(...nettypes.FilterFunc) ([]nettypes.Network, error) {
	return nil, nil
}
func (noNetwork) NetworkInspect(string) (nettypes.Network, error) {
	return nettypes.Network{}, errNoNetworkBackend
}
func (noNetwork) Setup(string, nettypes.SetupOptions) (map[string]nettypes.StatusBlock, error) {
	return nil, errNoNetworkBackend
}
func (noNetwork) Teardown(string, nettypes.TeardownOptions) error { return nil }
func (noNetwork) RunInRootlessNetns(func() error) error           { return errNoNetworkBackend }
func (noNetwork) RootlessNetnsInfo() (*nettypes.RootlessNetnsInfo, error) {
	return nil, errNoNetworkBackend
}
func (noNetwork) PestoSocketPath() string           { return "" }
func (noNetwork) Drivers() []string                 { return nil }
func (noNetwork) DefaultNetworkName() string        { return "host" }
func (noNetwork) NetworkInfo() nettypes.NetworkInfo { return nettypes.NetworkInfo{Backend: "none"} }
