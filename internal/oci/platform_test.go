package oci

import (
	"reflect"
	"runtime"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func plat(os, arch, variant string) ocispec.Platform {
	return ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
}

func TestParsePlatforms(t *testing.T) {
	tests := []struct {
		in       string
		want     []ocispec.Platform
		errparts []string
	}{
		{in: "linux/amd64", want: []ocispec.Platform{plat("linux", "amd64", "")}},
		{in: "linux/amd64,linux/arm64/v8", want: []ocispec.Platform{plat("linux", "amd64", ""), plat("linux", "arm64", "v8")}},
		{in: " linux/arm64 , linux/s390x ", want: []ocispec.Platform{plat("linux", "arm64", ""), plat("linux", "s390x", "")}},
		{in: "linux/aarch64", want: []ocispec.Platform{plat("linux", "arm64", "")}},
		{in: "linux/aarch64/v8", want: []ocispec.Platform{plat("linux", "arm64", "v8")}},
		{in: "linux/arm64/8", want: []ocispec.Platform{plat("linux", "arm64", "v8")}},
		{in: "linux/x86_64", want: []ocispec.Platform{plat("linux", "amd64", "")}},
		{in: "linux/amd64/v1", want: []ocispec.Platform{plat("linux", "amd64", "")}},
		{in: "linux/amd64/v3", want: []ocispec.Platform{plat("linux", "amd64", "v3")}},
		{in: "linux/i386", want: []ocispec.Platform{plat("linux", "386", "")}},
		{in: "linux/arm", want: []ocispec.Platform{plat("linux", "arm", "")}},
		{in: "linux/arm/7", want: []ocispec.Platform{plat("linux", "arm", "v7")}},
		{in: "linux/arm/v6,linux/arm/v7", want: []ocispec.Platform{plat("linux", "arm", "v6"), plat("linux", "arm", "v7")}},
		{in: "linux/armel", want: []ocispec.Platform{plat("linux", "arm", "v6")}},
		{in: "linux/arm,linux/arm/v7", want: []ocispec.Platform{plat("linux", "arm", ""), plat("linux", "arm", "v7")}},
		{in: "windows/amd64,linux/ppc64le", want: []ocispec.Platform{plat("windows", "amd64", ""), plat("linux", "ppc64le", "")}},

		{in: "", errparts: []string{`platform list ""`, "empty", "e.g. linux/amd64"}},
		{in: "   ", errparts: []string{"empty"}},
		{in: "linux/amd64,,linux/arm64", errparts: []string{"empty entry at position 2"}},
		{in: "linux/amd64,", errparts: []string{"empty entry at position 2"}},
		{in: "linux,linux/amd64", errparts: []string{`platform "linux" in "linux,linux/amd64": want os/arch[/variant], e.g. linux/amd64`}},
		{in: "linux/amd64/v1/x", errparts: []string{`platform "linux/amd64/v1/x"`, "want os/arch[/variant]"}},
		{in: "linux//amd64", errparts: []string{`platform "linux//amd64"`, "want os/arch[/variant]"}},
		{in: "linux/amd64/", errparts: []string{`platform "linux/amd64/"`, "want os/arch[/variant]"}},
		{in: "Linux amd64", errparts: []string{`platform "Linux amd64"`, "want os/arch[/variant]"}},
		{in: "Linux/amd64", errparts: []string{`platform "Linux/amd64"`, "lowercase"}},
		{in: "linux/amd 64", errparts: []string{`platform "linux/amd 64"`, "lowercase"}},
		{in: "linux/x86-64", errparts: []string{`platform "linux/x86-64"`, "lowercase letters, digits and '_'"}},
		{in: "linux/*", errparts: []string{`platform "linux/*"`}},
		{in: "linux/amd46", errparts: []string{`unknown architecture "amd46"`, "amd64, arm64"}},
		{in: "lniux/amd64", errparts: []string{`unknown operating system "lniux"`, "linux"}},
		{in: "linux/amd64,linux/amd64", errparts: []string{`platform "linux/amd64" in "linux/amd64,linux/amd64" is listed twice`}},
		{in: "linux/arm64,linux/arm64/v8", errparts: []string{`platform "linux/arm64/v8"`, `same platform as "linux/arm64"`}},
		{in: "linux/arm64/v8,linux/aarch64", errparts: []string{`platform "linux/aarch64"`, `same platform as "linux/arm64/v8"`}},
		{in: "linux/amd64/v1,linux/x86_64", errparts: []string{`platform "linux/x86_64"`, `same platform as "linux/amd64/v1"`}},
		{in: "linux/armhf,linux/arm", errparts: []string{`platform "linux/arm"`, `same platform as "linux/armhf"`}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePlatforms(tc.in)
			if len(tc.errparts) > 0 {
				if err == nil {
					t.Fatalf("ParsePlatforms(%q) = %v, want error", tc.in, got)
				}
				for _, p := range tc.errparts {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("error %q does not mention %q", err, p)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePlatforms(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParsePlatforms(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}

func TestPlatformFormat(t *testing.T) {
	tests := []struct {
		p      ocispec.Platform
		str    string
		suffix string
	}{
		{p: plat("linux", "amd64", ""), str: "linux/amd64", suffix: "linux-amd64"},
		{p: plat("linux", "arm64", ""), str: "linux/arm64", suffix: "linux-arm64"},
		{p: plat("linux", "arm64", "v8"), str: "linux/arm64/v8", suffix: "linux-arm64-v8"},
		{p: plat("linux", "arm", "v7"), str: "linux/arm/v7", suffix: "linux-arm-v7"},
		{p: plat("windows", "amd64", ""), str: "windows/amd64", suffix: "windows-amd64"},
	}
	for _, tc := range tests {
		t.Run(tc.str, func(t *testing.T) {
			if got := PlatformString(tc.p); got != tc.str {
				t.Errorf("PlatformString = %q, want %q", got, tc.str)
			}
			if got := PlatformSuffix(tc.p); got != tc.suffix {
				t.Errorf("PlatformSuffix = %q, want %q", got, tc.suffix)
			}
			back, err := ParsePlatforms(PlatformString(tc.p))
			if err != nil || len(back) != 1 || !reflect.DeepEqual(back[0], tc.p) {
				t.Errorf("ParsePlatforms(PlatformString(p)) = %v, %v; want [%v]", back, err, tc.p)
			}
		})
	}
}

func TestSamePlatform(t *testing.T) {
	tests := []struct {
		a, b ocispec.Platform
		want bool
	}{
		{plat("linux", "arm64", ""), plat("linux", "arm64", "v8"), true},
		{plat("linux", "amd64", "v1"), plat("linux", "amd64", ""), true},
		{plat("linux", "amd64", ""), plat("linux", "amd64", "v2"), false},
		{plat("linux", "arm", ""), plat("linux", "arm", "v7"), false},
		{plat("linux", "amd64", ""), plat("windows", "amd64", ""), false},
	}
	for _, tc := range tests {
		if got := SamePlatform(tc.a, tc.b); got != tc.want {
			t.Errorf("SamePlatform(%s, %s) = %v, want %v", PlatformString(tc.a), PlatformString(tc.b), got, tc.want)
		}
	}
}

// TestParsePlatform: one entry parses and normalizes as in a list, and its
// errors name the entry.
func TestParsePlatform(t *testing.T) {
	got, err := ParsePlatform("linux/aarch64")
	if err != nil || !reflect.DeepEqual(got, plat("linux", "arm64", "")) {
		t.Errorf("ParsePlatform(linux/aarch64) = %v, %v; want linux/arm64", got, err)
	}
	for _, in := range []string{"", "linux", "Linux/amd64", "linux/amd46", " linux/amd64"} {
		if _, err := ParsePlatform(in); err == nil || !strings.Contains(err.Error(), `platform "`+in+`"`) {
			t.Errorf("ParsePlatform(%q) = %v, want an error naming the entry", in, err)
		}
	}
}

func TestHostPlatform(t *testing.T) {
	h := HostPlatform()
	if h.OS != runtime.GOOS || h.Architecture != runtime.GOARCH {
		t.Fatalf("HostPlatform() = %s, want %s/%s", PlatformString(h), runtime.GOOS, runtime.GOARCH)
	}
	if runtime.GOARCH != "arm" && h.Variant != "" {
		t.Errorf("HostPlatform() = %s: only 32-bit arm gets a variant", PlatformString(h))
	}
	// The host platform must be something ParsePlatforms accepts, so it can be the
	// default of the --platforms flag.
	got, err := ParsePlatforms(PlatformString(h))
	if err != nil {
		t.Fatalf("ParsePlatforms(PlatformString(HostPlatform())): %v", err)
	}
	if !SamePlatform(got[0], h) {
		t.Errorf("ParsePlatforms(PlatformString(HostPlatform())) = %s, want %s", PlatformString(got[0]), PlatformString(h))
	}
}

func FuzzParsePlatforms(f *testing.F) {
	for _, s := range []string{
		"linux/amd64", "linux/amd64,linux/arm64/v8", "linux/aarch64", " linux/arm/7 ,linux/s390x",
		"linux/armhf", "linux/armel", "linux/amd64/v1", "linux", "linux//amd64", "Linux amd64", "linux/arm64,linux/arm64/v8",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParsePlatforms(in)
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatalf("ParsePlatforms(%q) returned no platforms and no error", in)
		}
		strs := make([]string, len(got))
		for i, p := range got {
			strs[i] = PlatformString(p)
			if strings.ContainsAny(PlatformSuffix(p), "/ ,") {
				t.Fatalf("PlatformSuffix(%s) = %q is not tag-safe", strs[i], PlatformSuffix(p))
			}
		}
		again, err := ParsePlatforms(strings.Join(strs, ","))
		if err != nil {
			t.Fatalf("ParsePlatforms(%q) = %v, but re-parsing %q: %v", in, got, strings.Join(strs, ","), err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip of %q: %v then %v", in, got, again)
		}
	})
}
