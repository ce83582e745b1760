package imageref

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	d1 = digest.Digest("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	d2 = digest.Digest("sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210")
)

func TestParseTagged(t *testing.T) {
	tests := []struct {
		in       string
		want     Ref
		errparts []string
	}{
		{in: "quay.io/ns/app:v1", want: Ref{Registry: "quay.io", Repository: "quay.io/ns/app", Tag: "v1"}},
		{in: "quay.io/ns/app", want: Ref{Registry: "quay.io", Repository: "quay.io/ns/app", Tag: "latest"}},
		{in: "127.0.0.1:5000/ns/app", want: Ref{Registry: "127.0.0.1:5000", Repository: "127.0.0.1:5000/ns/app", Tag: "latest"}},
		{in: "localhost/app:1.0", want: Ref{Registry: "localhost", Repository: "localhost/app", Tag: "1.0"}},
		{in: "localhost:5000/a/b/c:X_y-1.z", want: Ref{Registry: "localhost:5000", Repository: "localhost:5000/a/b/c", Tag: "X_y-1.z"}},
		{in: "[::1]:5000/app:v1", want: Ref{Registry: "[::1]:5000", Repository: "[::1]:5000/app", Tag: "v1"}},
		{in: "docker.io/library/busybox", want: Ref{Registry: "docker.io", Repository: "docker.io/library/busybox", Tag: "latest"}},

		{in: "quay.io/ns/app@" + string(d1), errparts: []string{`"quay.io/ns/app@sha256:0123`, "a digest cannot be a push destination; give repo[:tag]", `e.g. "quay.io/ns/app"`}},
		{in: "quay.io/ns/app:v1@" + string(d1), errparts: []string{"a digest cannot be a push destination"}},
		{in: "x@sha256:..", errparts: []string{`"x@sha256:.."`, "a digest cannot be a push destination"}},
		{in: "", errparts: []string{`""`, "empty", "host/repository"}},
		{in: ":v1", errparts: []string{`":v1"`, "no repository name"}},
		{in: "quay.io/NS/app", errparts: []string{`"quay.io/NS/app"`, "lowercase"}},
		{in: "quay.io/ns/app :v1", errparts: []string{`"quay.io/ns/app :v1"`, "white space"}},
		{in: " quay.io/ns/app", errparts: []string{"white space"}},
		{in: "quay.io/ns/app:", errparts: []string{`"quay.io/ns/app:"`, "invalid reference format"}},
		{in: "quay.io/ns/app:-bad", errparts: []string{"invalid reference format", "a tag is up to 128"}},
		{in: "quay.io//app", errparts: []string{"invalid reference format"}},
		{in: "ns/app:v1", errparts: []string{`"ns/app:v1"`, `no registry host in "ns/app"`, "docker.io/ns/app"}},
		{in: "busybox", errparts: []string{`no registry host in "busybox"`, "docker.io/library/busybox"}},
		{in: "localhost:5000", errparts: []string{`no registry host in "localhost"`}},
		{in: "quay.io", errparts: []string{`no registry host in "quay.io"`}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTagged(tc.in)
			checkResult(t, tc.in, got, err, tc.want, tc.errparts)
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		want     Ref
		errparts []string
	}{
		{in: "quay.io/ns/app:v1", want: Ref{Registry: "quay.io", Repository: "quay.io/ns/app", Tag: "v1"}},
		{in: "quay.io/ns/app", want: Ref{Registry: "quay.io", Repository: "quay.io/ns/app", Tag: "latest"}},
		{in: "quay.io/ns/app@" + string(d1), want: Ref{Registry: "quay.io", Repository: "quay.io/ns/app", Digest: d1}},
		{in: "127.0.0.1:5000/app:v1@" + string(d2), want: Ref{Registry: "127.0.0.1:5000", Repository: "127.0.0.1:5000/app", Tag: "v1", Digest: d2}},

		{in: "quay.io/ns/app@sha256:abc", errparts: []string{`image reference "quay.io/ns/app@sha256:abc"`, "invalid reference format", "[@digest]", "a digest is algorithm:hex"}},
		{in: "quay.io/ns/app@sha256:" + strings.Repeat("a", 63), errparts: []string{"bad digest", "64 lowercase hex"}},
		{in: "quay.io/ns/app@md5:" + strings.Repeat("a", 32), errparts: []string{"bad digest", "unsupported"}},
		{in: "ns/app@" + string(d1), errparts: []string{`image reference "ns/app@sha256:`, "no registry host"}},
		{in: "@" + string(d1), errparts: []string{"no repository name"}},
		{in: "Quay.io/ns/app:v1", want: Ref{Registry: "Quay.io", Repository: "Quay.io/ns/app", Tag: "v1"}},
		{in: "quay.io/ns/App", errparts: []string{"lowercase"}},
		{in: "quay.io/ns/app:v1 ", errparts: []string{"white space"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			checkResult(t, tc.in, got, err, tc.want, tc.errparts)
		})
	}
}

func checkResult(t *testing.T, in string, got Ref, err error, want Ref, errparts []string) {
	t.Helper()
	if len(errparts) > 0 {
		if err == nil {
			t.Fatalf("%q parsed as %#v, want error", in, got)
		}
		for _, p := range errparts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not mention %q", err, p)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("%q: %v", in, err)
	}
	if got != want {
		t.Errorf("%q parsed as %#v, want %#v", in, got, want)
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct {
		name            string
		ref             Ref
		str, tagged     string
		withD, taggedWD string
	}{
		{
			name:     "tag",
			ref:      Ref{Registry: "quay.io", Repository: "quay.io/ns/app", Tag: "v1"},
			str:      "quay.io/ns/app:v1",
			tagged:   "quay.io/ns/app:v1",
			withD:    "quay.io/ns/app@" + string(d2),
			taggedWD: "quay.io/ns/app:v1@" + string(d2),
		},
		{
			name:     "digest only",
			ref:      Ref{Registry: "127.0.0.1:5000", Repository: "127.0.0.1:5000/app", Digest: d1},
			str:      "127.0.0.1:5000/app@" + string(d1),
			tagged:   "127.0.0.1:5000/app",
			withD:    "127.0.0.1:5000/app@" + string(d2),
			taggedWD: "127.0.0.1:5000/app@" + string(d2),
		},
		{
			name:     "tag and digest",
			ref:      Ref{Registry: "localhost", Repository: "localhost/app", Tag: "latest", Digest: d1},
			str:      "localhost/app:latest@" + string(d1),
			tagged:   "localhost/app:latest",
			withD:    "localhost/app@" + string(d2),
			taggedWD: "localhost/app:latest@" + string(d2),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ref.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
			if got := tc.ref.Tagged(); got != tc.tagged {
				t.Errorf("Tagged() = %q, want %q", got, tc.tagged)
			}
			if got := tc.ref.WithDigest(d2); got != tc.withD {
				t.Errorf("WithDigest() = %q, want %q", got, tc.withD)
			}
			if got := tc.ref.TaggedWithDigest(d2); got != tc.taggedWD {
				t.Errorf("TaggedWithDigest() = %q, want %q", got, tc.taggedWD)
			}
			back, err := Parse(tc.str)
			if err != nil || back != tc.ref {
				t.Errorf("Parse(%q) = %#v, %v; want %#v", tc.str, back, err, tc.ref)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"quay.io/ns/app:v1", "127.0.0.1:5000/app@" + string(d1), "localhost/a:b@" + string(d2), "ns/app",
		"", ":tag", "quay.io/NS/app", "[::1]:5000/x", "x@sha256:..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for name, parse := range map[string]func(string) (Ref, error){"Parse": Parse, "ParseTagged": ParseTagged} {
			r, err := parse(in)
			if err != nil {
				// Errors must name the value, with any credentials in it
				// redacted. %q escapes unusual bytes, so only printable
				// input is compared literally.
				shown := in
				if redacted, ok := redactCredentials(in); ok {
					shown = redacted
				}
				if isPlain(in) && !strings.Contains(err.Error(), strconv.Quote(shown)) {
					t.Fatalf("%s(%q) error %q does not name the value", name, in, err)
				}
				continue
			}
			if r.Registry == "" || r.Repository == "" || !strings.HasPrefix(r.Repository, r.Registry+"/") {
				t.Fatalf("%s(%q) = %#v: registry/repository inconsistent", name, in, r)
			}
			if name == "ParseTagged" && (r.Digest != "" || r.Tag == "") {
				t.Fatalf("ParseTagged(%q) = %#v: want a tag and no digest", in, r)
			}
			back, err := Parse(r.String())
			if err != nil {
				t.Fatalf("%s(%q) = %#v, but Parse(%q): %v", name, in, r, r.String(), err)
			}
			if back != r {
				t.Fatalf("%s(%q) = %#v, Parse(String()) = %#v", name, in, r, back)
			}
		}
	})
}

func isPlain(s string) bool {
	for _, r := range s {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}

func TestReference(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1:5000/a/b:v1", "v1"},
		{"127.0.0.1:5000/a/b", "latest"},
		{"127.0.0.1:5000/a/b:v1@sha256:" + strings.Repeat("ab", 32), "sha256:" + strings.Repeat("ab", 32)},
	}
	for _, tc := range tests {
		r, err := Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Reference(); got != tc.want {
			t.Errorf("Parse(%q).Reference() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestCredentialsRefused: user[:password]@ before the host is refused with
// ErrCredentials, and the error shows neither the user nor the password.
func TestCredentialsRefused(t *testing.T) {
	tests := []struct{ in, shown string }{
		{"builder:s3cret@127.0.0.1:5000/app:v1", `"***@127.0.0.1:5000/app:v1"`},
		{"builder:s3cret@127.0.0.1:5000/app", `"***@127.0.0.1:5000/app"`},
		{"builder:s3cret@quay.io/ns/app@" + string(d1), `"***@quay.io/ns/app@sha256:0123`},
		{"https://builder:s3cret@quay.io/ns/app:v1", `"https://***@quay.io/ns/app:v1"`},
		{"builder:s3c/r@et@quay.io/ns/app:v1", `"***@quay.io/ns/app:v1"`},
		{"builder:s3cret@127.0.0.1:5000", `"***@127.0.0.1:5000"`},
	}
	for _, tc := range tests {
		for name, parse := range map[string]func(string) (Ref, error){"ParseTagged": ParseTagged, "Parse": Parse} {
			_, err := parse(tc.in)
			if !errors.Is(err, ErrCredentials) {
				t.Errorf("%s(%q) = %v, want ErrCredentials", name, tc.in, err)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, tc.shown) || strings.Contains(msg, "s3c") || strings.Contains(msg, "builder") {
				t.Errorf("%s(%q) = %q, want %s shown and no credentials", name, tc.in, msg, tc.shown)
			}
		}
	}
	// Not credentials: a digest after the path, a name without a host.
	for _, in := range []string{"quay.io/ns/app@" + string(d1), "app@" + string(d1), "127.0.0.1:5000/app:v1"} {
		if _, err := Parse(in); errors.Is(err, ErrCredentials) {
			t.Errorf("Parse(%q) = %v, want no credentials found", in, err)
		}
	}
}
