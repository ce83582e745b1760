package build

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Provenance is what an image says about where it came from: the labels
// and annotations Konflux's buildah task adds (konflux-build-cli's
// processLabelsAndAnnotations, with --add-legacy-labels as the task passes
// it). The user's --label and --annotation values come after them and win.
type Provenance struct {
	// SourceURL and Revision give org.opencontainers.image.source and
	// .revision, as labels and annotations (Konflux's SOURCE_URL and
	// COMMIT_SHA).
	SourceURL, Revision string
	// ExpiresAfter gives the label quay.expires-after (Konflux's
	// IMAGE_EXPIRES_AFTER): quay.io deletes a tag whose image carries it
	// that long after the push. See CheckExpiresAfter.
	ExpiresAfter string
	// Konflux adds what Konflux's task adds to every image: the label and
	// annotation org.opencontainers.image.created, and the labels
	// build-date (both the build time, or SOURCE_DATE_EPOCH's),
	// architecture (the platform's, as RPM names it: x86_64, aarch64, else
	// Go's name), and, from SourceURL and Revision, vcs-url, vcs-ref and
	// vcs-type=git.
	Konflux bool
	// Created is the build time for Konflux's labels when no
	// SOURCE_DATE_EPOCH pins it (one time for every platform of a run); the
	// zero time means the time each platform's build starts.
	Created time.Time
}

// Label and annotation keys of the provenance.
const (
	LabelSource       = "org.opencontainers.image.source"
	LabelRevision     = "org.opencontainers.image.revision"
	LabelCreated      = "org.opencontainers.image.created"
	LabelExpiresAfter = "quay.expires-after"
)

// expiresAfter is what quay.io reads from quay.expires-after
// (util/timedeltastring.py: a number and one of s, m, h, d, w); only a
// positive value makes it act.
var expiresAfter = regexp.MustCompile(`^[0-9]+[smhdw]$`)

// CheckExpiresAfter checks a quay.expires-after value before any work: what
// quay.io acts on, a positive whole number and a unit, s, m, h, d or w
// (1h, 2d, 3w). Konflux's task passes its IMAGE_EXPIRES_AFTER unchecked;
// quay ignores (keeps the tag forever) what it cannot read, so a typo would
// fail silently. The error starts with the value, for the caller to name
// the flag or param.
func CheckExpiresAfter(s string) error {
	if !expiresAfter.MatchString(s) || strings.Trim(s[:len(s)-1], "0") == "" {
		return fmt.Errorf("%q: want a positive whole number and a unit, s, m, h, d or w (seconds, minutes, hours, days, weeks), e.g. 1h, 2d, 3w", s)
	}
	return nil
}

// FieldError is a Provenance field that cannot be used; its message starts
// with the value, for the caller to name its flag.
type FieldError struct {
	// Field is the Provenance field: "SourceURL", "Revision" or
	// "ExpiresAfter".
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Validate checks the provenance before any work; its errors are
// *FieldError.
func (p Provenance) Validate() error {
	if p.ExpiresAfter != "" {
		if err := CheckExpiresAfter(p.ExpiresAfter); err != nil {
			return &FieldError{"ExpiresAfter", err}
		}
	}
	if err := checkLabelValue(p.Revision); err != nil {
		return &FieldError{"Revision", err}
	}
	if u, err := url.Parse(p.SourceURL); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return &FieldError{"SourceURL", fmt.Errorf("%q holds a password, which would be recorded in the image's labels and annotations (readable by anyone who can pull it)", u.Redacted())}
		}
	}
	if err := checkLabelValue(p.SourceURL); err != nil {
		return &FieldError{"SourceURL", err}
	}
	return nil
}

// checkLabelValue refuses a value with a blank or control character: it
// would break every line-based reader of the labels.
func checkLabelValue(v string) error {
	if strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%q: blanks and control characters are not allowed", v)
	}
	return nil
}

// labels returns the provenance labels and annotations (KEY=VALUE) for a
// build of platform; epoch, when set, is the build time.
func (p Provenance) labels(platform ocispec.Platform, epoch *time.Time) (labels, annotations []string) {
	both := func(k, v string) {
		labels = append(labels, k+"="+v)
		annotations = append(annotations, k+"="+v)
	}
	if p.Konflux {
		created := p.Created
		switch {
		case epoch != nil:
			created = *epoch
		case created.IsZero():
			created = time.Now()
		}
		stamp := created.UTC().Format(time.RFC3339)
		both(LabelCreated, stamp)
		labels = append(labels, "build-date="+stamp, "architecture="+rpmArch(platform.Architecture))
	}
	if p.SourceURL != "" {
		both(LabelSource, p.SourceURL)
	}
	if p.Revision != "" {
		both(LabelRevision, p.Revision)
	}
	if p.ExpiresAfter != "" {
		labels = append(labels, LabelExpiresAfter+"="+p.ExpiresAfter)
	}
	if p.Konflux {
		if p.SourceURL != "" {
			labels = append(labels, "vcs-url="+p.SourceURL)
		}
		if p.Revision != "" {
			labels = append(labels, "vcs-ref="+p.Revision)
		}
		if p.SourceURL != "" || p.Revision != "" {
			labels = append(labels, "vcs-type=git")
		}
	}
	return labels, annotations
}

// rpmArch is Go's architecture name as RPM (and Konflux's architecture
// label) spells it.
func rpmArch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return goarch
}
