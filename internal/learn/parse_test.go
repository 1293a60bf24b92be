package learn

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/policy"
)

func TestParseLine(t *testing.T) {
	ts := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		line string
		kind LineKind
		want Refusal
		err  string
	}{
		{name: "blank", line: "   ", kind: LineBlank},
		{name: "first line", kind: LineRefusal,
			line: `{"level":"warn","host":"a.example.com","port":443,"client":"10.0.0.1","reason":"not-in-allowlist","component":"proxy","mode":"enforce","offering_hint":"kubernetes","feature_hint":"cluster-connect","region_hint":"westeurope","msg":"denied","time":"2026-11-28T08:00:00Z"}`,
			want: Refusal{Component: "proxy", Host: "a.example.com", Port: 443, Client: "10.0.0.1", Reason: policy.NotInAllowlist,
				Mode: "enforce", Count: 1, FirstSeen: ts, LastSeen: ts, OfferingHint: "kubernetes", FeatureHint: "cluster-connect", RegionHint: "westeurope"}},
		{name: "summary line", kind: LineRefusal,
			line: `{"level":"warn","host":"a.example.com","port":8084,"client":"10.0.0.1","reason":"port-not-allowed","component":"proxy","mode":"learn","summary":true,"count":9999,"first_seen":"2026-11-28T08:00:00Z","last_seen":"2026-11-28T08:00:59.5Z","msg":"would deny"}`,
			want: Refusal{Component: "proxy", Host: "a.example.com", Port: 8084, Client: "10.0.0.1", Reason: policy.PortNotAllowed,
				Mode: "learn", WouldDeny: true, Summary: true, Count: 9999, FirstSeen: ts, LastSeen: ts.Add(59500 * time.Millisecond)}},
		{name: "dns line, message key, unix time", kind: LineRefusal,
			line: `{"level":"warn","host":"b.example.com","qtype":"AAAA","client":"10.0.0.2","reason":"not-in-allowlist","component":"dns","mode":"enforce","message":"denied","time":1795852800}`,
			want: Refusal{Component: "dns", Host: "b.example.com", QType: "AAAA", Client: "10.0.0.2", Reason: policy.NotInAllowlist,
				Mode: "enforce", Count: 1, FirstSeen: ts, LastSeen: ts}},
		{name: "path", kind: LineRefusal,
			line: `{"host":"microsoft.com","port":80,"path":"/x/y","reason":"path-not-allowed","component":"proxy","msg":"denied"}`,
			want: Refusal{Component: "proxy", Host: "microsoft.com", Port: 80, Path: "/x/y", Reason: policy.PathNotAllowed, Count: 1}},
		{name: "no component, port as string", kind: LineRefusal,
			line: `{"host":"c.example.com","port":"8443","reason":"not-in-allowlist","msg":"denied"}`,
			want: Refusal{Component: "proxy", Host: "c.example.com", Port: 8443, Reason: policy.NotInAllowlist, Count: 1}},
		{name: "unitemized", kind: LineRefusal,
			line: `{"unitemized":true,"reason":"not-in-allowlist","component":"proxy","mode":"enforce","summary":true,"count":12,"first_seen":"2026-11-28T08:00:00Z","last_seen":"2026-11-28T08:00:00Z","msg":"denied"}`,
			want: Refusal{Component: "proxy", Reason: policy.NotInAllowlist, Mode: "enforce", Unitemized: true, Summary: true, Count: 12, FirstSeen: ts, LastSeen: ts}},
		{name: "other message", line: `{"level":"info","msg":"proxy listening","addr":"127.0.0.1:3128"}`, kind: LineOther},
		{name: "no message", line: `{"level":"info"}`, kind: LineOther},
		{name: "console format", line: `8:00AM WRN denied host=a.example.com`, kind: LineBad, err: "not a JSON object"},
		{name: "truncated", line: `{"msg":"denied","host":"a`, kind: LineBad, err: "not a JSON object"},
		{name: "array", line: `[1,2]`, kind: LineBad, err: "not a JSON object"},
		{name: "no host", line: `{"msg":"denied","port":443,"reason":"not-in-allowlist"}`, kind: LineBad, err: "no host"},
		{name: "no port", line: `{"msg":"denied","host":"a.example.com","reason":"not-in-allowlist","component":"proxy"}`, kind: LineBad, err: "port"},
		{name: "port out of range", line: `{"msg":"denied","host":"a.example.com","port":70000,"reason":"not-in-allowlist"}`, kind: LineBad, err: "port"},
		{name: "no reason", line: `{"msg":"denied","host":"a.example.com","port":443}`, kind: LineBad, err: "no reason"},
		{name: "unknown reason", line: `{"msg":"denied","host":"a.example.com","port":443,"reason":"because"}`, kind: LineBad, err: "unknown reason"},
		{name: "unknown component", line: `{"msg":"denied","host":"a.example.com","port":443,"reason":"ip-literal","component":"smtp"}`, kind: LineBad, err: "component"},
		{name: "negative count", line: `{"msg":"denied","host":"a.example.com","port":443,"reason":"ip-literal","count":-1}`, kind: LineBad, err: "count"},
		{name: "fractional count", line: `{"msg":"denied","host":"a.example.com","port":443,"reason":"ip-literal","count":1.5}`, kind: LineBad, err: "count"},
		{name: "unitemized without count", line: `{"msg":"denied","unitemized":true,"reason":"ip-literal"}`, kind: LineBad, err: "count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, kind, err := ParseLine([]byte(tc.line))
			if kind != tc.kind {
				t.Fatalf("kind %d, want %d (err %v)", kind, tc.kind, err)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.FirstSeen.Equal(tc.want.FirstSeen) || !got.LastSeen.Equal(tc.want.LastSeen) {
				t.Errorf("times %v %v, want %v %v", got.FirstSeen, got.LastSeen, tc.want.FirstSeen, tc.want.LastSeen)
			}
			got.FirstSeen, got.LastSeen, tc.want.FirstSeen, tc.want.LastSeen = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReadCountsAndLongLines(t *testing.T) {
	var in bytes.Buffer
	in.WriteString(`{"msg":"denied","host":"a.example.com","port":443,"reason":"not-in-allowlist","component":"proxy"}` + "\n")
	in.WriteString("\n")
	in.WriteString(`{"msg":"denied","host":"` + strings.Repeat("x", MaxLineBytes+10) + `","port":443,"reason":"not-in-allowlist"}` + "\n")
	in.WriteString(`{"msg":"denied","host":"b.example.com","port":443,"reason":"not-in-allowlist","count":41,"summary":true}` + "\r\n")
	in.WriteString(`{"msg":"denied","host":"` + strings.Repeat("y", 100000) + `.example.com","port":443,"reason":"not-in-allowlist"}` + "\n")
	in.WriteString(`{"msg":"denied","host":"c.example.com","port":443,"reason":"not-in-allowlist"}`) // no final newline
	var st Stats
	var hosts []string
	if err := Read(&in, "mem", &st, func(r Refusal) { hosts = append(hosts, r.Host[:1]) }); err != nil {
		t.Fatal(err)
	}
	if st.Lines != 6 || st.Bad != 1 || st.RefusalLines != 4 || st.Refusals != 44 {
		t.Fatalf("%+v", st)
	}
	if strings.Join(hosts, "") != "abyc" {
		t.Fatalf("hosts %v", hosts)
	}
	if !strings.HasPrefix(st.BadSamples[0], "mem:3: line over") {
		t.Fatalf("%v", st.BadSamples)
	}
}

// canonical writes r back as an arcfence refusal line.
func canonical(r Refusal) []byte {
	m := map[string]any{audit.FieldReason: r.Reason.String(), audit.FieldComponent: r.Component,
		audit.FieldMode: r.Mode, audit.FieldClient: r.Client}
	if r.WouldDeny {
		m[audit.FieldMsg] = audit.MsgWouldDeny
	} else {
		m[audit.FieldMsg] = audit.MsgDenied
	}
	if r.Unitemized {
		m[audit.FieldUnitemized] = true
	} else {
		m[audit.FieldHost] = r.Host
		if r.Component == audit.ComponentDNS {
			m[audit.FieldQType] = r.QType
		} else {
			m[audit.FieldPort] = r.Port
		}
	}
	if r.Path != "" {
		m[audit.FieldPath] = r.Path
	}
	for k, v := range map[string]string{audit.FieldOfferingHint: r.OfferingHint, audit.FieldFeatureHint: r.FeatureHint, audit.FieldRegionHint: r.RegionHint} {
		if v != "" {
			m[k] = v
		}
	}
	if r.Summary {
		m[audit.FieldCount] = r.Count
	}
	b, _ := json.Marshal(m)
	return b
}

// FuzzParseLine: the parser never panics, a refusal it returns is sane,
// and writing it back as a line parses to the same refusal.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		`{"level":"warn","host":"a.example.com","port":443,"client":"10.0.0.1","reason":"not-in-allowlist","component":"proxy","mode":"enforce","msg":"denied","time":"2026-11-28T08:00:00Z"}`,
		`{"level":"warn","host":"a.example.com","port":443,"client":"10.0.0.1","reason":"not-in-allowlist","component":"proxy","mode":"learn","summary":true,"count":9999,"first_seen":"2026-11-28T08:00:00Z","last_seen":"2026-11-28T08:00:59Z","msg":"would deny"}`,
		`{"host":"b.example.com","qtype":"A","reason":"not-in-allowlist","component":"dns","message":"denied","time":1795852800}`,
		`{"unitemized":true,"reason":"ip-literal","component":"proxy","count":3,"msg":"denied"}`,
		`not json`, `{}`, `{"msg":"denied"}`, `{"msg":"denied","host":"x","port":1e400,"reason":"ip-literal"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, kind, err := ParseLine(line)
		if (kind == LineBad) != (err != nil) {
			t.Fatalf("kind %d with err %v", kind, err)
		}
		if kind != LineRefusal {
			return
		}
		if r.Count < 0 || r.Port < 0 || r.Port > 65535 || (!r.Unitemized && r.Host == "") || r.Reason == policy.ReasonNone {
			t.Fatalf("insane refusal %+v", r)
		}
		again, kind2, err := ParseLine(canonical(r))
		if kind2 != LineRefusal || err != nil {
			t.Fatalf("round trip: %d %v (%s)", kind2, err, canonical(r))
		}
		again.FirstSeen, again.LastSeen, r.FirstSeen, r.LastSeen = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if again != r {
			t.Fatalf("round trip\n got %+v\nwant %+v", again, r)
		}
		// Read over the same bytes agrees with ParseLine.
		var st Stats
		if err := Read(bytes.NewReader(line), "fuzz", &st, func(Refusal) {}); err != nil {
			t.Fatal(err)
		}
		if st.Refusals < r.Count && !bytes.ContainsAny(line, "\n") {
			t.Fatalf("Read counted %d, ParseLine %d", st.Refusals, r.Count)
		}
	})
}
