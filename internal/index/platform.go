package index

import (
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/oci"
)

// platformKey is the comparable, human-readable identity of a platform:
// os/architecture[/variant] after normalization (oci.NormalVariant), plus
// os.version and the sorted os.features when set (Windows images differ by
// os.version).
func platformKey(p *ocispec.Platform) string {
	if p == nil {
		return "<no platform>"
	}
	var b strings.Builder
	b.WriteString(p.OS)
	b.WriteByte('/')
	b.WriteString(p.Architecture)
	if v := oci.NormalVariant(*p); v != "" {
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
