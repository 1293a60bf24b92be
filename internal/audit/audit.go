// Package audit writes arcfence's refusal lines: one zerolog line at warn
// level per refused (or, in learn mode, would-be-refused) destination, with
// the field names of the design, for the proxy and the DNS filter alike.
//
// A Log made by NewWithOptions folds repeats: the first refusal of a
// (component, client, host, port or qtype, reason) is written at once, and
// the repeats that follow within the fold window become one summary line
// with count, first_seen and last_seen, written when the window ends (or at
// Close). Lines are written by the Log's own goroutine, so a caller of
// Refused never waits on the log's writer; counts are never dropped.
//
// The DNS filter's failed exchanges with its upstreams (UpstreamFailed) are
// folded the same way, by (upstream, proto, cause): an upstream outage is one
// warn line at once, then one summary line with counts per window.
package audit

import (
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

// Field names of refusal lines; users' scripts and `learn report` rely on them.
const (
	FieldHost      = "host"
	FieldPort      = "port"
	FieldQType     = "qtype"
	FieldClient    = "client"
	FieldReason    = "reason"
	FieldComponent = "component"
	FieldMode      = "mode"
	FieldProfile   = "profile"
	FieldCount     = "count"
	FieldFirstSeen = "first_seen"
	FieldLastSeen  = "last_seen"
	FieldMsg       = "msg"
	MsgDenied      = "denied"
	MsgWouldDeny   = "would deny"
)

// Fields and msg of DNS upstream failure lines.
const (
	// MsgUpstreamFailed is the msg of a DNS upstream failure line.
	MsgUpstreamFailed = "dns upstream failed"
	// FieldUpstream is the upstream resolver, host:port.
	FieldUpstream = "upstream"
	// FieldProto is the transport of the failed exchange, udp or tcp.
	FieldProto = "proto"
	// FieldCause is the short cause of the failure, e.g. "timeout".
	FieldCause = "cause"
)

// Further fields of refusal lines, added by this package.
const (
	// FieldPath is the URL path of a refused plain-HTTP request (the first
	// one seen for the line's key).
	FieldPath = "path"
	// FieldOfferingHint names the catalog offering that would admit the
	// destination when added to the config.
	FieldOfferingHint = "offering_hint"
	// FieldFeatureHint names the feature that would admit it.
	FieldFeatureHint = "feature_hint"
	// FieldRegionHint names the region to add when that is what is missing.
	FieldRegionHint = "region_hint"
	// FieldRevisionHint names another catalog revision that lists the
	// destination when the configured one does not ("in catalog revision R").
	FieldRevisionHint = "revision_hint"
	// FieldUnitemized marks a line that counts refusals whose destinations
	// could not be kept because the writer fell behind (see Options.MaxPending).
	FieldUnitemized = "unitemized"
	// FieldSummary is true on summary lines (the ones with count).
	FieldSummary = "summary"
	// FieldConn is the short id of the client connection a line is about
	// (the proxy's lines). A summary line carries the connection of the
	// first repeat it counts, and FieldLastConn that of the last.
	FieldConn = "conn"
	// FieldLastConn is the connection of the last repeat a summary line
	// counts.
	FieldLastConn = "last_conn"
)

// Components.
const (
	ComponentProxy = "proxy"
	ComponentDNS   = "dns"
)

// Defaults of Options.
const (
	// DefaultMaxKeys bounds the keys tracked for folding.
	DefaultMaxKeys = 10000
	// DefaultMaxPending bounds the lines waiting for the writer.
	DefaultMaxPending = 65536
	// DefaultMaxLearned bounds the learned set.
	DefaultMaxLearned = 10000
)

// Event is one refusal.
type Event struct {
	// Component is ComponentProxy or ComponentDNS.
	Component string
	// Client is the client's IP address, without port.
	Client string
	// Host is the destination name or address, normalized where it was valid.
	Host string
	// Port is the destination port (proxy lines).
	Port int
	// QType is the query type, e.g. "A" (DNS lines; replaces Port).
	QType string
	// Reason is why the destination was refused.
	Reason policy.Reason
	// Mode is the running mode, "enforce" or "learn".
	Mode string
	// Profile is the name of the profile that decided ("" = none: the
	// client is in no profile, or the component does not pick one). It is
	// part of the folding key.
	Profile string
	// Proceeded is true when learn mode let the destination through: the
	// line then says "would deny".
	Proceeded bool
	// Path is the URL path of a plain-HTTP request ("" for tunnels). It is
	// logged but is not part of the folding key.
	Path string
	// Conn is the short id of the client connection ("" for none, as on
	// DNS lines). It is logged but is not part of the folding key.
	Conn string
}

// UpstreamFailure is one failed exchange between the DNS filter and an
// upstream resolver.
type UpstreamFailure struct {
	// Upstream is the resolver's host:port.
	Upstream string
	// Proto is "udp" or "tcp".
	Proto string
	// Cause is a short cause from a small set ("timeout", "connection
	// refused", ...): it is part of the folding key, so it must not carry
	// per-connection details such as local ports.
	Cause string
}

// Options configure a folding Log. The zero value means the defaults.
type Options struct {
	// FoldWindow is the window in which repeats are folded; 0 (or a
	// negative value) turns folding off: every refusal is its own line,
	// still written by the Log's goroutine. (log.fold_window's default
	// lives in internal/config.)
	FoldWindow time.Duration
	// MaxKeys bounds the keys tracked for folding; 0 means DefaultMaxKeys.
	// A new key beyond it writes the oldest key's summary early (nothing is
	// dropped).
	MaxKeys int
	// MaxPending bounds the lines waiting for the writer goroutine; 0 means
	// DefaultMaxPending. When the writer falls that far behind (a blocked
	// stderr), further refusals are still counted, by component, mode and
	// reason, and written as "unitemized" summary lines once it catches up.
	MaxPending int
	// Hint says what outside the config would admit a refused destination
	// (usually the running policy's Hint, loaded from an atomic pointer so
	// reloads apply). It is called from the Log's goroutine only, once per
	// line, for not-in-allowlist, port-not-allowed and path-not-allowed.
	// nil means no hint fields. profile is the refusing profile's name
	// ("" for none), so a named profile's line hints from its own policy.
	Hint func(profile string, d policy.Dest) policy.Hint
	// MaxLearned bounds the learned set of would-be-refused destinations
	// (learn mode); 0 means DefaultMaxLearned.
	MaxLearned int
	// Metrics, when non-nil, counts written lines and learned destinations.
	Metrics *metrics.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Kinds of lines a Log folds.
const (
	kindRefusal  uint8 = iota
	kindUpstream       // host is the upstream, qtype the proto, client the cause
)

// key is what folds: repeats of one key within the window share a line.
type key struct {
	component string
	client    string
	host      string
	port      int
	qtype     string
	reason    policy.Reason
	kind      uint8 // kindRefusal or kindUpstream (which reuses fields: see there)
	proceeded bool
	mode      string
	profile   string
}

// entry is a key's state within its window.
type entry struct {
	key
	path     string
	deadline time.Time
	count    int64 // repeats, the first not included
	first    time.Time
	last     time.Time
	// conn and lastConn are the connections of the first and the last
	// repeat.
	conn, lastConn string
}

const (
	recFirst uint8 = iota
	recSummary
	recUnitemized
)

// record is a line waiting for the writer.
type record struct {
	kind  uint8
	k     key
	path  string
	at    time.Time // event time of a first line
	count int64
	first time.Time
	last  time.Time
	// conn is the connection of a first line, or of a summary's first
	// repeat; lastConn that of a summary's last repeat.
	conn, lastConn string
}

type unitemizedKey struct {
	kind      uint8
	component string
	mode      string
	reason    policy.Reason
	proceeded bool
}

type unitemizedCount struct {
	count       int64
	first, last time.Time
}

// Log writes refusal lines. It is safe for concurrent use.
type Log struct {
	log  zerolog.Logger
	fold bool // made by NewWithOptions: lines go through the writer goroutine

	window     time.Duration // <= 0: no folding
	maxKeys    int
	maxPending int
	hint       func(string, policy.Dest) policy.Hint
	m          *metrics.Metrics
	now        func() time.Time

	mu         sync.Mutex
	closed     bool
	keys       map[key]*entry
	fifo       []*entry // entries in first-seen order (= deadline order)
	head       int      // fifo[head:] are live
	pending    []record
	unitemized map[unitemizedKey]*unitemizedCount

	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	learned *learnedSet
}

// New returns a Log writing to logger that does not fold: every refusal is
// its own line, written by the caller. It starts no goroutine, and Close is
// a no-op. `arcfence serve` uses NewWithOptions.
func New(logger zerolog.Logger) *Log {
	return &Log{log: logger}
}

// NewWithOptions returns a folding Log writing to logger (see the package
// documentation). It starts one writer goroutine; Close flushes the
// pending lines and stops it.
func NewWithOptions(logger zerolog.Logger, o Options) *Log {
	l := &Log{
		log:        logger,
		fold:       true,
		window:     o.FoldWindow,
		maxKeys:    o.MaxKeys,
		maxPending: o.MaxPending,
		hint:       o.Hint,
		m:          o.Metrics,
		now:        o.Now,
		keys:       map[key]*entry{},
		unitemized: map[unitemizedKey]*unitemizedCount{},
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	if l.maxKeys <= 0 {
		l.maxKeys = DefaultMaxKeys
	}
	if l.maxPending <= 0 {
		l.maxPending = DefaultMaxPending
	}
	if l.now == nil {
		l.now = time.Now
	}
	maxLearned := o.MaxLearned
	if maxLearned <= 0 {
		maxLearned = DefaultMaxLearned
	}
	l.learned = newLearnedSet(maxLearned)
	l.wg.Add(1)
	go l.run()
	return l
}

// Refused records one refusal. On a folding Log it only updates memory
// (the line is written by the Log's goroutine): it never waits on I/O. On a
// Log made by New, or after Close, it writes the line itself.
func (l *Log) Refused(ev Event) {
	l.record(key{component: ev.Component, client: ev.Client, host: ev.Host, port: ev.Port,
		qtype: ev.QType, reason: ev.Reason, mode: ev.Mode, proceeded: ev.Proceeded, profile: ev.Profile}, ev.Path, ev.Conn)
}

// UpstreamFailed records one failed exchange with a DNS upstream, at warn
// level, folded as Refused folds refusals (by upstream, proto and cause).
// Like Refused, it never waits on I/O on a folding Log.
func (l *Log) UpstreamFailed(u UpstreamFailure) {
	l.record(key{kind: kindUpstream, component: ComponentDNS, host: u.Upstream, qtype: u.Proto, client: u.Cause}, "", "")
}

// record folds one event of key k (path and conn: see Event).
func (l *Log) record(k key, path, conn string) {
	if !l.fold {
		l.writeDirect(k, path, conn)
		return
	}
	now := l.now()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.writeDirect(k, path, conn)
		return
	}
	if l.window > 0 {
		if e, ok := l.keys[k]; ok {
			if e.count == 0 {
				e.first, e.conn = now, conn
			}
			e.count++
			e.last, e.lastConn = now, conn
			l.mu.Unlock()
			return
		}
		if len(l.keys) >= l.maxKeys {
			l.evictOldestLocked()
		}
		e := &entry{key: k, path: path, deadline: now.Add(l.window)}
		l.keys[k] = e
		l.fifo = append(l.fifo, e)
	}
	l.queueLocked(record{kind: recFirst, k: k, path: path, at: now, conn: conn}, 1)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// queueLocked hands a record to the writer, or counts it as unitemized when
// the writer is too far behind. n is the number of refusals it stands for.
func (l *Log) queueLocked(r record, n int64) {
	if len(l.pending) < l.maxPending {
		l.pending = append(l.pending, r)
		return
	}
	uk := unitemizedKey{kind: r.k.kind, component: r.k.component, mode: r.k.mode, reason: r.k.reason, proceeded: r.k.proceeded}
	u := l.unitemized[uk]
	first, last := r.at, r.at
	if r.kind == recSummary {
		first, last = r.first, r.last
	}
	if u == nil {
		u = &unitemizedCount{first: first}
		l.unitemized[uk] = u
	}
	u.count += n
	u.last = last
}

// evictOldestLocked ends the oldest key's window early to make room.
func (l *Log) evictOldestLocked() {
	e := l.fifo[l.head]
	l.fifo[l.head] = nil
	l.head++
	l.endLocked(e)
	l.compactLocked()
}

// endLocked removes e and queues its summary when it has repeats.
func (l *Log) endLocked(e *entry) {
	delete(l.keys, e.key)
	if e.count > 0 {
		l.queueLocked(record{kind: recSummary, k: e.key, path: e.path, count: e.count, first: e.first, last: e.last,
			conn: e.conn, lastConn: e.lastConn}, e.count)
	}
}

func (l *Log) compactLocked() {
	if l.head > 1024 && l.head*2 > len(l.fifo) {
		n := copy(l.fifo, l.fifo[l.head:])
		clear(l.fifo[n:])
		l.fifo = l.fifo[:n]
		l.head = 0
	}
}

// run is the writer goroutine: it writes queued lines and ends windows.
func (l *Log) run() {
	defer l.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []record
	for {
		final := false
		select {
		case <-l.wake:
		case <-timer.C:
		case <-l.done:
			final = true
		}
		var next time.Time
		var unitemized []record
		l.mu.Lock()
		now := l.now()
		for l.head < len(l.fifo) {
			e := l.fifo[l.head]
			if !final && e.deadline.After(now) {
				next = e.deadline
				break
			}
			l.fifo[l.head] = nil
			l.head++
			l.endLocked(e)
		}
		l.compactLocked()
		batch, l.pending = l.pending, batch[:0]
		for uk, u := range l.unitemized {
			unitemized = append(unitemized, record{kind: recUnitemized,
				k:     key{kind: uk.kind, component: uk.component, mode: uk.mode, reason: uk.reason, proceeded: uk.proceeded},
				count: u.count, first: u.first, last: u.last})
			delete(l.unitemized, uk)
		}
		if final {
			l.closed = true
		}
		l.mu.Unlock()

		for i := range batch {
			l.emit(&batch[i])
		}
		clear(batch)
		for i := range unitemized {
			l.emit(&unitemized[i])
		}
		if final {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			d := next.Sub(l.now())
			if d < time.Millisecond {
				d = time.Millisecond
			}
			timer.Reset(d)
		} else {
			timer.Reset(time.Hour)
		}
	}
}

// emit writes one queued line and feeds the learned set.
func (l *Log) emit(r *record) {
	var h policy.Hint
	if l.hint != nil && r.kind != recUnitemized && r.k.kind == kindRefusal && hinted(r.k.reason) {
		h = l.hint(r.k.profile, policy.Dest{Host: r.k.host, Port: r.k.port, Path: r.path, Plain: r.path != ""})
	}
	if r.k.proceeded && r.kind != recUnitemized {
		n := r.count
		first, last := r.first, r.last
		if r.kind == recFirst {
			n, first, last = 1, r.at, r.at
		}
		added := l.learned.add(r.k, n, first, last, h)
		if added && l.m != nil {
			l.m.LearnedDestinations.Set(float64(l.learned.len()))
		}
	}
	e := l.log.Warn()
	if !e.Enabled() {
		return
	}
	if l.m != nil && r.k.kind == kindRefusal {
		l.m.RefusalLines.WithLabelValues(lineKinds[r.kind]).Inc()
	}
	switch {
	case r.kind == recUnitemized && r.k.kind == kindUpstream:
		e.Bool(FieldUnitemized, true).Str(FieldComponent, r.k.component)
	case r.kind == recUnitemized:
		e.Bool(FieldUnitemized, true).
			Str(FieldReason, r.k.reason.String()).
			Str(FieldComponent, r.k.component).
			Str(FieldMode, r.k.mode)
	default:
		writeKeyFields(e, r.k)
		if r.path != "" {
			e.Str(FieldPath, r.path)
		}
		if r.conn != "" {
			e.Str(FieldConn, r.conn)
		}
		if r.kind == recSummary && r.lastConn != "" {
			e.Str(FieldLastConn, r.lastConn)
		}
		writeHint(e, h)
	}
	if r.kind != recFirst {
		e.Bool(FieldSummary, true).
			Int64(FieldCount, r.count).
			Str(FieldFirstSeen, r.first.UTC().Format(time.RFC3339Nano)).
			Str(FieldLastSeen, r.last.UTC().Format(time.RFC3339Nano))
	}
	finish(e, r.k)
}

var lineKinds = [...]string{recFirst: "first", recSummary: "summary", recUnitemized: "unitemized"}

// hinted reports whether a refusal for r is one a config change could fix,
// so a hint is worth looking up.
func hinted(r policy.Reason) bool {
	switch r {
	case policy.NotInAllowlist, policy.PortNotAllowed, policy.PathNotAllowed:
		return true
	}
	return false
}

func writeHint(e *zerolog.Event, h policy.Hint) {
	if h.Offering != "" {
		e.Str(FieldOfferingHint, h.Offering)
	}
	if h.Feature != "" {
		e.Str(FieldFeatureHint, h.Feature)
	}
	if h.Region != "" {
		e.Str(FieldRegionHint, h.Region)
	}
	if h.Revision != "" {
		e.Str(FieldRevisionHint, h.Revision)
	}
}

// writeDirect writes k's line on the caller's goroutine (no folding).
func (l *Log) writeDirect(k key, path, conn string) {
	e := l.log.Warn()
	if !e.Enabled() {
		return
	}
	writeKeyFields(e, k)
	if path != "" {
		e.Str(FieldPath, path)
	}
	if conn != "" {
		e.Str(FieldConn, conn)
	}
	if l.hint != nil && k.kind == kindRefusal && hinted(k.reason) {
		writeHint(e, l.hint(k.profile, policy.Dest{Host: k.host, Port: k.port, Path: path, Plain: path != ""}))
	}
	finish(e, k)
}

// finish writes the line with its msg field. The field is written as "msg"
// whatever zerolog.MessageFieldName says, as the design names it.
func finish(e *zerolog.Event, k key) {
	switch {
	case k.kind == kindUpstream:
		e.Str(FieldMsg, MsgUpstreamFailed).Send()
	case k.proceeded:
		e.Str(FieldMsg, MsgWouldDeny).Send()
	default:
		e.Str(FieldMsg, MsgDenied).Send()
	}
}

func writeKeyFields(e *zerolog.Event, k key) {
	if k.kind == kindUpstream {
		e.Str(FieldUpstream, k.host).
			Str(FieldProto, k.qtype).
			Str(FieldCause, k.client).
			Str(FieldComponent, k.component)
		return
	}
	e.Str(FieldHost, k.host)
	if k.component == ComponentDNS {
		e.Str(FieldQType, k.qtype)
	} else {
		e.Int(FieldPort, k.port)
	}
	e.Str(FieldClient, k.client).
		Str(FieldReason, k.reason.String()).
		Str(FieldComponent, k.component).
		Str(FieldMode, k.mode)
	if k.profile != "" {
		e.Str(FieldProfile, k.profile)
	}
}

// Close writes every pending line, the summaries of open windows included,
// and stops the writer goroutine. Refused calls after Close write their line
// directly. Close is idempotent.
func (l *Log) Close() {
	if !l.fold {
		return
	}
	l.mu.Lock()
	if l.closed || l.done == nil {
		l.mu.Unlock()
		l.wg.Wait()
		return
	}
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.mu.Unlock()
	l.wg.Wait()
}
