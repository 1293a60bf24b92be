package main

import (
	"os"
	"strings"
	"testing"
)

// TestCatalogDiffCommand: `arcfence catalog diff --from 2024-01 --to
// 2026-08` prints the golden diff (export/testdata, written by go test
// ./export -update); the filters and bad flags reach policy.Catalog.Diff.
func TestCatalogDiffCommand(t *testing.T) {
	want, err := os.ReadFile("../../export/testdata/diff-2024-01-2026-08.txt")
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "catalog", "diff", "--from", "2024-01", "--to", "2026-08")
	if err != nil || out != string(want) {
		t.Fatalf("catalog diff: %v\n%s", err, out)
	}
	out, err = run(t, "catalog", "diff", "--from", "2024-01", "--offerings", "esu", "--cloud", "public", "--format", "json")
	if err != nil || !strings.Contains(out, `"pattern": "www.microsoft.com/pkiops/certs"`) || strings.Contains(out, `"offering": "servers"`) ||
		strings.Contains(out, `"cloud": "usgov"`) {
		t.Fatalf("filtered JSON diff: %v\n%s", err, out)
	}
	if _, err := run(t, "catalog", "diff", "--from", "2023-01"); err == nil || !strings.Contains(err.Error(), "--from: unknown revision") {
		t.Fatalf("bad --from: %v", err)
	}
}

// TestCatalogAllShowsRevisions: catalog --all lists the configured
// revision's rows, each with its revisions and clouds.
func TestCatalogAllShowsRevisions(t *testing.T) {
	out, err := run(t, "catalog", "--all", "--format", "json")
	if err != nil || !strings.Contains(out, `"pattern": "dls.microsoft.com"`) || !strings.Contains(out, `"revisions": [`) {
		t.Fatalf("catalog --all (2026-08): %v\n%.400s", err, out)
	}
	t.Setenv("ARCFENCE_CATALOG_REVISION", "2024-01")
	out, err = run(t, "catalog", "--all", "--format", "json")
	if err != nil || strings.Contains(out, `"pattern": "dls.microsoft.com"`) || !strings.Contains(out, `"pattern": "k8connecthelm.azureedge.net"`) {
		t.Fatalf("catalog --all (2024-01): %v", err)
	}
}
