package daemon

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/internal/servicebus"
)

// newServicebusRefresher returns what the daemon runs for
// servicebus.refresh: a Refresher that re-fetches the allowlist of the
// configured regions every period (directly: arcfence itself has the
// egress), saves each new list to servicebus.allowlist_file and then calls
// changed, which triggers a reload (config.Build reads the file). A failed
// fetch keeps the last good list. It returns nil when servicebus.refresh is
// 0. base supplies the client, base URL and clock (tests set them). Run it
// as a component: its Run(ctx) returns nil when ctx ends.
func newServicebusRefresher(rt *config.Runtime, log zerolog.Logger, changed func(), base servicebus.RefresherConfig) (*servicebus.Refresher, error) {
	if rt.ServicebusRefresh <= 0 {
		return nil, nil
	}
	if base.Client == nil {
		base.Client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			Proxy: nil, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, TLSHandshakeTimeout: 30 * time.Second}}
	}
	base.Regions = rt.Policy().Regions()
	base.Period = rt.ServicebusRefresh
	base.File = rt.ServicebusFile
	base.Initial = rt.ServicebusNames
	base.Log = log
	base.OnUpdate = func([]string) {
		if changed != nil {
			changed()
		}
	}
	return servicebus.NewRefresher(base)
}
