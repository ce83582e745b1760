package main

import (
	"errors"
	"strings"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/registry"
)

// optionFlags are the flags that set each registry.Options field.
var optionFlags = map[string]string{
	"AuthFile":   "--authfile",
	"CertDir":    "--cert-dir",
	"Retry":      "--retry",
	"RetryDelay": "--retry-delay",
}

// tlsRemedies say which flags fix each TLS problem.
var tlsRemedies = map[registry.TLSProblem]string{
	registry.PlainHTTPOnly:            "use --tls-verify=false for it",
	registry.ClientCertificateRefused: "put a *.cert/*.key pair in --cert-dir",
	registry.UntrustedCertificate:     "use --cert-dir or --tls-verify=false",
}

// withFlagHints adds to err, which the registry package words in its own
// terms, the flags that change what went wrong: a bad option gets its flag
// in front ("--retry: retries -1: …"), other problems a remedy after
// (": use --cert-dir or --tls-verify=false"; credentials in an image
// reference: ": pass it with --authfile"). Other errors are returned as
// they are; the result still matches everything err matched.
func withFlagHints(err error) error {
	if err == nil {
		return nil
	}
	var prefix string
	var hints []string
	var oe *registry.OptionError
	if errors.As(err, &oe) && optionFlags[oe.Option] != "" {
		prefix = optionFlags[oe.Option] + ": "
	}
	var te *registry.TLSError
	if errors.As(err, &te) && tlsRemedies[te.Problem] != "" {
		hints = append(hints, tlsRemedies[te.Problem])
	}
	var ce *registry.CredentialsError
	if errors.As(err, &ce) && ce.AuthFile == "" {
		hints = append(hints, "give one with --authfile or REGISTRY_AUTH_FILE")
	}
	if errors.Is(err, imageref.ErrCredentials) {
		hints = append(hints, "pass it with --authfile")
	}
	if errors.Is(err, registry.ErrNoProgress) {
		hints = append(hints, "--request-timeout sets it")
	}
	if prefix == "" && len(hints) == 0 {
		return err
	}
	msg := prefix + err.Error()
	if len(hints) > 0 {
		msg += ": " + strings.Join(hints, "; ")
	}
	return &hinted{msg: msg, err: err}
}

// hinted is an error with flag hints in its message.
type hinted struct {
	msg string
	err error
}

func (h *hinted) Error() string { return h.msg }
func (h *hinted) Unwrap() error { return h.err }
