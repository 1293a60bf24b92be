// Package learn turns arcfence's refusal logs into allowlist changes: it
// reads the JSON lines that `arcfence serve` writes (refusals, would-be
// refusals and their folded summaries), groups them by destination and
// works out, through the policy itself, which offering, feature, region or
// allow entry would admit each one. `arcfence learn report` prints it.
package learn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/policy"
)

// MaxLineBytes is the longest line Read parses; longer lines count as
// unparseable.
const MaxLineBytes = 1 << 20

// Refusal is one refusal line of an arcfence log.
type Refusal struct {
	// Component is "proxy" or "dns".
	Component string
	// Host is the refused name or address.
	Host string
	// Port is the refused port (0 on DNS lines).
	Port int
	// QType is the DNS query type (DNS lines).
	QType string
	// Path is the URL path of a refused plain-HTTP request, when logged.
	Path string
	// Client is the client address.
	Client string
	// Reason is the refusal reason.
	Reason policy.Reason
	// Mode is "enforce" or "learn".
	Mode string
	// Profile is the profile that decided ("" when the line names none).
	Profile string
	// WouldDeny is true for learn mode's "would deny" lines.
	WouldDeny bool
	// Count is the number of refusals the line stands for: 1 for a line
	// logged at once, the count field (repeats) for a summary line.
	Count int64
	// Summary is true for a folded summary line.
	Summary bool
	// Unitemized is true for a line that counts refusals without their
	// destinations (the log writer was behind); Host is then "".
	Unitemized bool
	// FirstSeen and LastSeen are the line's times: first_seen/last_seen of
	// a summary line, the time field otherwise (zero when absent).
	FirstSeen, LastSeen time.Time
	// Hints are the line's offering_hint, feature_hint, region_hint and
	// revision_hint.
	OfferingHint, FeatureHint, RegionHint, RevisionHint string
}

// LineKind classifies a log line.
type LineKind uint8

// Line kinds.
const (
	// LineBlank is an empty line.
	LineBlank LineKind = iota
	// LineRefusal is a refusal ("denied" or "would deny") line.
	LineRefusal
	// LineOther is a JSON log line of another kind (start-up, tunnel close...).
	LineOther
	// LineBad is a line that is not a JSON object, or a refusal line
	// missing a field or with a field of the wrong type.
	LineBad
)

// ParseLine parses one log line (without its newline). A LineBad result
// comes with an error saying what is wrong.
func ParseLine(line []byte) (Refusal, LineKind, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Refusal{}, LineBlank, nil
	}
	if line[0] != '{' {
		return Refusal{}, LineBad, errors.New("not a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return Refusal{}, LineBad, fmt.Errorf("not a JSON object: %w", err)
	}
	msg, ok := str(m, audit.FieldMsg)
	if !ok {
		msg, ok = str(m, "message")
	}
	if !ok || (msg != audit.MsgDenied && msg != audit.MsgWouldDeny) {
		return Refusal{}, LineOther, nil
	}
	var r Refusal
	r.WouldDeny = msg == audit.MsgWouldDeny
	bad := func(format string, a ...any) (Refusal, LineKind, error) {
		return Refusal{}, LineBad, fmt.Errorf("%s line: "+format, append([]any{msg}, a...)...)
	}
	reason, ok := str(m, audit.FieldReason)
	if !ok {
		return bad("no reason")
	}
	if r.Reason, ok = policy.ParseReason(reason); !ok {
		return bad("unknown reason %q", reason)
	}
	r.Component, _ = str(m, audit.FieldComponent)
	switch r.Component {
	case audit.ComponentProxy, audit.ComponentDNS:
	case "":
		if _, isDNS := m[audit.FieldQType]; isDNS {
			r.Component = audit.ComponentDNS
		} else {
			r.Component = audit.ComponentProxy
		}
	default:
		return bad("unknown component %q", r.Component)
	}
	r.Mode, _ = str(m, audit.FieldMode)
	r.Client, _ = str(m, audit.FieldClient)
	r.Profile, _ = str(m, audit.FieldProfile)
	r.Path, _ = str(m, audit.FieldPath)
	r.OfferingHint, _ = str(m, audit.FieldOfferingHint)
	r.FeatureHint, _ = str(m, audit.FieldFeatureHint)
	r.RegionHint, _ = str(m, audit.FieldRegionHint)
	r.RevisionHint, _ = str(m, audit.FieldRevisionHint)
	if b, ok := m[audit.FieldUnitemized]; ok && string(b) == "true" {
		r.Unitemized = true
	}
	if !r.Unitemized {
		if r.Host, ok = str(m, audit.FieldHost); !ok || r.Host == "" {
			return bad("no host")
		}
		if r.Component == audit.ComponentDNS {
			r.QType, _ = str(m, audit.FieldQType)
		} else {
			p, ok := num(m, audit.FieldPort)
			if !ok || p < 0 || p > 65535 {
				return bad("port missing or out of range")
			}
			r.Port = int(p)
		}
	}
	t := timeField(m, "time")
	r.FirstSeen, r.LastSeen = t, t
	r.Count = 1
	if _, ok := m[audit.FieldCount]; ok {
		c, ok := num(m, audit.FieldCount)
		if !ok || c < 0 {
			return bad("count is not a non-negative integer")
		}
		r.Count, r.Summary = c, true
		if fs := timeField(m, audit.FieldFirstSeen); !fs.IsZero() {
			r.FirstSeen = fs
		}
		if ls := timeField(m, audit.FieldLastSeen); !ls.IsZero() {
			r.LastSeen = ls
		}
	} else if r.Unitemized {
		return bad("unitemized line without count")
	}
	return r, LineRefusal, nil
}

func str(m map[string]json.RawMessage, k string) (string, bool) {
	raw, ok := m[k]
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// num reads an integer field, written as a JSON number or a decimal string.
func num(m map[string]json.RawMessage, k string) (int64, bool) {
	raw, ok := m[k]
	if !ok {
		return 0, false
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err == nil {
		if f != math.Trunc(f) || f > 1<<53 || f < -(1<<53) {
			return 0, false
		}
		return int64(f), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// timeField reads an RFC 3339 string or a Unix time in seconds (or
// milliseconds, microseconds or nanoseconds when that large); zero when
// absent or unreadable.
func timeField(m map[string]json.RawMessage, k string) time.Time {
	if s, ok := str(m, k); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
		return time.Time{}
	}
	raw, ok := m[k]
	if !ok {
		return time.Time{}
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}
	}
	switch {
	case f > 1e17:
		return time.Unix(0, int64(f)).UTC()
	case f > 1e14:
		return time.UnixMicro(int64(f)).UTC()
	case f > 1e11:
		return time.UnixMilli(int64(f)).UTC()
	default:
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
}

// Stats counts the lines read.
type Stats struct {
	// Lines is the number of lines read, blank ones included.
	Lines int `json:"lines"`
	// RefusalLines is the number of refusal lines.
	RefusalLines int `json:"refusal_lines"`
	// Refusals is the number of refusals they stand for (summary counts included).
	Refusals int64 `json:"refusals"`
	// Unitemized is the number of refusals logged without a destination.
	Unitemized int64 `json:"unitemized"`
	// Other is the number of other JSON log lines.
	Other int `json:"other_lines"`
	// Bad is the number of unparseable lines.
	Bad int `json:"unparseable_lines"`
	// BadSamples are the first few unparseable lines' errors, with the
	// source and line number.
	BadSamples []string `json:"unparseable_samples,omitempty"`
}

const maxBadSamples = 5

// Read parses every line of r (name labels it in BadSamples), handing each
// refusal to fn. It fails only when r fails; bad lines are counted in st.
func Read(r io.Reader, name string, st *Stats, fn func(Refusal)) error {
	br := bufio.NewReaderSize(r, 64*1024)
	lineNo := 0
	var long []byte // the start of a line longer than br's buffer
	started, tooLong := false, false
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			started = true
			if !tooLong {
				if len(long)+len(chunk) > MaxLineBytes {
					tooLong, long = true, nil
				} else {
					long = append(long, chunk...)
				}
			}
			continue
		}
		if len(chunk) > 0 || started {
			line := chunk
			if started && !tooLong {
				line = append(long, chunk...)
			}
			lineNo++
			st.Lines++
			if tooLong || len(bytes.TrimRight(line, "\r\n")) > MaxLineBytes {
				st.bad(name, lineNo, fmt.Errorf("line over %d bytes", MaxLineBytes))
			} else {
				ref, kind, perr := ParseLine(line)
				switch kind {
				case LineRefusal:
					st.RefusalLines++
					st.Refusals += ref.Count
					if ref.Unitemized {
						st.Unitemized += ref.Count
					}
					fn(ref)
				case LineOther:
					st.Other++
				case LineBad:
					st.bad(name, lineNo, perr)
				}
			}
			long, started, tooLong = long[:0], false, false
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

func (st *Stats) bad(name string, line int, err error) {
	st.Bad++
	if len(st.BadSamples) < maxBadSamples {
		st.BadSamples = append(st.BadSamples, fmt.Sprintf("%s:%d: %v", name, line, err))
	}
}
