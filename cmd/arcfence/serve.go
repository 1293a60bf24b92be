package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/certs"
	"github.com/arcfence/arcfence/dnsfilter"
	"github.com/arcfence/arcfence/internal/admin"
	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/internal/platform"
	"github.com/arcfence/arcfence/policy"
	"github.com/arcfence/arcfence/proxy"
)

// reloadSettle is how long file events must settle before a reload (an
// editor's save is several events).
const reloadSettle = 250 * time.Millisecond

func newServeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy (and the DNS filter when dns.listen is set) until SIGINT/SIGTERM",
		Long: `Run the CONNECT proxy on listen (and the HTTPS listener on tls.listen, the DNS
filter on dns.listen, the admin listener on admin.listen). The configuration
is reloaded when the --config file changes and on SIGHUP, without dropping
open tunnels; a file that does not load leaves the running configuration in
place. SIGINT/SIGTERM stop accepting, let tunnels drain for
limits.shutdown_grace and exit 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), newLoader(cmd), cmd.ErrOrStderr())
		},
	}
	addServeFlags(c)
	return c
}

// component is one part of serve: run serves until ctx is done, then stops
// (draining within its own grace) and returns.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// reloadHook applies a new, compiled configuration to a running part.
// Hooks run in order; a hook's error fails the reload.
type reloadHook func(*config.Config, *policy.Policy) error

// daemon is the state of a running serve.
type daemon struct {
	loader *loader
	log    zerolog.Logger
	m      *metrics.Metrics
	audit  *audit.Log
	ready  *admin.Readiness

	pol atomic.Pointer[policy.Policy]
	cfg atomic.Pointer[config.Config] // the running configuration

	components []component
	reloads    []reloadHook
	// sbChanged is signalled when servicebus.refresh saved a new allowlist.
	sbChanged chan struct{}
	// cleanups release what build bound, when a later step of build fails.
	cleanups []func()
}

// runServe loads, compiles and starts everything, then runs until ctx is
// done (SIGINT/SIGTERM, through main's signal context).
func runServe(ctx context.Context, l *loader, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := l.Load()
	if err != nil {
		return err
	}
	pol, err := config.Compile(cfg)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	fitFileLimit(log, cfg)
	d := &daemon{loader: l, log: log, m: metrics.New()}
	d.pol.Store(pol)
	d.cfg.Store(cfg)
	d.ready = admin.NewReadiness(d.m)
	d.audit = audit.NewWithOptions(log, audit.Options{
		FoldWindow: cfg.Log.FoldWindow,
		Hint:       audit.PolicyHint(d.pol.Load), // DNS lines (no port) included
		Metrics:    d.m,
	})
	defer d.audit.Close()

	if err := d.build(cfg, pol); err != nil {
		for i := len(d.cleanups) - 1; i >= 0; i-- {
			d.cleanups[i]()
		}
		return err
	}
	d.ready.Loaded(admin.Hash(cfg), time.Now())
	log.Info().Str("listen", cfg.Listen).Str("tls_listen", cfg.TLS.Listen).Str("dns_listen", cfg.DNS.Listen).
		Str("admin_listen", cfg.Admin.Listen).Str("copy_path", proxy.CopyPath()).Str("mode", cfg.Mode).Strs("offerings", pol.Selected()).
		Strs("regions", pol.Regions()).Int("rules", len(pol.Rules())).Str("config", l.File()).
		Str("msg", "arcfence serving").Send()
	return d.run(ctx)
}

// build creates the components and their reload hooks for cfg. Listeners
// are bound here, so an address in use is a start-up error.
func (d *daemon) build(cfg *config.Config, pol *policy.Policy) error {
	// The DNS filter first: the proxy consults the addresses it hands out.
	var learned proxy.LearnedAddrs
	if cfg.DNS.Listen != "" {
		f, err := dnsfilter.New(dnsfilter.Options{
			Listen: cfg.DNS.Listen, Upstreams: cfg.DNS.Upstream, DenyRcode: cfg.DNS.DenyRcode,
			CacheSize: cfg.DNS.CacheSize, Policy: pol, Mode: cfg.Mode,
			Logger: d.log, Audit: d.audit, Metrics: d.m,
		})
		if err != nil {
			return fmt.Errorf("dns.listen %s: %w", cfg.DNS.Listen, err)
		}
		learned = f
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
		d.reloads = append(d.reloads, func(c *config.Config, p *policy.Policy) error {
			if err := f.SetMode(c.Mode); err != nil {
				return err
			}
			if err := f.SetDenyRcode(c.DNS.DenyRcode); err != nil {
				return err
			}
			f.SetPolicy(p)
			return nil
		})
	}

	px, err := proxy.New(proxy.Options{Config: *cfg, Policy: pol, Logger: d.log, Audit: d.audit,
		Metrics: d.m, LearnedAddrs: learned})
	if err != nil {
		return err
	}
	ln, err := listen("listen", cfg.Listen)
	if err != nil {
		return err
	}
	var tlsLn net.Listener
	var tlsCfg *certs.Reloader
	if cfg.TLS.Listen != "" {
		if tlsCfg, err = certs.NewReloader(cfg.TLS.Cert, cfg.TLS.Key, d.log); err != nil {
			ln.Close()
			return err
		}
		if tlsLn, err = listen("tls.listen", cfg.TLS.Listen); err != nil {
			ln.Close()
			return err
		}
	}
	d.ready.Expect("proxy")
	d.components = append(d.components, component{name: "proxy", run: func(ctx context.Context) error {
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
		grace := d.cfg.Load().Limits.ShutdownGrace
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
	}})
	d.reloads = append(d.reloads, func(c *config.Config, p *policy.Policy) error {
		return px.Reload(c, p)
	})

	if cfg.Admin.Listen != "" {
		a, err := admin.New(admin.Options{
			Listen: cfg.Admin.Listen, Clients: cfg.Admin.Clients, Pprof: cfg.Admin.Pprof,
			Metrics: d.m, Ready: d.ready, Learned: d.audit.Learned, Mode: cfg.Mode, Logger: d.log,
			CurrentMode: func() string { return d.cfg.Load().Mode },
		})
		if err != nil {
			ln.Close()
			if tlsLn != nil {
				tlsLn.Close()
			}
			return err
		}
		d.components = append(d.components, component{name: "admin", run: func(ctx context.Context) error {
			<-ctx.Done()
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return a.Close(cctx)
		}})
	}
	d.sbChanged = make(chan struct{}, 1)
	sb, err := servicebusRefresher(cfg, pol, d.log, func() {
		select {
		case d.sbChanged <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return err
	}
	if sb != nil {
		d.components = append(d.components, component{name: "servicebus", run: sb.Run})
	}
	return nil
}

// fitFileLimit lowers limits.max_tunnels (for this run, with a warning)
// when the open-files limit cannot hold that many tunnels at two
// descriptors each: the excess then gets a clear 429 instead of failing at
// accept. (Go raises the soft limit to the hard one at start.)
func fitFileLimit(log zerolog.Logger, cfg *config.Config) {
	cur, ok := platform.OpenFilesLimit()
	if !ok || cfg.Limits.MaxTunnels <= 0 {
		return
	}
	const reserve = 256 // listeners, DNS, admin, dials in progress, logs
	if need := uint64(2*cfg.Limits.MaxTunnels + reserve); cur < need && cur > 2*reserve {
		fit := int((cur - reserve) / 2)
		log.Warn().Uint64("open_files_limit", cur).Int("max_tunnels", cfg.Limits.MaxTunnels).
			Int("max_tunnels_used", fit).
			Str("msg", "the open-files limit is below 2 x limits.max_tunnels: using a lower max_tunnels; raise the limit (LimitNOFILE=) to use yours").Send()
		cfg.Limits.MaxTunnels = fit
	}
}

// listen binds a TCP listener, saying which key to change when the
// address is in use.
func listen(key, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, fmt.Errorf("%s is empty; set it to host:port, e.g. 127.0.0.1:3128", key)
	}
	ln, err := proxy.Listen(context.Background(), addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s %s: the address is already in use (another proxy running?); set %s to a free address: %w", key, addr, key, err)
		}
		return nil, fmt.Errorf("%s %s: %w", key, addr, err)
	}
	return ln, nil
}

// run starts the components and serves reloads until ctx is done or a
// component fails, then waits for every component to stop.
func (d *daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed, stopWatch := d.watch()
	defer stopWatch()

	// A reload reads and compiles off this loop (a read can block: a FIFO,
	// a stale network mount), one at a time; a trigger during one is kept
	// and runs after it. Stopping never waits for a reload.
	prepared := make(chan preparedConfig, 1)
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

// preparedConfig is a configuration read and compiled for a reload.
type preparedConfig struct {
	why string
	cfg *config.Config
	pol *policy.Policy
	err error
}

// prepare reads and compiles the configuration for a reload. It runs on a
// goroutine of its own and touches nothing that serves.
func (d *daemon) prepare(why string) preparedConfig {
	p := preparedConfig{why: why}
	p.err = checkConfigFile(d.loader.File())
	if p.err == nil {
		p.cfg, p.err = d.loader.Load()
	}
	if p.err == nil {
		p.pol, p.err = config.Compile(p.cfg)
	}
	return p
}

// reload loads, compiles and applies the configuration (tests and callers
// that do not mind waiting).
func (d *daemon) reload(why string) { d.apply(d.prepare(why)) }

// apply swaps a prepared configuration in. A failure keeps the running
// configuration; it is logged at error level and shown by /readyz and the
// reload metrics.
func (d *daemon) apply(p preparedConfig) {
	err := p.err
	if err == nil {
		fitFileLimit(d.log, p.cfg)
		for _, h := range d.reloads {
			if err = h(p.cfg, p.pol); err != nil {
				break
			}
		}
	}
	now := time.Now()
	if err != nil {
		d.ready.Reloaded(err, "", now)
		d.log.Error().Str("trigger", p.why).Str("error", err.Error()).
			Str("msg", "config reload failed; the running configuration stays").Send()
		return
	}
	hash := admin.Hash(p.cfg)
	d.ready.Reloaded(nil, hash, now)
	d.pol.Store(p.pol)
	if keys := restartKeys(d.cfg.Swap(p.cfg), p.cfg); len(keys) > 0 {
		d.log.Warn().Strs("keys", keys).
			Str("msg", "changed settings take effect at restart; they keep their running values until then").Send()
	}
	d.log.Info().Str("trigger", p.why).Str("hash", hash).Int("rules", len(p.pol.Rules())).
		Str("mode", p.cfg.Mode).Str("msg", "config reloaded").Send()
}

// restartKeys names the settings that differ between the running
// configuration old and the reloaded c but are read only at start-up, so
// that a reload never ignores a change silently. The rest (policy, modes,
// clients, ranges, resolver, the other limits, log.tunnels) apply at reload.
func restartKeys(old, c *config.Config) []string {
	var keys []string
	add := func(changed bool, key string) {
		if changed {
			keys = append(keys, key)
		}
	}
	add(c.Listen != old.Listen, "listen")
	add(c.TLS.Listen != old.TLS.Listen, "tls.listen")
	add(c.TLS.Cert != old.TLS.Cert, "tls.cert")
	add(c.TLS.Key != old.TLS.Key, "tls.key")
	add(c.Limits.HeaderTimeout != old.Limits.HeaderTimeout, "limits.header_timeout")
	add(c.Limits.MaxHeaderBytes != old.Limits.MaxHeaderBytes, "limits.max_header_bytes")
	add(c.DNS.Listen != old.DNS.Listen, "dns.listen")
	add(!slices.Equal(c.DNS.Upstream, old.DNS.Upstream), "dns.upstream")
	add(c.DNS.CacheSize != old.DNS.CacheSize, "dns.cache_size")
	add(c.Admin.Listen != old.Admin.Listen, "admin.listen")
	add(c.Admin.Pprof != old.Admin.Pprof, "admin.pprof")
	add(!slices.Equal(c.Admin.Clients, old.Admin.Clients), "admin.clients")
	add(c.Log.Level != old.Log.Level, "log.level")
	add(c.Log.Format != old.Log.Format, "log.format")
	add(c.Log.FoldWindow != old.Log.FoldWindow, "log.fold_window")
	add(c.Servicebus.AllowlistFile != old.Servicebus.AllowlistFile, "servicebus.allowlist_file")
	add(c.Servicebus.Refresh != old.Servicebus.Refresh, "servicebus.refresh")
	// The policy takes new regions at once; the servicebus refresher keeps
	// fetching for the regions it started with.
	add(old.Servicebus.Refresh > 0 && !slices.Equal(c.Regions, old.Regions), "regions (servicebus.refresh)")
	return keys
}

// checkConfigFile refuses, at reload, a config path that is not a regular
// file (a FIFO would block the read) and a file with nothing but blanks and
// comments (a file caught half-written, not a wish for every default).
func checkConfigFile(path string) error {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil // Load reports it, naming the file
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("config file %s is not a regular file (%v); the running configuration stays", path, fi.Mode().Type())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return nil
		}
	}
	return fmt.Errorf("config file %s is empty (truncated while being written?); the running configuration stays", path)
}

// watch reports changes of the config file. It watches the file's
// directory, as editors and config managers replace files by renaming, and
// the directory of the file the path resolves to: a Kubernetes ConfigMap
// volume swaps a "..data" symlink and never touches the path itself, so any
// event that changes where the path leads counts as a change. Events are
// coalesced until they settle.
func (d *daemon) watch() (<-chan struct{}, func()) {
	out := make(chan struct{}, 1)
	file := d.loader.File()
	if file == "" {
		return out, func() {}
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn().Str("error", err.Error()).Str("msg", "cannot watch the config file; reload with SIGHUP").Send()
		return out, func() {}
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		d.log.Warn().Str("error", err.Error()).Str("msg", "cannot watch the config file; reload with SIGHUP").Send()
		w.Close()
		return out, func() {}
	}
	resolved, _ := filepath.EvalSymlinks(abs)
	if resolved != "" && filepath.Dir(resolved) != filepath.Dir(abs) {
		_ = w.Add(filepath.Dir(resolved))
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case <-stop:
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) == 0 {
					continue
				}
				name := filepath.Clean(ev.Name)
				now, _ := filepath.EvalSymlinks(abs)
				if name == abs || name == resolved || now != resolved {
					if now != resolved {
						if now != "" && filepath.Dir(now) != filepath.Dir(abs) {
							_ = w.Add(filepath.Dir(now))
						}
						resolved = now
					}
					timer.Reset(reloadSettle)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				d.log.Warn().Str("error", err.Error()).Str("msg", "config file watch").Send()
			case <-timer.C:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, func() {
		close(stop)
		w.Close()
		<-done
	}
}
