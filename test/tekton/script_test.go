package tekton

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// fakeMcbuild is a stand-in mcbuild that records how the step called it: its
// arguments (NUL-separated), its uid map and its /proc status.
const fakeMcbuild = `#!/bin/sh
printf '%s\0' "$@" >"$FAKE_MCBUILD_OUT/args"
cat /proc/self/uid_map >"$FAKE_MCBUILD_OUT/uid_map"
cat /proc/$$/status >"$FAKE_MCBUILD_OUT/status"
printf '%s' "${TMPDIR-}" >"$FAKE_MCBUILD_OUT/tmpdir"
`

type fakeCall struct {
	ran    bool
	args   []string
	uidMap string
	status string
	tmpDir string
}

// simulateFake runs sim with the stand-in mcbuild and returns its call.
func simulateFake(t *testing.T, sim taskRunSim) (*taskRunOutcome, fakeCall) {
	t.Helper()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "mcbuild"), []byte(fakeMcbuild), 0o755); err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	sim.BinDir = bin
	sim.Env = append(sim.Env, "FAKE_MCBUILD_OUT="+outDir)
	out := simulate(t, sim)
	var call fakeCall
	raw, err := os.ReadFile(filepath.Join(outDir, "args"))
	if err != nil {
		return out, call
	}
	call.ran = true
	call.args = strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	uidMap, _ := os.ReadFile(filepath.Join(outDir, "uid_map"))
	status, _ := os.ReadFile(filepath.Join(outDir, "status"))
	tmpDir, _ := os.ReadFile(filepath.Join(outDir, "tmpdir"))
	call.uidMap, call.status, call.tmpDir = string(uidMap), string(status), string(tmpDir)
	return out, call
}

// posixShells are the shells a step image may have as /bin/sh: dash
// (Debian), busybox ash (Alpine, distroless busybox) and bash (Fedora, UBI).
// The scripts are POSIX sh and must behave the same in each.
var posixShells = []struct {
	name string
	argv []string
}{
	{"dash", []string{"/bin/dash"}},
	{"busybox", []string{"busybox", "sh"}},
	{"bash", []string{"/bin/bash"}},
}

// forEachShell runs f once per shell in posixShells.
func forEachShell(t *testing.T, f func(t *testing.T, shell []string)) {
	for _, sh := range posixShells {
		t.Run(sh.name, func(t *testing.T) {
			if _, err := exec.LookPath(sh.argv[0]); err != nil {
				t.Fatalf("%s not found (make test installs busybox-static): %v", sh.argv[0], err)
			}
			f(t, sh.argv)
		})
	}
}

// flagValue returns the value of the last --name VALUE or --name=VALUE.
func flagValue(args []string, name string) (string, bool) {
	val, ok := "", false
	for i, a := range args {
		switch {
		case a == name && i+1 < len(args):
			val, ok = args[i+1], true
		case strings.HasPrefix(a, name+"="):
			val, ok = strings.TrimPrefix(a, name+"="), true
		}
	}
	return val, ok
}

func sourceWorkspace(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBuildStepArguments: every param reaches mcbuild as the right flag, array
// values with spaces and leading dashes intact, credentials and CA bundle
// picked up, storage on the emptyDir, results next to the declared paths.
func TestBuildStepArguments(t *testing.T) { forEachShell(t, testBuildStepArguments) }

func testBuildStepArguments(t *testing.T, shell []string) {
	src := sourceWorkspace(t)
	auth := t.TempDir()
	if err := os.WriteFile(filepath.Join(auth, ".dockerconfigjson"), []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := t.TempDir()
	if err := os.WriteFile(filepath.Join(ca, "ca-bundle.crt"), []byte("not checked by the stand-in"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, call := simulateFake(t, taskRunSim{
		TaskFile: buildTaskFile, Shell: shell,
		Params: v1.Params{
			strParam("IMAGE", "registry.example:5000/ns/app:v1"),
			strParam("DOCKERFILE", "build/Containerfile"),
			strParam("CONTEXT", "sub dir"),
			strParam("PLATFORM", "linux/amd64,linux/arm64"),
			strParam("COMPRESSION_FORMATS", "gzip"),
			strParam("ZSTD_LEVEL", "7"),
			strParam("PUBLISHER", "copy"),
			arrParam("BUILD_ARGS", "A=1", "B=two words", "C=--not-a-marker", "ALONE"),
			strParam("BUILD_ARGS_FILE", "args.env"),
			arrParam("LABELS", "l1=one", "l2=x=y"),
			arrParam("ANNOTATIONS", "org.opencontainers.image.title=a b"),
			strParam("TARGET_STAGE", "final"),
			strParam("TLSVERIFY", "false"),
			strParam("STORAGE_DRIVER", "overlay"),
			strParam("SOURCE_DATE_EPOCH", "1700000000"),
			strParam("RESULTS_BUDGET", "8000"),
		},
		Workspaces: map[string]string{"source": src, "dockerconfig": auth},
		Volumes:    map[string]string{"trusted-ca": ca},
	})
	if out.StepErr != nil || !call.ran {
		t.Fatalf("step failed (%v) or mcbuild not run:\n%s", out.StepErr, out.Output)
	}
	vlc := filepath.Join(out.Root, "volumes", "varlibcontainers")
	results := filepath.Join(out.Root, "tekton", "results")
	want := []string{
		"build", "--image", "registry.example:5000/ns/app:v1", "--context", "sub dir",
		"--compression-formats", "gzip", "--zstd-level", "7", "--publisher", "copy", "--reuse-layers=true", "--tls-verify=false",
		"--results-dir", results, "--results-budget", "8000",
		"--build-arg=A=1", "--build-arg=B=two words", "--build-arg=C=--not-a-marker", "--build-arg=ALONE",
		"--label=l1=one", "--label=l2=x=y", "--annotation=org.opencontainers.image.title=a b",
		"--file", "build/Containerfile", "--platform", "linux/amd64,linux/arm64",
		"--build-args-file", "args.env", "--target", "final", "--source-date-epoch", "1700000000", "--sbom-format", "spdx", "--konflux-labels",
		"--authfile", filepath.Join(auth, ".dockerconfigjson"), "--cert-dir", ca,
		"--storage-driver", "overlay", "--root", vlc + "/storage", "--runroot", vlc + "/run",
	}
	if !slices.Equal(call.args, want) {
		t.Errorf("mcbuild called with\n%s\nwant\n%s", joinLines(call.args), joinLines(want))
	}
	// mcbuild ran in a user namespace mapping root and 1-65536 to themselves,
	// holding CAP_SYS_ADMIN there (which the pod does not have).
	if f := strings.Fields(call.uidMap); !slices.Equal(f, []string{"0", "0", "1", "1", "1", "65536"}) {
		t.Errorf("uid map %q, want 0 0 1 and 1 1 65536", call.uidMap)
	}
	if capEff(t, call.status)&(1<<21) == 0 {
		t.Errorf("mcbuild lacks CAP_SYS_ADMIN in its user namespace:\n%s", call.status)
	}
	if call.tmpDir != vlc+"/tmp" {
		t.Errorf("TMPDIR %q, want the emptyDir's %s", call.tmpDir, vlc+"/tmp")
	}
}

// capEff returns the effective capability set of a /proc status.
func capEff(t *testing.T, status string) uint64 {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			x, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return x
		}
	}
	t.Fatalf("no CapEff in status:\n%s", status)
	return 0
}

// TestBuildStepDefaults: with IMAGE alone, mcbuild gets the defaults and no
// optional flag; an unbound dockerconfig workspace and a missing CA bundle
// add nothing.
func TestBuildStepDefaults(t *testing.T) {
	out, call := simulateFake(t, taskRunSim{
		TaskFile:   buildTaskFile,
		Params:     v1.Params{strParam("IMAGE", "registry.example/app")},
		Workspaces: map[string]string{"source": sourceWorkspace(t)},
	})
	if out.StepErr != nil || !call.ran {
		t.Fatalf("step failed (%v) or mcbuild not run:\n%s", out.StepErr, out.Output)
	}
	tekton := filepath.Join(out.Root, "tekton")
	vlc := filepath.Join(out.Root, "volumes", "varlibcontainers")
	want := []string{
		"build", "--image", "registry.example/app", "--context", ".",
		"--compression-formats", "gzip,zstd:chunked", "--zstd-level", "3", "--publisher", "stream", "--reuse-layers=true", "--tls-verify=true",
		"--results-dir", filepath.Join(tekton, "results"), "--results-budget", "4096", "--sbom-format", "spdx", "--konflux-labels",
		"--storage-driver", "vfs", "--root", vlc + "/storage", "--runroot", vlc + "/run",
	}
	if !slices.Equal(call.args, want) {
		t.Errorf("mcbuild called with\n%s\nwant\n%s", joinLines(call.args), joinLines(want))
	}
}

// TestAppendPlatform: IMAGE_APPEND_PLATFORM=true passes --append-platform,
// so mcbuild itself (internal/oci) puts the platform suffix on the tag;
// IMAGE reaches mcbuild unchanged; any value but true or false is refused
// before mcbuild runs. The suffix itself is checked with the real binary in
// TestMatrixPipeline and test/e2e.
func TestAppendPlatform(t *testing.T) {
	forEachShell(t, func(t *testing.T, shell []string) {
		testBoolParam(t, shell, "IMAGE_APPEND_PLATFORM", "--append-platform",
			v1.Params{strParam("PLATFORM", "linux/arm/v7")},
			func(t *testing.T, args []string) {
				if img, _ := flagValue(args, "--image"); img != "127.0.0.1:5000/ns/app:v1" {
					t.Errorf("--image %q, want IMAGE unchanged", img)
				}
				if p, _ := flagValue(args, "--platform"); p != "linux/arm/v7" {
					t.Errorf("--platform %q, want linux/arm/v7", p)
				}
			})
	})
}

// TestCompressWhileBuilding: COMPRESS_WHILE_BUILDING=true passes
// --compress-while-building, false passes nothing, anything else is refused
// before mcbuild runs.
func TestCompressWhileBuilding(t *testing.T) {
	forEachShell(t, func(t *testing.T, shell []string) {
		testBoolParam(t, shell, "COMPRESS_WHILE_BUILDING", "--compress-while-building", nil, nil)
	})
}

// TestReuseLayers: REUSE_LAYERS (default true) reaches mcbuild as
// --reuse-layers=true or =false; anything else is refused before mcbuild
// runs.
func TestReuseLayers(t *testing.T) {
	forEachShell(t, func(t *testing.T, shell []string) {
		testBoolParam(t, shell, "REUSE_LAYERS", "--reuse-layers=true", nil, func(t *testing.T, args []string) {
			if slices.Contains(args, "--reuse-layers=true") == slices.Contains(args, "--reuse-layers=false") {
				t.Errorf("want exactly one of --reuse-layers=true and =false: %q", args)
			}
		})
	})
}

// testBoolParam runs the build step with the true/false param set to true,
// false and two other values: true must pass flag, false nothing, and the
// others must be refused before mcbuild runs, with a message naming the
// param and the value. check, if set, looks at the arguments of the runs
// that went through; other params are added to IMAGE and param.
func testBoolParam(t *testing.T, shell []string, param, flag string, other v1.Params, check func(t *testing.T, args []string)) {
	src := sourceWorkspace(t)
	for _, tc := range []struct {
		value             string
		wantFlag, refused bool
	}{
		{value: "true", wantFlag: true},
		{value: "false"},
		{value: "yes", refused: true},
		{value: "", refused: true},
	} {
		t.Run(tc.value, func(t *testing.T) {
			params := append(v1.Params{strParam("IMAGE", "127.0.0.1:5000/ns/app:v1"), strParam(param, tc.value)}, other...)
			out, call := simulateFake(t, taskRunSim{
				TaskFile: buildTaskFile, Shell: shell, Params: params,
				Workspaces: map[string]string{"source": src},
			})
			if tc.refused {
				if out.StepErr == nil || call.ran || !strings.Contains(out.Output, param+" must be true or false, got "+tc.value) {
					t.Fatalf("%s %q: step ran mcbuild with %q, want a refusal naming the value:\n%s", param, tc.value, call.args, out.Output)
				}
				return
			}
			if out.StepErr != nil || !call.ran {
				t.Fatalf("step failed (%v) or mcbuild not run:\n%s", out.StepErr, out.Output)
			}
			if got := slices.Contains(call.args, flag); got != tc.wantFlag {
				t.Errorf("%s passed = %v, want %v: %q", flag, got, tc.wantFlag, call.args)
			}
			if check != nil {
				check(t, call.args)
			}
		})
	}
}

// TestDockerconfigWorkspace: config.json is used when there is no
// .dockerconfigjson; a bound workspace with neither fails the step.
func TestDockerconfigWorkspace(t *testing.T) {
	for _, tc := range []struct {
		file string
		ok   bool
	}{{"config.json", true}, {"auth.json", false}} {
		for _, taskFile := range []string{buildTaskFile, indexTaskFile, verifyTaskFile} {
			auth := t.TempDir()
			if err := os.WriteFile(filepath.Join(auth, tc.file), []byte(`{"auths":{}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			sim := taskRunSim{TaskFile: taskFile, Workspaces: map[string]string{"dockerconfig": auth}}
			switch taskFile {
			case buildTaskFile:
				sim.Params = v1.Params{strParam("IMAGE", "quay.io/ns/app:v1")}
				sim.Workspaces["source"] = sourceWorkspace(t)
			case indexTaskFile:
				sim.Params = v1.Params{strParam("IMAGE", "quay.io/ns/app:v1"), arrParam("IMAGES", "quay.io/ns/app:v1-linux-amd64@sha256:"+strings.Repeat("a", 64))}
			case verifyTaskFile:
				sim.Params = v1.Params{strParam("IMAGE_URL", "quay.io/ns/app:v1"), strParam("IMAGE_DIGEST", "sha256:"+strings.Repeat("b", 64))}
			}
			out, call := simulateFake(t, sim)
			got, _ := flagValue(call.args, "--authfile")
			if tc.ok && (out.StepErr != nil || got != filepath.Join(auth, tc.file)) {
				t.Errorf("%s with %s: --authfile %q (%v)\n%s", taskFile, tc.file, got, out.StepErr, out.Output)
			}
			if !tc.ok && (out.StepErr == nil || call.ran) {
				t.Errorf("%s with only %s: the step ran mcbuild, want a refusal", taskFile, tc.file)
			}
		}
	}
}

// clusterRequirementsURL is where the build step's refusal message sends
// the reader (tasks/mcbuild/0.1/README.md, "Cluster requirements").
const clusterRequirementsURL = "https://github.com/mcbuild/mcbuild/blob/main/tasks/mcbuild/0.1/README.md#cluster-requirements"

// TestBuildStepNeedsItsCapabilities: without any one of the capabilities the
// step adds (SETFCAP to map root, SETUID and SETGID for newuidmap and
// newgidmap) the user namespace cannot be made; the step fails before mcbuild
// and says which capabilities it needs.
func TestBuildStepNeedsItsCapabilities(t *testing.T) {
	for c, helper := range map[string]string{"SETFCAP": "newuidmap", "SETUID": "newuidmap", "SETGID": "newgidmap"} {
		t.Run(c, func(t *testing.T) {
			out, call := simulateFake(t, taskRunSim{
				TaskFile:   buildTaskFile,
				Params:     v1.Params{strParam("IMAGE", "quay.io/ns/app:v1")},
				Workspaces: map[string]string{"source": sourceWorkspace(t)},
				DropCaps:   []string{c},
			})
			if out.StepErr == nil || call.ran {
				t.Fatalf("without %s the step ran mcbuild:\n%s", c, out.Output)
			}
			for _, want := range []string{helper, "needs the capabilities SETFCAP, SETUID and SETGID", clusterRequirementsURL} {
				if !strings.Contains(out.Output, want) {
					t.Errorf("want %q in the output:\n%s", want, out.Output)
				}
			}
		})
	}
}

// TestIndexStepArguments: every IMAGES entry becomes one --from (empty ones,
// from skipped matrix runs, are dropped); an empty IMAGES fails.
func TestIndexStepArguments(t *testing.T) { forEachShell(t, testIndexStepArguments) }

func testIndexStepArguments(t *testing.T, shell []string) {
	a := "127.0.0.1:5000/ns/app:v1-linux-amd64@sha256:" + strings.Repeat("a", 64)
	b := "127.0.0.1:5000/ns/app:v1-linux-arm64@sha256:" + strings.Repeat("b", 64)
	out, call := simulateFake(t, taskRunSim{
		TaskFile: indexTaskFile, Shell: shell,
		Params: v1.Params{strParam("IMAGE", "127.0.0.1:5000/ns/app:v1"), arrParam("IMAGES", a, "", b), strParam("TLSVERIFY", "false")},
	})
	if out.StepErr != nil || !call.ran {
		t.Fatalf("step failed (%v) or mcbuild not run:\n%s", out.StepErr, out.Output)
	}
	results := filepath.Join(out.Root, "tekton", "results")
	want := []string{"index", "--image", "127.0.0.1:5000/ns/app:v1", "--tls-verify=false",
		"--results-dir", results, "--results-budget", "4096", "--from", a, "--from", b}
	if !slices.Equal(call.args, want) {
		t.Errorf("mcbuild called with\n%s\nwant\n%s", joinLines(call.args), joinLines(want))
	}
	if capEff(t, call.status) != 0 {
		t.Errorf("index step holds capabilities; it drops ALL:\n%s", call.status)
	}
	out, call = simulateFake(t, taskRunSim{
		TaskFile: indexTaskFile, Shell: shell,
		Params: v1.Params{strParam("IMAGE", "127.0.0.1:5000/ns/app:v1"), arrParam("IMAGES")},
	})
	if out.StepErr == nil || call.ran {
		t.Errorf("empty IMAGES: step ran mcbuild:\n%s", out.Output)
	}
}

// TestVerifyStepReference: IMAGE_URL's tag (and any digest) is replaced by
// IMAGE_DIGEST; a registry port stays; a malformed digest fails.
func TestVerifyStepReference(t *testing.T) { forEachShell(t, testVerifyStepReference) }

// TestVerifyRequireSBOM: REQUIRE_SBOM true adds --require-sbom, false
// leaves it out, anything else is refused naming the param.
func TestVerifyRequireSBOM(t *testing.T) {
	forEachShell(t, func(t *testing.T, shell []string) {
		d := "sha256:" + strings.Repeat("c", 64)
		for _, tc := range []struct{ value, refused string }{{"true", ""}, {"false", ""}, {"yes", "REQUIRE_SBOM must be true or false, got yes"}} {
			out, call := simulateFake(t, taskRunSim{TaskFile: verifyTaskFile, Shell: shell, Params: v1.Params{
				strParam("IMAGE_URL", "127.0.0.1:5000/ns/app:v1"), strParam("IMAGE_DIGEST", d), strParam("REQUIRE_SBOM", tc.value),
			}})
			if tc.refused != "" {
				if out.StepErr == nil || call.ran || !strings.Contains(out.Output, tc.refused) {
					t.Errorf("REQUIRE_SBOM=%s: ran mcbuild with %q, want the refusal %q\n%s", tc.value, call.args, tc.refused, out.Output)
				}
				continue
			}
			if out.StepErr != nil || slices.Contains(call.args, "--require-sbom") != (tc.value == "true") {
				t.Errorf("REQUIRE_SBOM=%s: mcbuild called with %q (%v)\n%s", tc.value, call.args, out.StepErr, out.Output)
			}
		}
	})
}

func testVerifyStepReference(t *testing.T, shell []string) {
	d := "sha256:" + strings.Repeat("c", 64)
	for _, tc := range []struct{ url, digest, want string }{
		{"127.0.0.1:5000/ns/app:v1", d, "127.0.0.1:5000/ns/app@" + d},
		{"127.0.0.1:5000/ns/app", d, "127.0.0.1:5000/ns/app@" + d},
		{"quay.io/ns/app:v1@sha256:" + strings.Repeat("0", 64), d, "quay.io/ns/app@" + d},
		{"quay.io/ns/app:v1", "c", ""},
	} {
		out, call := simulateFake(t, taskRunSim{
			TaskFile: verifyTaskFile, Shell: shell,
			Params: v1.Params{strParam("IMAGE_URL", tc.url), strParam("IMAGE_DIGEST", tc.digest)},
		})
		if tc.want == "" {
			if out.StepErr == nil || call.ran {
				t.Errorf("IMAGE_DIGEST %q: step ran mcbuild", tc.digest)
			}
			continue
		}
		want := []string{"subjects", "verify", "--tls-verify=true", tc.want}
		if out.StepErr != nil || !slices.Equal(call.args, want) {
			t.Errorf("IMAGE_URL %s: mcbuild called with %q (%v), want %q\n%s", tc.url, call.args, out.StepErr, want, out.Output)
		}
	}
}
