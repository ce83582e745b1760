package registry

import "fmt"

// The errors below say what is wrong in this package's terms (options,
// auth files, certificates); commands add how their own flags fix it.

// OptionError is an [Options] value that cannot be used.
type OptionError struct {
	// Option is the Options field: "AuthFile", "CertDir", "Retry" or
	// "RetryDelay".
	Option string
	Err    error
}

func (e *OptionError) Error() string { return e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

func optionError(option, format string, a ...any) error {
	return &OptionError{Option: option, Err: fmt.Errorf(format, a...)}
}

// TLSProblem is what went wrong setting up TLS with a registry.
type TLSProblem int

const (
	// PlainHTTPOnly: the registry speaks plain HTTP while TLS
	// verification requires HTTPS.
	PlainHTTPOnly TLSProblem = iota + 1
	// ClientCertificateRefused: the registry refused our TLS client
	// certificate (none was offered, or one it does not trust).
	ClientCertificateRefused
	// UntrustedCertificate: the registry's certificate is not signed by a
	// CA we trust.
	UntrustedCertificate
)

// TLSError is a registry that TLS could not be set up with, as the
// options ask.
type TLSError struct {
	Host    string
	Problem TLSProblem
	Err     error
}

func (e *TLSError) Error() string {
	switch e.Problem {
	case PlainHTTPOnly:
		return fmt.Sprintf("registry %s speaks plain HTTP, not HTTPS, and TLS verification is on (%v)", e.Host, e.Err)
	case ClientCertificateRefused:
		return fmt.Sprintf("registry %s refused our TLS client certificate (none or not trusted) (%v)", e.Host, e.Err)
	default:
		return fmt.Sprintf("registry %s: TLS certificate not trusted (%v)", e.Host, e.Err)
	}
}

func (e *TLSError) Unwrap() error { return e.Err }

// CredentialsError is a registry that wants credentials we do not have
// for it, or refused the ones we sent.
type CredentialsError struct {
	Host   string
	Status int // 401 or 403
	// AuthFile is the auth file read; "" when none was given and none of
	// the default ones exists.
	AuthFile string
	// Refused: credentials were sent and refused; otherwise there are none
	// for the registry.
	Refused bool
}

func (e *CredentialsError) Error() string {
	where := whereCredentials(e.AuthFile)
	if e.Refused {
		return fmt.Sprintf("registry %s: credentials refused (%d); check the entry for it in %s", e.Host, e.Status, where)
	}
	return fmt.Sprintf("registry %s requires authentication (%d) and there are no credentials for it in %s", e.Host, e.Status, where)
}

func whereCredentials(authFile string) string {
	if authFile == "" {
		return "the default auth files (none given)"
	}
	return "auth file " + authFile
}
