package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"syscall"
	"time"

	dockererrcode "github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Retry and timeout defaults: the one source of truth for [DefaultOptions]
// (and so for the commands' flags).
const (
	// DefaultRetry is how many times a failed registry operation is retried
	// when the failure is transient (buildah's --retry default).
	DefaultRetry = 3
	// DefaultRetryDelay is the first backoff; it doubles on every retry
	// (buildah's --retry-delay default, which buildah does not double).
	DefaultRetryDelay = 2 * time.Second
	// MaxRetryDelay caps the doubling backoff (unless RetryDelay itself is
	// larger, which is then used as is).
	MaxRetryDelay = 30 * time.Second
	// MaxRetryAfter caps how long a registry's Retry-After header may make
	// a request wait.
	MaxRetryAfter = time.Minute
	// DefaultRequestTimeout bounds how long one registry request may make no
	// progress: no response headers, no bytes sent or received.
	DefaultRequestTimeout = 5 * time.Minute
)

// Backoff returns the wait before retry number attempt (0 for the first
// retry): RetryDelay doubled attempt times, capped at MaxRetryDelay (or at
// RetryDelay when that is larger), with up to 10% jitter.
func (o Options) Backoff(attempt int) time.Duration {
	d := o.RetryDelay
	if d <= 0 {
		return 0
	}
	limit := max(MaxRetryDelay, d)
	for i := 0; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d + rand.N(d/10+1)
}

// requestTimeout is RequestTimeout, DefaultRequestTimeout when unset; a
// negative value turns the bound off.
func (o Options) requestTimeout() time.Duration {
	switch {
	case o.RequestTimeout == 0:
		return DefaultRequestTimeout
	case o.RequestTimeout < 0:
		return 0
	}
	return o.RequestTimeout
}

// RequestTimeoutOrDefault is the effective request timeout; 0 means none.
func (o Options) RequestTimeoutOrDefault() time.Duration { return o.requestTimeout() }

// Do runs op and retries it, with [Options.Backoff], while it fails with a
// [Retryable] error, at most o.Retry times. Every failure is reported to
// onRetry (may be nil) before the wait. When it gives up on a retryable
// error (retries spent, or ctx done while waiting) it returns that error in
// a [*RetryError] with the number of attempts made, so messages can say so.
// It is the retry layer of what does not go through a [Session]'s transport
// (containers/image pushes); oras requests must not be wrapped in it.
func Do(ctx context.Context, o Options, onRetry func(attempt int, wait time.Duration, err error), op func(context.Context) error) error {
	var err error
	for attempt := 0; ; attempt++ {
		if err = op(ctx); err == nil {
			return nil
		}
		if ctx.Err() != nil || !Retryable(err) {
			break
		}
		if attempt >= o.Retry {
			return &RetryError{Attempts: attempt + 1, Err: err}
		}
		wait := o.Backoff(attempt)
		if onRetry != nil {
			onRetry(attempt+1, wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return &RetryError{Attempts: attempt + 1, Err: err}
		case <-t.C:
		}
	}
	return err
}

// RetryError is the last error of an operation that was retried and still
// failed.
type RetryError struct {
	Attempts int
	Err      error
}

func (e *RetryError) Error() string { return e.Err.Error() }

func (e *RetryError) Unwrap() error { return e.Err }

// Status returns the HTTP status code a registry answered with, as found in
// err: oras-go's error response, containers/image's unexpected status, or a
// registry error code (which containers/image only parses from 4xx
// answers, dropping their status): the status the code stands for, 400 for
// a code that stands for none (UNKNOWN, UNAVAILABLE; [Reason] and
// [Retryable] tell those apart). ok is false when err carries no status.
func Status(err error) (code int, ok bool) {
	if err == nil {
		return 0, false
	}
	if code, ok := answerStatus(err); ok {
		return code, true
	}
	if c, ok := registryCode(err); ok {
		return dockerCodeStatus(c), true
	}
	// containers/image's unparsable 4xx bodies ("StatusCode: 404, ...").
	if m := statusCodeText.FindStringSubmatch(err.Error()); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return n, true
		}
	}
	return 0, false
}

// answerStatus is the status err carries as such: oras-go's error response,
// containers/image's unexpected status, its 429 and its 401 for
// credentials, and a manifest refused as invalid (400).
func answerStatus(err error) (int, bool) {
	var oe *errcode.ErrorResponse
	if errors.As(err, &oe) {
		return oe.StatusCode, true
	}
	var ue docker.UnexpectedHTTPStatusError
	if errors.As(err, &ue) {
		return ue.StatusCode, true
	}
	if errors.Is(err, docker.ErrTooManyRequests) {
		return http.StatusTooManyRequests, true
	}
	var ua docker.ErrUnauthorizedForCredentials
	if errors.As(err, &ua) {
		return http.StatusUnauthorized, true
	}
	if errors.As(err, new(types.ManifestTypeRejectedError)) {
		return http.StatusBadRequest, true
	}
	return 0, false
}

var statusCodeText = regexp.MustCompile(`StatusCode: ([1-5][0-9][0-9]),`)

// registryCode is the registry error code (docker/distribution's errcode)
// of a containers/image error made from an answer's JSON error body.
// containers/image parses the bodies of 4xx answers only, keeps their first
// code and drops the status (docker/errors.go, registryHTTPResponseToError):
// which 4xx it was is lost, unless the code stands for one.
func registryCode(err error) (dockererrcode.ErrorCode, bool) {
	var de dockererrcode.Error
	if errors.As(err, &de) {
		return de.Code, true
	}
	var des dockererrcode.Errors
	if errors.As(err, &des) && len(des) > 0 {
		if e, ok := des[0].(dockererrcode.Error); ok {
			return e.Code, true
		}
	}
	return 0, false
}

// codeStatus is the 4xx status a registry error code stands for
// (UNAUTHORIZED 401, DENIED 403, TOOMANYREQUESTS 429, MANIFEST_INVALID 400,
// ...); ok is false for a code that stands for none: UNKNOWN (any
// unregistered code), UNAVAILABLE (nominally a 503).
func codeStatus(c dockererrcode.ErrorCode) (int, bool) {
	if c == dockererrcode.ErrorCodeUnknown {
		return 0, false
	}
	if s := c.Descriptor().HTTPStatusCode; s >= 400 && s < 500 {
		return s, true
	}
	return 0, false
}

// dockerCodeStatus maps a registry error code parsed by containers/image to
// its status; a code that stands for no 4xx status counts as the generic
// 4xx, 400.
func dockerCodeStatus(c dockererrcode.ErrorCode) int {
	if s, ok := codeStatus(c); ok {
		return s
	}
	return http.StatusBadRequest
}

// statusLost returns the registry error code of err when err is a
// containers/image error whose status is lost: the answer was a 4xx with a
// JSON error body whose code stands for no status (see [registryCode]).
func statusLost(err error) (dockererrcode.ErrorCode, bool) {
	if _, ok := answerStatus(err); ok {
		return 0, false
	}
	c, ok := registryCode(err)
	if !ok {
		return 0, false
	}
	_, pinned := codeStatus(c)
	return c, !pinned
}

// retryableStatus: request timeout, too many requests, and server errors
// except "not implemented" and "HTTP version not supported".
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return false
	}
	return code >= 500 && code < 600
}

// LocalError marks a failure on this side of an upload: reading or
// compressing what is being pushed. However it ended (an EOF included),
// the registry is not to blame and retrying cannot help.
type LocalError struct{ Err error }

func (e *LocalError) Error() string { return e.Err.Error() }
func (e *LocalError) Unwrap() error { return e.Err }

// Retryable decides whether err is worth retrying: 408, 429 and 5xx
// answers (not 501/505), connections reset, refused, cut short (EOF, broken
// pipe) or timed out, and stalls. Never 401, 403, other 4xx answers, a
// refused manifest, TLS trust failures or a cancelled run. A containers/image
// error whose status is lost is judged by its registry error code:
// UNAVAILABLE is retried (whichever 4xx carried it), UNKNOWN is not.
func Retryable(err error) bool {
	var le *LocalError
	if err == nil || errors.Is(err, context.Canceled) || errors.As(err, &le) {
		return false
	}
	if errors.Is(err, ErrNoProgress) {
		return true
	}
	if c, ok := statusLost(err); ok {
		return c == dockererrcode.ErrorCodeUnavailable
	}
	if code, ok := Status(err); ok {
		return retryableStatus(code)
	}
	// A timeout is worth retrying, be it a request's (Go reports
	// ResponseHeaderTimeout as a context.DeadlineExceeded too) or not: the
	// retry loops stop anyway once the run's own context is done.
	if isTLSTrustError(err) {
		return false
	}
	for _, e := range []error{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.ETIMEDOUT, syscall.ENETUNREACH, syscall.EHOSTUNREACH, io.EOF, io.ErrUnexpectedEOF, net.ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return false
}

// Reason is a short, secret-free description of why a registry operation
// failed: "HTTP 503 Service Unavailable", "HTTP 401 Unauthorized",
// "no progress for 5s (request timeout)", "connection reset or closed
// mid-request", "HTTP 4xx with registry error UNAVAILABLE (…)" when
// containers/image lost the status, or "".
func Reason(err error) string {
	if le := (*LocalError)(nil); errors.As(err, &le) {
		return ""
	}
	if c, ok := statusLost(err); ok {
		return fmt.Sprintf("HTTP 4xx with registry error %s (containers/image does not report which status)", c.Descriptor().Value)
	}
	if code, ok := Status(err); ok {
		return fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	}
	var se *StallError
	switch {
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "the deadline passed"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return "connection reset or closed mid-request"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return ""
}

// Explain wraps err from operation op (e.g. "pushing the index to
// host/repo@sha256:…") with the registry's answer and what retrying did:
// "op: HTTP 503 Service Unavailable, still failing after 4 attempts: err",
// "op: HTTP 401 Unauthorized, not retried (not a transient error): err".
// The number of attempts is the real one: a [*RetryError] carries it (from
// [Do], or from the retrying transport for an error that was not an
// answer); a retryable answer (a 503 that oras turned into an error) comes
// out of the retrying transport only once it spent o.Retry retries.
func (o Options) Explain(op string, err error) error {
	if err == nil {
		return nil
	}
	reason := Reason(err)
	var re *RetryError
	var msg string
	switch {
	case reason == "":
		msg = fmt.Sprintf("%s: %v", op, err)
	case errors.As(err, &re):
		msg = fmt.Sprintf("%s: %s, still failing after %s: %v", op, reason, attempts(re.Attempts), err)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("%s: %s: %v", op, reason, err)
	case Retryable(err):
		msg = fmt.Sprintf("%s: %s, still failing after %s: %v", op, reason, attempts(o.Retry+1), err)
	default:
		why := "not a transient error"
		if _, lost := statusLost(err); lost {
			why = "not a transient error code"
		}
		msg = fmt.Sprintf("%s: %s, not retried (%s): %v", op, reason, why, err)
	}
	return &explained{msg: Redact(msg), err: err}
}

// explained is an error with a redacted message that still unwraps to
// what caused it.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// urlQuery matches the query of a URL in an error message. Upload
// locations can carry signed tokens there (pre-signed storage URLs), so
// messages never show them.
var urlQuery = regexp.MustCompile(`(https?://[^\s"'?]+)\?[^\s"']*`)

// Redact removes the query of every URL in s.
func Redact(s string) string { return urlQuery.ReplaceAllString(s, "$1?…") }

func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// policy is the retry policy built from o: the same retryability as
// [Retryable], [Options.Backoff], and a registry's Retry-After (on 429 and
// 503, seconds or an HTTP date) honored up to MaxRetryAfter.
type policy struct{ o Options }

func (p policy) Retry(attempt int, resp *http.Response, err error) (time.Duration, error) {
	if attempt >= p.o.Retry {
		return -1, nil
	}
	if err != nil {
		if !Retryable(err) {
			return -1, nil
		}
		return p.o.Backoff(attempt), nil
	}
	if !retryableStatus(resp.StatusCode) {
		return -1, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(d, MaxRetryAfter), nil
		}
	}
	return p.o.Backoff(attempt), nil
}

// RetryAfter parses a Retry-After value: delay seconds or an HTTP date.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(MaxRetryAfter/time.Second)+1)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// maxBufferedBody bounds the answers the retrying transport reads in full
// before handing them on: oras' own bound on a manifest (4 MiB).
const maxBufferedBody = 4 << 20

// retryTransport is the one retry layer of every oras request (pushes,
// reads, checks, tags, token fetches): it sends a request again, after
// [Options.Backoff] (or the registry's Retry-After), while [policy] says
// the failure is transient, at most o.Retry times. A request's body is
// replayed through GetBody, which oras sets on every request mcbuild sends
// (one without it is sent once).
//
// A GET answered 2xx with a body of at most maxBufferedBody bytes
// (manifests, indexes, configs, token and tag answers) is read in full
// within the attempt, so a body cut short or stalled after the headers is
// a failed attempt, retried like a failed request, and what the caller
// reads cannot fail. A longer body is handed on as it comes; a failure
// reading it is the failure of that one attempt.
//
// An error it gives up on is a [*RetryError] with the number of requests
// sent; an answer it gives up on (a 503 oras turns into an error) is
// returned once o.Retry retries are spent.
type retryTransport struct {
	base   http.RoundTripper
	policy policy
}

type sendOnceKey struct{}

// SendOnce marks ctx's requests to be sent once by the transport: the
// caller retries the whole operation itself (an upload from a staged file,
// with [Do]), so no request is retried at two layers.
func SendOnce(ctx context.Context) context.Context {
	return context.WithValue(ctx, sendOnceKey{}, true)
}

func sentOnce(ctx context.Context) bool {
	once, _ := ctx.Value(sendOnceKey{}).(bool)
	return once
}

func newRetryTransport(base http.RoundTripper, o Options) *retryTransport {
	return &retryTransport{base: base, policy: policy{o}}
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	hasBody := req.Body != nil && req.Body != http.NoBody
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 && hasBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.WithContext(ctx)
			r.Body = body
		}
		resp, err := t.base.RoundTrip(r)
		if err == nil {
			resp, err = readBounded(r, resp, attempt+1)
		}
		wait, _ := t.policy.Retry(attempt, resp, err)
		if wait < 0 || hasBody && req.GetBody == nil || sentOnce(ctx) {
			if err != nil && ctx.Err() == nil && (attempt > 0 || Retryable(err)) {
				err = &RetryError{Attempts: attempt + 1, Err: err}
			}
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// readBounded reads the body of a GET answered 2xx in full when it is at
// most maxBufferedBody bytes; a failure reading it is the attempt's error.
// Other bodies are handed on, their read failures marked as those of a
// request sent attempts times.
func readBounded(req *http.Request, resp *http.Response, attempts int) (*http.Response, error) {
	if req.Method != http.MethodGet || resp.StatusCode < 200 || resp.StatusCode > 299 || resp.ContentLength > maxBufferedBody {
		resp.Body = &handedOn{Reader: resp.Body, c: resp.Body, attempts: attempts}
		return resp, nil
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, maxBufferedBody+1))
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	if len(buf) > maxBufferedBody { // no length announced, and longer than the bound
		resp.Body = &handedOn{Reader: io.MultiReader(bytes.NewReader(buf), resp.Body), c: resp.Body, attempts: attempts}
		return resp, nil
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(buf))
	return resp, nil
}

// handedOn is an answer's body the caller reads as it comes.
type handedOn struct {
	io.Reader
	c        io.Closer
	attempts int
}

func (h *handedOn) Read(p []byte) (int, error) {
	n, err := h.Reader.Read(p)
	if err != nil && err != io.EOF {
		err = &RetryError{Attempts: h.attempts, Err: err}
	}
	return n, err
}

func (h *handedOn) Close() error { return h.c.Close() }
