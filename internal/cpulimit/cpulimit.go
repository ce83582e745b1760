// Package cpulimit reads the CPU bandwidth limit (the cgroup CPU quota) a
// process runs under: a Kubernetes CPU limit, `podman run --cpus`, systemd's
// CPUQuota=. Work that only uses idle cores still spends that quota.
package cpulimit

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Get returns the CPUs' worth of run time per period that this process's
// cgroups allow (the lowest limit between its cgroup and the root), and
// false if none is set or it cannot be read.
func Get() (float64, bool) {
	return read("/proc/self/cgroup", "/sys/fs/cgroup")
}

// read is Get with the paths of /proc/self/cgroup and the cgroup mounts.
func read(procCgroup, root string) (float64, bool) {
	f, err := os.Open(procCgroup)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var v1, v2 string
	hasV1, hasV2 := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, hasV2 = parts[2], true
		case slices.Contains(strings.Split(parts[1], ","), "cpu"):
			v1, hasV1 = parts[2], true
		}
	}
	if hasV1 { // a v1 cpu hierarchy (hybrid hosts have both; cpu is in v1 then)
		for _, mount := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
			if lim, ok := walk(filepath.Join(root, mount), v1, v1Limit); ok {
				return lim, true
			}
		}
		return 0, false
	}
	if hasV2 {
		for _, mount := range []string{root, filepath.Join(root, "unified")} {
			if lim, ok := walk(mount, v2, v2Limit); ok {
				return lim, true
			}
		}
	}
	return 0, false
}

// walk returns the lowest limit from the cgroup at mount+path up to mount.
// Inside a container the mount often shows only the container's own cgroup
// while path is the host's; then the walk starts at the mount itself.
func walk(mount, path string, limit func(dir string) (float64, bool)) (float64, bool) {
	dir := filepath.Join(mount, filepath.Clean("/"+path))
	if _, err := os.Stat(dir); err != nil {
		dir = mount
	}
	lowest, found := 0.0, false
	for {
		if lim, ok := limit(dir); ok && (!found || lim < lowest) {
			lowest, found = lim, true
		}
		if dir == mount || len(dir) < len(mount) {
			return lowest, found
		}
		dir = filepath.Dir(dir)
	}
}

// v2Limit reads cpu.max: "max 100000" (none) or "QUOTA PERIOD".
func v2Limit(dir string) (float64, bool) {
	raw, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	return ratio(f[0], f[1])
}

// v1Limit reads cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us.
func v1Limit(dir string) (float64, bool) {
	q, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	p, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

func ratio(quota, period string) (float64, bool) {
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return float64(q) / float64(p), true
}
