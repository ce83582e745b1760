package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/testimage"
	"github.com/mcbuild/mcbuild/internal/testregistry"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// ---------------------------------------------------------------- helpers

// secretWords returns a fresh random secret and the encodings it must not
// appear in either: itself, base64 of it, and base64 of "user:secret" (an
// auth.json "auth" field) when user is given.
func secretWords(t *testing.T, prefix, user string) (string, []string) {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	s := prefix + hex.EncodeToString(b)
	words := []string{s, base64.StdEncoding.EncodeToString([]byte(s)), strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(s)), "=")}
	if user != "" {
		words = append(words, base64.StdEncoding.EncodeToString([]byte(user+":"+s)))
	}
	return s, words
}

// assertAbsent fails if data contains any of words; where names the place.
func assertAbsent(t *testing.T, where string, data []byte, words []string) {
	t.Helper()
	for _, w := range words {
		if bytes.Contains(data, []byte(w)) {
			t.Errorf("%s contains the secret (%q)", where, w)
		}
	}
}

// assertTreeAbsent greps every regular file under dir.
func assertTreeAbsent(t *testing.T, dir string, words []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // vanished or unreadable special file
		}
		assertAbsent(t, p, b, words)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// published is everything a release put in the registry, raw.
type published struct {
	index     []byte
	manifests map[digest.Digest][]byte
	configs   map[digest.Digest][]byte
	// layers maps a layer digest to its files (path -> content) after
	// decompressing and untarring; raw holds the compressed blobs.
	layers map[digest.Digest]map[string][]byte
	raw    map[digest.Digest][]byte
	// subjects: the artifact's manifest and document layer.
	subjects [][]byte
}

// download fetches the index at ref, every manifest, config and layer of
// every variant (decompressed and untarred), and the subjects artifact.
func download(t *testing.T, repo *remote.Repository, ref, subjectsRef string) published {
	t.Helper()
	ctx := context.Background()
	p := published{manifests: map[digest.Digest][]byte{}, configs: map[digest.Digest][]byte{},
		layers: map[digest.Digest]map[string][]byte{}, raw: map[digest.Digest][]byte{}}
	desc, raw, err := oras.FetchBytes(ctx, repo, ref, oras.DefaultFetchBytesOptions)
	if err != nil {
		t.Fatalf("fetching %s: %v", ref, err)
	}
	if desc.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("%s is %s, want an index", ref, desc.MediaType)
	}
	p.index = raw
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	for _, md := range idx.Manifests {
		mraw, err := content.FetchAll(ctx, repo, md)
		if err != nil {
			t.Fatalf("fetching manifest %s: %v", md.Digest, err)
		}
		p.manifests[md.Digest] = mraw
		var m ocispec.Manifest
		if err := json.Unmarshal(mraw, &m); err != nil {
			t.Fatal(err)
		}
		if _, ok := p.configs[m.Config.Digest]; !ok {
			craw, err := content.FetchAll(ctx, repo, m.Config)
			if err != nil {
				t.Fatalf("fetching config %s: %v", m.Config.Digest, err)
			}
			p.configs[m.Config.Digest] = craw
		}
		for _, l := range m.Layers {
			if _, ok := p.layers[l.Digest]; ok {
				continue
			}
			blob, err := content.FetchAll(ctx, repo, l)
			if err != nil {
				t.Fatalf("fetching layer %s: %v", l.Digest, err)
			}
			p.raw[l.Digest] = blob
			p.layers[l.Digest] = untar(t, l, blob)
		}
	}
	if subjectsRef != "" {
		_, sraw, err := oras.FetchBytes(ctx, repo, subjectsRef, oras.DefaultFetchBytesOptions)
		if err != nil {
			t.Fatalf("fetching %s: %v", subjectsRef, err)
		}
		p.subjects = append(p.subjects, sraw)
		var m ocispec.Manifest
		if err := json.Unmarshal(sraw, &m); err != nil || len(m.Layers) != 1 {
			t.Fatalf("subjects manifest: %v (%d layers)", err, len(m.Layers))
		}
		doc, err := content.FetchAll(ctx, repo, m.Layers[0])
		if err != nil {
			t.Fatal(err)
		}
		p.subjects = append(p.subjects, doc)
	}
	return p
}

// untar decompresses a gzip or zstd layer and returns its regular files.
func untar(t *testing.T, l ocispec.Descriptor, blob []byte) map[string][]byte {
	t.Helper()
	var r io.Reader
	switch l.MediaType {
	case ocispec.MediaTypeImageLayerGzip:
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		defer zr.Close()
		r = zr
	case ocispec.MediaTypeImageLayerZstd:
		zr, err := zstd.NewReader(bytes.NewReader(blob))
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("layer %s: unexpected media type %s", l.Digest, l.MediaType)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer %s: reading tar: %v", l.Digest, err)
		}
		// Names, link targets and PAX records are searched too.
		meta := h.Name + "\x00" + h.Linkname
		for k, v := range h.PAXRecords {
			meta += "\x00" + k + "=" + v
		}
		files["tar-header:"+h.Name] = []byte(meta)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(h.Name, "./")] = b
		}
	}
	return files
}

// assertPublishedAbsent greps every byte mcbuild published.
func (p published) assertAbsent(t *testing.T, words []string) {
	t.Helper()
	assertAbsent(t, "the index", p.index, words)
	for d, b := range p.manifests {
		assertAbsent(t, "manifest "+d.String(), b, words)
	}
	for d, b := range p.configs {
		assertAbsent(t, "config "+d.String()+" (history included)", b, words)
	}
	for d, b := range p.raw {
		assertAbsent(t, "compressed layer "+d.String(), b, words)
	}
	for d, files := range p.layers {
		for name, b := range files {
			assertAbsent(t, "layer "+d.String()+" file "+name, b, words)
		}
	}
	for i, b := range p.subjects {
		assertAbsent(t, fmt.Sprintf("subjects artifact part %d", i), b, words)
	}
}

// ---------------------------------------------------------------- TLS

// tlsRepo opens repo on a TLS registry, trusting ca.
func tlsRepo(t *testing.T, name string, ca *testregistry.TLSFiles) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(name)
	if err != nil {
		t.Fatal(err)
	}
	repo.Client = &auth.Client{Client: &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}}}
	return repo
}

// TestTLS: a registry with a certificate from a private CA is refused by
// default with a message naming the registry and the remedies; --cert-dir
// holding the CA makes pull (FROM), build, push (containers/image), index,
// subjects and tag (oras), index merging, verify and inspect work;
// --tls-verify=false works and warns.
func TestTLS(t *testing.T) {
	ca := testregistry.NewTLS(t)
	reg := testregistry.StartDistribution(t, testregistry.WithTLS(ca.CertFile, ca.KeyFile))
	base, app := reg.Repo("e2e/tls-base"), reg.Repo("e2e/tls-app")
	baseCtx := contextFiles(t, "FROM scratch\nCOPY rootfs/amd64/ /\n", "amd64")
	build := func(image, ctxDir string, extra ...string) result {
		args := append([]string{"build", "--image", image, "--context", ctxDir, "--platform", "linux/amd64"}, storageFlags(t)...)
		return run(t, nil, append(args, extra...)...)
	}

	t.Run("refused by default", func(t *testing.T) {
		for _, r := range []result{
			build(base+":v1", baseCtx),
			run(t, nil, "subjects", "verify", base+":v1"),
			run(t, nil, "index", "--image", base+":v2", "--from", base+":v1"),
		} {
			if r.code == 0 {
				t.Fatalf("exit 0 against an untrusted certificate; stdout:\n%s", r.stdout)
			}
			t.Logf("stderr: %s", r.stderr)
			for _, w := range []string{reg.Host, "certificate", "--cert-dir", "--tls-verify=false"} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
				}
			}
		}
		if got := tags(t, tlsRepo(t, base, ca)); len(got) != 0 {
			t.Errorf("tags after a refused build: %v", got)
		}
	})

	t.Run("cert-dir", func(t *testing.T) {
		resultsDir := t.TempDir()
		mustRunResult(t, build(base+":v1", baseCtx, "--cert-dir", ca.CADir))
		// FROM the TLS registry: the base is pulled through the same cert dir.
		appCtx := contextFiles(t, "FROM "+base+":v1\nRUN echo from-tls > /from.txt\nCOPY hello.txt /hello.txt\n")
		r := mustRunResult(t, build(app+":v1", appCtx, "--cert-dir", ca.CADir, "--results-dir", resultsDir))
		if strings.Contains(r.stderr, "--tls-verify=false") {
			t.Errorf("a verified run warns about --tls-verify=false:\n%s", r.stderr)
		}
		repo := tlsRepo(t, app, ca)
		idx, entries := checkIndex(t, repo, "v1", []string{"linux/amd64"}, gzipFirst)
		res := readResults(t, resultsDir)
		checkSubjects(t, repo, app, res["SUBJECTS_REF"], idx, entries)
		p := download(t, repo, "v1", res["SUBJECTS_REF"])
		found := false
		for _, files := range p.layers {
			found = found || string(files["from.txt"]) == "from-tls\n"
		}
		if !found {
			t.Error("no layer holds the RUN step's /from.txt: the base was not pulled and run")
		}
		// The oras-only commands.
		mustRun(t, nil, "index", "--cert-dir", ca.CADir, "--image", app+":merged", "--from", res["IMAGE_REF"])
		mustRun(t, nil, "subjects", "verify", "--cert-dir", ca.CADir, app+":merged")
		mustRun(t, nil, "inspect", "--cert-dir", ca.CADir, app+":merged")
	})

	t.Run("tls-verify=false", func(t *testing.T) {
		r := mustRunResult(t, build(app+":insecure", contextFiles(t, copyContainerfile), "--tls-verify=false"))
		if !strings.Contains(r.stderr, "Warning: --tls-verify=false") {
			t.Errorf("no warning for --tls-verify=false:\n%s", r.stderr)
		}
		if _, err := tlsRepo(t, app, ca).Resolve(context.Background(), "insecure"); err != nil {
			t.Error(err)
		}
	})
}

func mustRunResult(t *testing.T, r result) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// ---------------------------------------------------------------- auth

func writeAuth(t *testing.T, path, host, user, pass string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": b64(user + ":" + pass)}}})
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAuthSources: credentials for an htpasswd registry are taken from
// --authfile, REGISTRY_AUTH_FILE, a Tekton docker-config workspace
// (--authfile DIR/.dockerconfigjson, or DOCKER_CONFIG=DIR holding
// config.json) and work for build, index, verify and inspect; wrong or
// missing ones fail naming the registry; and the password (plain or base64)
// appears nowhere: not in any output, results file, published manifest,
// config, history, layer, subjects artifact, or the run's store and
// temporary directories.
func TestAuthSources(t *testing.T) {
	const user = "tekton"
	password, words := secretWords(t, "pw-", user)
	reg := testregistry.StartDistribution(t, testregistry.WithHtpasswd(user, password))
	repoName := reg.Repo("e2e/auth")
	ctxDir := contextFiles(t, "FROM scratch\nCOPY rootfs/amd64/ /\nRUN echo built > /built.txt\n", "amd64")
	home := t.TempDir() // no default auth files anywhere
	isolated := []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + filepath.Join(home, "run"), "REGISTRY_AUTH_FILE=", "DOCKER_CONFIG="}

	authJSON := writeAuth(t, filepath.Join(t.TempDir(), "auth.json"), reg.Host, user, password)
	workspace := t.TempDir() // a kubernetes.io/dockerconfigjson Secret mounted as a workspace
	writeAuth(t, filepath.Join(workspace, ".dockerconfigjson"), reg.Host, user, password)
	dockerConfig := t.TempDir() // DOCKER_CONFIG holds config.json
	writeAuth(t, filepath.Join(dockerConfig, "config.json"), reg.Host, user, password)
	wrongWorkspace := t.TempDir()
	writeAuth(t, filepath.Join(wrongWorkspace, ".dockerconfigjson"), reg.Host, user, "wrong-"+password)
	wrongDockerConfig := t.TempDir()
	writeAuth(t, filepath.Join(wrongDockerConfig, "config.json"), reg.Host, user, "wrong-"+password)

	var outputs []result
	var scanDirs []string
	build := func(tag string, env []string, extra ...string) (result, string) {
		dir := t.TempDir()
		resultsDir := filepath.Join(dir, "results")
		if err := os.Mkdir(resultsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		scanDirs = append(scanDirs, dir)
		args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":" + tag, "--context", ctxDir,
			"--platform", "linux/amd64", "--results-dir", resultsDir,
			"--storage-driver", "vfs", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run")}, extra...)
		r := run(t, append(append([]string{"TMPDIR=" + dir}, isolated...), env...), args...)
		outputs = append(outputs, r)
		return r, resultsDir
	}

	good := []struct {
		name  string
		env   []string
		extra []string
	}{
		{"--authfile", nil, []string{"--authfile", authJSON}},
		{"REGISTRY_AUTH_FILE", []string{"REGISTRY_AUTH_FILE=" + authJSON}, nil},
		{"--authfile workspace/.dockerconfigjson", nil, []string{"--authfile", filepath.Join(workspace, ".dockerconfigjson")}},
		{"DOCKER_CONFIG", []string{"DOCKER_CONFIG=" + dockerConfig}, nil},
	}
	repo := testregistry.OpenRepo(t, repoName)
	repo.Client = &auth.Client{Credential: auth.StaticCredential(reg.Host, auth.Credential{Username: user, Password: password})}
	var lastRef string
	for i, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			tag := fmt.Sprintf("v%d", i)
			r, resultsDir := build(tag, tc.env, tc.extra...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			res := readResults(t, resultsDir)
			for name, v := range res {
				assertAbsent(t, "result "+name, []byte(v), words)
			}
			if i == 0 {
				download(t, repo, tag, res["SUBJECTS_REF"]).assertAbsent(t, words)
			}
			lastRef = res["IMAGE_REF"]
			// The oras-only commands read the same source.
			env := append(append([]string{}, isolated...), tc.env...)
			for _, args := range [][]string{
				{"index", "--image", repoName + ":" + tag + "-merged", "--from", lastRef},
				{"subjects", "verify", repoName + ":" + tag},
				{"inspect", repoName + ":" + tag},
			} {
				r := run(t, env, append(append(args, "--tls-verify=false"), tc.extra...)...)
				outputs = append(outputs, r)
				if r.code != 0 {
					t.Errorf("mcbuild %s: exit %d\n%s", args[0], r.code, r.stderr)
				}
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		before := tags(t, repo)
		for _, tc := range []struct {
			name  string
			env   []string
			extra []string
			want  string
		}{
			{"wrong password in the workspace", nil, []string{"--authfile", filepath.Join(wrongWorkspace, ".dockerconfigjson")}, "credentials refused"},
			{"wrong password in DOCKER_CONFIG", []string{"DOCKER_CONFIG=" + wrongDockerConfig}, nil, "credentials refused"},
			{"no credentials", nil, nil, "requires authentication"},
			{"workspace directory as --authfile", nil, []string{"--authfile", workspace}, "is a directory"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r, resultsDir := build("refused", tc.env, tc.extra...)
				if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("exit %d, want failure mentioning %q:\n%s", r.code, tc.want, r.stderr)
				}
				if tc.want != "is a directory" && !strings.Contains(r.stderr, reg.Host) {
					t.Errorf("the error does not name the registry %s:\n%s", reg.Host, r.stderr)
				}
				if files, _ := os.ReadDir(resultsDir); len(files) != 0 {
					t.Errorf("results written: %v", files)
				}
				idx := run(t, append(append([]string{}, isolated...), tc.env...),
					append([]string{"index", "--tls-verify=false", "--image", repoName + ":refused", "--from", lastRef}, tc.extra...)...)
				outputs = append(outputs, idx)
				if idx.code == 0 || !strings.Contains(idx.stderr, tc.want) {
					t.Errorf("index: exit %d, want failure mentioning %q:\n%s", idx.code, tc.want, idx.stderr)
				}
			})
		}
		if after := tags(t, repo); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("refused runs changed the tags: %v -> %v", before, after)
		}
	})

	// Nothing any run printed or left on disk holds the password; the wrong
	// passwords are secrets too.
	wrongWords := append(append([]string{}, words...), "wrong-"+password, b64(user+":wrong-"+password))
	for i, r := range outputs {
		assertAbsent(t, fmt.Sprintf("stdout of run %d", i), []byte(r.stdout), wrongWords)
		assertAbsent(t, fmt.Sprintf("stderr of run %d", i), []byte(r.stderr), wrongWords)
	}
	for _, dir := range scanDirs {
		assertTreeAbsent(t, dir, wrongWords)
	}
}

// ---------------------------------------------------------------- build secrets

// TestBuildSecret: a --secret reaches RUN --mount=type=secret (the step
// writes the secret's hash into the image; without --secret it fails), and
// the secret is in no layer (compressed or unpacked, tar headers included),
// manifest, config, history, subjects artifact, result or output, for any
// platform or compression variant; from a file (src=) and from an
// environment variable (env=).
func TestBuildSecret(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/secret")
	ctxDir := contextFiles(t, `FROM scratch
ARG TARGETARCH
COPY rootfs/${TARGETARCH}/ /
RUN --mount=type=secret,id=tok test -s /run/secrets/tok && sha256sum /run/secrets/tok | cut -d' ' -f1 > /secret.sha256 && cat /run/secrets/tok > /dev/null
COPY hello.txt /hello.txt
`, "amd64", "arm64")
	args := append([]string{"build", "--tls-verify=false", "--context", ctxDir, "--platform", "linux/amd64,linux/arm64"}, storageFlags(t)...)
	t.Run("file", func(t *testing.T) {
		secret, words := secretWords(t, "tok-", "")
		secretFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		checkBuildSecret(t, repoName, "file", secret, words, nil, append(args, "--secret", "id=tok,src="+secretFile))
	})
	t.Run("env", func(t *testing.T) {
		secret, words := secretWords(t, "tok-", "")
		checkBuildSecret(t, repoName, "env", secret, words, []string{"MCBUILD_E2E_TOKEN=" + secret}, append(args, "--secret", "id=tok,env=MCBUILD_E2E_TOKEN"))
		// The variable must be set: refused before the build, not at the RUN.
		r := run(t, nil, append(args, "--image", repoName+":unset", "--secret", "id=tok,env=MCBUILD_E2E_UNSET_TOKEN")...)
		if r.code == 0 || !strings.Contains(r.stderr, "--secret id=tok: environment variable MCBUILD_E2E_UNSET_TOKEN is not set") || strings.Contains(r.stderr, "STEP 1") {
			t.Errorf("unset variable: exit %d, want a refusal before the build:\n%s", r.code, r.stderr)
		}
	})

	// Without --secret the step fails, and nothing is published.
	repo := testregistry.OpenRepo(t, repoName)
	r := run(t, nil, append(args, "--image", repoName+":nosecret")...)
	if r.code == 0 || !strings.Contains(r.stderr, "RUN --mount=type=secret") {
		t.Errorf("build without --secret: exit %d, want a failing RUN step:\n%s", r.code, r.stderr)
	}
	if _, err := repo.Resolve(context.Background(), "nosecret"); err == nil {
		t.Error("a build whose secret step failed was tagged")
	}
}

// checkBuildSecret builds repoName:tag with args (and env) and checks that the
// RUN step saw secret and that none of words is anywhere in what was
// published or printed.
func checkBuildSecret(t *testing.T, repoName, tag, secret string, words, env, args []string) {
	t.Helper()
	sum := sha256.Sum256([]byte(secret))
	wantHash := hex.EncodeToString(sum[:])
	resultsDir := t.TempDir()
	r := mustRun(t, env, append(args, "--image", repoName+":"+tag, "--results-dir", resultsDir)...)
	assertAbsent(t, "stdout", []byte(r.stdout), words)
	assertAbsent(t, "stderr", []byte(r.stderr), words)
	res := readResults(t, resultsDir)
	for name, v := range res {
		assertAbsent(t, "result "+name, []byte(v), words)
	}
	repo := testregistry.OpenRepo(t, repoName)
	idx, entries := checkIndex(t, repo, tag, []string{"linux/amd64", "linux/arm64"}, gzipFirst)
	checkSubjects(t, repo, repoName, res["SUBJECTS_REF"], idx, entries)
	p := download(t, repo, tag, res["SUBJECTS_REF"])
	p.assertAbsent(t, words)
	if len(p.manifests) != 4 {
		t.Fatalf("downloaded %d manifests, want 4 (2 platforms x 2 formats)", len(p.manifests))
	}
	// Every variant carries the hash the RUN step computed from the secret.
	for md, mraw := range p.manifests {
		var m ocispec.Manifest
		if err := json.Unmarshal(mraw, &m); err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, l := range m.Layers {
			if b, ok := p.layers[l.Digest]["secret.sha256"]; ok {
				got = strings.TrimSpace(string(b))
			}
			for name := range p.layers[l.Digest] {
				if strings.HasPrefix(name, "run/secrets/") && !strings.HasSuffix(name, "/") {
					t.Errorf("manifest %s: layer %s holds %s", md, l.Digest, name)
				}
			}
		}
		if got != wantHash {
			t.Errorf("manifest %s: /secret.sha256 = %q, want %s (the secret did not reach RUN)", md, got, wantHash)
		}
	}
}

// ---------------------------------------------------------------- untrusted input

// tamperProxy serves a registry through a reverse proxy on 127.0.0.1 that,
// for GET requests whose path ends with one of the keys, returns the mapped
// bytes instead (keeping the real Docker-Content-Digest header, as a
// malicious or broken mirror would).
func tamperProxy(t *testing.T, reg *testregistry.Registry, swap map[string][]byte) string {
	t.Helper()
	target, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
			return nil
		}
		for suffix, body := range swap {
			if strings.HasSuffix(resp.Request.URL.Path, suffix) {
				resp.Body.Close()
				resp.Body = io.NopCloser(bytes.NewReader(body))
				resp.ContentLength = int64(len(body))
				resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			}
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestUntrustedIndexInputs: `mcbuild index --from` refuses inputs it cannot
// trust — a child declared over the 4 MiB document limit, a child whose
// served bytes do not match its digest — with a clear error, and publishes
// nothing (no tag, no index, no subjects artifact).
func TestUntrustedIndexInputs(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := "e2e/untrusted"
	repo := testregistry.OpenRepo(t, reg.Repo(repoName))
	b := testimage.New(t, repo)
	ctx := context.Background()

	// A valid input for comparison.
	good := b.Index(b.Image("linux/amd64", formats.Gzip), b.Image("linux/amd64", formats.ZstdChunked))
	b.Tag(good, "good")
	// A child declared larger than oci.MaxDocumentBytes.
	huge := b.Image("linux/arm64", formats.Gzip)
	huge.Size = oci.MaxDocumentBytes + 1
	b.Tag(b.Index(huge), "huge")
	// A child whose bytes the proxy swaps for another manifest's.
	victim := b.Image("linux/s390x", formats.Gzip)
	b.Tag(b.Index(victim), "swapped")
	other := b.Image("linux/s390x", formats.Gzip)
	otherRaw, err := content.FetchAll(ctx, repo, other)
	if err != nil {
		t.Fatal(err)
	}
	proxy := tamperProxy(t, reg, map[string][]byte{"/manifests/" + victim.Digest.String(): otherRaw})
	before := tags(t, repo)

	for _, tc := range []struct {
		name, from string
		want       []string
	}{
		{"child over the size limit", "huge", []string{huge.Digest.String(), "size", strconv.Itoa(oci.MaxDocumentBytes)}},
		{"child served with the wrong content", "swapped", []string{victim.Digest.String(), "mismatched digest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resultsDir := t.TempDir()
			r := run(t, nil, "index", "--tls-verify=false", "--image", proxy+"/"+repoName+":out", "--from", proxy+"/"+repoName+":"+tc.from,
				"--from", proxy+"/"+repoName+":good", "--results-dir", resultsDir)
			if r.code == 0 {
				t.Fatalf("exit 0; stdout:\n%s", r.stdout)
			}
			t.Logf("stderr: %s", r.stderr)
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
				}
			}
			if files, _ := os.ReadDir(resultsDir); len(files) != 0 {
				t.Errorf("results written: %v", files)
			}
		})
	}
	if after := tags(t, repo); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("tags changed: %v -> %v (an index or a subjects fallback tag was published)", before, after)
	}
	// The same inputs through the proxy, minus the bad ones, work.
	mustRun(t, nil, "index", "--tls-verify=false", "--image", proxy+"/"+repoName+":out", "--from", proxy+"/"+repoName+":good")
}

// TestUntrustedSubjects: `mcbuild subjects verify` (and show) on malformed
// or oversized subjects artifacts, or one whose document is served with the
// wrong bytes, fails with a clear error instead of trusting it.
func TestUntrustedSubjects(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := "e2e/bad-subjects"
	repo := testregistry.OpenRepo(t, reg.Repo(repoName))
	b := testimage.New(t, repo)
	img := b.Image("linux/amd64", formats.Gzip)
	idx := b.Index(img)
	b.Tag(idx, "v1")
	validDoc, err := json.Marshal(subjects.New(reg.Repo(repoName), idx, []subjects.Manifest{{Descriptor: img, Compression: string(formats.Gzip)}}))
	if err != nil {
		t.Fatal(err)
	}

	// artifact pushes a subjects-shaped manifest around layer (mutated by mod).
	artifact := func(layer []byte, mod func(*ocispec.Manifest)) ocispec.Descriptor {
		empty := b.Bytes(ocispec.MediaTypeEmptyJSON, []byte("{}"))
		l := b.Bytes(subjects.ArtifactType, layer)
		m := ocispec.Manifest{
			Versioned:    specs.Versioned{SchemaVersion: 2},
			MediaType:    ocispec.MediaTypeImageManifest,
			ArtifactType: subjects.ArtifactType,
			Config:       empty,
			Layers:       []ocispec.Descriptor{l},
			Subject:      &ocispec.Descriptor{MediaType: idx.MediaType, Digest: idx.Digest, Size: idx.Size},
		}
		if mod != nil {
			mod(&m)
		}
		return b.JSON(ocispec.MediaTypeImageManifest, m)
	}
	entry := func(name, hex string) string {
		return `{"subjects":[{"name":"` + name + `","digest":{"sha256":"` + hex + `"}}]}`
	}
	big := bytes.Repeat([]byte(" "), subjects.MaxSize+1)
	copy(big, validDoc)
	good := artifact(validDoc, nil)
	swappedDoc := bytes.Replace(validDoc, []byte(img.Digest.Encoded()), []byte(strings.Repeat("0", 64)), 1)
	proxy := tamperProxy(t, reg, map[string][]byte{"/blobs/" + digest.FromBytes(validDoc).String(): swappedDoc})

	for _, tc := range []struct {
		name string
		desc ocispec.Descriptor
		host string
		want string
	}{
		{"not JSON", artifact([]byte("subjects: [oops"), nil), "", "invalid JSON"},
		{"no entries", artifact([]byte(`{"subjects":[]}`), nil), "", "no entries"},
		{"entry without a name", artifact([]byte(entry("", idx.Digest.Encoded())), nil), "", "no name"},
		{"malformed digest", artifact([]byte(entry("x", "ABC")), nil), "", "malformed sha256"},
		{"data after the document", artifact(append(append([]byte{}, validDoc...), []byte(`{"subjects":[]}`)...), nil), "", "data after"},
		{"document over the size limit", artifact(big, nil), "", strconv.Itoa(subjects.MaxSize)},
		{"two layers", artifact(validDoc, func(m *ocispec.Manifest) { m.Layers = append(m.Layers, m.Layers[0]) }), "", "want exactly 1"},
		{"wrong artifactType", artifact(validDoc, func(m *ocispec.Manifest) { m.ArtifactType = "application/x-other" }), "", "subjects artifact"},
		{"document served with the wrong bytes", good, proxy, "mismatched digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := reg.Host
			if tc.host != "" {
				host = tc.host
			}
			ref := host + "/" + repoName + "@" + tc.desc.Digest.String()
			for _, cmd := range []string{"verify", "show"} {
				r := run(t, nil, "subjects", cmd, "--tls-verify=false", ref)
				if cmd == "verify" {
					t.Logf("stderr: %s", r.stderr)
				}
				if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("subjects %s: exit %d, want failure mentioning %q:\nstdout:\n%s\nstderr:\n%s", cmd, r.code, tc.want, r.stdout, r.stderr)
				}
				if len(r.stderr) > 4096 {
					t.Errorf("subjects %s: %d bytes of error output; untrusted content must not be echoed at length", cmd, len(r.stderr))
				}
			}
		})
	}
	// The genuine artifact verifies.
	mustRun(t, nil, "subjects", "verify", "--tls-verify=false", reg.Repo(repoName)+"@"+good.Digest.String())
}

// TestBuildSecretFromEnv: --secret id=ID,env=VAR takes the secret from the
// environment, reaches RUN, and stays out of everything published.
func TestBuildSecretFromEnv(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/secret-env")
	secret, words := secretWords(t, "env-", "")
	sum := sha256.Sum256([]byte(secret))
	wantHash := hex.EncodeToString(sum[:])
	ctxDir := contextFiles(t, `FROM scratch
COPY rootfs/amd64/ /
RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /secret.sha256
`, "amd64")
	resultsDir := t.TempDir()
	args := append([]string{"build", "--tls-verify=false", "--context", ctxDir, "--platform", "linux/amd64",
		"--image", repoName + ":v1", "--results-dir", resultsDir, "--secret", "id=tok,env=MCBUILD_TEST_TOKEN"}, storageFlags(t)...)
	r := mustRun(t, []string{"MCBUILD_TEST_TOKEN=" + secret}, args...)
	assertAbsent(t, "stdout", []byte(r.stdout), words)
	assertAbsent(t, "stderr", []byte(r.stderr), words)
	res := readResults(t, resultsDir)
	p := download(t, testregistry.OpenRepo(t, repoName), "v1", res["SUBJECTS_REF"])
	p.assertAbsent(t, words)
	found := 0
	for _, files := range p.layers {
		if b, ok := files["secret.sha256"]; ok {
			found++
			if got := strings.TrimSpace(string(b)); got != wantHash {
				t.Errorf("/secret.sha256 = %q, want %s (the secret from the environment did not reach RUN)", got, wantHash)
			}
		}
	}
	if found != 2 {
		t.Errorf("/secret.sha256 found in %d layers, want 2 (the RUN layer in gzip and in zstd:chunked)", found)
	}
}

// TestBuildArgSecretWarning: build argument values end up in the image's
// history (shown here, as Docker and buildah record them), so a
// --build-arg whose name looks like a secret gets a warning pointing to
// --secret; GOPROXY does not.
func TestBuildArgSecretWarning(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/buildarg")
	const value = "tok-e2e-4f9c2b"
	dir := contextFiles(t, "FROM scratch\nCOPY rootfs/amd64/ /\nARG GITHUB_TOKEN\nARG GOPROXY\nRUN echo building\n", "amd64")
	r := mustRun(t, nil, append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir,
		"--platform", "linux/amd64", "--compression-formats", "gzip", "--build-arg", "GITHUB_TOKEN=" + value, "--build-arg", "GOPROXY=off"}, storageFlags(t)...)...)
	for _, w := range []string{"Warning: build argument GITHUB_TOKEN looks like a secret", "image's history", "--secret id=ID,src=FILE"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "GOPROXY looks") || strings.Contains(r.stderr, "GOPROXY, ") {
		t.Errorf("GOPROXY warned about:\n%s", r.stderr)
	}
	p := download(t, testregistry.OpenRepo(t, repoName), repoName+":v1", "")
	inHistory := false
	for _, c := range p.configs {
		inHistory = inHistory || strings.Contains(string(c), value)
	}
	if !inHistory {
		t.Errorf("the build argument's value is not in the image config: the warning says it is")
	}
}
