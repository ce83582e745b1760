package build

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"go.podman.io/buildah"
	"go.podman.io/buildah/define"
	"golang.org/x/sys/unix"

	"github.com/mcbuild/mcbuild/internal/choice"
)

// Network is how RUN steps reach the network.
type Network string

const (
	// NetworkHost runs RUN steps in the host's network namespace (the
	// default: no netavark, no CNI).
	NetworkHost Network = "host"
	// NetworkNone runs them in a network namespace of their own with only
	// a loopback interface, up: buildah's `--network none`, for hermetic
	// builds. Base images are still pulled (by mcbuild, not by RUN).
	NetworkNone Network = "none"
)

// Networks lists the accepted Options.Network values.
var Networks = []string{string(NetworkHost), string(NetworkNone)}

func parseNetwork(s string) (Network, error) {
	if s == "" {
		return NetworkHost, nil
	}
	v, err := choice.Parse("network", s, Networks)
	return Network(v), err
}

// namespaces and policy are buildah's options for n, as `buildah build
// --network host|none` sets them. With the host's namespace buildah sets up
// no network (no netavark, no CNI); with oci isolation, a disabled policy
// would give RUN a namespace of its own even for host.
func (n Network) namespaces() define.NamespaceOptions {
	return define.NamespaceOptions{{Name: "network", Host: n != NetworkNone}}
}

func (n Network) policy() define.NetworkConfigurationPolicy {
	if n == NetworkNone {
		return define.NetworkDisabled
	}
	return define.NetworkEnabled
}

// With chroot isolation (mcbuild's default, the one the Tekton Task uses)
// buildah cannot give a RUN step a network namespace: it logs "network
// namespace isolation not supported with chroot isolation, forcing host
// network". Every RUN step, chroot or oci, is started by a helper process
// buildah forks from this one (this binary re-executed under one of
// runtimeHelpers), with an environment of its own. For NetworkNone builds
// that helper moves into a new network namespace before anything else:
// while such a build runs, this process keeps one thread named
// markerThread; a helper whose parent has that thread unshares the network
// namespace on the thread its main goroutine is locked to, brings loopback
// up, and only then runs buildah's code, which starts the step's processes
// (the chroot child, or runc and the container) from that same goroutine
// and thread, so they are all in the new namespace. `RUN --network=host`
// means that namespace too.
var runtimeHelpers = []string{
	define.Package + "-oci-runtime", // buildah's runUsingRuntimeCommand (oci isolation)
	"buildah-chroot-runtime",        // buildah/chroot's runUsingChrootCommand
}

// markerThread is the name (at most 15 bytes, the kernel's limit) of the
// thread this process keeps while a NetworkNone build runs. Thread names
// are readable in /proc/PID/task/*/comm by the helpers.
const markerThread = "mcbuild-netnone"

// InitReexec must be called first in main instead of buildah.InitReexec
// (and in TestMain of packages that build): it is buildah's, plus the
// network isolation of RUN steps in NetworkNone builds. It returns true in
// a re-executed helper, which must then return.
func InitReexec() bool {
	if len(os.Args) > 0 && slices.Contains(runtimeHelpers, os.Args[0]) && parentWantsNoNetwork() {
		if err := enterNetworkNamespace(); err != nil {
			// RUN must not run with the host's network.
			fmt.Fprintf(os.Stderr, "--network none: the RUN step gets no network namespace of its own: %v\n", err)
			os.Exit(125)
		}
	}
	return buildah.InitReexec()
}

// parentWantsNoNetwork reports whether the parent process has a thread
// named markerThread.
func parentWantsNoNetwork() bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/comm", os.Getppid()))
	for _, t := range tasks {
		if b, err := os.ReadFile(t); err == nil && strings.TrimSpace(string(b)) == markerThread {
			return true
		}
	}
	return false
}

// enterNetworkNamespace moves the calling thread into a new network
// namespace with loopback up and locks the main goroutine to it for good.
func enterNetworkNamespace() error {
	// unshare(2) moves only the calling thread; a process forked from it
	// starts in its namespaces.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("creating a network namespace: %w", err)
	}
	return loopbackUp()
}

// loopbackUp sets IFF_UP on "lo" in the calling thread's network namespace
// (a socket belongs to the namespace of the thread that creates it), so
// RUN steps can still talk to themselves (test servers, build daemons).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: reading its flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: bringing it up: %w", err)
	}
	return nil
}

// isolateRunNetwork, for none, keeps a thread named markerThread until the
// returned func is called, so the RUN helpers of the build isolate
// themselves.
func isolateRunNetwork(none bool) func() {
	if !none {
		return func() {}
	}
	named, stop, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		// Locked and never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		old, _ := os.ReadFile("/proc/thread-self/comm")
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte(markerThread + "\x00")[0])), 0, 0, 0)
		close(named)
		<-stop
		// Should the runtime keep the thread (the main thread is never
		// ended), it must not go on marking.
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&append(bytes.TrimSpace(old), 0)[0])), 0, 0, 0)
	}()
	<-named
	return func() {
		close(stop)
		<-done
	}
}
