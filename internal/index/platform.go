package index

import (
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// normalVariant returns the variant used when comparing platforms.
//
// Platform equality follows containerd's normalization for the variants that
// are implied by the architecture: "arm64" means "arm64/v8" and "amd64" means
// "amd64/v1", so linux/arm64 and linux/arm64/v8 are one platform (one
// build may record the variant and another not). Nothing else is rewritten:
// "arm" with and without "v7" stay distinct, because arm v6 and v7 both exist
// and guessing would merge different builds. Descriptors keep their platform
// as given; only comparisons are normalized.
func normalVariant(p *ocispec.Platform) string {
	switch {
	case p.Architecture == "arm64" && p.Variant == "v8":
		return ""
	case p.Architecture == "amd64" && p.Variant == "v1":
		return ""
	}
	return p.Variant
}

// platformKey is the comparable, human-readable identity of a platform:
// os/architecture[/variant] after normalization, plus os.version and the
// sorted os.features when set (Windows images differ by os.version).
func platformKey(p *ocispec.Platform) string {
	if p == nil {
		return "<no platform>"
	}
	var b strings.Builder
	b.WriteString(p.OS)
	b.WriteByte('/')
	b.WriteString(p.Architecture)
	if v := normalVariant(p); v != "" {
		b.WriteByte('/')
		b.WriteString(v)
	}
	if p.OSVersion != "" {
		b.WriteString(" os.version=")
		b.WriteString(p.OSVersion)
	}
	if len(p.OSFeatures) > 0 {
		f := slices.Clone(p.OSFeatures)
		slices.Sort(f)
		b.WriteString(" os.features=")
		b.WriteString(strings.Join(f, ","))
	}
	return b.String()
}

// hasPlatform reports whether p names at least an OS and an architecture.
func hasPlatform(p *ocispec.Platform) bool {
	return p != nil && p.OS != "" && p.Architecture != ""
}
