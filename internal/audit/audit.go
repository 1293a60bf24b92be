// Package audit writes arcfence's refusal lines: one zerolog line at warn
// level per refused (or, in learn mode, would-be-refused) destination, with
// the field names of the design, for the proxy and the DNS filter alike.
package audit

import (
	"github.com/rs/zerolog"

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
	FieldCount     = "count"
	FieldFirstSeen = "first_seen"
	FieldLastSeen  = "last_seen"
	MsgDenied      = "denied"
	MsgWouldDeny   = "would deny"
)

// Components.
const (
	ComponentProxy = "proxy"
	ComponentDNS   = "dns"
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
	// Proceeded is true when learn mode let the destination through: the
	// line then says "would deny".
	Proceeded bool
}

// Log writes refusal lines. It is safe for concurrent use.
type Log struct {
	log zerolog.Logger
}

// New returns a Log writing to logger.
func New(logger zerolog.Logger) *Log {
	return &Log{log: logger}
}

// Refused records one refusal.
func (l *Log) Refused(ev Event) {
	e := l.log.Warn()
	if !e.Enabled() {
		return
	}
	writeFields(e, ev)
	if ev.Proceeded {
		e.Msg(MsgWouldDeny)
	} else {
		e.Msg(MsgDenied)
	}
}

func writeFields(e *zerolog.Event, ev Event) {
	e.Str(FieldHost, ev.Host)
	if ev.Component == ComponentDNS {
		e.Str(FieldQType, ev.QType)
	} else {
		e.Int(FieldPort, ev.Port)
	}
	e.Str(FieldClient, ev.Client).
		Str(FieldReason, ev.Reason.String()).
		Str(FieldComponent, ev.Component).
		Str(FieldMode, ev.Mode)
}

// Close flushes pending lines. Refused must not be called after Close.
func (l *Log) Close() {}
