package registry

import (
	"context"
	"encoding/base64"
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
