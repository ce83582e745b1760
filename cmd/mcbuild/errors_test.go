package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/registry"
)

// TestRegistryFlagDefaults: without flags, a user gets
// registry.DefaultOptions (TLS verified), plus mcbuild's user agent.
func TestRegistryFlagDefaults(t *testing.T) {
	g := &globalFlags{}
	root := &cobra.Command{Use: "mcbuild"}
	g.register(root)
	if err := root.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	want := registry.DefaultOptions()
	want.UserAgent = "mcbuild"
	got := g.registryOptions()
	if got != want {
		t.Errorf("registry options without flags = %+v, want %+v", got, want)
	}
	if !got.TLSVerify {
		t.Error("--tls-verify defaults to false")
	}
	if err := root.ParseFlags([]string{"--tls-verify=false", "--request-timeout", "0"}); err != nil {
		t.Fatal(err)
	}
	if got := g.registryOptions(); got.TLSVerify || got.RequestTimeout >= 0 {
		t.Errorf("--tls-verify=false --request-timeout 0: %+v", got)
	}
}

func TestWithFlagHints(t *testing.T) {
	host := "r.example:5000"
	tlsErr := func(p registry.TLSProblem) error {
		return &registry.TLSError{Host: host, Problem: p, Err: errors.New("x509: certificate signed by unknown authority")}
	}
	optionErr := (&registry.Options{Retry: -1}).Validate()
	_, credErr := imageref.ParseTagged("u:p@r.example:5000/app:v1")
	tests := []struct {
		name string
		err  error
		want []string // substrings; nil: unchanged
	}{
		{"plain HTTP", tlsErr(registry.PlainHTTPOnly), []string{host, "plain HTTP", ": use --tls-verify=false for it"}},
		{"untrusted, wrapped", fmt.Errorf("pushing: %w", tlsErr(registry.UntrustedCertificate)), []string{"pushing: registry " + host, "certificate", ": use --cert-dir or --tls-verify=false"}},
		{"client certificate", tlsErr(registry.ClientCertificateRefused), []string{"put a *.cert/*.key pair in --cert-dir"}},
		{"bad option", optionErr, []string{"--retry: retries -1: want 0 or more"}},
		{"no credentials, no auth file", &registry.CredentialsError{Host: host, Status: 401}, []string{"requires authentication (401)", "the default auth files", "--authfile or REGISTRY_AUTH_FILE"}},
		{"refused, auth file given", &registry.CredentialsError{Host: host, Status: 401, AuthFile: "/a.json", Refused: true}, nil},
		{"stall", fmt.Errorf("pushing the index: %w", &registry.StallError{After: time.Second}), []string{"no progress for 1s (request timeout)", "--request-timeout"}},
		{"credentials in a reference", fmt.Errorf("--image %w", credErr), []string{`--image "***@r.example:5000/app:v1"`, "put them in an auth file: pass it with --authfile"}},
		{"other", errors.New("manifest is not valid JSON"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := withFlagHints(tt.err)
			if tt.want == nil {
				if got != tt.err {
					t.Errorf("withFlagHints(%q) = %q, want it unchanged", tt.err, got)
				}
				return
			}
			for _, w := range tt.want {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("withFlagHints = %q, want it to contain %q", got, w)
				}
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("the hinted error no longer matches %v", tt.err)
			}
		})
	}
	if withFlagHints(nil) != nil {
		t.Error("withFlagHints(nil) != nil")
	}
}
