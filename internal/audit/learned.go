package audit

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/arcfence/arcfence/policy"
)

// maxLearnedClients bounds the client addresses kept per learned destination.
const maxLearnedClients = 8

// LearnedDest is one would-be-refused destination of learn mode.
type LearnedDest struct {
	// Component is "proxy" or "dns".
	Component string `json:"component"`
	// Host is the destination name or address.
	Host string `json:"host"`
	// Port is the destination port (proxy; 0 for DNS).
	Port int `json:"port,omitempty"`
	// QType is the query type (DNS).
	QType string `json:"qtype,omitempty"`
	// Reason is why enforce mode would refuse it.
	Reason string `json:"reason"`
	// Profile is the profile that decided it ("" = none).
	Profile string `json:"profile,omitempty"`
	// Count is the number of refusals seen, every one included.
	Count int64 `json:"count"`
	// FirstSeen and LastSeen bound the refusals seen.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Clients are the first few client addresses seen (at most 8).
	Clients []string `json:"clients"`
	// OfferingHint, FeatureHint and RegionHint say what would admit it.
	OfferingHint string `json:"offering_hint,omitempty"`
	FeatureHint  string `json:"feature_hint,omitempty"`
	RegionHint   string `json:"region_hint,omitempty"`
	// RevisionHint is another catalog revision that lists it.
	RevisionHint string `json:"revision_hint,omitempty"`
}

// Learned is the learned set as served at /learned.
type Learned struct {
	// Destinations are sorted by host, then port, qtype and reason.
	Destinations []LearnedDest `json:"destinations"`
	// Dropped counts refusals of destinations not kept because the set was
	// full (Options.MaxLearned).
	Dropped int64 `json:"dropped"`
}

type learnedKey struct {
	component string
	host      string
	port      int
	qtype     string
	reason    policy.Reason
	profile   string
}

type learnedSet struct {
	mu      sync.Mutex
	max     int
	m       map[learnedKey]*LearnedDest
	dropped int64
}

func newLearnedSet(max int) *learnedSet {
	return &learnedSet{max: max, m: map[learnedKey]*LearnedDest{}}
}

// add counts n refusals of k's destination; it reports whether the
// destination is new.
func (s *learnedSet) add(k key, n int64, first, last time.Time, h policy.Hint) bool {
	lk := learnedKey{component: k.component, host: k.host, port: k.port, qtype: k.qtype, reason: k.reason, profile: k.profile}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.m[lk]
	isNew := d == nil
	if isNew {
		if len(s.m) >= s.max {
			s.dropped += n
			return false
		}
		d = &LearnedDest{Component: k.component, Host: k.host, Port: k.port, QType: k.qtype,
			Reason: k.reason.String(), Profile: k.profile, FirstSeen: first, LastSeen: last, Clients: []string{}}
		s.m[lk] = d
	}
	d.Count += n
	if first.Before(d.FirstSeen) {
		d.FirstSeen = first
	}
	if last.After(d.LastSeen) {
		d.LastSeen = last
	}
	if k.client != "" && len(d.Clients) < maxLearnedClients && !slices.Contains(d.Clients, k.client) {
		d.Clients = append(d.Clients, k.client)
	}
	if h.Offering != "" || h.Feature != "" || h.Region != "" || h.Revision != "" {
		d.OfferingHint, d.FeatureHint, d.RegionHint, d.RevisionHint = h.Offering, h.Feature, h.Region, h.Revision
	}
	return isNew
}

func (s *learnedSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *learnedSet) snapshot() Learned {
	s.mu.Lock()
	out := Learned{Destinations: make([]LearnedDest, 0, len(s.m)), Dropped: s.dropped}
	for _, d := range s.m {
		c := *d
		c.Clients = slices.Clone(d.Clients)
		out.Destinations = append(out.Destinations, c)
	}
	s.mu.Unlock()
	slices.SortFunc(out.Destinations, func(a, b LearnedDest) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.QType, b.QType), cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Component, b.Component), cmp.Compare(a.Profile, b.Profile))
	})
	return out
}

// Learned returns the would-be-refused destinations seen so far (learn
// mode's refusals, those logged as "would deny"). A refusal shows up once
// the Log's goroutine has written its line; its repeats are counted when
// their summary line is written. A Log made by New keeps no set and returns
// an empty one.
func (l *Log) Learned() Learned {
	if l.learned == nil {
		return Learned{Destinations: []LearnedDest{}}
	}
	return l.learned.snapshot()
}

// hintPorts are the ports catalog rows use, tried in this order for a DNS
// refusal, which names no port.
var hintPorts = [...]int{443, 80, 8084}

// PolicyHint returns an Options.Hint asking the policy that current returns
// for the line's profile at the time of the line (so a reload applies;
// current may return nil, meaning no hint). For a destination without a
// port (a DNS refusal) it tries the ports catalog rows use: 443, 80, then
// 8084.
func PolicyHint(current func(profile string) *policy.Policy) func(string, policy.Dest) policy.Hint {
	return func(profile string, d policy.Dest) policy.Hint {
		p := current(profile)
		if p == nil {
			return policy.Hint{}
		}
		if d.Port != 0 {
			return p.Hint(d)
		}
		for _, port := range hintPorts {
			d.Port = port
			if h := p.Hint(d); h.Found() {
				return h
			}
		}
		return policy.Hint{}
	}
}
