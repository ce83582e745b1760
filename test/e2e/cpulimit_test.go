package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// limitedCgroup creates a cgroup limited to one CPU (100 ms per 100 ms
// period) and returns the file that moves a process into it: the v1 cpu
// hierarchy where it is mounted (hybrid hosts such as the CI machine), else
// cgroup v2 with the cpu controller.
func limitedCgroup(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("mcbuild-e2e-%d", os.Getpid())
	write := func(p, v string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var dir string
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		dir = filepath.Join("/sys/fs/cgroup/cpu", name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(dir) })
		write(filepath.Join(dir, "cpu.cfs_period_us"), "100000")
		write(filepath.Join(dir, "cpu.cfs_quota_us"), "100000")
	} else {
		ctrl, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if err != nil || !strings.Contains(string(ctrl), "cpu") {
			t.Fatalf("no cgroup v1 cpu hierarchy and no v2 cpu controller on this machine (%v)", err)
		}
		write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu")
		dir = filepath.Join("/sys/fs/cgroup", name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(dir) })
		write(filepath.Join(dir, "cpu.max"), "100000 100000")
	}
	return filepath.Join(dir, "cgroup.procs")
}

// TestCompressWhileBuildingUnderCPULimit: --compress-while-building under a
// CPU quota lower than the core count warns that the compression spends the
// build's quota (measured here: the whole run gets slower). The registry is
// unreachable; the warning comes before anything is contacted.
func TestCompressWhileBuildingUnderCPULimit(t *testing.T) {
	procs := limitedCgroup(t)
	dir := contextFiles(t, "FROM scratch\nCOPY rootfs/amd64/ /\n", "amd64")
	args := append([]string{"build", "--tls-verify=false", "--image", "127.0.0.1:1/e2e/limit:v1", "--context", dir,
		"--compress-while-building"}, storageFlags(t)...)
	// The shell moves itself into the cgroup, then becomes mcbuild.
	cmd := exec.Command("sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, procs, mcbuildBin}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("a build pushing to 127.0.0.1:1 succeeded")
	}
	const want = "Warning: --compress-while-building under a CPU limit of 1 CPUs (cgroup quota;"
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr does not warn about the CPU limit (%q):\n%s", want, stderr.String())
	}
}
