package tekton

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// The build Task's parameters from Konflux's buildah task (issue 17).

// paramCase is one value of a param: the arguments mcbuild must get (want,
// in this order, contiguous), must not get (absent), or the refusal the
// step must print before mcbuild runs (refused).
type paramCase struct {
	value   v1.ParamValue
	want    []string
	absent  []string
	refused string
}

func str(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }

func arr(values ...string) v1.ParamValue {
	return v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: values}
}

// konfluxParamCases are, per param, the values the step passes on and
// those it refuses, naming the param.
var konfluxParamCases = map[string][]paramCase{
	"HERMETIC": {
		{value: str("true"), want: []string{"--network=none"}},
		{value: str("false"), absent: []string{"--network=none"}},
		{value: str("yes"), refused: "HERMETIC must be true or false, got yes"},
		{value: str(""), refused: "HERMETIC must be true or false, got "},
	},
	"SKIP_UNUSED_STAGES": {
		{value: str("true"), absent: []string{"--skip-unused-stages=false"}},
		{value: str("false"), want: []string{"--skip-unused-stages=false"}},
		{value: str("no"), refused: "SKIP_UNUSED_STAGES must be true or false, got no"},
	},
	"IMAGE_EXPIRES_AFTER": {
		{value: str("2d"), want: []string{"--expires-after", "2d"}},
		{value: str("36h"), want: []string{"--expires-after", "36h"}},
		{value: str(""), absent: []string{"--expires-after"}},
		{value: str("2 days"), refused: "IMAGE_EXPIRES_AFTER must be a positive whole number and a unit"},
		{value: str("0w"), refused: "IMAGE_EXPIRES_AFTER must be a positive whole number and a unit"},
		{value: str("1y"), refused: "e.g. 1h, 2d, 3w), got 1y"},
		{value: str("-1d"), refused: "IMAGE_EXPIRES_AFTER must be"},
		{value: str("d"), refused: "IMAGE_EXPIRES_AFTER must be"},
	},
	"COMMIT_SHA": {
		{value: str("0123abcd"), want: []string{"--revision", "0123abcd"}},
		{value: str(""), absent: []string{"--revision"}},
		{value: str("abc def"), refused: "COMMIT_SHA must not contain blanks or control characters, got 'abc def'"},
	},
	"SOURCE_URL": {
		{value: str("https://git.example/org/app.git"), want: []string{"--source-url", "https://git.example/org/app.git"}},
		{value: str("https://bot:s3cret@git.example/app"), refused: "SOURCE_URL holds a password"},
		{value: str("https://git.example/a\nb"), refused: "SOURCE_URL must not contain blanks"},
	},
	"HTTP_PROXY": {
		{value: str("http://proxy.example:3128"), want: []string{"--http-proxy", "http://proxy.example:3128"}},
		{value: str("proxy.example:3128"), want: []string{"--http-proxy", "proxy.example:3128"}},
		{value: str(""), absent: []string{"--http-proxy"}},
		{value: str("ftp://proxy.example"), refused: "HTTP_PROXY must be an http, https, socks5 or socks5h URL"},
	},
	"NO_PROXY": {
		{value: str(".internal,10.0.0.0/8"), want: []string{"--no-proxy", ".internal,10.0.0.0/8"}},
		{value: str("a, b"), refused: "NO_PROXY must not contain blanks"},
	},
	"ADDITIONAL_SECRET": {
		{value: str("does-not-exist"), absent: []string{"--secret"}},
		{value: str("Build_Secrets"), refused: "ADDITIONAL_SECRET must be a Secret's name"},
		{value: str(""), refused: "ADDITIONAL_SECRET must be a Secret's name"},
		{value: str("-x"), refused: "ADDITIONAL_SECRET must be a Secret's name"},
	},
	"SBOM_TYPE": {
		{value: str("spdx"), want: []string{"--sbom-format", "spdx"}},
		{value: str("cyclonedx"), want: []string{"--sbom-format", "cyclonedx"}},
		{value: str("spdx-json"), refused: "SBOM_TYPE must be spdx or cyclonedx, got spdx-json"},
		{value: str(""), refused: "SBOM_TYPE must be spdx or cyclonedx, got "},
	},
	"SKIP_SBOM_GENERATION": {
		{value: str("false"), want: []string{"--sbom-format", "spdx"}, absent: []string{"--sbom"}},
		{value: str("true"), want: []string{"--sbom=false"}, absent: []string{"--sbom-format"}},
		{value: str("yes"), refused: "SKIP_SBOM_GENERATION must be true or false, got yes"},
	},
	"COMPRESSION_FORMATS": {
		{value: str("dual"), want: []string{"--compression-formats", "dual"}},
		{value: str(""), want: []string{"--compression-formats", ""}},
	},
	"ENV_VARS": {
		{value: arr("A=1", "B=two words", "C=--labels", "D=x=y"), want: []string{"--env=A=1", "--env=B=two words", "--env=C=--labels", "--env=D=x=y"}},
		{value: arr(), absent: []string{"--env"}},
		{value: arr("A=1", "=x"), refused: "ENV_VARS entries must be KEY=VALUE, the key without blanks, got '=x'"},
		{value: arr("A B=1"), refused: "ENV_VARS entries must be KEY=VALUE, the key without blanks, got 'A B=1'"},
	},
}

// TestKonfluxParams: every param taken from Konflux's buildah task reaches
// mcbuild as its flag, or is refused before mcbuild runs with a message
// naming it, in every shell; --konflux-labels is always passed.
func TestKonfluxParams(t *testing.T) {
	forEachShell(t, func(t *testing.T, shell []string) {
		for param, cases := range konfluxParamCases {
			for _, tc := range cases {
				t.Run(param+"="+strings.Join(append([]string{tc.value.StringVal}, tc.value.ArrayVal...), ","), func(t *testing.T) {
					p := v1.Param{Name: param, Value: tc.value}
					checkParamCase(t, taskRunSim{TaskFile: buildTaskFile, Shell: shell,
						Params:     v1.Params{strParam("IMAGE", "127.0.0.1:5000/ns/app:v1"), p},
						Workspaces: map[string]string{"source": sourceWorkspace(t)}}, tc)
				})
			}
		}
	})
}

// checkParamCase runs sim with the stand-in mcbuild and checks tc.
func checkParamCase(t *testing.T, sim taskRunSim, tc paramCase) []string {
	t.Helper()
	out, call := simulateFake(t, sim)
	if tc.refused != "" {
		if out.StepErr == nil || call.ran || !strings.Contains(out.Output, tc.refused) {
			t.Fatalf("step ran mcbuild with %q, want a refusal %q:\n%s", call.args, tc.refused, out.Output)
		}
		return nil
	}
	if out.StepErr != nil || !call.ran {
		t.Fatalf("step failed (%v) or mcbuild not run:\n%s", out.StepErr, out.Output)
	}
	if len(tc.want) > 0 && !containsRun(call.args, tc.want) {
		t.Errorf("mcbuild called with\n%s\nwant the arguments %q", joinLines(call.args), tc.want)
	}
	for _, a := range tc.absent {
		if slices.ContainsFunc(call.args, func(s string) bool { return s == a || strings.HasPrefix(s, a+"=") }) {
			t.Errorf("mcbuild called with %s: %q", a, call.args)
		}
	}
	if sim.TaskFile == buildTaskFile && !slices.Contains(call.args, "--konflux-labels") {
		t.Errorf("mcbuild called without --konflux-labels: %q", call.args)
	}
	return call.args
}

// containsRun reports whether want appears in args as a contiguous run.
func containsRun(args, want []string) bool {
	for i := 0; i+len(want) <= len(args); i++ {
		if slices.Equal(args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

// secretVolume lays out a Secret volume as the kubelet does: a timestamped
// directory with the keys, ..data pointing at it, and every key a symlink
// into ..data.
func secretVolume(t *testing.T, keys map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_12_06_10_00_00.123456789")
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for k, v := range keys {
		if err := os.WriteFile(filepath.Join(ts, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestAdditionalSecretKeys: each key of the mounted Secret, dotfiles
// included, becomes --secret id=KEY and id=SECRET/KEY with the key's file;
// the kubelet's ..data entries do not.
func TestAdditionalSecretKeys(t *testing.T) {
	forEachShell(t, func(t *testing.T, shell []string) {
		vol := secretVolume(t, map[string]string{"token": "t0k", ".npmrc": "//registry/:_authToken=x"})
		out, call := simulateFake(t, taskRunSim{TaskFile: buildTaskFile, Shell: shell,
			Params:     v1.Params{strParam("IMAGE", "127.0.0.1:5000/ns/app:v1"), strParam("ADDITIONAL_SECRET", "build-secrets")},
			Workspaces: map[string]string{"source": sourceWorkspace(t)},
			Volumes:    map[string]string{"additional-secret": vol}})
		if out.StepErr != nil || !call.ran {
			t.Fatalf("step failed (%v) or mcbuild not run:\n%s", out.StepErr, out.Output)
		}
		var secrets []string
		for i, a := range call.args {
			if a == "--secret" && i+1 < len(call.args) {
				secrets = append(secrets, call.args[i+1])
			}
		}
		want := []string{
			"id=token,src=" + vol + "/token", "id=build-secrets/token,src=" + vol + "/token",
			"id=.npmrc,src=" + vol + "/.npmrc", "id=build-secrets/.npmrc,src=" + vol + "/.npmrc",
		}
		slices.Sort(secrets)
		slices.Sort(want)
		if !slices.Equal(secrets, want) {
			t.Errorf("--secret values\n%s\nwant\n%s", joinLines(secrets), joinLines(want))
		}
	})
}

// TestKonfluxBuild runs the build Task's step with the real mcbuild in its
// user namespace, with the Konflux params at once: the Secret's key reaches
// RUN under both ids, ENV_VARS too, HERMETIC cuts RUN off the registry the
// base layers come from, an unused stage that would fail is skipped, dual
// publishes gzip and zstd:chunked, and COMMIT_SHA, SOURCE_URL and
// IMAGE_EXPIRES_AFTER become labels next to Konflux's own.
func TestKonfluxBuild(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("tekton/konflux")
	src := testfixture.Context(t, map[string]string{"Containerfile": "FROM scratch AS unused\nRUN exit 7\n\n" +
		"FROM scratch\nCOPY rootfs/amd64/ /\n" +
		"RUN --mount=type=secret,id=token --mount=type=secret,id=build-secrets/token busybox cmp /run/secrets/token /run/secrets/build-secrets/token && " +
		"busybox sha256sum /run/secrets/token | busybox cut -d' ' -f1 > /token.sha256 && echo \"$GREETING\" > /greeting && " +
		"if busybox wget -q -O /dev/null http://" + reg.Host + "/v2/; then echo reached; else echo unreachable; fi > /net\n"}, "amd64")
	const token = "t0k-for-the-build"
	out := simulate(t, taskRunSim{TaskFile: buildTaskFile,
		Params: v1.Params{
			strParam("IMAGE", repoName+":v1"), strParam("PLATFORM", "linux/amd64"), strParam("TLSVERIFY", "false"),
			strParam("COMPRESSION_FORMATS", "dual"), strParam("HERMETIC", "true"), strParam("ADDITIONAL_SECRET", "build-secrets"),
			arrParam("ENV_VARS", "GREETING=hello from ENV_VARS"), strParam("COMMIT_SHA", "0123abcd"),
			strParam("SOURCE_URL", "https://git.example/org/app.git"), strParam("IMAGE_EXPIRES_AFTER", "3w"),
		},
		Workspaces: map[string]string{"source": src},
		Volumes:    map[string]string{"additional-secret": secretVolume(t, map[string]string{"token": token})},
	})
	if out.StepErr != nil {
		t.Fatalf("%v\n%s", out.StepErr, out.Output)
	}
	repo := testregistry.OpenRepo(t, repoName)
	_, manifests := readIndex(t, repo, out.Results["IMAGE_DIGEST"])
	if len(manifests) != 2 {
		t.Fatalf("index lists %d manifests, want gzip and zstd:chunked", len(manifests))
	}
	sum := sha256.Sum256([]byte(token))
	wantFiles := map[string]string{"token.sha256": hex.EncodeToString(sum[:]), "greeting": "hello from ENV_VARS", "net": "unreachable"}
	wantLabels := map[string]string{"org.opencontainers.image.revision": "0123abcd", "vcs-ref": "0123abcd",
		"org.opencontainers.image.source": "https://git.example/org/app.git", "quay.expires-after": "3w", "architecture": "x86_64", "vcs-type": "git"}
	for i, f := range []formats.Format{formats.Gzip, formats.ZstdChunked} {
		v, err := imagecheck.Check(context.Background(), repo, manifests[i], f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for name, want := range wantFiles {
			if got := strings.TrimSpace(string(v.Files[name])); got != want {
				t.Errorf("%s: /%s = %q, want %q", f, name, got, want)
			}
		}
		for k, want := range wantLabels {
			if got := v.Config.Config.Labels[k]; got != want {
				t.Errorf("%s: label %s = %q, want %q", f, k, got, want)
			}
		}
		if v.Config.Config.Labels["build-date"] == "" {
			t.Errorf("%s: no build-date label", f)
		}
	}
	if strings.Contains(out.Output, token) {
		t.Errorf("the step printed the secret:\n%s", out.Output)
	}
}
