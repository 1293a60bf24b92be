package servicebus

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Refresher re-fetches the allowlist of every configured region once per
// Period and hands the merged list to OnUpdate when it changed. A failed
// fetch (of any region) keeps the last good list: OnUpdate is not called and
// the error is logged. Create it with NewRefresher; Run owns its goroutine.
type Refresher struct {
	cfg RefresherConfig

	mu   sync.Mutex
	last []string
}

// RefresherConfig configures a Refresher.
type RefresherConfig struct {
	// Regions to fetch; the lists are merged. Required.
	Regions []string
	// Period between fetches; must be > 0.
	Period time.Duration
	// Client makes the calls; nil = http.DefaultClient. Give it a Timeout.
	Client *http.Client
	// BaseURL of the allowlist call; "" = DefaultBaseURL.
	BaseURL string
	// Initial is the list in force at start (e.g. from ReadFile); it is the
	// "last good" list until a fetch succeeds.
	Initial []string
	// OnUpdate receives each new list (sorted, without repeats) when it
	// differs from the last good one. Called from Run's goroutine; required.
	OnUpdate func(names []string)
	// File, when set, receives each new list (written atomically, as
	// Marshal renders it) so that a restart starts from it. A write failure
	// is logged and does not discard the list.
	File string
	// Log receives one line per fetch failure and per update.
	Log zerolog.Logger
	// After returns a channel that fires after d; nil = time.After. Tests
	// drive the refresher through it.
	After func(d time.Duration) <-chan time.Time
}

// NewRefresher checks cfg and returns a Refresher.
func NewRefresher(cfg RefresherConfig) (*Refresher, error) {
	if len(cfg.Regions) == 0 {
		return nil, errors.New("servicebus refresh: no regions")
	}
	if cfg.Period <= 0 {
		return nil, errors.New("servicebus refresh: period must be positive")
	}
	if cfg.OnUpdate == nil {
		return nil, errors.New("servicebus refresh: OnUpdate is nil")
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	return &Refresher{cfg: cfg, last: slices.Clone(cfg.Initial)}, nil
}

// Names returns the last good list. Safe for concurrent use.
func (r *Refresher) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.last)
}

// Run fetches after each Period until ctx is done, then returns nil (it has
// no failure of its own: failed fetches are logged and keep the last good
// list). The first fetch happens one Period after the start (the initial
// list comes from the saved file).
func (r *Refresher) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.cfg.After(r.cfg.Period):
		}
		r.Refresh(ctx)
	}
}

// Refresh fetches every region once now and applies the merged list if all
// fetches succeeded. It returns the error of the first failed fetch.
func (r *Refresher) Refresh(ctx context.Context) error {
	var merged []string
	for _, region := range r.cfg.Regions {
		names, err := FetchURL(ctx, r.cfg.Client, URL(r.cfg.BaseURL, region))
		if err != nil {
			if ctx.Err() == nil {
				r.cfg.Log.Error().Err(err).Str("component", "servicebus").Str("region", region).
					Int("kept", len(r.Names())).Msg("servicebus allowlist refresh failed; keeping the last good list")
			}
			return err
		}
		merged = append(merged, names...)
	}
	slices.Sort(merged)
	merged = slices.Compact(merged)

	r.mu.Lock()
	same := slices.Equal(merged, r.last)
	if !same {
		r.last = merged
	}
	r.mu.Unlock()
	if same {
		r.cfg.Log.Debug().Str("component", "servicebus").Int("names", len(merged)).Msg("servicebus allowlist unchanged")
		return nil
	}
	r.cfg.Log.Info().Str("component", "servicebus").Int("names", len(merged)).Msg("servicebus allowlist updated")
	if r.cfg.File != "" {
		if err := writeFileAtomic(r.cfg.File, Marshal(merged)); err != nil {
			r.cfg.Log.Error().Err(err).Str("component", "servicebus").Str("file", r.cfg.File).Msg("saving the servicebus allowlist failed")
		}
	}
	r.cfg.OnUpdate(slices.Clone(merged))
	return nil
}

// WriteFile saves names as an allowlist answer at path, atomically (a
// temporary file in the same directory, then a rename).
func WriteFile(path string, names []string) error {
	return writeFileAtomic(path, Marshal(names))
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
