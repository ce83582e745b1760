package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/types"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// credentials looks credentials up the way buildah, podman and skopeo do
// (containers/image's pkg/docker/config: the most specific auths entry for
// host/namespace/repo wins, credential helpers, identity tokens), so the oras
// client here and the containers/image pushes agree on who we are.
type credentials struct {
	path string // the auth file; "" means containers/image's defaults
	sys  *types.SystemContext
}

func newCredentials(path string) credentials {
	return credentials{path: path, sys: &types.SystemContext{AuthFilePath: path}}
}

// lookup returns the credential for host and repository path ("" for
// registry-wide access such as Ping). Errors never quote the file's content.
func (c credentials) lookup(host, path string) (auth.Credential, error) {
	var ac types.DockerAuthConfig
	var err error
	if path == "" {
		ac, err = config.GetCredentials(c.sys, host)
	} else {
		var named reference.Named
		named, err = reference.ParseNamed(host + "/" + path)
		if err != nil {
			return auth.EmptyCredential, fmt.Errorf("repository %s/%s: %w", host, path, err)
		}
		ac, err = config.GetCredentialsForRef(c.sys, named)
	}
	if err != nil {
		return auth.EmptyCredential, &lookupError{fmt.Errorf("reading credentials for %s from %s: %w", host, c.where(), err)}
	}
	return auth.Credential{Username: ac.Username, Password: ac.Password, RefreshToken: ac.IdentityToken}, nil
}

// credentialFunc is the oras credential function for one repository path.
func (c credentials) credentialFunc(path string) auth.CredentialFunc {
	return func(_ context.Context, hostport string) (auth.Credential, error) {
		return c.lookup(hostport, path)
	}
}

// has reports whether a credential is configured for host and path.
func (c credentials) has(host, path string) bool {
	cred, err := c.lookup(host, path)
	return err == nil && cred != auth.EmptyCredential
}

func (c credentials) where() string { return whereCredentials(c.path) }

// lookupError is a failure to read credentials (a helper failing, a file
// unreadable): ours, not the registry's, so never worded as "unreachable".
type lookupError struct{ err error }

func (e *lookupError) Error() string { return e.err.Error() }
func (e *lookupError) Unwrap() error { return e.err }

// authFileShape is what containers/image reads from an auth file
// (pkg/docker/config's dockerConfigFile): other keys are ignored.
type authFileShape struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
	CredHelpers map[string]string `json:"credHelpers"`
}

// checkAuthFile reads the auth file at path ("" for none) and refuses one
// containers/image cannot read: not JSON, or "auths" or "credHelpers" of
// the wrong shape. Checked before any work: such a file otherwise fails
// only when a request first needs credentials, after the build, or not at
// all when the registry asks for none. A path naming no file reads as no
// credentials, as containers/image does. Errors name the file and where
// it goes wrong, never its content.
func checkAuthFile(path string) error {
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth file %s: %w", path, err)
	}
	var shape authFileShape
	err = json.Unmarshal(raw, &shape)
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &syntax):
		return fmt.Errorf("auth file %s is malformed: not valid JSON (%s at byte %d)", path, jsonProblem(syntax), syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Errorf("auth file %s is malformed: %q holds a JSON %s where %s is expected", path, typ.Field, typ.Value, jsonKind(typ.Type))
	}
	return fmt.Errorf("auth file %s is malformed: not valid JSON", path)
}

// jsonProblem words a syntax error without the character it found (which
// could be part of a secret).
func jsonProblem(e *json.SyntaxError) string {
	if e.Error() == "unexpected end of JSON input" {
		return "it ends too early"
	}
	return "unexpected character"
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.String:
		return "a string"
	}
	return t.String()
}
