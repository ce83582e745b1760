// Package imagecheck verifies published variants in tests, the way
// go-containerregistry's validate package checks images: it reads back what
// a registry holds and fails on anything a client would trip over.
package imagecheck

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// Variant is what Check learned about one manifest.
type Variant struct {
	Manifest     ocispec.Manifest
	Config       ocispec.Image
	ConfigDigest digest.Digest
	// Files holds the regular files of at most SmallFile bytes in the
	// layers, by path; a later layer's file replaces an earlier one's.
	Files map[string][]byte
}

// SmallFile is the largest file Variant.Files keeps (tests read marker
// files that RUN steps write).
const SmallFile = 64 << 10

// Check fetches the manifest desc and verifies that every layer is in format
// f, decompresses to the diffID its config records, and (for zstd:chunked)
// carries a TOC whose checksum matches the blob.
func Check(ctx context.Context, fetcher content.Fetcher, desc ocispec.Descriptor, f formats.Format) (Variant, error) {
	var v Variant
	raw, err := content.FetchAll(ctx, fetcher, desc)
	if err != nil {
		return v, fmt.Errorf("fetching manifest %s: %w", desc.Digest, err)
	}
	if err := json.Unmarshal(raw, &v.Manifest); err != nil {
		return v, err
	}
	if v.Manifest.MediaType != ocispec.MediaTypeImageManifest {
		return v, fmt.Errorf("manifest %s: media type %q, want %q", desc.Digest, v.Manifest.MediaType, ocispec.MediaTypeImageManifest)
	}
	cfgRaw, err := content.FetchAll(ctx, fetcher, v.Manifest.Config)
	if err != nil {
		return v, fmt.Errorf("fetching config: %w", err)
	}
	if err := json.Unmarshal(cfgRaw, &v.Config); err != nil {
		return v, err
	}
	v.ConfigDigest = v.Manifest.Config.Digest
	if len(v.Config.RootFS.DiffIDs) != len(v.Manifest.Layers) {
		return v, fmt.Errorf("manifest %s: %d layers but %d diffIDs", desc.Digest, len(v.Manifest.Layers), len(v.Config.RootFS.DiffIDs))
	}
	want := f.LayerMediaType()
	v.Files = map[string][]byte{}
	for i, l := range v.Manifest.Layers {
		if l.MediaType != want {
			return v, fmt.Errorf("%s manifest %s layer %d: media type %s, want %s", f, desc.Digest, i, l.MediaType, want)
		}
		blob, err := content.FetchAll(ctx, fetcher, l)
		if err != nil {
			return v, fmt.Errorf("fetching layer %d: %w", i, err)
		}
		diffID, err := readLayer(blob, f, v.Files)
		if err != nil {
			return v, fmt.Errorf("%s layer %d (%s): %w", f, i, l.Digest, err)
		}
		if diffID != v.Config.RootFS.DiffIDs[i] {
			return v, fmt.Errorf("%s layer %d (%s) decompresses to %s, config says %s", f, i, l.Digest, diffID, v.Config.RootFS.DiffIDs[i])
		}
		_, hasTOC := l.Annotations[oci.AnnotationZstdChunkedChecksum]
		if f != formats.ZstdChunked {
			if hasTOC {
				return v, fmt.Errorf("%s layer %d carries zstd:chunked annotations", f, i)
			}
			continue
		}
		if err := checkTOC(blob, l.Annotations); err != nil {
			return v, fmt.Errorf("zstd:chunked layer %d (%s): %w", i, l.Digest, err)
		}
	}
	return v, nil
}

// readLayer decompresses a layer, returns the digest of its tar and adds
// its small regular files to files.
func readLayer(blob []byte, f formats.Format, files map[string][]byte) (digest.Digest, error) {
	var r io.Reader
	if f == formats.Gzip {
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			return "", err
		}
		defer zr.Close()
		r = zr
	} else {
		zr, err := zstd.NewReader(bytes.NewReader(blob))
		if err != nil {
			return "", err
		}
		defer zr.Close()
		r = zr
	}
	d := digest.Canonical.Digester()
	tee := io.TeeReader(r, d.Hash())
	tr := tar.NewReader(tee)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading its tar: %w", err)
		}
		if h.Typeflag == tar.TypeReg && h.Size <= SmallFile {
			b, err := io.ReadAll(tr)
			if err != nil {
				return "", err
			}
			files[h.Name] = b
		}
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // the tar's end
		return "", err
	}
	return d.Digest(), nil
}

// checkTOC verifies the zstd:chunked TOC: present at the annotated position,
// its checksum matching, and decoding to the TOC JSON containers/storage reads.
func checkTOC(blob []byte, ann map[string]string) error {
	for _, k := range []string{oci.AnnotationZstdChunkedChecksum, oci.AnnotationZstdChunkedPosition, oci.AnnotationZstdChunkedTarSplitPosition} {
		if ann[k] == "" {
			return fmt.Errorf("annotation %s missing", k)
		}
	}
	parts := strings.Split(ann[oci.AnnotationZstdChunkedPosition], ":")
	if len(parts) != 4 {
		return fmt.Errorf("%s %q: want offset:length:uncompressed:type", oci.AnnotationZstdChunkedPosition, ann[oci.AnnotationZstdChunkedPosition])
	}
	off, err1 := strconv.ParseUint(parts[0], 10, 64)
	n, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || off+n > uint64(len(blob)) {
		return fmt.Errorf("%s %q does not fit the %d-byte blob", oci.AnnotationZstdChunkedPosition, ann[oci.AnnotationZstdChunkedPosition], len(blob))
	}
	toc := blob[off : off+n]
	if got := digest.FromBytes(toc).String(); got != ann[oci.AnnotationZstdChunkedChecksum] {
		return fmt.Errorf("TOC checksum %s, annotation says %s", got, ann[oci.AnnotationZstdChunkedChecksum])
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return err
	}
	defer dec.Close()
	plain, err := dec.DecodeAll(toc, nil)
	if err != nil {
		return fmt.Errorf("decoding TOC: %w", err)
	}
	var doc struct {
		Version int               `json:"version"`
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(plain, &doc); err != nil {
		return fmt.Errorf("TOC is not JSON: %w", err)
	}
	if doc.Version != 1 {
		return fmt.Errorf("TOC version %d, want 1", doc.Version)
	}
	return nil
}
