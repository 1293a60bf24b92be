// Package admin is arcfence's admin HTTP listener: /metrics (Prometheus),
// /healthz, /readyz, /learned (learn mode's would-be-refused destinations)
// and, when enabled, /debug/pprof. It answers loopback clients, and others
// only when admin.clients names them; and only requests whose Host is a name
// or address the listener is known by (admin.hosts), so that a browser on
// the host cannot be turned on it by DNS rebinding.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

// Options configure a Server.
type Options struct {
	// Listen is the address to listen on (admin.listen), host:port.
	Listen string
	// Clients are the prefixes allowed besides loopback (admin.clients,
	// masked); empty means loopback only.
	Clients []netip.Prefix
	// Hosts are the names and addresses, each optionally with :port, that
	// a request's Host may name (admin.hosts) besides those always
	// accepted: localhost, loopback addresses and the listen address (any
	// address when it listens on all of them), on any port. Others are
	// answered 421. Empty means only those.
	Hosts []string
	// Pprof serves /debug/pprof (admin.pprof).
	Pprof bool
	// Metrics is served at /metrics; nil means /metrics answers 404.
	Metrics *metrics.Metrics
	// Ready is reported by /readyz; nil means /readyz answers like /healthz.
	Ready *Readiness
	// Learned returns learn mode's set for /learned; nil means an empty set.
	Learned func() audit.Learned
	// Mode is the running mode, "enforce" or "learn", reported by /learned.
	Mode string
	// CurrentMode, when non-nil, is asked for the mode at each request
	// instead of Mode (a reload may switch it).
	CurrentMode func() string
	// Logger receives the server's own lines (start, errors).
	Logger zerolog.Logger
}

// Server is a running admin listener.
type Server struct {
	ln      net.Listener
	srv     *http.Server
	clients []netip.Prefix
	hosts   hostSet
	log     zerolog.Logger
	done    chan struct{}
	once    sync.Once
}

// New binds o.Listen and serves on it in a goroutine of its own until
// Close. A port already in use is an error that says so.
func New(o Options) (*Server, error) {
	clients := o.Clients
	hosts, err := newHostSet(o.Listen, o.Hosts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("admin.listen %s: the address is already in use (another arcfence, or another exporter?); "+
				"set admin.listen to a free address, or to \"\" to turn the admin listener off: %w", o.Listen, err)
		}
		return nil, fmt.Errorf("admin.listen %s: %w", o.Listen, err)
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
		hosts.known[ap.Addr().Unmap().String()] = true // the address bound
	}
	s := &Server{ln: ln, clients: clients, hosts: hosts, log: o.Logger, done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           s.guard(Handler(o)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Str("addr", ln.Addr().String()).Msg("admin listener failed")
		}
	}()
	s.log.Info().Str("addr", ln.Addr().String()).Bool("pprof", o.Pprof).Msg("admin listening")
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server: it stops accepting, lets requests in flight end
// until ctx is done, then closes them, and waits for the serving goroutine.
func (s *Server) Close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		if err = s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		<-s.done
	})
	return err
}

// allowed reports whether a client address may use the admin endpoints.
func (s *Server) allowed(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	a := ap.Addr().Unmap()
	if a.IsLoopback() {
		return a, true
	}
	for _, p := range s.clients {
		if p.Contains(a) {
			return a, true
		}
	}
	return a, false
}

// hostSet holds the names and addresses a request's Host may name.
type hostSet struct {
	known map[string]bool // normalized host -> accepted on any port
	exact map[string]bool // normalized host and port ("host|port") -> accepted
	anyIP bool            // the listener listens on every address
}

// newHostSet builds the accepted Host set of a listener on listen
// (admin.listen) from hosts (admin.hosts, each parsed by ParseHost)
// and the names always accepted.
func newHostSet(listen string, hosts []string) (hostSet, error) {
	hs := hostSet{known: map[string]bool{"localhost": true}, exact: map[string]bool{}}
	if h, _, err := net.SplitHostPort(listen); err == nil {
		if a, err := netip.ParseAddr(h); h == "" || err == nil && a.IsUnspecified() {
			hs.anyIP = true
		} else if n, _, ok := ParseHost(h); ok {
			hs.known[canonIP(n)] = true
		}
	}
	for _, e := range hosts {
		h, port, ok := ParseHost(e)
		switch {
		case !ok:
			return hostSet{}, fmt.Errorf("admin.hosts: %q is not a host name or an IP address, optionally with :port", e)
		case port == 0:
			hs.known[canonIP(h)] = true
		default:
			hs.exact[canonIP(h)+"|"+strconv.Itoa(port)] = true
		}
	}
	return hs, nil
}

// allowed reports whether a request's Host header (r.Host) names the
// listener. An empty Host (HTTP/1.0 without one) cannot come from a
// rebinding browser and is accepted.
func (hs hostSet) allowed(hostHeader string) bool {
	if hostHeader == "" {
		return true
	}
	h, port, ok := ParseHost(hostHeader)
	if !ok {
		return false
	}
	h = canonIP(h)
	if hs.known[h] || port != 0 && hs.exact[h+"|"+strconv.Itoa(port)] {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && (hs.anyIP || a.Unmap().IsLoopback())
}

// canonIP returns h in netip's canonical form when it is an IP address
// (IPv4-mapped IPv6 as IPv4), h itself otherwise.
func canonIP(h string) string {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return h
}

func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := s.allowed(r.RemoteAddr); !ok {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "arcfence admin: client %s not allowed; only loopback and admin.clients may use this listener\n", a)
			return
		}
		if !s.hosts.allowed(r.Host) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusMisdirectedRequest)
			fmt.Fprintf(w, "arcfence admin: Host %q is not a name this listener is known by; add it to admin.hosts (localhost, loopback addresses and the listen address are always accepted)\n", r.Host)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Handler returns the admin endpoints without the client check and
// listener (New adds both).
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	if o.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics.Registry, promhttp.HandlerOpts{
			Registry: o.Metrics.Registry,
		}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := Status{Ready: true, Listeners: map[string]bool{}, PolicyLoaded: true, LastReload: ReloadNone}
		if o.Ready != nil {
			st = o.Ready.Status()
		}
		code := http.StatusOK
		if !st.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, st)
	})
	mux.HandleFunc("GET /learned", func(w http.ResponseWriter, r *http.Request) {
		l := audit.Learned{Destinations: []audit.LearnedDest{}}
		if o.Learned != nil {
			l = o.Learned()
		}
		mode := o.Mode
		if o.CurrentMode != nil {
			mode = o.CurrentMode()
		}
		writeJSON(w, http.StatusOK, struct {
			Mode string `json:"mode"`
			audit.Learned
		}{mode, l})
	})
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ParseHost parses an admin.hosts entry or an HTTP Host header: a DNS name
// or an IP address, optionally with ":port" ("[IPv6]:port"), the host
// normalized by policy.NormalizeHost. port is 0 when none is given.
func ParseHost(s string) (host string, port int, ok bool) {
	h, port, r := policy.SplitHostPort(s)
	if r != policy.ReasonNone {
		h, port = s, 0
		if strings.HasSuffix(s, ":") {
			return "", 0, false
		}
	}
	host, ok = policy.NormalizeHost(h)
	return host, port, ok
}
