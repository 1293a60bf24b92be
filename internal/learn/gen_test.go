package learn

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/policy"
)

var update = flag.Bool("update", false, "rewrite the recorded logs under testdata/")

// recorded is the traffic behind testdata/servers-*.log: a `servers`
// config in eastus2 hit by Kubernetes, data-services, other-region and
// unknown destinations, guard refusals, and a line from an older config.
var recorded = []struct {
	ev audit.Event
	n  int
}{
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "eastus2.dp.kubernetesconfiguration.azure.com", Port: 443}, 500},
	{audit.Event{Component: "proxy", Client: "10.0.0.6", Host: "eastus2.dp.kubernetesconfiguration.azure.com", Port: 443}, 3},
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "mcr.microsoft.com", Port: 443}, 20},
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "eastus2.obo.arc.azure.com", Port: 8084}, 3},
	{audit.Event{Component: "proxy", Client: "10.0.0.7", Host: "arcdataservicesrow1.azurecr.io", Port: 443}, 4},
	{audit.Event{Component: "proxy", Client: "10.0.0.7", Host: "abc.ods.opinsights.azure.com", Port: 443}, 2},
	{audit.Event{Component: "proxy", Client: "10.0.0.8", Host: "telemetry.westeurope.arcdataservices.com", Port: 443}, 7},
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "westeurope.dp.kubernetesconfiguration.azure.com", Port: 443}, 1},
	{audit.Event{Component: "proxy", Client: "10.0.0.9", Host: "api.github.com", Port: 443}, 9},
	{audit.Event{Component: "proxy", Client: "10.0.0.9", Host: "downloads.example.net", Port: 8443}, 1},
	{audit.Event{Component: "proxy", Client: "10.0.0.9", Host: "203.0.113.5", Port: 443, Reason: policy.IPLiteral}, 2},
	{audit.Event{Component: "proxy", Client: "10.0.0.9", Host: "files.example.net", Port: 80, Path: "/pub/tools/agent.tar.gz"}, 1},
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "gbl.his.arc.azure.com", Port: 8443, Reason: policy.PortNotAllowed}, 2},
	{audit.Event{Component: "dns", Client: "10.0.0.5", Host: "eastus2.dp.kubernetesconfiguration.azure.com", QType: "A"}, 10},
	{audit.Event{Component: "dns", Client: "10.0.0.5", Host: "unknown.example.org", QType: "AAAA"}, 3},
	// Guards and the deny list: nothing to suggest.
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "internal.example.com", Port: 443, Reason: policy.PrivateAddress}, 2},
	{audit.Event{Component: "proxy", Client: "192.0.2.66", Host: "login.microsoftonline.com", Port: 443, Reason: policy.ClientNotAllowed}, 4},
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "login.windows.net", Port: 443, Reason: policy.SNIMismatch}, 1},
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "bad_name.example", Port: 443, Reason: policy.InvalidHost}, 1},
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "blocked.example.com", Port: 443, Reason: policy.ExplicitDeny}, 6},
	// Logged under an older config that lacked it: already allowed now.
	{audit.Event{Component: "proxy", Client: "10.0.0.5", Host: "pas.windows.net", Port: 443}, 5},
}

// TestGenerateRecordedLogs rewrites testdata/servers-{enforce,learn}.log
// with -update: the lines audit.Log writes for the traffic above, with a
// policy hint from the servers config, and a few lines of other kinds.
func TestGenerateRecordedLogs(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the recorded logs")
	}
	cfg := serversConfig()
	p, err := config.Compile(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"enforce", "learn"} {
		var buf bytes.Buffer
		logger := zerolog.New(&buf).With().Timestamp().Logger()
		logger.Info().Str("addr", "127.0.0.1:3128").Str("mode", mode).Msg("proxy listening")
		l := audit.NewWithOptions(logger, audit.Options{FoldWindow: time.Minute, Hint: audit.PolicyHint(func(string) *policy.Policy { return p })})
		for _, r := range recorded {
			ev := r.ev
			if ev.Reason == policy.ReasonNone {
				ev.Reason = policy.NotInAllowlist
			}
			ev.Mode = mode
			ev.Proceeded = mode == "learn" && ev.Reason.Learnable()
			for range r.n {
				l.Refused(ev)
			}
		}
		// Flush in the middle so other lines interleave, as in a real log.
		time.Sleep(10 * time.Millisecond)
		logger.Debug().Str("host", "login.microsoftonline.com").Int("port", 443).Int64("bytes_up", 1200).
			Int64("bytes_down", 5400).Msg("tunnel closed")
		l.Close()
		buf.WriteString("panic: this is not a log line\n")
		buf.WriteString(`{"level":"warn","host":"truncated.example.com","port":44` + "\n")
		buf.WriteString(`{"level":"warn","msg":"denied","host":"noport.example.com","reason":"not-in-allowlist","component":"proxy"}` + "\n")
		if err := os.WriteFile(filepath.Join("testdata", "servers-"+mode+".log"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
