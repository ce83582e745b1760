package build

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mcbuild/mcbuild/internal/oci"
)

func TestParseArgs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "args")
	if err := os.WriteFile(file, []byte("# comment\n\nA=from-file\nB=file b\nFROM_ENV\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"FROM_ENV": "env value", "C": "c env"}[k]
		return v, ok
	}
	tests := []struct {
		name  string
		file  string
		flags []string
		want  map[string]string
		err   string
	}{
		{name: "flags", flags: []string{"A=1", "B=x=y", "EMPTY="}, want: map[string]string{"A": "1", "B": "x=y", "EMPTY": ""}},
		{name: "file then flags win", file: file, flags: []string{"A=flag"}, want: map[string]string{"A": "flag", "B": "file b", "FROM_ENV": "env value"}},
		{name: "bare key from env", flags: []string{"C", "UNSET"}, want: map[string]string{"C": "c env"}},
		{name: "empty key", flags: []string{"=v"}, err: `"=v"`},
		{name: "space in key", flags: []string{"A B=1"}, err: `"A B=1"`},
		// Found by FuzzParseArgs: a newline made a key no ARG line can name.
		{name: "newline in key", flags: []string{"0\n0="}, err: `"0\n0="`},
		{name: "control character in key", flags: []string{"A\x00B=1"}, err: "want KEY=VALUE"},
		{name: "missing file", file: filepath.Join(dir, "nope"), err: "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseArgs(tc.file, tc.flags, env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseArgs = %v, %v; want error mentioning %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseArgs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckSecret(t *testing.T) {
	src := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(src, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec string
		err  string
	}{
		{spec: "id=tok,src=" + src},
		{spec: "id=tok,env=HOME,type=env"},
		{spec: "id=tok,env=HOME"},
		{spec: "id=tok,env=MCBUILD_TEST_UNSET_VARIABLE", err: "environment variable MCBUILD_TEST_UNSET_VARIABLE is not set"},
		{spec: "id=tok,type=env,src=MCBUILD_TEST_UNSET_VARIABLE", err: "MCBUILD_TEST_UNSET_VARIABLE is not set"},
		{spec: "src=" + src, err: "id= is required"},
		{spec: "id=tok,src=/nonexistent/secret", err: "/nonexistent/secret"},
		{spec: "tok", err: "want id=ID,src=PATH"},
	}
	for _, tc := range tests {
		err := CheckSecret(tc.spec)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CheckSecret(%q) = %v, want error %q", tc.spec, err, tc.err)
		}
	}
}

func TestParseEnv(t *testing.T) {
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"FROM_ENV": "env value"}[k]
		return v, ok
	}
	tests := []struct {
		flags []string
		want  []string
		err   string
	}{
		{flags: []string{"A=1", "B=two words", "C=x=y"}, want: []string{"A=1", "B=two words", "C=x=y"}},
		// A key given twice keeps its first place and its last value.
		{flags: []string{"B=1", "A=2", "B=3"}, want: []string{"B=3", "A=2"}},
		{flags: []string{"FROM_ENV", "UNSET"}, want: []string{"FROM_ENV=env value"}},
		{flags: []string{"=v"}, err: `"=v"`},
		{flags: []string{"A B=1"}, err: `"A B=1"`},
	}
	for _, tc := range tests {
		got, err := ParseEnv(tc.flags, env)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEnv(%q) = %q, %v; want error mentioning %q", tc.flags, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseEnv(%q) = %q, %v; want %q", tc.flags, got, err, tc.want)
		}
	}
}

func TestResolveContainerfile(t *testing.T) {
	ctx := t.TempDir()
	both := t.TempDir()
	for _, f := range []string{filepath.Join(ctx, "Dockerfile"), filepath.Join(both, "Dockerfile"), filepath.Join(both, "Containerfile"), filepath.Join(ctx, "sub.containerfile")} {
		if err := os.WriteFile(f, []byte("FROM scratch\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, context, file, want, err string
	}{
		{name: "Dockerfile fallback", context: ctx, want: filepath.Join(ctx, "Dockerfile")},
		{name: "Containerfile preferred", context: both, want: filepath.Join(both, "Containerfile")},
		{name: "relative to context", context: ctx, file: "sub.containerfile", want: filepath.Join(ctx, "sub.containerfile")},
		{name: "absolute", context: both, file: filepath.Join(ctx, "Dockerfile"), want: filepath.Join(ctx, "Dockerfile")},
		{name: "missing file", context: ctx, file: "Nope", err: "Nope"},
		{name: "missing context", context: "/nonexistent/ctx", err: "/nonexistent/ctx"},
		{name: "context is a file", context: filepath.Join(ctx, "Dockerfile"), err: "not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveContainerfile(tc.context, tc.file)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want error mentioning %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestValidateOptions(t *testing.T) {
	if err := (StoreOptions{Driver: "btrfs"}).Validate(); err == nil || !strings.Contains(err.Error(), "vfs, overlay") {
		t.Errorf("driver btrfs: %v", err)
	}
	for _, d := range []string{"", "vfs", "overlay"} {
		if err := (StoreOptions{Driver: d}).Validate(); err != nil {
			t.Errorf("driver %q: %v", d, err)
		}
	}
	if err := (Options{Isolation: "vm", Containerfile: "/x"}).Validate(); err == nil || !strings.Contains(err.Error(), "chroot, oci") {
		t.Errorf("isolation vm: %v", err)
	}
	if err := (Options{Containerfile: "rel"}).Validate(); err == nil {
		t.Error("relative containerfile accepted")
	}
	if err := (Options{Network: "bridge", Containerfile: "/x"}).Validate(); err == nil || !strings.Contains(err.Error(), `network "bridge": valid values are host, none`) {
		t.Errorf("network bridge: %v", err)
	}
}

func TestCheckPlatform(t *testing.T) {
	for _, tc := range []struct {
		platform string
		ok       bool
	}{{"linux/amd64", true}, {"linux/arm/v7", true}, {"linux/s390x", true}, {"freebsd/amd64", true}, {"windows/amd64", false}, {"windows/arm64", false}} {
		p, err := oci.ParsePlatform(tc.platform)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckPlatform(p)
		if tc.ok != (err == nil) {
			t.Errorf("CheckPlatform(%s) = %v, want ok %v", tc.platform, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), `"`+tc.platform+`"`) || !strings.Contains(err.Error(), "does not build windows images")) {
			t.Errorf("CheckPlatform(%s) = %q, want it to name the platform and say windows is not built", tc.platform, err)
		}
	}
}

// TestCheckKeyValue: label and annotation keys are checked as build-arg
// keys are (one check): no blank or control character, a newline included.
func TestCheckKeyValue(t *testing.T) {
	for _, tc := range []struct {
		spec string
		ok   bool
	}{
		{"org.opencontainers.image.source=https://x", true}, {"a=", true}, {"a=b=c", true}, {"a=line\nbreak in the value", true},
		{"a\nb=1", false}, {"a\x01b=1", false}, {"a b=1", false}, {"=1", false}, {"noequals", false}, {"a\tb=1", false}, {"a\u0085b=1", false},
	} {
		err := CheckKeyValue(tc.spec)
		if tc.ok != (err == nil) {
			t.Errorf("CheckKeyValue(%q) = %v, want ok %v", tc.spec, err, tc.ok)
		}
		if !tc.ok {
			if _, argErr := ParseArgs("", []string{tc.spec}, func(string) (string, bool) { return "", false }); argErr == nil && tc.spec != "noequals" {
				t.Errorf("ParseArgs accepts the key of %q that CheckKeyValue refuses", tc.spec)
			}
		}
	}
}

func TestSecretLikeArgs(t *testing.T) {
	args := map[string]string{}
	secret := []string{"API_KEY", "DB_PASS", "GITHUB_TOKEN", "NPM_AUTH", "Password", "aws-secret-access-key", "git.credentials", "npmAuthToken", "ssh_key"}
	plain := []string{"GOPROXY", "KEYBOARD", "VERSION", "PASSAGE", "TOKENIZER_MODEL", "AUTHOR", "monkey", "HTTP_PROXY", "BYPASS_CACHE"}
	for _, k := range append(append([]string{}, secret...), plain...) {
		args[k] = "v"
	}
	want := append([]string{}, secret...)
	slices.Sort(want)
	if got := SecretLikeArgs(args); !slices.Equal(got, want) {
		t.Errorf("SecretLikeArgs = %q, want %q", got, want)
	}
}
