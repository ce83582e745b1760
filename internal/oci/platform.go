package oci

import (
	"fmt"
	"runtime"
	"strings"

	cplatforms "github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Target platforms: parsing and formatting the platforms mcbuild builds for
// (the --platforms flag / PLATFORMS parameter), such as
// "linux/amd64,linux/arm64", and the one normalization every platform
// comparison uses (NormalVariant).
//
// Each entry is os/arch[/variant]: exactly two or three non-empty parts made
// of lowercase letters, digits and '_'. Entries are normalized with
// github.com/containerd/platforms, so architecture aliases become their OCI
// names ("linux/aarch64" is linux/arm64, "linux/x86_64" is linux/amd64,
// "linux/armhf" is linux/arm, "linux/armel" is linux/arm/v6) and numeric
// variants get their "v" ("linux/arm/7" is linux/arm/v7).
//
// Variants are otherwise kept as the user wrote them: "linux/arm64" has no
// variant and "linux/arm64/v8" keeps v8, because buildah and OCI indexes record
// either form. Containerd's one exception applies: "linux/amd64/v1" becomes
// linux/amd64 (v1 is the baseline amd64 level). For duplicate detection a
// variant implied by the architecture is ignored, so linux/arm64 and
// linux/arm64/v8 are the same platform (as are linux/amd64 and
// linux/amd64/v1). linux/arm and linux/arm/v7 stay distinct, matching the
// index assembly in internal/index, since 32-bit arm has real v6 and v7 builds.

// ParsePlatforms parses a comma-separated platform list such as
// "linux/amd64,linux/arm64/v8". Entries are trimmed of spaces; the result keeps
// the order of the list. Empty lists, empty entries, malformed entries,
// unknown operating systems or architectures and duplicates are refused.
func ParsePlatforms(list string) ([]ocispec.Platform, error) {
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("platform list %q is empty: want a comma-separated list of os/arch[/variant], e.g. linux/amd64,linux/arm64", list)
	}
	entries := strings.Split(list, ",")
	out := make([]ocispec.Platform, 0, len(entries))
	seen := make(map[string]string, len(entries))
	for i, raw := range entries {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			return nil, fmt.Errorf("platform list %q has an empty entry at position %d: want os/arch[/variant] between commas, e.g. linux/amd64", list, i+1)
		}
		p, err := parsePlatform(entry)
		if err != nil {
			return nil, fmt.Errorf("platform %q in %q: %w", entry, list, err)
		}
		key := dedupKey(p)
		if first, dup := seen[key]; dup {
			if first == entry {
				return nil, fmt.Errorf("platform %q in %q is listed twice", entry, list)
			}
			return nil, fmt.Errorf("platform %q in %q is the same platform as %q; list it once", entry, list, first)
		}
		seen[key] = entry
		out = append(out, p)
	}
	return out, nil
}

// ParsePlatform parses one os/arch[/variant] entry as ParsePlatforms does,
// normalized the same way.
func ParsePlatform(entry string) (ocispec.Platform, error) {
	p, err := parsePlatform(entry)
	if err != nil {
		return ocispec.Platform{}, fmt.Errorf("platform %q: %w", entry, err)
	}
	return p, nil
}

// parsePlatform validates the shape of one entry and normalizes it; its
// errors do not repeat the entry, which the callers name.
func parsePlatform(entry string) (ocispec.Platform, error) {
	parts := strings.Split(entry, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ocispec.Platform{}, fmt.Errorf("want os/arch[/variant], e.g. linux/amd64")
	}
	for _, part := range parts {
		if part == "" || !validPart(part) {
			return ocispec.Platform{}, fmt.Errorf("want os/arch[/variant] made of lowercase letters, digits and '_', e.g. linux/amd64")
		}
	}
	// The shape check above keeps containerd's parser on its os/arch[/variant]
	// path: no wildcards, no "(os.version)", no single-word guessing from the
	// host.
	p, err := cplatforms.Parse(entry)
	if err != nil {
		return ocispec.Platform{}, fmt.Errorf("want os/arch[/variant], e.g. linux/amd64: %w", err)
	}
	if !knownOS[p.OS] {
		return ocispec.Platform{}, fmt.Errorf("unknown operating system %q: want a GOOS value such as linux or windows", parts[0])
	}
	if !knownArch[p.Architecture] {
		return ocispec.Platform{}, fmt.Errorf("unknown architecture %q: want a GOARCH value such as amd64, arm64, arm, ppc64le, s390x or riscv64 (aliases x86_64 and aarch64 are accepted)", parts[1])
	}
	return ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}, nil
}

func validPart(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// NormalVariant returns the variant used when comparing platforms.
//
// Platform equality follows containerd's normalization for the variants that
// are implied by the architecture: "arm64" means "arm64/v8" and "amd64" means
// "amd64/v1", so linux/arm64 and linux/arm64/v8 are one platform (one
// build may record the variant and another not). Nothing else is rewritten:
// "arm" with and without "v7" stay distinct, because arm v6 and v7 both exist
// and guessing would merge different builds. Platforms keep their variant as
// given; only comparisons are normalized.
func NormalVariant(p ocispec.Platform) string {
	switch {
	case p.Architecture == "arm64" && p.Variant == "v8":
		return ""
	case p.Architecture == "amd64" && p.Variant == "v1":
		return ""
	}
	return p.Variant
}

// dedupKey identifies a platform for duplicate detection: os/arch[/variant]
// with the variant normalized (NormalVariant).
func dedupKey(p ocispec.Platform) string {
	return PlatformString(ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: NormalVariant(p)})
}

// SamePlatform reports whether a and b are the same platform in the sense of
// ParsePlatforms' duplicate check: os, architecture and variant equal,
// ignoring a variant the architecture implies (arm64 v8, amd64 v1).
func SamePlatform(a, b ocispec.Platform) bool {
	return dedupKey(a) == dedupKey(b)
}

// PlatformString formats p as os/arch or os/arch/variant.
func PlatformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// PlatformSuffix formats p for use in a tag: os-arch or os-arch-variant, e.g.
// "linux-arm64" or "linux-arm-v7". The result only holds characters valid in
// a tag when p came from ParsePlatforms.
func PlatformSuffix(p ocispec.Platform) string {
	s := p.OS + "-" + p.Architecture
	if p.Variant != "" {
		s += "-" + p.Variant
	}
	return s
}

// HostPlatform returns the platform mcbuild runs on: runtime.GOOS and
// runtime.GOARCH, plus the CPU variant on 32-bit arm (where v6 and v7
// differ). On arm64 no variant is recorded, the same as
// ParsePlatforms("linux/arm64").
func HostPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = cplatforms.DefaultSpec().Variant
	}
	return p
}

// knownOS and knownArch are the GOOS/GOARCH values containerd knows
// (go/build's syslist), after normalization.
var knownOS = setOf("aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
	"linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos")

var knownArch = setOf("386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
	"loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv",
	"riscv64", "s390", "s390x", "sparc", "sparc64", "wasm")

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
