package index

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
)

var fuzzPlatforms = []string{"linux/amd64", "linux/arm64", "linux/arm64/v8", "linux/s390x", "linux/arm/v7", "windows/amd64"}

// fuzzEntries decodes 3 bytes per entry: platform, format, and flags (bit 0:
// reuse the previous entry's digest; bit 1: carry a stale zstd annotation;
// bit 2: carry another annotation). At most 64 entries are made: no valid
// list is longer than 12, and huge inputs only slow the fuzzer down.
func fuzzEntries(data []byte) []Entry {
	var out []Entry
	for i := 0; i+2 < len(data) && len(out) < 64; i += 3 {
		p := fuzzPlatforms[int(data[i])%len(fuzzPlatforms)]
		f := formats.Known[int(data[i+1])%len(formats.Known)]
		flags := data[i+2]
		e := entry(p, f, fmt.Sprint(i))
		if flags&1 != 0 && len(out) > 0 {
			e.Descriptor.Digest = out[len(out)-1].Descriptor.Digest
		}
		if flags&6 != 0 {
			e.Descriptor.Annotations = map[string]string{}
			if flags&2 != 0 {
				e.Descriptor.Annotations[oci.AnnotationZstd] = "true"
			}
			if flags&4 != 0 {
				e.Descriptor.Annotations["org.example.n"] = fmt.Sprint(i)
			}
		}
		out = append(out, e)
	}
	return out
}

// FuzzAssemble checks Assemble against an independent statement of its
// contract: it fails exactly when the entries are invalid, and otherwise
// lists the same digests, grouped by platform in order of first appearance,
// gzip first, with the zstd annotation exactly on zstd entries and the other
// annotations kept.
func FuzzAssemble(f *testing.F) {
	f.Add([]byte{0, 2, 0, 0, 0, 2, 1, 1, 0, 2, 0, 6})
	f.Add([]byte{1, 2, 2, 2, 0, 0, 3, 1, 4})
	f.Add([]byte{0, 1, 0, 0, 2, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries := fuzzEntries(data)
		before := fmt.Sprintf("%v", entries)

		// What makes the list invalid, stated independently.
		valid := len(entries) > 0
		keys := map[string]bool{}
		digests := map[digest.Digest]bool{}
		var platforms []string
		for _, e := range entries {
			pk := platformKey(e.Descriptor.Platform)
			k := pk + string(e.Format)
			chunkedClash := pk + string(formats.Zstd)
			if e.Format == formats.Zstd {
				chunkedClash = pk + string(formats.ZstdChunked)
			}
			if keys[k] || digests[e.Descriptor.Digest] || (e.Format.IsZstd() && keys[chunkedClash]) {
				valid = false
			}
			keys[k] = true
			digests[e.Descriptor.Digest] = true
			if !slices.Contains(platforms, pk) {
				platforms = append(platforms, pk)
			}
		}

		idx, err := Assemble(entries)
		if fmt.Sprintf("%v", entries) != before {
			t.Fatalf("Assemble modified its input")
		}
		if (err == nil) != valid {
			t.Fatalf("Assemble(%v) error = %v, want valid=%v", entries, err, valid)
		}
		if err != nil {
			return
		}
		if len(idx.Manifests) != len(entries) {
			t.Fatalf("%d manifests for %d entries", len(idx.Manifests), len(entries))
		}
		byDigest := map[digest.Digest]Entry{}
		for _, e := range entries {
			byDigest[e.Descriptor.Digest] = e
		}
		var seenPlatforms []string
		lastRank := -1
		for i, d := range idx.Manifests {
			e, ok := byDigest[d.Digest]
			if !ok {
				t.Fatalf("manifest %d: digest %s not among the entries", i, d.Digest)
			}
			delete(byDigest, d.Digest)
			pk := platformKey(d.Platform)
			if len(seenPlatforms) == 0 || seenPlatforms[len(seenPlatforms)-1] != pk {
				if slices.Contains(seenPlatforms, pk) {
					t.Fatalf("platform %s is not contiguous", pk)
				}
				seenPlatforms = append(seenPlatforms, pk)
				lastRank = -1
			}
			if r := e.Format.Rank(); r < lastRank {
				t.Fatalf("manifest %d (%s %s) ranks before its predecessor", i, pk, e.Format)
			} else {
				lastRank = r
			}
			if got := d.Annotations[oci.AnnotationZstd] == "true"; got != e.Format.IsZstd() {
				t.Fatalf("manifest %d (%s): zstd annotation %v", i, e.Format, got)
			}
			if want, ok := e.Descriptor.Annotations["org.example.n"]; ok && d.Annotations["org.example.n"] != want {
				t.Fatalf("manifest %d lost annotation org.example.n", i)
			}
			if !reflect.DeepEqual(*d.Platform, *e.Descriptor.Platform) {
				t.Fatalf("manifest %d: platform %+v, entry had %+v", i, d.Platform, e.Descriptor.Platform)
			}
		}
		if len(byDigest) != 0 {
			t.Fatalf("entries missing from the index: %v", byDigest)
		}
		if !reflect.DeepEqual(seenPlatforms, platforms) {
			t.Fatalf("platform order %v, want first-appearance order %v", seenPlatforms, platforms)
		}
	})
}
