package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLearnReport runs `learn report` on a recorded log: yaml and text
// output, stdin, a config file, and a bad --format.
func TestLearnReport(t *testing.T) {
	log := "../../internal/learn/testdata/servers-learn.log"
	out, err := run(t, "learn", "report", "--format", "yaml", log)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"offerings:\n  - servers\n  - kubernetes", "- cluster-connect", "- westeurope", "- api.github.com",
		"3 lines could not be parsed"} {
		if !strings.Contains(out, want) {
			t.Errorf("yaml output lacks %q:\n%s", want, out)
		}
	}
	// The pasted config: nothing left to add.
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "arcfence.yaml")
	yaml := out[:strings.Index(out, "arcfence learn report: 3 lines")]
	if err := os.WriteFile(cfgFile, []byte("phase: onboarding\n"+yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "learn", "report", "--config", cfgFile, log)
	if err != nil || !strings.Contains(out, "nothing to add to the config") {
		t.Fatalf("%v\n%s", err, out)
	}

	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := newRootCmd()
	var buf strings.Builder
	cmd.SetIn(f)
	cmd.SetOut(&buf)
	cmd.SetErr(&buf)
	cmd.SetArgs([]string{"learn", "report"})
	if err := cmd.Execute(); err != nil || !strings.Contains(buf.String(), "add offering kubernetes") {
		t.Fatalf("stdin: %v\n%s", err, buf.String())
	}

	if _, err := run(t, "learn", "report", "--format", "xml", log); err == nil || !strings.Contains(err.Error(), "text, yaml or json") {
		t.Fatalf("bad format: %v", err)
	}
	if _, err := run(t, "learn", "report", filepath.Join(dir, "missing.log")); err == nil {
		t.Fatal("missing file: no error")
	}
}
