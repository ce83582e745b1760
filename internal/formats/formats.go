// Package formats parses and describes the layer compression formats mcbuild
// publishes (the COMPRESSION_FORMATS parameter).
package formats

import (
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/oci"
)

// Format is one layer compression format a manifest variant is published in.
type Format string

const (
	Gzip        Format = "gzip"
	Zstd        Format = "zstd"
	ZstdChunked Format = "zstd:chunked"
)

// Default is the COMPRESSION_FORMATS value used when none is given (the
// empty list means it too).
const Default = "gzip,zstd:chunked"

// Dual is the name Konflux's buildah task gives gzip plus zstd:chunked
// (its COMPRESSION_FORMAT "dual"); Parse accepts it as a whole list.
const Dual = "dual"

// Known lists every accepted format, in the order they are documented.
var Known = []Format{Gzip, Zstd, ZstdChunked}

// IsZstd reports whether layers of this format are zstd frames.
func (f Format) IsZstd() bool { return f == Zstd || f == ZstdChunked }

// LayerMediaType is the OCI media type of this format's layers
// (zstd:chunked layers are zstd, told apart by their annotations).
func (f Format) LayerMediaType() string {
	if f.IsZstd() {
		return oci.MediaTypeImageLayerZstd
	}
	return oci.MediaTypeImageLayerGzip
}

// OfLayer is the format of one distributable layer: gzip (the OCI or
// Docker media type), zstd:chunked (zstd with the TOC annotation) or zstd;
// false for anything else (uncompressed, foreign, encrypted).
func OfLayer(d ocispec.Descriptor) (Format, bool) {
	switch d.MediaType {
	case oci.MediaTypeImageLayerGzip, oci.MediaTypeDockerLayerGzip:
		return Gzip, true
	case oci.MediaTypeImageLayerZstd:
		if d.Annotations[oci.AnnotationZstdChunkedChecksum] != "" {
			return ZstdChunked, true
		}
		return Zstd, true
	}
	return "", false
}

// Rank orders formats inside one platform of an index: gzip first, because
// Docker and containerd take the first entry matching their platform.
func (f Format) Rank() int {
	switch f {
	case Gzip:
		return 0
	case Zstd:
		return 1
	default:
		return 2
	}
}

func (f Format) valid() bool {
	for _, k := range Known {
		if f == k {
			return true
		}
	}
	return false
}

func knownList() string {
	names := make([]string, len(Known))
	for i, k := range Known {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// Parse reads a comma-separated list such as "gzip,zstd:chunked". Entries are
// trimmed and lower-cased; the input order is kept. An empty list means
// Default, and "dual" (alone) means gzip,zstd:chunked, as Konflux's
// COMPRESSION_FORMAT names it. It returns warnings for lists that are valid
// but risky (no gzip: Docker before 23 cannot pull them).
func Parse(list string) ([]Format, []string, error) {
	switch strings.ToLower(strings.TrimSpace(list)) {
	case "":
		list = Default
	case Dual:
		list = string(Gzip) + "," + string(ZstdChunked)
	}
	var out []Format
	seen := map[Format]bool{}
	for _, raw := range strings.Split(list, ",") {
		f := Format(strings.ToLower(strings.TrimSpace(raw)))
		switch {
		case f == "":
			return nil, nil, fmt.Errorf("compression formats %q: empty entry; valid formats are %s", list, knownList())
		case f == Dual:
			return nil, nil, fmt.Errorf("compression formats %q: %q stands for the whole list gzip,zstd:chunked and cannot be combined with other formats", list, raw)
		case !f.valid():
			return nil, nil, fmt.Errorf("compression formats %q: unknown format %q; valid formats are %s (or %q alone, for gzip,zstd:chunked)%s", list, raw, knownList(), Dual, hint(f))
		case seen[f]:
			return nil, nil, fmt.Errorf("compression formats %q: %q is listed twice", list, f)
		}
		seen[f] = true
		out = append(out, f)
	}
	if seen[Zstd] && seen[ZstdChunked] {
		return nil, nil, fmt.Errorf("compression formats %q: zstd and zstd:chunked cannot both be published: clients see one %s annotation for both and cannot tell them apart; pick one", list, oci.AnnotationZstd)
	}
	var warnings []string
	if !seen[Gzip] {
		warnings = append(warnings, fmt.Sprintf("compression formats %q include no gzip: Docker before 23 (and other clients without zstd support) cannot pull this image", list))
	}
	return out, warnings, nil
}

// hint suggests the format meant by Konflux's spelling "zstd-chunked".
func hint(f Format) string {
	if strings.ReplaceAll(string(f), "-", ":") == string(ZstdChunked) {
		return "; Konflux's zstd-chunked is zstd:chunked here"
	}
	return ""
}

// Join renders formats back into the comma-separated form Parse accepts.
func Join(fs []Format) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = string(f)
	}
	return strings.Join(names, ",")
}
