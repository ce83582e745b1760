package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote/auth"
)

func b64(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

func TestAuthFileLookup(t *testing.T) {
	file := `{"auths": {
  "reg.example:5000": {"auth": "` + b64("host", "h") + `"},
  "reg.example:5000/ns": {"auth": "` + b64("ns", "n") + `"},
  "reg.example:5000/ns/app": {"auth": "` + b64("app", "a") + `"},
  "https://index.docker.io/v1/": {"auth": "` + b64("hub", "d") + `"},
  "https://legacy.example/v1/": {"auth": "` + b64("legacy", "l") + `"},
  "token.example": {"identitytoken": "refresh"},
  "broken.example": {"auth": "!!!"}
}}`
	path := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	af := newCredentials(path)
	tests := []struct {
		host, path string
		want       auth.Credential
		wantErr    bool
	}{
		{"reg.example:5000", "ns/app", auth.Credential{Username: "app", Password: "a"}, false},
		{"reg.example:5000", "ns/app/sub", auth.Credential{Username: "app", Password: "a"}, false},
		{"reg.example:5000", "ns/other", auth.Credential{Username: "ns", Password: "n"}, false},
		{"reg.example:5000", "other/app", auth.Credential{Username: "host", Password: "h"}, false},
		{"reg.example:5000", "", auth.Credential{Username: "host", Password: "h"}, false},
		{"reg.example", "ns/app", auth.EmptyCredential, false}, // port matters
		{"registry-1.docker.io", "library/busybox", auth.Credential{Username: "hub", Password: "d"}, false},
		{"legacy.example", "x", auth.Credential{Username: "legacy", Password: "l"}, false},
		// containers/image ignores an entry without "auth"; so do we, or the
		// oras side and the push side would disagree.
		{"token.example", "x", auth.EmptyCredential, false},
		{"unknown.example", "x", auth.EmptyCredential, false},
		{"broken.example", "x", auth.EmptyCredential, true},
	}
	for _, tt := range tests {
		t.Run(tt.host+"/"+tt.path, func(t *testing.T) {
			got, err := af.credentialFunc(tt.path)(context.Background(), tt.host)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "!!!") {
				t.Fatalf("error quotes the secret: %v", err)
			}
			if got != tt.want {
				t.Fatalf("credential = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAuthFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		wantErr       bool
	}{
		{"no auths", `{"credHelpers": {}}`, false},
		{"bad json", `{"auths": {"h.example": {"auth": "c2VjcmV0"`, true},
		{"wrong layout", `{"auths": ["c2VjcmV0"]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".json")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := newCredentials(p).lookup("h.example", "ns/app")
			if (err != nil) != tt.wantErr {
				t.Fatalf("lookup = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "c2VjcmV0")) {
				t.Fatalf("error %q must name %s and not quote the file's content", err, p)
			}
		})
	}
}

// TestNewSessionMalformedAuthFile: an auth file containers/image cannot
// read is refused when the session is made, before any work, named as
// malformed (an --authfile one as its option), never quoting its content.
func TestNewSessionMalformedAuthFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string // want "" = accepted
	}{
		{"empty object", `{}`, ""},
		{"docker config with other keys", `{"auths": {}, "credsStore": "desktop", "HttpHeaders": {"X": "c2VjcmV0"}}`, ""},
		{"not JSON", `auths: c2VjcmV0`, "not valid JSON (unexpected character at byte 1)"},
		{"cut short", `{"auths": {"h.example": {"auth": "c2VjcmV0"`, "not valid JSON (it ends too early"},
		{"empty file", ``, "not valid JSON"},
		{"auths a list", `{"auths": ["c2VjcmV0"]}`, `"auths" holds a JSON array where an object is expected`},
		{"auth a number", `{"auths": {"h.example": {"auth": 5}}}`, `"auths.auth" holds a JSON number where a string is expected`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".json")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewSession(Options{AuthFile: p})
			t.Setenv("REGISTRY_AUTH_FILE", p)
			_, envErr := NewSession(Options{})
			if tt.want == "" {
				if err != nil || envErr != nil {
					t.Fatalf("NewSession = %v / %v (REGISTRY_AUTH_FILE), want both accepted", err, envErr)
				}
				return
			}
			var oe *OptionError
			if err == nil || !errors.As(err, &oe) || oe.Option != "AuthFile" {
				t.Fatalf("NewSession(AuthFile) = %v, want an AuthFile OptionError", err)
			}
			if envErr == nil || errors.As(envErr, &oe) {
				t.Fatalf("NewSession(REGISTRY_AUTH_FILE) = %v, want an error that is not about the AuthFile option", envErr)
			}
			for _, e := range []error{err, envErr} {
				msg := e.Error()
				if !strings.Contains(msg, "auth file "+p+" is malformed") || !strings.Contains(msg, tt.want) {
					t.Errorf("error %q, want it to name %s as malformed: %s", msg, p, tt.want)
				}
				if strings.Contains(msg, "c2VjcmV0") || strings.Contains(msg, "auths:") {
					t.Errorf("error %q quotes the file", msg)
				}
			}
		})
	}
}

// TestPingCredentialLookupFailure: credentials that cannot be read (a
// credential helper that is not installed) are reported as such, not as an
// unreachable registry.
func TestPingCredentialLookupFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	p := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(p, []byte(`{"credHelpers": {"`+host+`": "mcbuild-test-missing"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(Options{AuthFile: p})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Ping(context.Background(), host+"/ns/app")
	if err == nil || strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "reading credentials for "+host) {
		t.Fatalf("Ping = %v, want a failure reading credentials, not an unreachable registry", err)
	}
}
