package registry

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestResolveAuthFile(t *testing.T) {
	root := t.TempDir()
	touch := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	xdg := filepath.Join(root, "run")
	home := filepath.Join(root, "home")
	dockerCfg := filepath.Join(root, "dockercfg")
	xdgAuth := filepath.Join(xdg, "containers", "auth.json")
	homeAuth := filepath.Join(home, ".config", "containers", "auth.json")
	dockerAuth := filepath.Join(dockerCfg, "config.json")
	homeDocker := filepath.Join(home, ".docker", "config.json")

	tests := []struct {
		name     string
		opts     Options
		env      string // REGISTRY_AUTH_FILE
		existing []string
		want     string
	}{
		{"explicit wins even if missing", Options{AuthFile: "/x/auth.json"}, "/env/auth.json", []string{xdgAuth}, "/x/auth.json"},
		{"env var wins over files", Options{}, "/env/auth.json", []string{xdgAuth}, "/env/auth.json"},
		{"xdg runtime first", Options{}, "", []string{xdgAuth, homeAuth, dockerAuth, homeDocker}, xdgAuth},
		{"home containers second", Options{}, "", []string{homeAuth, dockerAuth, homeDocker}, homeAuth},
		{"DOCKER_CONFIG third", Options{}, "", []string{dockerAuth, homeDocker}, dockerAuth},
		{"home docker last", Options{}, "", []string{homeDocker}, homeDocker},
		{"none", Options{}, "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range []string{xdgAuth, homeAuth, dockerAuth, homeDocker} {
				os.Remove(p)
			}
			for _, p := range tt.existing {
				touch(p)
			}
			t.Setenv("REGISTRY_AUTH_FILE", tt.env)
			t.Setenv("XDG_RUNTIME_DIR", xdg)
			t.Setenv("HOME", home)
			t.Setenv("DOCKER_CONFIG", dockerCfg)
			if got := tt.opts.ResolveAuthFile(); got != tt.want {
				t.Fatalf("ResolveAuthFile() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(file, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope.json")
	tests := []struct {
		name    string
		opts    Options
		wantErr string // "" = no error
	}{
		{"zero", Options{}, ""},
		{"existing auth file", Options{AuthFile: file}, ""},
		{"missing auth file", Options{AuthFile: missing}, "auth file " + missing + " does not exist"},
		{"auth file is a dir", Options{AuthFile: dir}, "is a directory"},
		{"cert dir ok", Options{CertDir: dir}, ""},
		{"cert dir missing", Options{CertDir: missing}, "cert dir " + missing},
		{"cert dir is a file", Options{CertDir: file}, "not a directory"},
		{"negative retries", Options{Retry: -1}, "retries -1: want 0 or more"},
		{"negative retry delay", Options{RetryDelay: -time.Second}, "retry delay -1s"},
	}
	option := map[string]string{"missing auth file": "AuthFile", "auth file is a dir": "AuthFile", "cert dir missing": "CertDir",
		"cert dir is a file": "CertDir", "negative retries": "Retry", "negative retry delay": "RetryDelay"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Option != option[tt.name] {
				t.Fatalf("Validate() = %v, want an OptionError for %s", err, option[tt.name])
			}
			if _, err := NewSession(tt.opts); err == nil {
				t.Fatal("NewSession accepted options Validate refuses")
			}
		})
	}
}

func TestDefaultOptionsVerifyTLS(t *testing.T) {
	if !DefaultOptions().TLSVerify {
		t.Fatal("DefaultOptions().TLSVerify = false, want true")
	}
}
