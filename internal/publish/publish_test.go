package publish_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/publish"
	"github.com/mcbuild/mcbuild/internal/stage"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

func TestMain(m *testing.M) {
	if build.InitReexec() {
		return
	}
	os.Exit(m.Run())
}

const containerfile = `FROM scratch
COPY rootfs/amd64/ /
RUN echo built > /built.txt && mkdir -p /data && seq_out=$(printf 'line %s\n' 1 2 3 4 5) && echo "$seq_out" > /data/lines
COPY payload.txt /payload.txt
`

// builtImage builds containerfile once into a fresh vfs store.
func builtImage(t *testing.T) (storage.Store, build.Image, string) {
	t.Helper()
	store, tmp := newStore(t)
	return store, buildInto(t, store, tmp), tmp
}

func newStore(t *testing.T) (storage.Store, string) {
	t.Helper()
	tmp := t.TempDir()
	store, err := build.OpenStore(build.StoreOptions{Driver: "vfs", Root: filepath.Join(tmp, "root"), RunRoot: filepath.Join(tmp, "run")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = store.Shutdown(true) })
	return store, tmp
}

func buildInto(t *testing.T, store storage.Store, tmp string) build.Image {
	t.Helper()
	dir := testfixture.Context(t, map[string]string{"Containerfile": containerfile, "payload.txt": "payload\n"}, "amd64")
	platform := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	img, err := build.Build(context.Background(), store, build.Options{
		ContextDir: dir, Containerfile: filepath.Join(dir, "Containerfile"), TmpDir: filepath.Join(tmp, "tmp"),
	}, platform)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestPublishVariants builds once and publishes every format with each
// publisher, then reads each variant back: layer media types, diffIDs, TOC,
// one config for all. Every publisher must push the same gzip and
// zstd:chunked layers, byte for byte: the stream publisher's compressors
// (pkg/zstdchunked included) are held to containers/image's.
func TestPublishVariants(t *testing.T) {
	ctx := context.Background()
	reg := testregistry.StartDistribution(t)
	store, img, tmp := builtImage(t)
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	all := []formats.Format{formats.Gzip, formats.ZstdChunked, formats.Zstd}
	publishers := []struct {
		name      string
		publisher publish.Kind
		encoder   stage.Encoder
	}{
		{"stream-parallel", "", ""},
		{"stream-upstream", publish.Stream, stage.EncoderUpstream},
		{"copy", publish.Copy, ""},
	}
	layersBy := map[string][][]ocispec.Descriptor{} // publisher -> format -> layers
	for _, p := range publishers {
		t.Run(p.name, func(t *testing.T) {
			repoName := reg.Repo("publish/" + p.name)
			var log strings.Builder
			entries, err := publishImage(ctx, p.publisher, store, img, repoName, all, publish.Options{
				SystemContext: sys, BlobInfoCacheDir: filepath.Join(tmp, "cache-"+p.name),
				Stage: stage.Settings{TmpDir: t.TempDir(), Encoder: p.encoder}, Log: &log,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != len(all) {
				t.Fatalf("got %d entries, want %d", len(entries), len(all))
			}
			repo := testregistry.OpenRepo(t, repoName)
			configs := map[string]bool{}
			for i, e := range entries {
				if e.Format != all[i] {
					t.Errorf("entry %d format %s, want %s", i, e.Format, all[i])
				}
				if e.Descriptor.Platform == nil || e.Descriptor.Platform.Architecture != "amd64" {
					t.Errorf("entry %d platform %v, want linux/amd64", i, e.Descriptor.Platform)
				}
				v, err := imagecheck.Check(ctx, repo, e.Descriptor, e.Format)
				if err != nil {
					t.Fatalf("%s variant: %v", e.Format, err)
				}
				if len(v.Manifest.Layers) != 3 {
					t.Errorf("%s variant has %d layers, want 3 (COPY, RUN, COPY)", e.Format, len(v.Manifest.Layers))
				}
				configs[v.ConfigDigest.String()] = true
				layersBy[p.name] = append(layersBy[p.name], v.Manifest.Layers)
				if !strings.Contains(log.String(), "pushed linux/amd64 "+string(e.Format)+" as "+repoName+"@"+e.Descriptor.Digest.String()) {
					t.Errorf("log does not report the %s variant:\n%s", e.Format, log.String())
				}
			}
			if len(configs) != 1 {
				t.Errorf("variants of one platform have %d different configs, want 1: %v", len(configs), configs)
			}
			// Published by digest only: no tag may exist.
			var tags []string
			err = repo.Tags(ctx, "", func(ts []string) error { tags = append(tags, ts...); return nil })
			var errResp *errcode.ErrorResponse
			if err != nil && !(errors.As(err, &errResp) && errResp.StatusCode == http.StatusNotFound) {
				t.Fatalf("listing tags: %v", err) // distribution answers 404 for a repository without tags
			}
			if len(tags) != 0 {
				t.Errorf("publish left tags behind: %v", tags)
			}
		})
	}
	ref := layersBy["copy"]
	for _, p := range publishers[:2] {
		got := layersBy[p.name]
		if len(got) != len(ref) {
			continue // the subtest failed already
		}
		for i := range ref {
			if all[i] == formats.Zstd {
				continue // same content (imagecheck), other frame cuts: see compress.go
			}
			if !reflect.DeepEqual(got[i], ref[i]) {
				t.Errorf("%s: %s layers differ from the copy publisher's:\n got %+v\nwant %+v", p.name, all[i], got[i], ref[i])
			}
		}
	}
}

// TestPublishStreamDamagedStore: a layer whose files changed since it was
// committed is refused, naming it, before any manifest is pushed.
func TestPublishStreamDamagedStore(t *testing.T) {
	ctx := context.Background()
	reg := testregistry.StartDistribution(t)
	store, img, _ := builtImage(t)
	stored, err := store.Image(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	top, err := store.Layer(stored.TopLayer)
	if err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(store.GraphRoot(), "vfs", "dir", top.ID, "payload.txt")
	if err := os.WriteFile(payload, []byte("PAYLOAD\n"), 0o644); err != nil { // same size, other bytes
		t.Fatal(err)
	}
	// Count manifest PUTs on their way to the registry.
	var manifestPuts atomic.Int32
	repoName := proxied(t, reg, func(r *http.Request) int {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			manifestPuts.Add(1)
		}
		return 0
	}) + "/publish/damaged"
	_, err = publishImage(ctx, publish.Stream, store, img, repoName, []formats.Format{formats.Gzip, formats.ZstdChunked},
		publish.Options{SystemContext: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}, Stage: stage.Settings{TmpDir: t.TempDir()}})
	// containers/storage notices first (per-file checksums in tar-split);
	// our own diffID check is the second line.
	if err == nil || !strings.Contains(err.Error(), top.ID) ||
		!(strings.Contains(err.Error(), `checksum failed for "payload.txt"`) || strings.Contains(err.Error(), "the store is damaged")) {
		t.Fatalf("err = %v, want one naming layer %s and the damage", err, top.ID)
	}
	if n := manifestPuts.Load(); n != 0 {
		t.Errorf("%d manifests pushed from a damaged store, want 0", n)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		kind publish.Kind
		repo string
		want string
	}{
		{"skopeo", "127.0.0.1:1/x", `publisher "skopeo": valid values are stream, copy`},
		{publish.Stream, "127.0.0.1:1/x:tag", `must not carry a tag or digest`},
	} {
		_, err := publish.New(tc.kind, nil, tc.repo, []formats.Format{formats.Gzip}, publish.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: err = %v, want it to contain %q", tc.kind, tc.repo, err, tc.want)
		}
	}
}

// publishImage publishes img with a new publisher of kind.
func publishImage(ctx context.Context, kind publish.Kind, store storage.Store, img build.Image, repo string, fs []formats.Format, opts publish.Options, sources ...stage.Source) ([]index.Entry, error) {
	if opts.Dest == nil {
		dest, err := remote.NewRepository(repo)
		if err != nil {
			return nil, err
		}
		dest.PlainHTTP = true
		opts.Dest = dest
	}
	p, err := publish.New(kind, store, repo, fs, opts)
	if err != nil {
		return nil, err
	}
	return p.Publish(ctx, img, sources...)
}

func TestCheckLayers(t *testing.T) {
	gz := `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip"}]}`
	zs := `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd"}]}`
	ch := `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","annotations":{"io.github.containers.zstd-chunked.manifest-checksum":"sha256:00"}}]}`
	tests := []struct {
		manifest string
		format   formats.Format
		ok       bool
	}{
		{gz, formats.Gzip, true},
		{zs, formats.Gzip, false},
		{zs, formats.Zstd, true},
		{gz, formats.Zstd, false},
		{ch, formats.ZstdChunked, true},
		{zs, formats.ZstdChunked, false},
		{`{`, formats.Gzip, false},
	}
	for i, tc := range tests {
		err := publish.CheckLayers([]byte(tc.manifest), tc.format)
		if (err == nil) != tc.ok {
			t.Errorf("case %d (%s): err = %v, want ok=%v", i, tc.format, err, tc.ok)
		}
	}
}

// TestPublishEarly: layers compressed while the build runs are the ones
// published (the log says so), and they are the same bytes Publish makes on
// its own; both where Early takes the tars buildah writes while committing
// (given the build's TMPDIR) and where it reads the layers back from storage.
func TestPublishEarly(t *testing.T) {
	tests := []struct {
		name       string
		commitTars bool
	}{
		{"commit tars", true},
		{"read back from storage", false},
	}
	ctx := context.Background()
	reg := testregistry.StartDistribution(t)
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, tmp := newStore(t)
			buildTmpDir := ""
			if tc.commitTars {
				buildTmpDir = filepath.Join(tmp, "tmp") // buildInto's build.Options.TmpDir
			}
			early, err := stage.StartEarly(ctx, store, fs, stage.Settings{TmpDir: t.TempDir()}, buildTmpDir)
			if err != nil {
				t.Fatal(err)
			}
			img := buildInto(t, store, tmp)
			early.StopWatching()

			var log strings.Builder
			repo := "publish/early-" + strings.ReplaceAll(tc.name, " ", "-")
			withEarly, err := publishImage(ctx, publish.Stream, store, img, reg.Repo(repo), fs,
				publish.Options{SystemContext: sys, Stage: stage.Settings{TmpDir: t.TempDir()}, Log: &log}, early)
			early.Close()
			if err != nil {
				t.Fatal(err)
			}
			if early.Busy() <= 0 {
				t.Errorf("Busy() = %v, want the time spent compressing during the build", early.Busy())
			}
			// The first layers were committed seconds before the build ended; the
			// last one may have been left to Publish, depending on timing.
			m := regexp.MustCompile(`([0-9]) of 3 layers were compressed during the build \(([0-9]) from the tars buildah committed, ([0-9]) read back from storage\)`).FindStringSubmatch(log.String())
			if m == nil || m[1] == "0" {
				t.Fatalf("log does not say layers came from the build:\n%s", log.String())
			}
			if fromCommits := m[2] != "0"; fromCommits != tc.commitTars {
				t.Errorf("layers from commit tars: %s, want some: %v\n%s", m[2], tc.commitTars, log.String())
			}
			without, err := publishImage(ctx, publish.Stream, store, img, reg.Repo(repo+"-late"), fs, publish.Options{SystemContext: sys, Stage: stage.Settings{TmpDir: t.TempDir()}})
			if err != nil {
				t.Fatal(err)
			}
			for i := range fs {
				a, err := imagecheck.Check(ctx, testregistry.OpenRepo(t, reg.Repo(repo)), withEarly[i].Descriptor, fs[i])
				if err != nil {
					t.Fatalf("%s variant compressed early: %v", fs[i], err)
				}
				b, err := imagecheck.Check(ctx, testregistry.OpenRepo(t, reg.Repo(repo+"-late")), without[i].Descriptor, fs[i])
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(a.Manifest.Layers, b.Manifest.Layers) {
					t.Errorf("%s: layers compressed during the build differ from those compressed after:\n%+v\n%+v", fs[i], a.Manifest.Layers, b.Manifest.Layers)
				}
				if withEarly[i].Descriptor.Digest != without[i].Descriptor.Digest {
					t.Errorf("%s: manifest %s with Early, %s without", fs[i], withEarly[i].Descriptor.Digest, without[i].Descriptor.Digest)
				}
			}
		})
	}
}

// TestPublishEarlyForgedCommitTar: a file where buildah's commit tars go,
// named with the diff ID of one of the image's layers but holding other
// bytes, is not published: Publish compresses that layer from storage.
func TestPublishEarlyForgedCommitTar(t *testing.T) {
	ctx := context.Background()
	reg := testregistry.StartDistribution(t)
	store, img, _ := builtImage(t)
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	want, err := publishImage(ctx, publish.Stream, store, img, reg.Repo("publish/forged-want"), fs, publish.Options{SystemContext: sys, Stage: stage.Settings{TmpDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := imagecheck.Check(ctx, testregistry.OpenRepo(t, reg.Repo("publish/forged-want")), want[0].Descriptor, fs[0])
	if err != nil {
		t.Fatal(err)
	}

	buildTmpDir := t.TempDir()
	early, err := stage.StartEarly(ctx, store, fs, stage.Settings{TmpDir: t.TempDir()}, buildTmpDir)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	forged := filepath.Join(buildTmpDir, "buildah1234", a.Config.RootFS.DiffIDs[0].String())
	if err := os.MkdirAll(filepath.Dir(forged), 0o700); err != nil {
		t.Fatal(err)
	}
	var other bytes.Buffer // a valid tar, so only its digest gives it away
	tw := tar.NewWriter(&other)
	if err := tw.WriteHeader(&tar.Header{Name: "forged", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("hi\n")); err != nil || tw.Close() != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(forged, other.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// Let the worker try it (and fail: Busy counts its attempt), rather than
	// Publish finding it still queued.
	for deadline := time.Now().Add(30 * time.Second); early.Busy() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Early did not pick up the file in 30 s")
		}
	}
	early.StopWatching()
	var log strings.Builder
	got, err := publishImage(ctx, publish.Stream, store, img, reg.Repo("publish/forged"), fs,
		publish.Options{SystemContext: sys, Stage: stage.Settings{TmpDir: t.TempDir()}, Log: &log}, early)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "0 of 3 layers were compressed during the build") {
		t.Errorf("the forged tar was used:\n%s", log.String())
	}
	for i := range fs {
		if got[i].Descriptor.Digest != want[i].Descriptor.Digest {
			t.Errorf("%s: manifest %s, want %s", fs[i], got[i].Descriptor.Digest, want[i].Descriptor.Digest)
		}
	}
}

// proxied starts a proxy to reg that calls intercept on every request: a
// status other than 0 is answered instead of forwarding. It returns the
// proxy's host:port.
func proxied(t *testing.T, reg *testregistry.Registry, intercept func(*http.Request) int) string {
	t.Helper()
	target, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := intercept(r); code != 0 {
			_, _ = io.Copy(io.Discard, r.Body)
			http.Error(w, `{"errors":[{"code":"DENIED","message":"refused by the test proxy"}]}`, code)
			return
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	return strings.TrimPrefix(proxy.URL, "http://")
}

// TestPublishSlowRegistry: with more layers than may wait for upload and a
// registry slower than the compressors, staging waits for the uploads (and
// the image is complete, its layers in order), several layers of a format
// upload at once; when an upload then fails for good, Publish returns that
// error instead of waiting forever on a full queue.
func TestPublishSlowRegistry(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	store, tmp := newStore(t)
	var cf strings.Builder
	files := map[string]string{}
	cf.WriteString("FROM scratch\n")
	for i := range 6 {
		name := fmt.Sprintf("f%d.txt", i)
		files[name] = strings.Repeat(name, 20000)
		fmt.Fprintf(&cf, "COPY %s /%s\n", name, name)
	}
	files["Containerfile"] = cf.String()
	dir := testfixture.Context(t, files)
	platform := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	built, err := build.Build(context.Background(), store, build.Options{
		ContextDir: dir, Containerfile: filepath.Join(dir, "Containerfile"), TmpDir: filepath.Join(tmp, "tmp"),
	}, platform)
	if err != nil {
		t.Fatal(err)
	}
	img := built
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	isLayerPatch := func(r *http.Request) bool { // a blob's bytes: oras uploads monolithically (POST, then PUT)
		return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
	}

	var patches, inFlight, maxInFlight atomic.Int32
	slow := proxied(t, reg, func(r *http.Request) int {
		if isLayerPatch(r) {
			patches.Add(1)
			n := inFlight.Add(1)
			for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
			}
			time.Sleep(150 * time.Millisecond)
			inFlight.Add(-1)
		}
		return 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	entries, err := publishImage(ctx, publish.Stream, store, img, slow+"/publish/slow", fs, publish.Options{SystemContext: sys, Stage: stage.Settings{TmpDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		v, err := imagecheck.Check(ctx, testregistry.OpenRepo(t, reg.Repo("publish/slow")), e.Descriptor, fs[i])
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Manifest.Layers) != 6 {
			t.Errorf("%s variant has %d layers, want 6", fs[i], len(v.Manifest.Layers))
		}
	}
	if n := patches.Load(); n != 13 { // the config and 6 layers per format
		t.Errorf("%d blob uploads, want 13", n)
	}
	// One layer at a time per format would be at most 2 at once.
	if m := maxInFlight.Load(); m <= 2 {
		t.Errorf("at most %d layer uploads at once, want more than one per format", m)
	}

	patches.Store(0)
	failing := proxied(t, reg, func(r *http.Request) int {
		if isLayerPatch(r) && patches.Add(1) > 3 { // the config and the first layer of each format get through
			return http.StatusForbidden
		}
		return 0
	})
	_, err = publishImage(ctx, publish.Stream, store, img, failing+"/publish/failing", fs, publish.Options{SystemContext: sys, Stage: stage.Settings{TmpDir: t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("err = %v, want the registry's 403", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Publish only returned at the test's deadline")
	}
}
