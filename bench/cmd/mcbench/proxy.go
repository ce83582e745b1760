package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

// countingProxy sits between every client and the registry (base
// workload) and counts the bytes of request bodies (what clients upload:
// PUT, PATCH, POST) and of response bodies (what they download), whatever
// the client: mcbuild, crane and buildah alike.
type countingProxy struct {
	srv      *http.Server
	addr     string
	sent     atomic.Int64 // request bodies, client -> registry
	received atomic.Int64 // response bodies, registry -> client
}

// startProxy serves on 127.0.0.1 a reverse proxy to the registry at
// target ("host:port"). Clients keep the proxy's address in the Host
// header, so the registry's upload locations point back at the proxy.
func startProxy(target string) (*countingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{addr: l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &p.received}
		return nil
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &countingBody{ReadCloser: r.Body, n: &p.sent}
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// reset zeroes the counters before a measured step.
func (p *countingProxy) reset() {
	p.sent.Store(0)
	p.received.Store(0)
}

// counts are the bytes sent and received since the last reset.
func (p *countingProxy) counts() (sent, received int64) {
	return p.sent.Load(), p.received.Load()
}

func (p *countingProxy) close() { _ = p.srv.Close() }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}
