package release_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/faultproxy"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/release"
	"github.com/mcbuild/mcbuild/internal/testimage"
	"github.com/mcbuild/mcbuild/internal/testregistry"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

var fastRetry = registry.Options{TLSVerify: false, Retry: 2, RetryDelay: 5 * time.Millisecond, RequestTimeout: time.Second}

// setupProxied is setup behind a fault proxy: images pushed, tag v1 on an
// older image.
func setupProxied(t *testing.T) (*faultproxy.Proxy, *remote.Repository, imageref.Ref, []index.Entry, ocispec.Descriptor) {
	t.Helper()
	t.Setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
	p := faultproxy.Start(t, testregistry.StartOlareg(t).URL)
	dest, err := imageref.ParseTagged(p.Host + "/release/faults:v1")
	if err != nil {
		t.Fatal(err)
	}
	repo := openRepo(t, dest.Repository, fastRetry)
	b := testimage.New(t, repo)
	var entries []index.Entry
	for _, f := range []formats.Format{formats.Gzip, formats.ZstdChunked} {
		entries = append(entries, index.Entry{Descriptor: b.Image("linux/amd64", f), Format: f})
	}
	old := b.Image("linux/arm64", formats.Gzip)
	b.Tag(old, dest.Tag)
	return p, repo, dest, entries, old
}

func assertUntouched(t *testing.T, repo *remote.Repository, dest imageref.Ref, old ocispec.Descriptor, dir string) {
	t.Helper()
	if got, err := repo.Resolve(context.Background(), dest.Tag); err != nil || got.Digest != old.Digest {
		t.Errorf("tag moved to %v (%v), want it left at %s", got.Digest, err, old.Digest)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("results written on failure: %v", files)
	}
}

// TestFinishVerifiesBlobsBeforeTagging: a layer the registry lost after the
// manifest was pushed fails the release before the tag moves, naming it.
func TestFinishVerifiesBlobsBeforeTagging(t *testing.T) {
	ctx := context.Background()
	_, repo, dest, entries, old := setupProxied(t)
	raw, err := content.FetchAll(ctx, repo, entries[1].Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	lost := m.Layers[1]
	if err := repo.Blobs().Delete(ctx, lost); err != nil {
		t.Fatalf("deleting %s: %v", lost.Digest, err)
	}
	dir := t.TempDir()
	_, err = release.Finish(ctx, repo, dest, entries, release.Options{ResultsDir: dir, Registry: fastRetry})
	if err == nil || !strings.Contains(err.Error(), lost.Digest.String()) || !strings.Contains(err.Error(), "layer 1 of the linux/amd64 zstd:chunked manifest") ||
		!strings.Contains(err.Error(), "missing") {
		t.Fatalf("Finish = %v, want an error naming the lost layer %s", err, lost.Digest)
	}
	assertUntouched(t, repo, dest, old, dir)
}

// TestFinishRetriesAndFallsBack: transient 5xx on the index push and the
// tag are retried; a registry refusing the subject gets the OCI 1.0 form,
// with a warning.
func TestFinishRetriesAndFallsBack(t *testing.T) {
	ctx := context.Background()
	p, repo, dest, entries, _ := setupProxied(t)
	idx := p.Add(&faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/sha256:`, MediaType: ocispec.MediaTypeImageIndex, Count: 2, Action: faultproxy.Status(502)})
	tag := p.Add(&faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/v1$`, Count: 1, Action: faultproxy.StatusRetryAfter(503, "0")})
	subj := p.Add(&faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/`, Body: `"subject"`, Action: faultproxy.StatusCode(400, "MANIFEST_INVALID")})
	get := p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/manifests/sha256:`, Count: 1, Action: faultproxy.ResetResponse(20)})
	dir := t.TempDir()
	out, err := release.Finish(ctx, repo, dest, entries, release.Options{ResultsDir: dir, Registry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if idx.Fired() != 2 || tag.Fired() != 1 || subj.Fired() != 1 || get.Fired() != 1 {
		t.Errorf("fired: index %d, tag %d, subject %d, get %d; want 2, 1, 1, 1", idx.Fired(), tag.Fired(), subj.Fired(), get.Fired())
	}
	if len(out.Warnings) == 0 || !strings.Contains(out.Warnings[0], "OCI 1.0 fallback form") || !strings.Contains(out.Warnings[0], subjects.FallbackTag(out.Index.Digest)) {
		t.Errorf("warnings %q, want the fallback named", out.Warnings)
	}
	if got, err := repo.Resolve(ctx, dest.Tag); err != nil || got.Digest != out.Index.Digest {
		t.Errorf("tag -> %v (%v), want %s", got.Digest, err, out.Index.Digest)
	}
	found, err := subjects.Find(ctx, repo, out.Index)
	if err != nil || found.Digest != out.Subjects.Digest {
		t.Errorf("Find = %v (%v), want %s", found.Digest, err, out.Subjects.Digest)
	}
}

// TestFinishPersistentFailure: a 503 on every tag push ends with a message
// naming the operation and the status after the configured retries, and
// leaves the tag and the results alone.
func TestFinishPersistentFailure(t *testing.T) {
	ctx := context.Background()
	p, repo, dest, entries, old := setupProxied(t)
	r := p.Add(&faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/v1$`, Action: faultproxy.Status(503)})
	dir := t.TempDir()
	_, err := release.Finish(ctx, repo, dest, entries, release.Options{ResultsDir: dir, Registry: fastRetry})
	if err == nil || !strings.Contains(err.Error(), "tagging") || !strings.Contains(err.Error(), "HTTP 503") || !strings.Contains(err.Error(), p.Host) {
		t.Fatalf("Finish = %v", err)
	}
	if r.Fired() != 3 {
		t.Errorf("tag push tried %d times, want 3 (--retry 2)", r.Fired())
	}
	assertUntouched(t, repo, dest, old, dir)
}

// TestVerifyRetriesAtOneLayer: a 503 on every GET of one manifest while
// verifying is retried by the session's transport alone: with --retry 2,
// exactly 3 requests for that manifest, and the error says 3 attempts.
func TestVerifyRetriesAtOneLayer(t *testing.T) {
	ctx := context.Background()
	p, repo, dest, entries, old := setupProxied(t)
	r := p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/manifests/` + entries[0].Descriptor.Digest.String() + `$`, Action: faultproxy.Status(503)})
	dir := t.TempDir()
	_, err := release.Finish(ctx, repo, dest, entries, release.Options{ResultsDir: dir, Registry: fastRetry})
	if err == nil || !strings.Contains(err.Error(), "verifying") || !strings.Contains(err.Error(), "HTTP 503 Service Unavailable, still failing after 3 attempts") {
		t.Fatalf("Finish = %v, want the verify read to fail after 3 attempts", err)
	}
	if r.Matched() != 3 {
		t.Errorf("%d GETs of %s, want 3 (--retry 2)", r.Matched(), entries[0].Descriptor.Digest)
	}
	assertUntouched(t, repo, dest, old, dir)
}
