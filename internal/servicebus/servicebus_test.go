package servicebus

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arcfence/arcfence/internal/testpki"
	"github.com/rs/zerolog"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	tests := []struct {
		file    string
		want    []string
		ignored int
		wantErr string
	}{
		{file: "eastus2.json", want: []string{
			"azgnrelay-eastus2-l1.servicebus.windows.net", "azgnrelay-eastus2-l2.servicebus.windows.net",
			"azgnrelay-eastus2-l3.servicebus.windows.net", "azgnrelay-eastus2-l4.servicebus.windows.net",
			"guestnotificationservice-eastus2-sb1.servicebus.windows.net"}},
		{file: "messy.json", ignored: 15, want: []string{
			"azgnrelay-westeurope-l1.servicebus.windows.net", "azgnrelay-westeurope-l2.servicebus.windows.net",
			"azgnrelay-westeurope-l3.servicebus.windows.net", "xn--bcher-kva.servicebus.windows.net"}},
		{file: "empty.json", wantErr: "no servicebus host names"},
		{file: "junk-only.json", wantErr: "no servicebus host names"},
		{file: "html.txt", wantErr: "not a JSON array"},
		{file: "object.json", wantErr: "not a JSON array"},
		{file: "truncated.json", wantErr: "not a JSON array"},
		{file: "zero-bytes.json", wantErr: "not a JSON array"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, ignored, err := parse(readTestdata(t, tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want %q", err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("names %v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("names = %q\nwant %q", got, tt.want)
			}
			if ignored != tt.ignored {
				t.Fatalf("ignored = %d; want %d", ignored, tt.ignored)
			}
		})
	}
}

func TestParseEmptyIsErrEmpty(t *testing.T) {
	if _, err := Parse([]byte(`[]`)); !errors.Is(err, ErrEmpty) {
		t.Fatalf("err = %v; want ErrEmpty", err)
	}
}

func TestParseLimits(t *testing.T) {
	big := make([]byte, MaxAnswerBytes+1)
	if _, err := Parse(big); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("oversized answer: err = %v", err)
	}
	many := "[" + strings.Repeat(`"a.servicebus.windows.net",`, MaxNames) + `"b.servicebus.windows.net"]`
	if _, err := Parse([]byte(many)); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("too many entries: err = %v", err)
	}
}

func TestReadFile(t *testing.T) {
	names, err := ReadFile(filepath.Join("testdata", "eastus2.json"))
	if err != nil || len(names) != 5 {
		t.Fatalf("ReadFile = %v, %v", names, err)
	}
	_, err = ReadFile(filepath.Join("testdata", "html.txt"))
	if err == nil || !strings.Contains(err.Error(), "servicebus.allowlist_file") || !strings.Contains(err.Error(), "html.txt") {
		t.Fatalf("bad file: err = %v; want the key and the file named", err)
	}
	_, err = ReadFile(filepath.Join(t.TempDir(), "missing.json"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	names, _ := Parse(readTestdata(t, "messy.json"))
	again, err := Parse(Marshal(names))
	if err != nil || !slices.Equal(names, again) {
		t.Fatalf("round trip: %v, %v; want %v", again, err, names)
	}
	path := filepath.Join(t.TempDir(), "sb.json")
	if err := WriteFile(path, names); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(path); err != nil || !slices.Equal(got, names) {
		t.Fatalf("WriteFile/ReadFile: %v, %v", got, err)
	}
}

func TestURL(t *testing.T) {
	got := URL("", "East US 2")
	want := "https://guestnotificationservice.azure.com/urls/allowlist?api-version=2020-01-01&location=eastus2"
	if got != want {
		t.Fatalf("URL = %s; want %s", got, want)
	}
}

// stub is a loopback HTTPS server posing as guestnotificationservice.azure.com
// with a certificate from a test CA; answers are set per region.
type stub struct {
	srv    *httptest.Server
	client *http.Client

	mu      sync.Mutex
	answers map[string]func(w http.ResponseWriter) // by location
	hits    int
}

func newStub(t *testing.T) *stub {
	t.Helper()
	ca := testpki.NewCA(t)
	s := &stub{answers: map[string]func(http.ResponseWriter){}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits++
		f := s.answers[r.URL.Query().Get("location")]
		s.mu.Unlock()
		if r.URL.Path != "/urls/allowlist" || r.URL.Query().Get("api-version") != APIVersion || f == nil {
			http.Error(w, "no such region", http.StatusNotFound)
			return
		}
		f(w)
	}))
	s.srv.TLS = ca.ServerConfig(t, "guestnotificationservice.azure.com")
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are the point of some tests
	s.srv.StartTLS()
	d := testpki.NewDialer()
	d.Map("guestnotificationservice.azure.com:443", s.srv.Listener.Addr().String())
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}
	s.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		s.srv.Close()
	})
	return s
}

func (s *stub) set(region string, f func(w http.ResponseWriter)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[region] = f
}

func serveFile(t *testing.T, name string) func(http.ResponseWriter) {
	data := readTestdata(t, name)
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	}
}

func serveStatus(code int) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { http.Error(w, "upstream trouble\n\x00", code) }
}

func TestFetch(t *testing.T) {
	s := newStub(t)
	s.set("eastus2", serveFile(t, "eastus2.json"))
	s.set("westeurope", serveFile(t, "messy.json"))
	s.set("westus", serveFile(t, "html.txt"))
	s.set("northeurope", serveFile(t, "empty.json"))
	s.set("uksouth", serveStatus(http.StatusServiceUnavailable))
	ctx := context.Background()

	tests := []struct {
		region  string
		n       int
		wantErr string
	}{
		{region: "East US 2", n: 5},
		{region: "westeurope", n: 4},
		{region: "westus", wantErr: "not a JSON array"},
		{region: "northeurope", wantErr: "no servicebus host names"},
		{region: "uksouth", wantErr: "503 Service Unavailable: upstream trouble"},
		{region: "japaneast", wantErr: "404"},
	}
	for _, tt := range tests {
		t.Run(tt.region, func(t *testing.T) {
			names, err := Fetch(ctx, s.client, tt.region)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(names) != tt.n {
				t.Fatalf("Fetch = %v, %v; want %d names", names, err, tt.n)
			}
		})
	}
}

func TestFetchWrongCertificate(t *testing.T) {
	s := newStub(t)
	s.set("eastus2", serveFile(t, "eastus2.json"))
	// A client that trusts another CA must refuse the stub's certificate.
	other := testpki.NewCA(t)
	d := testpki.NewDialer()
	d.Map("guestnotificationservice.azure.com:443", s.srv.Listener.Addr().String())
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: other.Pool}}
	defer tr.CloseIdleConnections()
	_, err := Fetch(context.Background(), &http.Client{Transport: tr, Timeout: 10 * time.Second}, "eastus2")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v; want a certificate error", err)
	}
}

// TestRefresher drives the refresher tick by tick: a good answer updates, a
// malformed or failing one keeps the last good list, a changed one updates again.
func TestRefresher(t *testing.T) {
	s := newStub(t)
	ticks := make(chan chan time.Time)
	updates := make(chan []string, 10)
	file := filepath.Join(t.TempDir(), "servicebus.json")
	r, err := NewRefresher(RefresherConfig{
		Regions: []string{"eastus2", "westeurope"}, Period: time.Hour, Client: s.client,
		Initial:  []string{"old.servicebus.windows.net"},
		OnUpdate: func(n []string) { updates <- n },
		File:     file,
		Log:      zerolog.New(zerolog.NewTestWriter(t)),
		After: func(d time.Duration) <-chan time.Time {
			if d != time.Hour {
				t.Errorf("period %v", d)
			}
			c := make(chan time.Time, 1)
			ticks <- c
			return c
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-ticks:
		default:
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()
	// step fires one tick and waits until Run is back waiting for the next.
	next := func() chan time.Time {
		select {
		case c := <-ticks:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("refresher is not waiting for a tick")
			return nil
		}
	}
	tick := next()
	step := func() {
		tick <- time.Now()
		tick = next()
	}
	noUpdate := func(what string) {
		select {
		case n := <-updates:
			t.Fatalf("%s: OnUpdate(%v); want the last good list kept", what, n)
		default:
		}
	}

	if got := r.Names(); !slices.Equal(got, []string{"old.servicebus.windows.net"}) {
		t.Fatalf("initial Names = %v", got)
	}

	s.set("eastus2", serveFile(t, "eastus2.json"))
	s.set("westeurope", serveFile(t, "messy.json"))
	step()
	var good []string
	select {
	case good = <-updates:
	default:
		t.Fatal("no update after a good answer")
	}
	if len(good) != 9 || !slices.IsSorted(good) {
		t.Fatalf("merged list = %v", good)
	}
	if saved, err := ReadFile(file); err != nil || !slices.Equal(saved, good) {
		t.Fatalf("saved file = %v, %v", saved, err)
	}

	step() // same answers: no update
	noUpdate("unchanged answer")

	for _, bad := range []struct {
		name string
		f    func(http.ResponseWriter)
	}{
		{"malformed", serveFile(t, "truncated.json")},
		{"html", serveFile(t, "html.txt")},
		{"empty", serveFile(t, "empty.json")},
		{"503", serveStatus(http.StatusServiceUnavailable)},
	} {
		s.set("westeurope", bad.f)
		step()
		noUpdate(bad.name)
		if got := r.Names(); !slices.Equal(got, good) {
			t.Fatalf("%s: Names = %v; want the last good list", bad.name, got)
		}
		if saved, _ := ReadFile(file); !slices.Equal(saved, good) {
			t.Fatalf("%s: the saved file changed to %v", bad.name, saved)
		}
	}

	s.set("westeurope", func(w http.ResponseWriter) {
		w.Write([]byte(`["azgnrelay-westeurope-l7.servicebus.windows.net"]`))
	})
	step()
	select {
	case n := <-updates:
		if len(n) != 6 || !slices.Contains(n, "azgnrelay-westeurope-l7.servicebus.windows.net") {
			t.Fatalf("second update = %v", n)
		}
	default:
		t.Fatal("no update after a changed answer")
	}
}

func TestNewRefresherErrors(t *testing.T) {
	ok := func([]string) {}
	for _, c := range []RefresherConfig{
		{Period: time.Hour, OnUpdate: ok},
		{Regions: []string{"eastus2"}, OnUpdate: ok},
		{Regions: []string{"eastus2"}, Period: time.Hour},
	} {
		if _, err := NewRefresher(c); err == nil {
			t.Errorf("NewRefresher(%+v) accepted", c)
		}
	}
}
