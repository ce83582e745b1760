// Package registry is the one place in mcbuild that knows how to talk to a
// container registry with the user's auth and TLS options. A [Session],
// made from one [Options] value, gives both sides of mcbuild what they
// need: oras-go remote repositories ([Session.Repository]) and
// containers/image's SystemContext ([Session.SystemContext]).
//
// Retries happen at one layer per request: every oras request is retried by
// the session's transport (a read whose body is cut short included);
// containers/image pushes, which do not go through it, are retried by [Do]
// around them. Stalls are bounded by one guard ([Watchdog], [GuardStall]),
// the same for both.
//
// Credentials come from a containers auth.json or a Docker config.json (see
// [Options.ResolveAuthFile]); the most specific entry wins, as with podman and
// buildah: "host/ns/repo" before "host/ns" before "host". Credential helpers
// (credHelpers, credsStore) are used when no entry of "auths" matches.
//
// TLS: with TLSVerify the system roots plus every *.crt of CertDir are
// trusted and *.cert/*.key pairs there are offered as client certificates
// (buildah's --cert-dir convention); without CertDir the per-host directories
// $HOME/.config/containers/certs.d/HOST, /etc/containers/certs.d/HOST and
// /etc/docker/certs.d/HOST are read, the first that exists. With TLSVerify
// false, certificates are not verified and a registry that speaks plain HTTP
// is used over plain HTTP: https://HOST/v2/ is probed once per host and the
// answer cached for the life of the process, as containers/image does for
// insecure registries.
package registry

import (
	"errors"
	"os"
	"path/filepath"
	"time"
)

// Options are the user's registry access options, shared by every command.
//
// The zero value does NOT verify TLS; commands start from [DefaultOptions].
type Options struct {
	// AuthFile is an explicit auth file (containers auth.json or Docker
	// config.json). It must exist when set.
	AuthFile string
	// TLSVerify requires HTTPS with a trusted certificate. When false,
	// certificates are not verified and plain HTTP is used for registries
	// that do not speak HTTPS.
	TLSVerify bool
	// CertDir holds *.crt CA certificates and *.cert/*.key client pairs.
	CertDir string
	// UserAgent is sent with every request when set.
	UserAgent string
	// Retry is how many times a transient failure (408, 429, 5xx, a reset
	// or timed-out connection, a stall) is retried: each oras request by
	// the session's transport; each containers/image push by [Do] around
	// it (the stream publisher: each blob and manifest; the copy publisher:
	// a variant as a whole). 0 retries nothing.
	Retry int
	// RetryDelay is the first wait between attempts; it doubles with every
	// retry up to MaxRetryDelay. A registry's Retry-After is honored on
	// oras requests (up to MaxRetryAfter).
	RetryDelay time.Duration
	// RequestTimeout bounds how long a request may make no progress (no
	// response headers, no bytes moving) before it is abandoned as a
	// (retryable) timeout. 0 means DefaultRequestTimeout; negative, none.
	RequestTimeout time.Duration
}

// DefaultOptions returns the options used when the user gives none (the
// commands' flags take their defaults from it): TLS is verified, the auth
// file is looked up in the usual places, transient failures are retried
// DefaultRetry times from DefaultRetryDelay, and a request may make no
// progress for DefaultRequestTimeout.
func DefaultOptions() Options {
	return Options{TLSVerify: true, Retry: DefaultRetry, RetryDelay: DefaultRetryDelay, RequestTimeout: DefaultRequestTimeout}
}

// ResolveAuthFile returns the auth file to read credentials from: AuthFile,
// else $REGISTRY_AUTH_FILE, else the first that exists of
// $XDG_RUNTIME_DIR/containers/auth.json, $HOME/.config/containers/auth.json,
// $DOCKER_CONFIG/config.json and $HOME/.docker/config.json; "" if none.
func (o Options) ResolveAuthFile() string {
	if o.AuthFile != "" {
		return o.AuthFile
	}
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		return f
	}
	var candidates []string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, "containers", "auth.json"))
	}
	home := os.Getenv("HOME")
	if home != "" {
		candidates = append(candidates, filepath.Join(home, ".config", "containers", "auth.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		candidates = append(candidates, filepath.Join(d, "config.json"))
	}
	if home != "" {
		candidates = append(candidates, filepath.Join(home, ".docker", "config.json"))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	return ""
}

// Validate checks the options before any work is done: an explicit AuthFile
// must exist and be a regular file, and CertDir, when set, must be a
// directory.
func (o Options) Validate() error {
	if o.AuthFile != "" {
		st, err := os.Stat(o.AuthFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return optionError("AuthFile", "auth file %s does not exist", o.AuthFile)
		case err != nil:
			return optionError("AuthFile", "auth file %s: %w", o.AuthFile, err)
		case st.IsDir():
			return optionError("AuthFile", "auth file %s is a directory, not a file", o.AuthFile)
		}
	}
	if o.Retry < 0 {
		return optionError("Retry", "retries %d: want 0 or more (default %d)", o.Retry, DefaultRetry)
	}
	if o.RetryDelay < 0 {
		return optionError("RetryDelay", "retry delay %s: want a duration of 0 or more (default %s)", o.RetryDelay, DefaultRetryDelay)
	}
	if o.CertDir != "" {
		st, err := os.Stat(o.CertDir)
		switch {
		case err != nil:
			return optionError("CertDir", "cert dir %s: %w", o.CertDir, err)
		case !st.IsDir():
			return optionError("CertDir", "cert dir %s is not a directory", o.CertDir)
		}
	}
	return nil
}
