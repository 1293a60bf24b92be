package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/internal/suggest"
	"github.com/arcfence/arcfence/policy"
)

// flagKeys maps command-line flags to the config keys they set.
var flagKeys = map[string]string{
	"offerings":          "offerings",
	"region":             "regions",
	"features":           "features",
	"phase":              "phase",
	"allow":              "allow",
	"deny":               "deny",
	"vcenter":            "vmware.vcenter",
	"scvmm-server":       "scvmm.server",
	"data-services-mode": "data_services.mode",
	"cloud":              "cloud",
	"log-level":          "log.level",
	"log-format":         "log.format",
	"listen":             "listen",
	"mode":               "mode",
	"resolver":           "resolver",
	"sni":                "sni",
	"clients":            "clients",
	"allow-ranges":       "allow_ranges",
	"dns-listen":         "dns.listen",
	"dns-upstream":       "dns.upstream",
	"admin-listen":       "admin.listen",
}

// addConfigFlags adds the flags every command that reads a config takes.
func addConfigFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.String("config", "", "YAML config file (keys as in the README; flags and ARCFENCE_* variables override it)")
	f.StringSlice("offerings", nil, "Arc offerings: kubernetes, data-services, servers, sql-server, esu, resource-bridge, vmware, scvmm, azure-stack-hci")
	f.StringSlice("region", nil, "Azure region(s), repeatable or comma-separated (e.g. eastus2)")
	f.StringSlice("features", nil, "features that switch on conditional rows (e.g. cluster-connect,azure-rbac)")
	f.String("phase", "", "onboarding or steady")
	f.StringSlice("allow", nil, "extra allowed entries: host, host:port, host:port/path, IP:port")
	f.StringSlice("deny", nil, "denied entries: host, host:port, IP, IP:port")
	f.String("vcenter", "", "vmware.vcenter: the vCenter server (host, IP, host:port)")
	f.String("scvmm-server", "", "scvmm.server: the SCVMM management server")
	f.String("data-services-mode", "", "data_services.mode: direct or indirect")
	f.String("cloud", "", "cloud: public, usgov or china (whose Arc tables and region names)")
	f.String("log-level", "", "log.level: trace, debug, info, warn, error")
	f.String("log-format", "", "log.format: json or console")
}

// addServeFlags adds the flags of the long-running commands.
func addServeFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("listen", "", "proxy listener host:port (default 127.0.0.1:3128)")
	f.Bool("learn", false, "learn mode: admit what the allowlist lacks and log it as 'would deny' (guards stay on)")
	f.String("mode", "", "enforce or learn")
	f.String("resolver", "", "DNS server host:port for the proxy's own lookups (default: the system's)")
	f.String("sni", "", "enforce, log or off: the ClientHello check on TLS tunnels")
	f.StringSlice("clients", nil, "client CIDRs allowed to use the proxy")
	f.StringSlice("allow-ranges", nil, "destination CIDRs exempt from the private-address guard")
	f.String("dns-listen", "", "DNS filter address (UDP and TCP); empty = filter off")
	f.StringSlice("dns-upstream", nil, "DNS upstream host:port, repeatable")
	f.String("admin-listen", "", "admin listener host:port (/metrics /healthz /readyz /learned)")
}

// loader reads the configuration from defaults, the --config file,
// ARCFENCE_* variables and flags, in viper's precedence. Load may be called
// again to re-read the file (reload).
type loader struct {
	flags *pflag.FlagSet
	file  string
}

// newLoader returns a loader for cmd's parsed flags.
func newLoader(cmd *cobra.Command) *loader {
	l := &loader{flags: cmd.Flags()}
	if f := cmd.Flags().Lookup("config"); f != nil {
		l.file = f.Value.String()
	}
	return l
}

// File returns the config file path ("" when none).
func (l *loader) File() string { return l.file }

// loadConfig loads and validates cmd's configuration (policy not compiled).
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	return newLoader(cmd).Load()
}

// loadPolicy loads cmd's configuration and compiles it, the start-up path
// of serve, for the commands that decide or print with the policy.
func loadPolicy(cmd *cobra.Command) (*config.Config, *policy.Policy, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	p, err := config.Compile(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, p, nil
}

// Load reads the configuration; unknown keys and undecodable values are errors.
func (l *loader) Load() (*config.Config, error) {
	v := viper.New()
	v.SetEnvPrefix("ARCFENCE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	def := config.Default()
	known := map[string]bool{}
	flatten("", reflect.ValueOf(def), func(key string, val any) {
		known[key] = true
		v.SetDefault(key, val)
	})
	if l.file != "" {
		v.SetConfigFile(l.file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("config file %s: %w", l.file, pe.Err)
			}
			return nil, fmt.Errorf("config file %s: %w", l.file, err)
		}
		if err := unknownKeys(v, known); err != nil {
			return nil, fmt.Errorf("config file %s: %w", l.file, err)
		}
	}
	for flag, key := range flagKeys {
		if f := l.flags.Lookup(flag); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, err
			}
		}
	}
	cfg := def
	dc := &mapstructure.DecoderConfig{
		Result:      &cfg,
		ErrorUnused: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			mapstructure.StringToTimeDurationHookFunc(),
			splitListHook,
		),
	}
	dec, err := mapstructure.NewDecoder(dc)
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(v.AllSettings()); err != nil {
		msg := err.Error()
		if i := strings.Index(msg, "error(s):"); i >= 0 {
			msg = strings.TrimSpace(msg[i+len("error(s):"):])
		}
		msg = strings.ReplaceAll(msg, "'", "")
		return nil, fmt.Errorf("config: %s", msg)
	}
	if f := l.flags.Lookup("learn"); f != nil && f.Changed && f.Value.String() == "true" {
		cfg.Mode = config.ModeLearn
	}
	for i, r := range cfg.Regions {
		cfg.Regions[i] = strings.TrimSpace(r)
	}
	return &cfg, nil
}

// flatten calls fn with every leaf key of a config value (mapstructure tags
// joined with ".") and its value.
func flatten(prefix string, v reflect.Value, fn func(string, any)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("mapstructure")
		if tag == "" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Duration(0)) {
			flatten(key, fv, fn)
			continue
		}
		fn(key, fv.Interface())
	}
}

// unknownKeys reports keys of the file that are not config keys, with the
// nearest known key as a suggestion.
func unknownKeys(v *viper.Viper, known map[string]bool) error {
	var errs []error
	keys := v.AllKeys()
	sort.Strings(keys)
	for _, k := range keys {
		if known[k] {
			continue
		}
		msg := fmt.Sprintf("unknown key %q", k)
		if s := nearest(k, known); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

// nearest returns the known key closest to k, if it is close.
func nearest(k string, known map[string]bool) string {
	keys := make([]string, 0, len(known))
	for c := range known {
		keys = append(keys, c)
	}
	if n := suggest.Nearest(k, keys, 3, 1, nil); len(n) > 0 {
		return n[0]
	}
	return ""
}

// durationHook refuses bare numbers for durations: "10" would silently
// mean 10 nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch x := data.(type) {
	case int, int64, float64, uint, uint64:
		if reflect.ValueOf(x).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("duration %v has no unit; write it with one, e.g. %vs", x, x)
	case string:
		if strings.TrimSpace(x) == "" {
			return time.Duration(0), nil
		}
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			if _, nerr := time.ParseDuration(strings.TrimSpace(x) + "s"); nerr == nil && x != "0" {
				return nil, fmt.Errorf("duration %q has no unit; write it with one, e.g. %ss", x, x)
			}
			return nil, fmt.Errorf("%q is not a duration (e.g. 10s, 5m, 24h)", x)
		}
		return d, nil
	}
	return data, nil
}

// splitListHook turns a string (an environment variable) into a list,
// split on commas and white space.
func splitListHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice {
		return data, nil
	}
	s := data.(string)
	if strings.TrimSpace(s) == "" {
		return []string{}, nil
	}
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }), nil
}
