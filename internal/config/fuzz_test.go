package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig feeds arbitrary YAML through the start-up path (viper
// loader, validation, policy compile): it must return a config or an error,
// never panic. The example configs and the error fixtures are the seeds.
func FuzzLoadConfig(f *testing.F) {
	seeds, _ := filepath.Glob("../../configs/*.yaml")
	fixtures, _ := filepath.Glob("../../cmd/arcfence/testdata/config/*.yaml")
	for _, s := range append(seeds, fixtures...) {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("allow: ['*.', '[::1]:0', 'a..b', '<region>.x.com', '1.2.3.4/x']\n"))
	f.Add([]byte("limits: {max_header_bytes: -1, dial_timeout: -5s}\nregions: [' East US 2 ']\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Skip()
		}
		cfg, err := Source{File: path}.Load()
		if err != nil {
			return
		}
		r, err := Build(cfg)
		if err != nil {
			return
		}
		if p := r.Policy(); len(p.Rules()) == 0 && len(cfg.Allow) == 0 && len(cfg.Offerings) > 0 {
			t.Fatalf("compiled with offerings %v but no rules", cfg.Offerings)
		}
	})
}
