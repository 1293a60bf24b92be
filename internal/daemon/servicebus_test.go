package daemon

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/internal/servicebus"
	"github.com/arcfence/arcfence/internal/testpki"
)

// TestServicebusRefresherWiring: with servicebus.refresh set, serve's
// refresher starts from the saved file, writes a new answer to it and asks
// for a reload; a bad answer leaves the file alone and asks for nothing.
func TestServicebusRefresherWiring(t *testing.T) {
	ca := testpki.NewCA(t)
	answer := `["azgnrelay-eastus2-l9.servicebus.windows.net"]`
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, answer)
	}))
	srv.TLS = ca.ServerConfig(t, "127.0.0.1")
	srv.StartTLS()
	defer srv.Close()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}
	defer tr.CloseIdleConnections()

	file := filepath.Join(t.TempDir(), "servicebus.json")
	if err := servicebus.WriteFile(file, []string{"old.servicebus.windows.net"}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Offerings = []string{"servers"}
	cfg.Features = []string{"ssh"}
	cfg.Servicebus.AllowlistFile = file
	rt, err := config.Build(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := newServicebusRefresher(rt, zerolog.Nop(), nil, servicebus.RefresherConfig{}); r != nil || err != nil {
		t.Fatalf("refresh 0: %v, %v; want nothing to run", r, err)
	}
	cfg.Servicebus.Refresh = time.Hour
	if rt, err = config.Build(&cfg); err != nil {
		t.Fatal(err)
	}
	changed := 0
	r, err := newServicebusRefresher(rt, zerolog.Nop(), func() { changed++ },
		servicebus.RefresherConfig{Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, BaseURL: srv.URL + "/urls/allowlist"})
	if err != nil || r == nil {
		t.Fatalf("newServicebusRefresher: %v", err)
	}
	if got := r.Names(); !slices.Equal(got, []string{"old.servicebus.windows.net"}) {
		t.Fatalf("initial names = %v", got)
	}
	if err := r.Refresh(context.Background()); err != nil || changed != 1 {
		t.Fatalf("Refresh: %v, changed %d", err, changed)
	}
	if got, _ := servicebus.ReadFile(file); !slices.Equal(got, []string{"azgnrelay-eastus2-l9.servicebus.windows.net"}) {
		t.Fatalf("file after refresh = %v", got)
	}
	mu.Lock()
	answer = `<html>oops</html>`
	mu.Unlock()
	if err := r.Refresh(context.Background()); err == nil || changed != 1 {
		t.Fatalf("bad answer: %v, changed %d", err, changed)
	}
	if got, _ := servicebus.ReadFile(file); !slices.Equal(got, []string{"azgnrelay-eastus2-l9.servicebus.windows.net"}) {
		t.Fatalf("file after a bad answer = %v", got)
	}
}
