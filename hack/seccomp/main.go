// Command seccomp generates the build step's Localhost seccomp profile,
// tasks/mcbuild/0.1/seccomp/mcbuild.json, or checks that the file is what it
// would generate:
//
//	go run . -task ../../tasks/mcbuild/0.1/mcbuild.yaml -out ../../tasks/mcbuild/0.1/seccomp/mcbuild.json
//	go run . -task ../../tasks/mcbuild/0.1/mcbuild.yaml -check ../../tasks/mcbuild/0.1/seccomp/mcbuild.json
//
// The profile is containerd's RuntimeDefault (contrib/seccomp.DefaultProfile,
// the code containerd's CRI plugin runs for `seccompProfile: RuntimeDefault`)
// for a container holding exactly the capabilities the Task's build step
// adds, on amd64 and on arm64 (one file for both node architectures: the
// rules of both, the architectures of both), plus one rule allowing
// [additions]. It is written in the OCI runtime-spec form (no Docker-style
// includes/excludes): containerd decodes a Localhost profile straight into
// the runtime-spec type, CRI-O and podman read the same fields.
//
// DefaultProfile chooses its architecture rules by runtime.GOARCH, so the
// arm64 half comes from this program built for arm64 and run under qemu-user
// (binfmt_misc, `make binfmt`) with -arch-profile.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"sigs.k8s.io/yaml"
)

// additions are the syscalls the build step makes that RuntimeDefault
// allows only to a container holding CAP_SYS_ADMIN (chroot: CAP_SYS_CHROOT),
// which the step does not hold: it makes them inside the user namespace it
// creates, where the kernel checks them against that namespace's
// capabilities. tasks/mcbuild/0.1/README.md ("Cluster requirements") says
// what each is for; test/tekton's TestStepOnContainerRuntimes runs the build
// without each: it fails without unshare, mount, umount2 or chroot, RUN sees
// the node's hostname without sethostname, and without pivot_root buildah
// falls back to chroot(2), leaving the step's own mounts under RUN's root.
var additions = []string{
	"unshare",
	"mount",
	"umount2",
	"chroot",
	"pivot_root",
	"sethostname",
}

// archs are the node architectures the profile serves (the Task's
// tekton.dev/platforms).
var archs = []string{"amd64", "arm64"}

// buildStep is the step of the Task whose capabilities the profile is made for.
const buildStep = "build"

func main() {
	taskFile := flag.String("task", "", "the Task file whose build step's capabilities.add the profile is made for")
	out := flag.String("out", "", "write the profile to this file")
	check := flag.String("check", "", "exit 1 when this file differs from the profile")
	archProfile := flag.Bool("arch-profile", false, "print RuntimeDefault for this program's architecture (internal)")
	flag.Parse()
	if err := run(*taskFile, *out, *check, *archProfile); err != nil {
		fmt.Fprintln(os.Stderr, "seccomp:", err)
		os.Exit(1)
	}
}

func run(taskFile, out, check string, archProfile bool) error {
	if taskFile == "" {
		return fmt.Errorf("-task is required")
	}
	caps, err := stepCaps(taskFile)
	if err != nil {
		return err
	}
	if archProfile {
		return json.NewEncoder(os.Stdout).Encode(runtimeDefault(caps))
	}
	if (out == "") == (check == "") {
		return fmt.Errorf("give one of -out and -check")
	}
	profile, err := generate(taskFile, caps)
	if err != nil {
		return err
	}
	if out != "" {
		return os.WriteFile(out, profile, 0o644)
	}
	have, err := os.ReadFile(check)
	if err != nil {
		return err
	}
	if !bytes.Equal(have, profile) {
		return fmt.Errorf("%s is not containerd's RuntimeDefault for capabilities %v plus %v: regenerate it with `make seccomp`", check, caps, additions)
	}
	fmt.Printf("%s: containerd's RuntimeDefault (%s) for capabilities %v plus %v\n", check, strings.Join(archs, ", "), caps, additions)
	return nil
}

// stepCaps returns the capabilities the Task's build step adds, as
// CAP_-prefixed names (what the runtime puts in the OCI spec).
func stepCaps(taskFile string) ([]string, error) {
	raw, err := os.ReadFile(taskFile)
	if err != nil {
		return nil, err
	}
	var task struct {
		Spec struct {
			Steps []struct {
				Name            string `json:"name"`
				SecurityContext *struct {
					Capabilities *struct {
						Add []string `json:"add"`
					} `json:"capabilities"`
				} `json:"securityContext"`
			} `json:"steps"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &task); err != nil {
		return nil, fmt.Errorf("%s: %w", taskFile, err)
	}
	for _, s := range task.Spec.Steps {
		if s.Name != buildStep {
			continue
		}
		if s.SecurityContext == nil || s.SecurityContext.Capabilities == nil || len(s.SecurityContext.Capabilities.Add) == 0 {
			return nil, fmt.Errorf("%s: step %s adds no capabilities", taskFile, buildStep)
		}
		var caps []string
		for _, c := range s.SecurityContext.Capabilities.Add {
			caps = append(caps, "CAP_"+strings.TrimPrefix(c, "CAP_"))
		}
		return caps, nil
	}
	return nil, fmt.Errorf("%s: no step %s", taskFile, buildStep)
}

// runtimeDefault is containerd's RuntimeDefault for a container holding caps,
// on this program's architecture.
func runtimeDefault(caps []string) *specs.LinuxSeccomp {
	return seccomp.DefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps,
	}}})
}

// generate returns the profile: the architectures' RuntimeDefault profiles
// merged (every rule of the first, then the rules of the others it lacks;
// every architecture), then the additions.
func generate(taskFile string, caps []string) ([]byte, error) {
	var merged *specs.LinuxSeccomp
	for _, arch := range archs {
		p, err := archDefault(arch, taskFile, caps)
		if err != nil {
			return nil, err
		}
		if merged == nil {
			merged = p
			continue
		}
		if merged.DefaultAction != p.DefaultAction || !reflect.DeepEqual(merged.DefaultErrnoRet, p.DefaultErrnoRet) {
			return nil, fmt.Errorf("RuntimeDefault on %s has another default action than on %s", arch, archs[0])
		}
		for _, a := range p.Architectures {
			if !slices.Contains(merged.Architectures, a) {
				merged.Architectures = append(merged.Architectures, a)
			}
		}
		for _, r := range p.Syscalls {
			if !slices.ContainsFunc(merged.Syscalls, func(m specs.LinuxSyscall) bool { return reflect.DeepEqual(m, r) }) {
				merged.Syscalls = append(merged.Syscalls, r)
			}
		}
	}
	for _, r := range merged.Syscalls {
		for _, name := range r.Names {
			if slices.Contains(additions, name) && r.Action == specs.ActAllow && len(r.Args) == 0 {
				return nil, fmt.Errorf("RuntimeDefault allows %s already: drop it from the additions", name)
			}
		}
	}
	merged.Syscalls = append(merged.Syscalls, specs.LinuxSyscall{Names: additions, Action: specs.ActAllow})
	b, err := json.MarshalIndent(merged, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// archDefault is RuntimeDefault on arch: computed here for this program's
// architecture, else by this program built for arch (run through binfmt_misc).
func archDefault(arch, taskFile string, caps []string) (*specs.LinuxSeccomp, error) {
	if arch == runtime.GOARCH {
		// Through JSON, as the other architectures' profiles come, so that
		// equal rules compare equal (an empty Args slice becomes nil).
		b, err := json.Marshal(runtimeDefault(caps))
		if err != nil {
			return nil, err
		}
		var p specs.LinuxSeccomp
		return &p, json.Unmarshal(b, &p)
	}
	dir, err := os.MkdirTemp("", "mcbuild-seccomp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "seccomp-"+arch)
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOARCH="+arch, "CGO_ENABLED=0")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("building this program for %s (run it from hack/seccomp): %w", arch, err)
	}
	var stdout bytes.Buffer
	cmd := exec.Command(bin, "-task", taskFile, "-arch-profile")
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("running this program for %s (needs qemu-user registered with binfmt_misc: `make binfmt`): %w", arch, err)
	}
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(stdout.Bytes(), &p); err != nil {
		return nil, fmt.Errorf("profile for %s: %w", arch, err)
	}
	return &p, nil
}
