package oci

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// sized serves any descriptor with as many spaces as it declares: the
// budget is charged by declared size, before any byte is read.
var sized = content.FetcherFunc(func(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(bytes.Repeat([]byte(" "), int(d.Size)))), nil
})

func doc(size int64) ocispec.Descriptor {
	b := bytes.Repeat([]byte(" "), int(size))
	return content.NewDescriptorFromBytes(MediaTypeImageManifest, b)
}

func wantLimit(t *testing.T, err error, limit string) {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != limit || !strings.Contains(err.Error(), "limit "+limit) || !strings.Contains(err.Error(), "sha256:") {
		t.Fatalf("err = %v, want a *LimitError naming %s and the document", err, limit)
	}
}

func TestWalkBytes(t *testing.T) {
	ctx := context.Background()
	var w Walk
	big := doc(MaxDocumentBytes)
	for range MaxWalkBytes / MaxDocumentBytes {
		if _, err := w.Fetch(ctx, sized, big, "manifest"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := w.Fetch(ctx, sized, doc(1), "manifest")
	wantLimit(t, err, "MaxWalkBytes")
	if docs, b := w.Read(); docs != MaxWalkBytes/MaxDocumentBytes || b != MaxWalkBytes {
		t.Errorf("Read = %d, %d", docs, b)
	}
}

func TestWalkDocuments(t *testing.T) {
	ctx := context.Background()
	var w Walk
	small := doc(2)
	for range MaxWalkDocuments {
		if _, err := w.Fetch(ctx, sized, small, "config"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := w.Fetch(ctx, sized, small, "config")
	wantLimit(t, err, "MaxWalkDocuments")
	// The per-document limit is still the document's, with its own error.
	var fresh Walk
	_, err = fresh.Fetch(ctx, sized, doc(MaxDocumentBytes+1), "manifest")
	var se *SizeError
	if !errors.As(err, &se) {
		t.Errorf("oversized document: %v, want a *SizeError", err)
	}
}

func TestWalkDescriptorsAndContext(t *testing.T) {
	var w Walk
	ctx := context.Background()
	if err := w.Visit(ctx, "index sha256:1", MaxWalkDescriptors); err != nil {
		t.Fatal(err)
	}
	wantLimit(t, w.Visit(ctx, "index sha256:2", 1), "MaxWalkDescriptors")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var w2 Walk
	if err := w2.Visit(cctx, "index", 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Visit after cancel: %v", err)
	}
	if _, err := w2.Fetch(cctx, sized, doc(2), "manifest"); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch after cancel: %v", err)
	}
}
