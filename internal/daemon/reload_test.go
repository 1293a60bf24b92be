//go:build unix

package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// count counts the log lines holding every one of parts.
func (s *served) count(parts ...string) int {
	n := 0
	for _, l := range strings.Split(s.logs.String(), "\n") {
		all := l != ""
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			n++
		}
	}
	return n
}

// debugConfig is fileConfig at log level debug with extra top-level YAML.
func debugConfig(proxyAddr, origin, allowExtra, yaml string) string {
	return fileConfig(proxyAddr, origin, allowExtra) + "log: {level: debug}\n" + yaml
}

// TestReloadUnchangedSwapsNothing: a file event whose content compiles to
// the running configuration's hash swaps nothing and says so in one debug
// line; a changed file is swapped in and logged at info.
func TestReloadUnchangedSwapsNothing(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	file := filepath.Join(t.TempDir(), "arcfence.yaml")
	base := debugConfig(proxyAddr, origin, "", "")
	writeAtomic(t, file, base)
	s := serveFile(t, file, proxyAddr, origin)

	writeAtomic(t, file, "# a comment changes nothing that compiles\n"+base)
	eventually(t, "the unchanged line", func() bool { return s.count(`"msg":"config unchanged"`) == 1 })
	if n := s.reloads(); n != 0 {
		t.Fatalf("%d config reloaded lines for an unchanged config", n)
	}
	if n := s.count(`"msg":"config unchanged"`, `"level":"debug"`); n != 1 {
		t.Fatalf("the unchanged line is not at debug level:\n%s", s.logs.String())
	}
	writeAtomic(t, file, debugConfig(proxyAddr, origin, `, "example.org"`, ""))
	eventually(t, "the changed file to apply", func() bool { return s.reloads() == 1 })
	if st, _ := connectStatus(t, proxyAddr, "example.org:443"); st == 403 {
		t.Fatal("the changed config was not swapped in")
	}
}

// TestReloadBadFileLoggedOnce: a bad file is reported at error level once;
// the same content again (another event, another SIGHUP) only at debug
// level; other bad content is reported again.
func TestReloadBadFileLoggedOnce(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	file := filepath.Join(t.TempDir(), "arcfence.yaml")
	writeAtomic(t, file, debugConfig(proxyAddr, origin, "", ""))
	s := serveFile(t, file, proxyAddr, origin)
	failed := func() int { return s.count(`"msg":"config reload failed`) }
	errors := func() int { return s.count(`"msg":"config reload failed`, `"level":"error"`) }

	bad := debugConfig(proxyAddr, origin, "", "sni: sometimes\n")
	writeAtomic(t, file, bad)
	eventually(t, "the failed reload", func() bool { return failed() == 1 })
	for i := 2; i <= 3; i++ {
		writeAtomic(t, file, bad) // the same bad content, a new event
		eventually(t, "the repeated failure", func() bool { return failed() == i })
	}
	if n := errors(); n != 1 {
		t.Fatalf("%d error lines for one bad file content, want 1:\n%s", n, s.logs.String())
	}
	writeAtomic(t, file, debugConfig(proxyAddr, origin, "", "sni: never\n"))
	eventually(t, "the new bad content", func() bool { return failed() == 4 })
	if n := errors(); n != 2 {
		t.Fatalf("%d error lines after other bad content, want 2", n)
	}
	if !s.originAllowed() {
		t.Fatal("the running configuration changed")
	}
}

// TestReloadInPlaceWriteAppliedAtClose (issue 13 finding 3): a file
// rewritten in place — truncated, part written, the rest 0.8 s later — is
// not applied while it is being written (its first part is valid YAML
// that drops a deny entry), and is applied once its writer closes it.
func TestReloadInPlaceWriteAppliedAtClose(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	file := filepath.Join(t.TempDir(), "arcfence.yaml")
	deny := "deny: [management.azure.com]\n"
	writeAtomic(t, file, fileConfig(proxyAddr, origin, "")+deny)
	s := serveFile(t, file, proxyAddr, origin)
	denied := func() bool {
		_, r := connectStatus(t, proxyAddr, "management.azure.com:443")
		return r == "explicit-deny"
	}
	if !denied() {
		t.Fatal("deny entry not applied at start")
	}

	full := fileConfig(proxyAddr, origin, `, "example.org"`) + deny
	part := full[:strings.Index(full, "deny:")]
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(part); err != nil {
		t.Fatal(err)
	}
	// While the writer holds the file open, the half-written file must not
	// apply: the deny stays for the whole gap (polled, bounded).
	for end := time.Now().Add(800 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if !denied() {
			f.Close()
			t.Fatalf("a half-written file was applied: the deny entry is gone\n%s", s.logs.String())
		}
	}
	if _, err := f.WriteString(full[len(part):]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the closed file to apply", func() bool { return s.reloads() == 1 })
	if !denied() {
		t.Fatal("the deny entry is gone after the complete write")
	}
	if st, r := connectStatus(t, proxyAddr, "example.org:443"); st == 403 {
		t.Fatalf("the completed file did not apply: example.org %d %s", st, r)
	}
	if n := s.failures(); n != 0 {
		t.Fatalf("%d failed reloads during an in-place write", n)
	}
}

// TestFoldWindowZeroLogsEachRefusal: log.fold_window: 0s writes every
// refusal at once, not one line a minute.
func TestFoldWindowZeroLogsEachRefusal(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	file := filepath.Join(t.TempDir(), "arcfence.yaml")
	writeAtomic(t, file, fileConfig(proxyAddr, origin, "")+"log: {fold_window: 0s}\n")
	s := serveFile(t, file, proxyAddr, origin)
	for range 3 {
		if st, r := connectStatus(t, proxyAddr, "fold.example.org:443"); st != 403 || r != "not-in-allowlist" {
			t.Fatalf("fold.example.org: %d %s", st, r)
		}
	}
	eventually(t, "a line per refusal", func() bool { return s.count(`"msg":"denied"`, `"host":"fold.example.org"`) == 3 })
	if n := s.count(`"count":`); n != 0 {
		t.Fatalf("%d folded lines with fold_window 0", n)
	}
}

// TestReloadRace: the config file is rewritten (atomically) back and forth
// while CONNECTs flow from several clients and a tunnel stays open. Every
// CONNECT is decided by the old or the new policy — admitted-then-dialed
// (a.example is in A: the dead resolver answers 502) or refused as
// not-in-allowlist (B) — never anything else; the origin, in both, is
// always admitted; the open tunnel keeps echoing.
func TestReloadRace(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	file := filepath.Join(t.TempDir(), "arcfence.yaml")
	a := fileConfig(proxyAddr, origin, `, "a.example"`)
	b := fileConfig(proxyAddr, origin, `, "b.example"`)
	writeAtomic(t, file, a)
	s := serveFile(t, file, proxyAddr, origin)
	_, ping := openTunnel(t, proxyAddr, origin)

	const workers, rounds = 4, 2000 // rounds bounds each worker; stop ends it
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	seen := map[string]int{}
	stop := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				target, want := "a.example:443", map[string]bool{"502/": true, "403/not-in-allowlist": true}
				if (w+i)%2 == 0 {
					target, want = origin, map[string]bool{"200/": true}
				}
				st, r := connectStatus(t, proxyAddr, target)
				got := fmt.Sprintf("%d/%s", st, r)
				mu.Lock()
				seen[got]++
				if !want[got] {
					bad = append(bad, target+" -> "+got)
				}
				mu.Unlock()
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	for i := range 8 {
		if i%2 == 0 {
			writeAtomic(t, file, b)
		} else {
			writeAtomic(t, file, a)
		}
		time.Sleep(reloadSettle + 100*time.Millisecond)
		ping()
	}
	close(stop)
	wg.Wait()
	ping()
	if len(bad) > 0 {
		t.Fatalf("%d CONNECTs decided by neither policy: %v", len(bad), bad[:min(len(bad), 10)])
	}
	if s.reloads() < 2 || s.failures() != 0 {
		t.Fatalf("%d reloads, %d failures", s.reloads(), s.failures())
	}
	if seen["502/"] == 0 || seen["403/not-in-allowlist"] == 0 {
		t.Fatalf("the CONNECTs did not see both policies while the file changed: %v", seen)
	}
	t.Logf("answers: %v, reloads %d", seen, s.reloads())
}

// TestRestartKeysAgainstStart: a start-up-only key changed and changed
// back is warned about once — the second reload restores what runs.
func TestRestartKeysAgainstStart(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	file := filepath.Join(t.TempDir(), "arcfence.yaml")
	base := fileConfig(proxyAddr, origin, "")
	writeAtomic(t, file, base)
	s := serveFile(t, file, proxyAddr, origin)
	warned := func() int { return s.count(`"keys":["log.fold_window"]`) }
	writeAtomic(t, file, base+"log: {fold_window: 10s}\n")
	eventually(t, "the first reload", func() bool { return s.reloads() == 1 })
	if warned() != 1 {
		t.Fatalf("no restart warning for log.fold_window:\n%s", s.logs.String())
	}
	writeAtomic(t, file, base+"sni: log\n") // fold_window back to its start-up value
	eventually(t, "the second reload", func() bool { return s.reloads() == 2 })
	if n := warned(); n != 1 {
		t.Fatalf("%d warnings for log.fold_window after it was set back to its start-up value", n)
	}
}
