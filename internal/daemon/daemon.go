// Package daemon runs arcfence's servers: it starts the proxy (and its TLS
// listener), the DNS filter, the admin listener and the servicebus
// refresher from a config.Runtime, reloads on a change of the config file
// (a complete write: see the watcher) and on SIGHUP — comparing the compiled
// configuration's hash, swapping atomically, never dropping tunnels — and
// drains on shutdown.
package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/certs"
	"github.com/arcfence/arcfence/dnsfilter"
	"github.com/arcfence/arcfence/internal/admin"
	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/internal/servicebus"
	"github.com/arcfence/arcfence/policy"
	"github.com/arcfence/arcfence/proxy"
)

// Options configure a Daemon.
type Options struct {
	// Source is where the configuration is read, at start and at reload.
	Source config.Source
	// Stderr receives the log lines; nil means os.Stderr.
	Stderr io.Writer
	// Servicebus is the base of the servicebus refresher's settings
	// (tests set its client, URL and clock); the zero value is right.
	Servicebus servicebus.RefresherConfig
}

// component is one part of the daemon: run serves until ctx is done, then
// stops (draining within its own grace) and returns.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// reloadHook applies a new Runtime to a running part. Hooks run in order;
// a hook's error fails the reload.
type reloadHook func(*config.Runtime) error

// Daemon is a running arcfence: the servers built from one Runtime, and
// the reloads that replace it.
type Daemon struct {
	src   config.Source
	log   zerolog.Logger
	m     *metrics.Metrics
	audit *audit.Log
	ready *admin.Readiness

	rt      atomic.Pointer[config.Runtime] // the running configuration
	started *config.Config                 // the configuration at start-up

	components []component
	reloads    []reloadHook
	// sbChanged is signalled when servicebus.refresh saved a new allowlist.
	sbChanged chan struct{}
	// cleanups release what build bound, when a later step of build fails.
	cleanups []func()

	// failedFile is the SHA-256 of the file content whose reload failed
	// last; the same content failing again is logged at debug level only.
	failedFile [32]byte
	failed     bool
}

// Run loads the configuration, starts every server and runs until ctx is
// done (SIGINT/SIGTERM through the caller's context), then drains.
func Run(ctx context.Context, o Options) error {
	d, err := New(o)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// New loads and builds the configuration and binds every listener (an
// address in use is an error here, at start-up). Call Run to serve.
func New(o Options) (*Daemon, error) {
	rt, err := o.Source.Runtime()
	if err != nil {
		return nil, err
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	d := &Daemon{src: o.Source, log: NewLogger(rt.Log, o.Stderr), m: metrics.New()}
	d.rt.Store(rt)
	d.started = rt.Config
	d.ready = admin.NewReadiness(d.m)
	d.audit = audit.NewWithOptions(d.log, audit.Options{
		FoldWindow: rt.Log.FoldWindow,
		Hint: audit.PolicyHint(func(profile string) *policy.Policy { // DNS lines (no port) included
			if p, ok := d.rt.Load().Profiles.Named(profile); ok {
				return p.Policy
			}
			return d.rt.Load().Policy()
		}),
		Metrics: d.m,
	})
	if err := d.build(rt, o.Servicebus); err != nil {
		for i := len(d.cleanups) - 1; i >= 0; i-- {
			d.cleanups[i]()
		}
		d.audit.Close()
		return nil, err
	}
	d.ready.Loaded(rt.Hash, time.Now())
	d.log.Info().Str("listen", rt.Listen).Str("tls_listen", rt.TLSListen).Str("dns_listen", rt.DNS.Listen).
		Str("admin_listen", rt.Admin.Listen).Str("mode", rt.Mode().String()).Strs("offerings", rt.Policy().Selected()).
		Strs("regions", rt.Policy().Regions()).Int("rules", len(rt.Policy().Rules())).Str("config", d.src.File).
		Str("copy_path", proxy.CopyPath()).Str("msg", "arcfence serving").Send()
	return d, nil
}

// NewLogger builds the process logger from the log keys: zerolog JSON lines
// (or console text) on w, with RFC 3339 times and the message as "msg".
func NewLogger(s config.LogSettings, w io.Writer) zerolog.Logger {
	if s.Console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	// Every line names its message "msg", as refusal lines do (design: "msg":"denied").
	zerolog.MessageFieldName = "msg"
	return zerolog.New(w).Level(s.Level).With().Timestamp().Logger()
}

// proxySettings is rt's proxy settings with max_tunnels fitted to the
// open-files limit.
func (d *Daemon) proxySettings(rt *config.Runtime, start bool) proxy.Settings {
	st := rt.Proxy
	st.Limits.MaxTunnels = fitFileLimit(d.log, st.Limits.MaxTunnels, rt.Config.Limits.MaxTunnels != config.Default().Limits.MaxTunnels, start)
	return st
}

// build creates the components and their reload hooks for rt. Listeners
// are bound here, so an address in use is a start-up error.
func (d *Daemon) build(rt *config.Runtime, sbBase servicebus.RefresherConfig) error {
	// The DNS filter first: the proxy consults the addresses it hands out.
	learned, err := d.buildDNS(rt)
	if err != nil {
		return err
	}
	if err := d.buildProxy(rt, learned); err != nil {
		return err
	}
	if err := d.buildAdmin(rt); err != nil {
		return err
	}
	d.sbChanged = make(chan struct{}, 1)
	sb, err := newServicebusRefresher(rt, d.log, func() {
		select {
		case d.sbChanged <- struct{}{}:
		default:
		}
	}, sbBase)
	if err != nil {
		return err
	}
	if sb != nil {
		d.components = append(d.components, component{name: "servicebus", run: sb.Run})
	}
	return nil
}

// buildDNS binds the DNS filter when dns.listen is set; it returns the
// filter as the proxy's learned addresses (nil when off).
func (d *Daemon) buildDNS(rt *config.Runtime) (proxy.LearnedAddrs, error) {
	if rt.DNS.Listen == "" {
		return nil, nil
	}
	o := rt.DNS
	o.Policy, o.Logger, o.Audit, o.Metrics = rt.Policy(), d.log, d.audit, d.m
	f, err := dnsfilter.New(o)
	if err != nil {
		return nil, fmt.Errorf("dns.listen %s: %w", rt.DNS.Listen, err)
	}
	d.cleanups = append(d.cleanups, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Shutdown(ctx)
	})
	d.ready.Expect("dns")
	d.components = append(d.components, component{name: "dns", run: func(ctx context.Context) error {
		d.ready.ListenerUp("dns")
		defer d.ready.ListenerDown("dns")
		return f.Run(ctx)
	}})
	d.reloads = append(d.reloads, func(r *config.Runtime) error {
		f.SetMode(r.Mode())
		f.SetDenyRcode(r.DNS.DenyRcode)
		f.SetPolicy(r.Policy())
		f.SetProfiles(r.DNS.Profiles, r.DNS.ByClient)
		return nil
	})
	return f, nil
}

// buildProxy creates the proxy and binds its listener (and the HTTPS
// listener when tls.listen is set).
func (d *Daemon) buildProxy(rt *config.Runtime, learned proxy.LearnedAddrs) error {
	px, err := proxy.New(proxy.Options{Settings: d.proxySettings(rt, true), Logger: d.log, Audit: d.audit,
		Metrics: d.m, LearnedAddrs: learned})
	if err != nil {
		return err
	}
	ln, err := listen("listen", rt.Listen)
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, func() { ln.Close() })
	var tlsLn net.Listener
	var tlsCfg *certs.Reloader
	if rt.TLSListen != "" {
		if tlsCfg, err = certs.NewReloader(rt.TLSCert, rt.TLSKey, d.log); err != nil {
			return err
		}
		if tlsLn, err = listen("tls.listen", rt.TLSListen); err != nil {
			return err
		}
		d.cleanups = append(d.cleanups, func() { tlsLn.Close() })
	}
	d.ready.Expect("proxy")
	d.components = append(d.components, component{name: "proxy", run: func(ctx context.Context) error {
		return d.runProxy(ctx, px, ln, tlsLn, tlsCfg)
	}})
	// The proxy's hook runs first: it is the one that can refuse new
	// settings, and a refusal must leave every part on the old ones.
	d.reloads = append([]reloadHook{func(r *config.Runtime) error {
		return px.Reload(d.proxySettings(r, false))
	}}, d.reloads...)
	return nil
}

// runProxy serves the proxy's listeners until ctx is done or one fails,
// then drains its tunnels within limits.shutdown_grace.
func (d *Daemon) runProxy(ctx context.Context, px *proxy.Server, ln, tlsLn net.Listener, tlsCfg *certs.Reloader) error {
	errc := make(chan error, 2)
	n := 1
	go func() { errc <- px.Serve(ln) }()
	if tlsLn != nil {
		n++
		go func() { errc <- px.ServeTLS(tlsLn, tlsCfg.TLSConfig()) }()
	}
	d.ready.ListenerUp("proxy")
	var serr error
	select {
	case <-ctx.Done():
	case serr = <-errc:
		n--
	}
	d.ready.ListenerDown("proxy")
	grace := d.rt.Load().ShutdownGrace
	d.log.Info().Int("tunnels", px.ActiveTunnels()).Dur("grace", grace).Str("msg", "proxy draining").Send()
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := px.Shutdown(sctx); err != nil {
		d.log.Warn().Str("error", err.Error()).Str("msg", "shutdown grace over; remaining tunnels closed").Send()
	}
	for ; n > 0; n-- {
		if err := <-errc; err != nil && serr == nil {
			serr = err
		}
	}
	return serr
}

// buildAdmin binds the admin listener when admin.listen is set.
func (d *Daemon) buildAdmin(rt *config.Runtime) error {
	if rt.Admin.Listen == "" {
		return nil
	}
	o := rt.Admin
	o.Metrics, o.Ready, o.Learned, o.Logger = d.m, d.ready, d.audit.Learned, d.log
	o.CurrentMode = func() string { return d.rt.Load().Mode().String() }
	a, err := admin.New(o)
	if err != nil {
		return err
	}
	d.components = append(d.components, component{name: "admin", run: func(ctx context.Context) error {
		<-ctx.Done()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return a.Close(cctx)
	}})
	return nil
}

// listen binds a TCP listener, saying which key to change when the
// address is in use.
func listen(key, addr string) (net.Listener, error) {
	ln, err := proxy.Listen(context.Background(), addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s %s: the address is already in use (another proxy running?); set %s to a free address: %w", key, addr, key, err)
		}
		return nil, fmt.Errorf("%s %s: %w", key, addr, err)
	}
	return ln, nil
}

// Run starts the components and serves reloads until ctx is done or a
// component fails, then waits for every component to stop. It closes the
// audit log (flushing folded lines) before it returns.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.audit.Close()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Watch before serving: a change made once the proxy answers is seen.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed, stopWatch := watch(d.src.File, d.log)
	defer stopWatch()
	var wg sync.WaitGroup
	errc := make(chan error, len(d.components))
	for _, c := range d.components {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.run(ctx); err != nil {
				errc <- fmt.Errorf("%s: %w", c.name, err)
				cancel()
			}
		}()
	}

	// A reload reads and compiles off this loop (a read can block: a FIFO,
	// a stale network mount), one at a time; a trigger during one is kept
	// and runs after it. Stopping never waits for a reload.
	prepared := make(chan prepared, 1)
	running, pending := false, ""
	start := func(why string) {
		if running {
			pending = why
			return
		}
		running = true
		go func() { prepared <- d.prepare(why) }()
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			start("SIGHUP")
		case <-changed:
			start("file changed")
		case <-d.sbChanged:
			start("servicebus allowlist refreshed")
		case p := <-prepared:
			running = false
			d.apply(p)
			if pending != "" {
				why := pending
				pending = ""
				start(why)
			}
		}
	}
	d.log.Info().Str("msg", "arcfence stopping").Send()
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		d.log.Info().Str("msg", "arcfence stopped").Send()
	}
	return errors.Join(errs...)
}

// prepared is a configuration read and built for a reload.
type prepared struct {
	why  string
	rt   *config.Runtime
	file [32]byte // SHA-256 of the file's content as read ({} without a file)
	err  error
}

// prepare reads and builds the configuration for a reload. It runs on a
// goroutine of its own and touches nothing that serves.
func (d *Daemon) prepare(why string) prepared {
	p := prepared{why: why}
	p.file, p.err = checkConfigFile(d.src.File)
	if p.err == nil {
		p.rt, p.err = d.src.Runtime()
	}
	return p
}

// apply swaps a prepared configuration in. A failure keeps the running
// configuration; it is logged at error level (once for the same file
// content) and shown by /readyz and the reload metrics. A configuration
// that compiles to the running one's hash changes nothing.
func (d *Daemon) apply(p prepared) {
	now := time.Now()
	err := p.err
	if err == nil && p.rt.Hash == d.rt.Load().Hash {
		d.ready.Reloaded(nil, p.rt.Hash, now)
		ev := d.log.Debug()
		if d.failed {
			ev = d.log.Info() // good again after a failure: say so
		}
		d.failed = false
		ev.Str("trigger", p.why).Str("hash", p.rt.Hash).Str("msg", "config unchanged").Send()
		return
	}
	if err == nil {
		for _, h := range d.reloads {
			if err = h(p.rt); err != nil {
				break
			}
		}
	}
	if err != nil {
		d.ready.Reloaded(err, "", now)
		ev := d.log.Error()
		if d.failed && d.failedFile == p.file {
			ev = d.log.Debug() // the same bad file again: said once already
		}
		d.failed, d.failedFile = true, p.file
		ev.Str("trigger", p.why).Str("error", err.Error()).
			Str("msg", "config reload failed; the running configuration stays").Send()
		return
	}
	d.failed = false
	d.ready.Reloaded(nil, p.rt.Hash, now)
	d.rt.Store(p.rt)
	// Compared with the start-up configuration: that is what the
	// start-up-only keys still run with.
	if keys := config.RestartKeys(d.started, p.rt.Config); len(keys) > 0 {
		d.log.Warn().Strs("keys", keys).
			Str("msg", "changed settings take effect at restart; they keep their running values until then").Send()
	}
	d.log.Info().Str("trigger", p.why).Str("hash", p.rt.Hash).Int("rules", len(p.rt.Policy().Rules())).
		Str("mode", p.rt.Mode().String()).Str("msg", "config reloaded").Send()
}

// checkConfigFile refuses, at reload, a config path that is not a regular
// file (a FIFO would block the read) and a file with nothing but blanks and
// comments (a file caught half-written, not a wish for every default). It
// returns the SHA-256 of the content it read.
func checkConfigFile(path string) ([32]byte, error) {
	if path == "" {
		return [32]byte{}, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return [32]byte{}, nil // Load reports it, naming the file
	}
	if !fi.Mode().IsRegular() {
		return [32]byte{}, fmt.Errorf("config file %s is not a regular file (%v); the running configuration stays", path, fi.Mode().Type())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}, nil
	}
	sum := sha256.Sum256(b)
	for _, line := range strings.Split(string(b), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return sum, nil
		}
	}
	return sum, fmt.Errorf("config file %s is empty (truncated while being written?); the running configuration stays", path)
}
