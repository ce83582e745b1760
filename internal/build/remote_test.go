package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckNoRemoteSources: a --network none build refuses an ADD that
// mcbuild would fetch from the network itself, also through ARG, ENV and
// build arguments; local ADD and COPY pass.
func TestCheckNoRemoteSources(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		args       map[string]string
		want       string // "" accepted, else a part of the refusal
	}{
		{"local add and copy", "FROM scratch\nADD a.tar /\nCOPY b /b\nADD --chown=1:1 c d /x/\n", nil, ""},
		{"https url", "FROM scratch\nADD https://example.com/x.tgz /x\n", nil, `line 2: ADD https://example.com/x.tgz /x`},
		{"second of several sources", "FROM scratch\nADD a http://example.com/b /dst/\n", nil, `"http://example.com/b"`},
		{"json form", "FROM scratch\nADD [\"https://example.com/x\", \"/x\"]\n", nil, "https://example.com/x"},
		{"git scp form", "FROM scratch\nADD git@github.com:o/r.git /src\n", nil, "git@github.com:o/r.git"},
		{"git url with flag", "FROM scratch\nADD --keep-git-dir=true git://example.com/r /src\n", nil, "git://example.com/r"},
		{"arg default", "ARG URL=https://example.com/x\nFROM scratch\nARG URL\nADD ${URL} /x\n", nil, "https://example.com/x"},
		{"build argument", "FROM scratch\nARG SRC=local\nADD $SRC /x\n", map[string]string{"SRC": "https://example.com/x"}, "https://example.com/x"},
		{"env", "FROM scratch\nENV BASE=https://example.com\nADD ${BASE}/x /x\n", nil, "https://example.com/x"},
		{"build argument makes it local", "FROM scratch\nARG SRC=https://example.com/x\nADD $SRC /x\n", map[string]string{"SRC": "local.tar"}, ""},
		{"url only as destination", "FROM scratch\nADD a /http:/x\n", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "Containerfile")
			if err := os.WriteFile(f, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			err := (Options{Containerfile: f, Network: NetworkNone, Args: tc.args}).Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--network none") {
				t.Fatalf("%v, want a refusal mentioning %q", err, tc.want)
			}
			// The same file builds with the host's network.
			if err := (Options{Containerfile: f, Args: tc.args}).Validate(); err != nil {
				t.Errorf("with the host's network: %v", err)
			}
		})
	}
}
