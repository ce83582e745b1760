package build

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// FuzzParseArgs: any --build-args-file content plus one --build-arg either
// is refused or gives keys that are non-empty, trimmed and free of blanks
// and "="; the flag wins over the file; and a result that can be written
// back as KEY=VALUE lines parses back to itself.
func FuzzParseArgs(f *testing.F) {
	f.Add([]byte("# comment\n\nA=from-file\nB=file b\nFROM_ENV\n"), "A=flag")
	f.Add([]byte("A=1\r\nB= spaced \r\n  C=x=y\n#D=no\n"), "E")
	f.Add([]byte("=v\n"), "")
	f.Add([]byte("A B=1\n"), "K=")
	f.Add([]byte("\xff\xfe=\x00\n\v=1\n"), "\u00a0X=1")
	f.Add([]byte(strings.Repeat("x", 70000)), "")
	env := func(k string) (string, bool) {
		if k == "E" || k == "FROM_ENV" {
			return "env " + k, true
		}
		return "", false
	}
	// One file per fuzzing process (iterations within one run one at a time).
	path := filepath.Join(f.TempDir(), "args")
	f.Fuzz(func(t *testing.T, file []byte, flag string) {
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		var flags []string
		if flag != "" {
			flags = []string{flag}
		}
		got, err := ParseArgs(path, flags, env)
		if err != nil {
			if got != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		keys := make([]string, 0, len(got))
		for k := range got {
			if k == "" || strings.Contains(k, "=") || strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
				t.Fatalf("accepted key %q", k)
			}
			keys = append(keys, k)
		}
		if k, v, ok := strings.Cut(flag, "="); ok && got[strings.TrimSpace(k)] != v {
			t.Fatalf("--build-arg %q lost to the file: got %q", flag, got[strings.TrimSpace(k)])
		}
		// Round trip, when every pair can be written as a line.
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			v := got[k]
			if strings.HasPrefix(k, "#") || strings.ContainsAny(v, "\r\n") || v != strings.TrimRightFunc(v, unicode.IsSpace) {
				return
			}
			b.WriteString(k + "=" + v + "\n")
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := ParseArgs(path, nil, env)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("written back as\n%s\nparses to %v, %v; want %v", b.String(), again, err, got)
		}
	})
}

// FuzzCheckSecret: no --secret spec makes the check panic, and an accepted
// one names an id.
func FuzzCheckSecret(f *testing.F) {
	for _, s := range []string{"id=tok,src=/dev/null", "id=tok,env=X,type=env", "id=", ",", "src=/nonexistent", "id=a,id=b,src=/dev/null", "id=a=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		if err := CheckSecret(spec); err == nil && !strings.Contains(spec, "id=") {
			t.Fatalf("accepted %q without an id", spec)
		}
	})
}
