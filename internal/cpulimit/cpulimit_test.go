package cpulimit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name      string
		procFile  string            // /proc/self/cgroup
		files     map[string]string // under the cgroup mount root
		want      float64
		wantFound bool
	}{
		{
			name:     "v2 limit on the own cgroup",
			procFile: "0::/kubepods/pod1/c1\n",
			files: map[string]string{
				"kubepods/pod1/c1/cpu.max": "150000 100000\n",
				"kubepods/pod1/cpu.max":    "max 100000\n",
			},
			want: 1.5, wantFound: true,
		},
		{
			name:     "v2 limit on a parent only",
			procFile: "0::/kubepods/pod1/c1\n",
			files: map[string]string{
				"kubepods/pod1/c1/cpu.max": "max 100000\n",
				"kubepods/pod1/cpu.max":    "200000 100000\n",
			},
			want: 2, wantFound: true,
		},
		{
			name:     "v2 the lowest on the way up wins",
			procFile: "0::/a/b\n",
			files: map[string]string{
				"a/b/cpu.max": "400000 100000\n",
				"a/cpu.max":   "50000 100000\n",
			},
			want: 0.5, wantFound: true,
		},
		{
			name:     "v2 no limit",
			procFile: "0::/a\n",
			files:    map[string]string{"a/cpu.max": "max 100000\n"},
		},
		{
			name:     "v2 namespaced: the mount is the container's cgroup",
			procFile: "0::/\n",
			files:    map[string]string{"cpu.max": "100000 100000\n"},
			want:     1, wantFound: true,
		},
		{
			name:     "v1 cpu,cpuacct",
			procFile: "5:memory:/x\n4:cpu,cpuacct:/kubepods/c1\n0::/\n",
			files: map[string]string{
				"cpu,cpuacct/kubepods/c1/cpu.cfs_quota_us":  "50000\n",
				"cpu,cpuacct/kubepods/c1/cpu.cfs_period_us": "100000\n",
				"cpu,cpuacct/cpu.cfs_quota_us":              "-1\n",
				"cpu,cpuacct/cpu.cfs_period_us":             "100000\n",
			},
			want: 0.5, wantFound: true,
		},
		{
			name:     "v1 host path not visible in the container's mount",
			procFile: "1:cpu:/docker/abc\n",
			files: map[string]string{
				"cpu/cpu.cfs_quota_us":  "300000\n",
				"cpu/cpu.cfs_period_us": "100000\n",
			},
			want: 3, wantFound: true,
		},
		{
			name:     "v1 no quota (-1)",
			procFile: "1:cpu:/\n2:cpuacct:/\n0::/\n",
			files: map[string]string{
				"cpu/cpu.cfs_quota_us":  "-1\n",
				"cpu/cpu.cfs_period_us": "100000\n",
			},
		},
		{
			name:     "garbage",
			procFile: "no colons here\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			proc := filepath.Join(dir, "cgroup")
			if err := os.WriteFile(proc, []byte(tc.procFile), 0o644); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(dir, "fs")
			for name, body := range tc.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, found := read(proc, root)
			if got != tc.want || found != tc.wantFound {
				t.Errorf("read = %v, %v; want %v, %v", got, found, tc.want, tc.wantFound)
			}
		})
	}
	if _, found := read(filepath.Join(t.TempDir(), "missing"), "/nonexistent"); found {
		t.Error("a missing /proc/self/cgroup gave a limit")
	}
}
