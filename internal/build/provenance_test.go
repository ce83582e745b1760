package build

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCheckExpiresAfter(t *testing.T) {
	for _, ok := range []string{"1h", "2d", "3w", "30m", "90s", "100d", "01h"} {
		if err := CheckExpiresAfter(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	// What quay.io would not act on: no unit, another unit, no number, a
	// sign or a fraction, zero, blanks, more than one unit.
	for _, bad := range []string{"", "1", "1y", "d", "-1d", "+1d", "1.5h", "0h", "00d", " 1h", "1h ", "1h30m", "1H"} {
		if err := CheckExpiresAfter(bad); err == nil || !strings.Contains(err.Error(), "e.g. 1h, 2d, 3w") {
			t.Errorf("%q: %v, want a refusal giving examples", bad, err)
		}
	}
}

func TestProvenanceValidate(t *testing.T) {
	for _, tc := range []struct {
		p     Provenance
		field string
		want  string
	}{
		{Provenance{ExpiresAfter: "2y"}, "ExpiresAfter", `"2y"`},
		{Provenance{Revision: "abc\ndef"}, "Revision", "control characters"},
		{Provenance{SourceURL: "https://example.com/a b"}, "SourceURL", "blanks"},
		{Provenance{SourceURL: "https://user:hunter2@example.com/repo.git"}, "SourceURL", "holds a password"},
	} {
		err := tc.p.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want a %s error mentioning %q", tc.p, err, tc.field, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	ok := Provenance{SourceURL: "https://github.com/o/r", Revision: "0123abc", ExpiresAfter: "5d", Konflux: true}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

// TestProvenanceLabels: Konflux's labels and annotations (konflux-build-cli's
// processLabelsAndAnnotations with --add-legacy-labels), per platform, the
// build time pinned by SOURCE_DATE_EPOCH when given.
func TestProvenanceLabels(t *testing.T) {
	created := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	epoch := time.Unix(1700000000, 0)
	p := Provenance{SourceURL: "https://github.com/o/r", Revision: "0123abc", ExpiresAfter: "5d", Konflux: true, Created: created}
	labels, annotations := p.labels(ocispec.Platform{OS: "linux", Architecture: "arm64"}, nil)
	wantLabels := []string{
		"org.opencontainers.image.created=2026-12-06T10:00:00Z", "build-date=2026-12-06T10:00:00Z", "architecture=aarch64",
		"org.opencontainers.image.source=https://github.com/o/r", "org.opencontainers.image.revision=0123abc",
		"quay.expires-after=5d", "vcs-url=https://github.com/o/r", "vcs-ref=0123abc", "vcs-type=git",
	}
	wantAnnotations := []string{"org.opencontainers.image.created=2026-12-06T10:00:00Z", "org.opencontainers.image.source=https://github.com/o/r", "org.opencontainers.image.revision=0123abc"}
	if !slices.Equal(labels, wantLabels) || !slices.Equal(annotations, wantAnnotations) {
		t.Errorf("labels %q\nannotations %q\nwant %q\nand %q", labels, annotations, wantLabels, wantAnnotations)
	}
	labels, _ = p.labels(ocispec.Platform{OS: "linux", Architecture: "amd64"}, &epoch)
	if !slices.Contains(labels, "build-date=2023-11-14T22:13:20Z") || !slices.Contains(labels, "architecture=x86_64") {
		t.Errorf("with SOURCE_DATE_EPOCH on amd64: %q", labels)
	}
	labels, _ = p.labels(ocispec.Platform{OS: "linux", Architecture: "s390x"}, nil)
	if !slices.Contains(labels, "architecture=s390x") {
		t.Errorf("s390x: %q", labels)
	}
	// Without --konflux-labels only what was asked for.
	labels, annotations = Provenance{Revision: "r1"}.labels(ocispec.Platform{Architecture: "amd64"}, nil)
	if !slices.Equal(labels, []string{"org.opencontainers.image.revision=r1"}) || !slices.Equal(annotations, labels) {
		t.Errorf("revision alone: %q, %q", labels, annotations)
	}
}
