// Package imageref parses the image references a user gives mcbuild: the push
// destination (--image) and references to existing images (--from,
// "subjects show REF").
//
// The grammar is github.com/distribution/reference's, without Docker's
// short-name normalization: a reference must start with an explicit registry
// host (a first path component holding a '.' or a ':', or "localhost"), so
// "ns/app" is refused instead of silently becoming docker.io/ns/app. mcbuild
// pushes, and a push destination must be explicit.
package imageref

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// DefaultTag is the tag used when --image names no tag, as buildah does.
const DefaultTag = "latest"

// Ref is a parsed image reference.
type Ref struct {
	// Registry is the registry host, with its port if any: "quay.io",
	// "127.0.0.1:5000", "localhost".
	Registry string
	// Repository is the full repository name including the registry host:
	// "127.0.0.1:5000/ns/app".
	Repository string
	// Tag is the tag, or empty when the reference has only a digest.
	Tag string
	// Digest is the manifest digest, or empty.
	Digest digest.Digest
}

// ErrCredentials is the error (errors.Is) for a reference holding
// credentials, user[:password]@ before its host: refused, and never
// printed (the error shows "***@host/…" instead).
var ErrCredentials = errors.New("credentials in an image reference are refused: they would be printed and recorded with it; put them in an auth file")

// ParseTagged parses a push destination (--image): repo[:tag] with an
// explicit registry host. Its errors start with the value, for the caller
// to name the flag. The tag defaults to DefaultTag. A digest is refused,
// since a registry picks the digest of what is pushed, and so is
// user:password@ (ErrCredentials).
func ParseTagged(s string) (Ref, error) {
	if redacted, found := redactCredentials(s); found {
		return Ref{}, fmt.Errorf("%q: %w", redacted, ErrCredentials)
	}
	if name, _, found := strings.Cut(s, "@"); found {
		hint := ""
		if name != "" {
			hint = fmt.Sprintf(", e.g. %q", name)
		}
		return Ref{}, fmt.Errorf("%q: a digest cannot be a push destination; give repo[:tag]%s", s, hint)
	}
	r, err := parse(s, wantTagged)
	if err != nil {
		return Ref{}, fmt.Errorf("%q: %w", s, err)
	}
	r.Tag = tagOr(r.Tag)
	return r, nil
}

// Parse parses a reference to an existing image: repo:tag, repo@digest or
// repo:tag@digest, with an explicit registry host. A reference with neither a
// tag nor a digest gets DefaultTag; a reference with only a digest keeps an
// empty Tag.
func Parse(s string) (Ref, error) {
	if redacted, found := redactCredentials(s); found {
		return Ref{}, fmt.Errorf("image reference %q: %w", redacted, ErrCredentials)
	}
	r, err := parse(s, wantAny)
	if err != nil {
		return Ref{}, fmt.Errorf("image reference %q: %w", s, err)
	}
	if r.Digest == "" {
		r.Tag = tagOr(r.Tag)
	}
	return r, nil
}

// redactCredentials reports whether s holds credentials before its host
// ([scheme://]user[:password]@host/…, or user:password@host with no path)
// and returns s with them replaced by "***". The '@' of a digest follows
// the repository's path, so no '/' comes after it; a password may hold '@'
// or '/', so the credentials end at the last '@' that a '/' follows.
func redactCredentials(s string) (string, bool) {
	scheme, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i+3], s[i+3:]
	}
	at := -1
	for i := len(rest) - 1; i >= 0; i-- {
		if rest[i] == '@' && strings.Contains(rest[i+1:], "/") {
			at = i
			break
		}
	}
	if at < 0 {
		i := strings.Index(rest, "@")
		if i < 0 || strings.Contains(rest[:i], "/") || !strings.Contains(rest[:i], ":") {
			return s, false
		}
		at = i
	}
	return scheme + "***" + rest[at:], true
}

func tagOr(tag string) string {
	if tag == "" {
		return DefaultTag
	}
	return tag
}

const (
	wantTagged = "want host/repository[:tag], e.g. quay.io/ns/app:v1 or 127.0.0.1:5000/app"
	wantAny    = "want host/repository[:tag][@digest], e.g. quay.io/ns/app:v1 or 127.0.0.1:5000/app@sha256:<64 hex digits>"
)

func parse(s, wantShape string) (Ref, error) {
	if s == "" {
		return Ref{}, errors.New("empty reference: " + wantShape)
	}
	if strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\r\n") {
		return Ref{}, errors.New("contains white space: " + wantShape)
	}
	parsed, err := reference.Parse(s)
	if err != nil {
		return Ref{}, explain(s, wantShape, err)
	}
	named, ok := parsed.(reference.Named)
	if !ok {
		// reference.Parse returns a bare digest reference only for input
		// without a name; the grammar makes the name mandatory, but be safe.
		return Ref{}, errors.New("no repository name: " + wantShape)
	}
	name := named.Name()
	host, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || !isHost(host) {
		return Ref{}, fmt.Errorf("no registry host in %q: mcbuild does not assume docker.io; write the registry explicitly, e.g. docker.io/%s or quay.io/%s",
			name, withLibrary(name), name)
	}
	r := Ref{Registry: host, Repository: name}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest()
	}
	return r, nil
}

// isHost reports whether the first component of a name is a registry host,
// by the rule Docker uses to tell hosts from Docker Hub namespaces.
func isHost(s string) bool {
	return s == "localhost" || strings.ContainsAny(s, ".:")
}

func withLibrary(name string) string {
	if !strings.Contains(name, "/") {
		return "library/" + name
	}
	return name
}

// explain turns reference's terse errors into ones that say what is valid.
func explain(s, wantShape string, err error) error {
	switch {
	case errors.Is(err, reference.ErrNameContainsUppercase):
		return errors.New("repository path must be lowercase (only the registry host may have capitals): " + wantShape)
	case errors.Is(err, reference.ErrNameTooLong):
		return err
	case errors.Is(err, digest.ErrDigestInvalidFormat), errors.Is(err, digest.ErrDigestInvalidLength),
		errors.Is(err, digest.ErrDigestUnsupported):
		return fmt.Errorf("bad digest (%w): want algorithm:hex, e.g. sha256: followed by 64 lowercase hex digits", err)
	case strings.HasPrefix(s, ":") || strings.HasPrefix(s, "@"):
		return errors.New("no repository name: " + wantShape)
	}
	hint := "; a tag is up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
	if strings.Contains(s, "@") {
		hint += "; a digest is algorithm:hex, e.g. sha256: followed by 64 lowercase hex digits"
	}
	return fmt.Errorf("%w: %s%s", err, wantShape, hint)
}

// String returns the canonical form repo[:tag][@digest].
func (r Ref) String() string {
	s := r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// Tagged returns repo:tag, or just repo when there is no tag.
func (r Ref) Tagged() string {
	if r.Tag == "" {
		return r.Repository
	}
	return r.Repository + ":" + r.Tag
}

// WithDigest returns repo@d, the pull-by-digest form Tekton results and
// Chains use.
func (r Ref) WithDigest(d digest.Digest) string {
	return r.Repository + "@" + d.String()
}

// TaggedWithDigest returns repo:tag@d (repo@d when there is no tag), the
// IMAGE_REF form.
func (r Ref) TaggedWithDigest(d digest.Digest) string {
	return r.Tagged() + "@" + d.String()
}

// Reference is what to resolve in the repository: the digest when there is
// one (it pins the content), else the tag.
func (r Ref) Reference() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}
