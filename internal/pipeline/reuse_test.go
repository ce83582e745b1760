package pipeline

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/faultproxy"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/publish"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/stage"
	"github.com/mcbuild/mcbuild/internal/summary"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

var amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}

// appFile is an app on top of a base: a RUN, then a COPY whose content the
// tests change.
const appFile = "FROM %s\nRUN echo built > /built.txt\nCOPY payload.txt /payload.txt\n"

// testBuild is one `mcbuild build` of files to dest, in a fresh store (as
// a fresh pod would), with reuse unless noReuse.
type testBuild struct {
	dest      string
	files     map[string]string
	arches    []string
	noReuse   bool
	reuseFrom []string
	timeout   time.Duration // --request-timeout
}

func (b testBuild) run(t *testing.T) (Outcome, string) {
	t.Helper()
	out, log, err := b.try(t)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	return out, log
}

func (b testBuild) try(t *testing.T) (Outcome, string, error) {
	t.Helper()
	dir := testfixture.Context(t, b.files, b.arches...)
	tmp := t.TempDir()
	dest, err := imageref.ParseTagged(b.dest)
	if err != nil {
		t.Fatal(err)
	}
	ro := registry.DefaultOptions()
	ro.TLSVerify, ro.Retry, ro.RetryDelay = false, 1, 10*time.Millisecond
	if b.timeout > 0 {
		ro.RequestTimeout = b.timeout
	}
	sess, err := registry.NewSession(ro)
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0).UTC()
	var log strings.Builder
	out, err := Build(context.Background(), BuildPlan{
		Dest: dest, Platforms: []ocispec.Platform{amd64},
		Formats:   []formats.Format{formats.Gzip, formats.ZstdChunked},
		Build:     build.Options{ContextDir: dir, Containerfile: filepath.Join(dir, "Containerfile"), SourceDateEpoch: &epoch},
		Store:     build.StoreOptions{Driver: "vfs", Root: filepath.Join(tmp, "root"), RunRoot: filepath.Join(tmp, "run")},
		Publisher: publish.Stream, Stage: stage.Settings{TmpDir: tmp},
		Reuse: !b.noReuse, ReuseFrom: b.reuseFrom,
		Registry: sess, Log: &log,
	})
	return out, log.String(), err
}

// variants checks every variant with imagecheck (each layer decompresses
// to its diff ID, zstd:chunked TOCs hold) and returns them by format.
func variants(t *testing.T, out Outcome, repo string) map[formats.Format]imagecheck.Variant {
	t.Helper()
	r := testregistry.OpenRepo(t, repo)
	got := map[formats.Format]imagecheck.Variant{}
	for _, e := range out.Entries {
		v, err := imagecheck.Check(context.Background(), r, e.Descriptor, e.Format)
		if err != nil {
			t.Fatalf("%s variant: %v", e.Format, err)
		}
		got[e.Format] = v
	}
	return got
}

// stats is the summary line of the variant of format f.
func stats(t *testing.T, out Outcome, f formats.Format) summary.Variant {
	t.Helper()
	for _, v := range out.Variants {
		if v.Compression == string(f) {
			return v
		}
	}
	t.Fatalf("no %s variant in %+v", f, out.Variants)
	return summary.Variant{}
}

// pushGoGzipBase pushes a one-layer busybox base the way Docker and
// go-containerregistry do: Go's compress/gzip (not pgzip) and Docker
// schema 2 media types. It returns the layer.
func pushGoGzipBase(t *testing.T, ref string) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	root := filepath.Join(testfixture.RootfsDir(t), "amd64")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		hdr.Name, hdr.ModTime = rel, time.Unix(0, 0)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(body)
			return err
		}
		return nil
	})
	if err != nil || tw.Close() != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(tarBuf.Bytes()); err != nil || zw.Close() != nil {
		t.Fatal(err)
	}
	named, err := imageref.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	repo := testregistry.OpenRepo(t, named.Repository)
	layer := pushBytes(t, repo, oci.MediaTypeDockerLayerGzip, gz.Bytes())
	cfg, _ := json.Marshal(ocispec.Image{Platform: amd64, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tarBuf.Bytes())}}})
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: oci.MediaTypeDockerManifest,
		Config: pushBytes(t, repo, oci.MediaTypeDockerConfig, cfg), Layers: []ocispec.Descriptor{layer}})
	md := ocispec.Descriptor{MediaType: oci.MediaTypeDockerManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
	if err := repo.PushReference(ctx, md, bytes.NewReader(m), named.Tag); err != nil {
		t.Fatal(err)
	}
	return layer
}

func pushBytes(t *testing.T, repo *remote.Repository, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := repo.Push(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestReuseGoGzipBase: a base whose gzip layer Go's compress/gzip wrote (as
// Docker's and go-containerregistry's are) keeps its blob identity in the
// gzip variant: reused as pulled, not compressed again; the zstd:chunked
// variant has no such blob and compresses it. Without reuse, it is
// compressed (and differs).
func TestReuseGoGzipBase(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	base := pushGoGzipBase(t, reg.Repo("reuse/gobase:v1"))
	files := map[string]string{"Containerfile": strings.ReplaceAll(appFile, "%s", reg.Repo("reuse/gobase:v1")), "payload.txt": "one\n"}

	out, log := testBuild{dest: reg.Repo("reuse/goapp:v1"), files: files}.run(t)
	got := variants(t, out, reg.Repo("reuse/goapp"))
	if l := got[formats.Gzip].Manifest.Layers[0]; l.Digest != base.Digest || l.Size != base.Size {
		t.Errorf("gzip variant's base layer is %s (%d B), want the base's own %s (%d B)\n%s", l.Digest, l.Size, base.Digest, base.Size, log)
	}
	if s := stats(t, out, formats.Gzip); s.Reused["pulled"] != 1 || s.Compressed != 2 || s.Layers != 3 {
		t.Errorf("gzip variant: %s; want 1 reused as pulled and 2 compressed", s)
	}
	if s := stats(t, out, formats.ZstdChunked); len(s.Reused) != 0 || s.Compressed != 3 {
		t.Errorf("zstd:chunked variant: %s; want all 3 compressed", s)
	}

	out, _ = testBuild{dest: reg.Repo("reuse/goapp-noreuse:v1"), files: files, noReuse: true}.run(t)
	got = variants(t, out, reg.Repo("reuse/goapp-noreuse"))
	if l := got[formats.Gzip].Manifest.Layers[0]; l.Digest == base.Digest {
		t.Error("--reuse-layers=false: the base's blob was reused")
	}
	if s := stats(t, out, formats.Gzip); len(s.Reused) != 0 || s.Compressed != 3 {
		t.Errorf("--reuse-layers=false: %s; want all compressed", s)
	}
}

// TestReuseMcbuildBase: a base mcbuild published in gzip and zstd:chunked
// gives both variants their base layers (one as pulled, the other read
// and checked from the base's index, mounted within the registry), and
// each variant names the base manifest of its own compression. A rebuild
// reuses the previous release's layers; with one COPY changed, only that
// layer is compressed and uploaded. A base in another registry is
// streamed across.
func TestReuseMcbuildBase(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	proxy := faultproxy.Start(t, reg.URL)
	mounts := proxy.Add(&faultproxy.Rule{Name: "mount", Method: "POST", Query: "mount=", Action: faultproxy.Stall(time.Millisecond)})
	baseOut, _ := testBuild{dest: proxy.Host + "/reuse/base:v1", files: map[string]string{"Containerfile": "FROM scratch\nCOPY rootfs/amd64/ /\n"}, arches: []string{"amd64"}}.run(t)
	baseVariants := variants(t, baseOut, proxy.Host+"/reuse/base")
	files := map[string]string{"Containerfile": strings.ReplaceAll(appFile, "%s", proxy.Host+"/reuse/base:v1"), "payload.txt": "one\n"}

	out, log := testBuild{dest: proxy.Host + "/reuse/app:v1", files: files}.run(t)
	got := variants(t, out, proxy.Host+"/reuse/app")
	for _, e := range baseOut.Entries {
		f := e.Format
		if got[f].Manifest.Layers[0].Digest != baseVariants[f].Manifest.Layers[0].Digest {
			t.Errorf("%s variant's base layer %s, want the base's %s\n%s", f, got[f].Manifest.Layers[0].Digest, baseVariants[f].Manifest.Layers[0].Digest, log)
		}
		if s := stats(t, out, f); s.Compressed != 2 || s.Layers != 3 {
			t.Errorf("%s variant: %s; want the base layer reused, 2 compressed", f, s)
		}
		if a := got[f].Manifest.Annotations[ocispec.AnnotationBaseImageDigest]; a != e.Descriptor.Digest.String() {
			t.Errorf("%s variant's %s is %q, want the base's %s manifest %s", f, ocispec.AnnotationBaseImageDigest, a, f, e.Descriptor.Digest)
		}
	}
	if mounts.Fired() == 0 {
		t.Errorf("no cross-repository mount was asked for\n%s", strings.Join(proxy.Log(), "\n"))
	}

	// The same inputs again: every layer comes from the previous release.
	out, log = testBuild{dest: proxy.Host + "/reuse/app:v1", files: files}.run(t)
	for _, f := range []formats.Format{formats.Gzip, formats.ZstdChunked} {
		if s := stats(t, out, f); s.Compressed != 0 || s.BytesUploaded != 0 {
			t.Errorf("rebuild, %s variant: %s; want nothing compressed or uploaded\n%s", f, s, log)
		}
	}
	// One COPY changed: only that layer is compressed and uploaded.
	files["payload.txt"] = "two\n"
	out, log = testBuild{dest: proxy.Host + "/reuse/app:v1", files: files}.run(t)
	got = variants(t, out, proxy.Host+"/reuse/app")
	for _, f := range []formats.Format{formats.Gzip, formats.ZstdChunked} {
		last := got[f].Manifest.Layers[2]
		if s := stats(t, out, f); s.Compressed != 1 || s.BytesUploaded != last.Size {
			t.Errorf("one COPY changed, %s variant: %s; want 1 layer compressed and its %d bytes uploaded\n%s", f, s, last.Size, log)
		}
	}

	// A base in another registry: streamed across, unchanged.
	other := testregistry.StartDistribution(t)
	out, log = testBuild{dest: other.Repo("reuse/app:v1"), files: files}.run(t)
	got = variants(t, out, other.Repo("reuse/app"))
	for _, f := range []formats.Format{formats.Gzip, formats.ZstdChunked} {
		base := baseVariants[f].Manifest.Layers[0]
		if l := got[f].Manifest.Layers[0]; l.Digest != base.Digest {
			t.Errorf("other registry, %s variant's base layer %s, want %s\n%s", f, l.Digest, base.Digest, log)
		}
		if s := stats(t, out, f); s.Compressed != 2 || s.BytesUploaded < base.Size {
			t.Errorf("other registry, %s variant: %s; want the base layer streamed (%d bytes) and 2 compressed", f, s, base.Size)
		}
	}
}

// TestReuseFaults: whatever goes wrong with an existing blob, the run falls
// back to compressing that layer, with a warning naming it and its source,
// and never publishes a manifest listing a blob the destination lacks
// (variants reads every blob back). The candidates come only from
// --reuse-from (the app is FROM scratch), behind a fault proxy.
func TestReuseFaults(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	proxy := faultproxy.Start(t, reg.URL)
	dest := testregistry.StartDistribution(t)
	files := func(payload string) map[string]string {
		return map[string]string{"Containerfile": "FROM scratch\nCOPY rootfs/amd64/ /\nCOPY payload.txt /payload.txt\n", "payload.txt": payload}
	}
	cache := proxy.Host + "/reuse/cache"
	one, _ := testBuild{dest: cache + ":one", files: files("one\n"), arches: []string{"amd64"}}.run(t)
	two, _ := testBuild{dest: cache + ":two", files: files("two\n"), arches: []string{"amd64"}}.run(t)
	oneGzip := variants(t, one, cache)[formats.Gzip]
	twoGzip := variants(t, two, cache)[formats.Gzip]
	// one's config with two's layers: a manifest that lies about the payload layer.
	tampered, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: oneGzip.Manifest.Config, Layers: twoGzip.Manifest.Layers})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(tampered), Size: int64(len(tampered))}
	if err := testregistry.OpenRepo(t, cache).PushReference(context.Background(), md, bytes.NewReader(tampered), "tampered"); err != nil {
		t.Fatal(err)
	}
	payloadDiffID := oneGzip.Config.RootFS.DiffIDs[1]
	// Faults on the layers only (the manifests and configs are read fine).
	var layerDigests []string
	for _, v := range variants(t, one, cache) {
		for _, l := range v.Manifest.Layers {
			layerDigests = append(layerDigests, l.Digest.Encoded())
		}
	}
	layers := "/blobs/sha256:(" + strings.Join(layerDigests, "|") + ")$"

	for _, tc := range []struct {
		name     string
		from     string
		rule     *faultproxy.Rule
		reused   int      // gzip layers reused
		warnings []string // in the log
	}{
		{name: "works", from: cache + ":one", reused: 2},
		{name: "source unreachable", from: "127.0.0.1:1/reuse/cache:one", reused: 0, warnings: []string{"reuse: 127.0.0.1:1/reuse/cache:one"}},
		{name: "blob 404", from: cache + ":one", rule: &faultproxy.Rule{Method: "GET", Path: layers, Action: faultproxy.Status(404)},
			reused: 0, warnings: []string{"reusing layer", "404"}},
		{name: "stream stalls", from: cache + ":one", rule: &faultproxy.Rule{Method: "GET", Path: layers, Action: faultproxy.Stall(0)},
			reused: 0, warnings: []string{"reusing layer", "request timeout"}},
		{name: "bytes do not match the layer", from: cache + ":tampered", reused: 1,
			warnings: []string{"(diff ID " + payloadDiffID.String() + ") as gzip from " + cache, "content mismatch", "decompresses to"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy.Reset()
			if tc.rule != nil {
				proxy.Add(tc.rule)
			}
			repo := dest.Repo("reuse/" + strings.ReplaceAll(tc.name, " ", "-"))
			start := time.Now()
			out, log := testBuild{dest: repo + ":v1", files: files("one\n"), arches: []string{"amd64"}, reuseFrom: []string{tc.from}, timeout: 2 * time.Second}.run(t)
			if took := time.Since(start); took > time.Minute {
				t.Errorf("the run took %s", took)
			}
			got := variants(t, out, repo) // every blob read back from the destination
			if s := stats(t, out, formats.Gzip); s.Reused["reuse-from"] != tc.reused || s.Compressed != 2-tc.reused {
				t.Errorf("gzip variant: %s; want %d reused\n%s", s, tc.reused, log)
			}
			for _, w := range tc.warnings {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			if tc.reused == 2 && got[formats.Gzip].Manifest.Layers[1].Digest != oneGzip.Manifest.Layers[1].Digest {
				t.Errorf("the reused payload layer is %s, want %s", got[formats.Gzip].Manifest.Layers[1].Digest, oneGzip.Manifest.Layers[1].Digest)
			}
			for _, l := range twoGzip.Manifest.Layers[1:] {
				if ok, _ := testregistry.OpenRepo(t, repo).Exists(context.Background(), l); ok {
					t.Errorf("the tampered blob %s reached the destination", l.Digest)
				}
			}
		})
	}
}

// TestReuseMountRefused: a registry that refuses the cross-repository
// mount gets the blob streamed instead; it is still reused.
func TestReuseMountRefused(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	proxy := faultproxy.Start(t, reg.URL)
	files := map[string]string{"Containerfile": "FROM scratch\nCOPY rootfs/amd64/ /\n"}
	testBuild{dest: proxy.Host + "/reuse/cache:v1", files: files, arches: []string{"amd64"}}.run(t)
	refused := proxy.Add(&faultproxy.Rule{Method: "POST", Query: "mount=", Action: faultproxy.Status(403)})
	out, log := testBuild{dest: proxy.Host + "/reuse/app:v1", files: files, arches: []string{"amd64"}, reuseFrom: []string{proxy.Host + "/reuse/cache:v1"}}.run(t)
	variants(t, out, proxy.Host+"/reuse/app")
	for _, f := range []formats.Format{formats.Gzip, formats.ZstdChunked} {
		if s := stats(t, out, f); s.Reused["reuse-from"] != 1 || s.BytesUploaded <= 0 {
			t.Errorf("%s variant: %s; want the layer reused by streaming it\n%s", f, s, log)
		}
	}
	if refused.Fired() != 2 {
		t.Errorf("%d mounts refused, want one per format", refused.Fired())
	}
}
