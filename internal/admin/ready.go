package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/arcfence/arcfence/internal/metrics"
)

// Readiness is the state /readyz reports: arcfence is ready when every
// expected listener is up, a policy is loaded and the last reload (if any)
// succeeded. `arcfence serve` updates it; it is safe for concurrent use.
type Readiness struct {
	m *metrics.Metrics

	mu        sync.Mutex
	listeners map[string]bool
	loaded    bool
	hash      string
	loadedAt  time.Time
	reload    string // "", "ok" or "failed"
	reloadErr string
}

// Last-reload states of Status.LastReload.
const (
	ReloadNone   = "none"
	ReloadOK     = "ok"
	ReloadFailed = "failed"
)

// Status is a snapshot of Readiness, served as JSON by /readyz.
type Status struct {
	// Ready is the verdict: listeners up, policy loaded, last reload ok.
	Ready bool `json:"ready"`
	// Listeners maps each expected listener ("proxy", "dns", ...) to whether it is up.
	Listeners map[string]bool `json:"listeners"`
	// PolicyLoaded is true once a policy was compiled and is in use.
	PolicyLoaded bool `json:"policy_loaded"`
	// ConfigHash identifies the running configuration ("" before it is loaded).
	ConfigHash string `json:"config_hash,omitempty"`
	// LoadedAt is when the running configuration was loaded.
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// LastReload is "none", "ok" or "failed".
	LastReload string `json:"last_reload"`
	// LastReloadError is the error of a failed last reload.
	LastReloadError string `json:"last_reload_error,omitempty"`
	// Problems say, in words, why Ready is false.
	Problems []string `json:"problems,omitempty"`
}

// NewReadiness returns a not-ready state: no listener expected yet, no
// policy. m, when non-nil, gets the config and readiness gauges and the
// reload counters.
func NewReadiness(m *metrics.Metrics) *Readiness {
	r := &Readiness{m: m, listeners: map[string]bool{}}
	r.mu.Lock()
	r.publishLocked()
	r.mu.Unlock()
	return r
}

// Expect adds a listener that must be up before arcfence is ready (down
// until ListenerUp).
func (r *Readiness) Expect(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.listeners[name]; !ok {
		r.listeners[name] = false
	}
	r.publishLocked()
}

// ListenerUp marks an expected listener up (and expects it, if it was not).
func (r *Readiness) ListenerUp(name string) { r.setListener(name, true) }

// ListenerDown marks a listener down (at shutdown, or when it failed).
func (r *Readiness) ListenerDown(name string) { r.setListener(name, false) }

func (r *Readiness) setListener(name string, up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listeners[name] = up
	r.publishLocked()
}

// Loaded records the policy compiled at start: hash identifies its
// configuration (see Hash), at is when it was loaded.
func (r *Readiness) Loaded(hash string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setConfigLocked(hash, at)
	r.publishLocked()
}

// Reloaded records the outcome of a reload: err nil means the new policy
// (of hash, loaded at at) is in use; otherwise the old one stays and
// arcfence is not ready until a reload succeeds.
func (r *Readiness) Reloaded(err error, hash string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.reload, r.reloadErr = ReloadFailed, err.Error()
		if r.m != nil {
			r.m.Reloads.WithLabelValues("failed").Inc()
			r.m.ConfigReloadOK.Set(0)
		}
	} else {
		r.reload, r.reloadErr = ReloadOK, ""
		r.setConfigLocked(hash, at)
		if r.m != nil {
			r.m.Reloads.WithLabelValues("ok").Inc()
			r.m.ConfigReloadOK.Set(1)
		}
	}
	r.publishLocked()
}

func (r *Readiness) setConfigLocked(hash string, at time.Time) {
	r.loaded = true
	if r.m != nil {
		if r.hash != "" && r.hash != hash {
			r.m.ConfigInfo.DeleteLabelValues(r.hash)
		}
		r.m.ConfigInfo.WithLabelValues(hash).Set(1)
		r.m.ConfigLoadTime.Set(float64(at.UnixNano()) / 1e9)
	}
	r.hash, r.loadedAt = hash, at
}

// Status returns the current state.
func (r *Readiness) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statusLocked()
}

func (r *Readiness) statusLocked() Status {
	s := Status{Listeners: make(map[string]bool, len(r.listeners)), PolicyLoaded: r.loaded,
		ConfigHash: r.hash, LoadedAt: r.loadedAt, LastReload: r.reload, LastReloadError: r.reloadErr}
	if s.LastReload == "" {
		s.LastReload = ReloadNone
	}
	names := make([]string, 0, len(r.listeners))
	for n, up := range r.listeners {
		s.Listeners[n] = up
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !r.listeners[n] {
			s.Problems = append(s.Problems, "listener "+n+" is not up")
		}
	}
	if len(names) == 0 {
		s.Problems = append(s.Problems, "no listener is up yet")
	}
	if !r.loaded {
		s.Problems = append(s.Problems, "no policy loaded")
	}
	if r.reload == ReloadFailed {
		s.Problems = append(s.Problems, "last reload failed (the previous policy is still in use): "+r.reloadErr)
	}
	s.Ready = len(s.Problems) == 0
	return s
}

func (r *Readiness) publishLocked() {
	if r.m == nil {
		return
	}
	if r.statusLocked().Ready {
		r.m.Ready.Set(1)
	} else {
		r.m.Ready.Set(0)
	}
}

// Hash returns a short, stable identifier of a configuration value: the
// first 12 hex digits of the SHA-256 of its JSON encoding.
func Hash(cfg any) string {
	b, err := json.Marshal(cfg)
	if err != nil {
		return "unhashable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}
