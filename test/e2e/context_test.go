package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// TestContainerignoreSymlink: mcbuild passes the context to buildah's
// imagebuildah, which reads the ignore file as buildah does.
// .containerignore (and .dockerignore) are resolved inside the context
// (securejoin: a symlink is followed as if the context were /), so one
// that points out of the context is not read, and COPY . takes every
// file; a symlink resolving inside the context is read. A
// <Containerfile>.containerignore beside the Containerfile is read
// wherever it points: buildah reads it as the Containerfile's own.
func TestContainerignoreSymlink(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	outside := filepath.Join(t.TempDir(), "ignore")
	if err := os.WriteFile(outside, []byte("secret.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, link, target string
		rules              bool // the context holds rules/ignore and /outside-rules, both ignoring secret.txt
		ignored            bool
	}{
		{"absolute link out of the context", ".containerignore", outside, false, false},
		{"relative link out of the context", ".dockerignore", "../../../../../../.." + outside, false, false},
		{"relative link inside the context", ".containerignore", "rules/ignore", true, true},
		{"absolute link resolved inside the context", ".containerignore", "/rules/ignore", true, true},
		{"Containerfile.containerignore out of the context", "Containerfile.containerignore", outside, false, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"Containerfile": "FROM scratch\nCOPY . /ctx/\n", "hello.txt": "hello\n", "secret.txt": "secret\n"}
			if tc.rules {
				files["rules/ignore"] = "secret.txt\n"
			}
			dir := testfixture.Context(t, files)
			if err := os.Symlink(tc.target, filepath.Join(dir, tc.link)); err != nil {
				t.Fatal(err)
			}
			repoName := reg.Repo("e2e/ignore" + string(rune('a'+i)))
			mustRun(t, nil, append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir,
				"--platform", "linux/amd64", "--compression-formats", "gzip"}, storageFlags(t)...)...)
			var names []string
			for _, layer := range download(t, testregistry.OpenRepo(t, repoName), repoName+":v1", "").layers {
				for name := range layer {
					if !strings.HasPrefix(name, "tar-header:") {
						names = append(names, name)
					}
				}
			}
			has := func(n string) bool { return strings.Contains(" "+strings.Join(names, " ")+" ", " "+n+" ") }
			if !has("ctx/hello.txt") {
				t.Fatalf("image files %q lack ctx/hello.txt", names)
			}
			if has("ctx/secret.txt") == tc.ignored {
				t.Errorf("image files %q: secret.txt ignored %v, want %v", names, !tc.ignored, tc.ignored)
			}
		})
	}
}
