package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

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
	"connection":         "connection",
	"gateway-endpoint":   "gateway.endpoint",
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

// AddFlags adds to f the flags every command that reads a configuration
// takes (--config and the policy's keys).
func AddFlags(f *pflag.FlagSet) {
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
	f.String("connection", "", "connection: direct, gateway or both (through the Arc gateway; see gateway.endpoint)")
	f.String("gateway-endpoint", "", "gateway.endpoint: the Arc gateway endpoint, <prefix>.gw.arc.azure.com")
	f.String("log-level", "", "log.level: trace, debug, info, warn, error")
	f.String("log-format", "", "log.format: json or console")
}

// AddServeFlags adds to f the flags of the commands that run or validate
// the servers (listeners, mode, guards).
func AddServeFlags(f *pflag.FlagSet) {
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

// Source is where a configuration comes from: defaults, the File (when
// set), ARCFENCE_* environment variables and Flags (when set, the parsed
// flags of AddFlags and AddServeFlags), in viper's precedence. Load may be
// called again to re-read the file (reload).
type Source struct {
	// File is the --config path; "" = none.
	File string
	// Flags are a command's parsed flags; nil = none.
	Flags *pflag.FlagSet
}

// FromFlags returns the Source of a command's parsed flags (--config
// included).
func FromFlags(f *pflag.FlagSet) Source {
	s := Source{Flags: f}
	if fl := f.Lookup("config"); fl != nil {
		s.File = fl.Value.String()
	}
	return s
}

// Runtime loads the configuration and builds its Runtime.
func (s Source) Runtime() (*Runtime, error) {
	c, err := s.Load()
	if err != nil {
		return nil, err
	}
	return Build(c)
}

// Load reads the configuration; unknown keys and undecodable values are errors.
func (s Source) Load() (*Config, error) {
	v := viper.New()
	v.SetEnvPrefix("ARCFENCE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	def := Default()
	known := map[string]bool{}
	dv := reflect.ValueOf(def)
	walk("", dv.Type(), func(key string, _ reflect.StructField, index []int) {
		known[key] = true
		v.SetDefault(key, dv.FieldByIndex(index).Interface())
	})
	if s.File != "" {
		v.SetConfigFile(s.File)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("config file %s: %w", s.File, pe.Err)
			}
			return nil, fmt.Errorf("config file %s: %w", s.File, err)
		}
		if err := unknownKeys(v, known); err != nil {
			return nil, fmt.Errorf("config file %s: %w", s.File, err)
		}
		if err := profileKeys(v.Get("profiles")); err != nil {
			return nil, fmt.Errorf("config file %s: %w", s.File, err)
		}
	}
	for flag, key := range flagKeys {
		if s.Flags == nil {
			break
		}
		if f := s.Flags.Lookup(flag); f != nil {
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
	if s.Flags != nil {
		if f := s.Flags.Lookup("learn"); f != nil && f.Changed && f.Value.String() == "true" {
			cfg.Mode = policy.ModeLearn.String()
		}
	}
	for i, r := range cfg.Regions {
		cfg.Regions[i] = strings.TrimSpace(r)
	}
	return &cfg, nil
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

// profileKeys reports the keys of the profiles list that a profile may
// not set (global only) or that are no key at all, each named
// profiles[NAME].KEY (profiles[INDEX] while the name is not a string).
func profileKeys(raw any) error {
	list, ok := raw.([]any)
	if !ok {
		return nil // not a list: the decoder says so
	}
	known := map[string]bool{}
	walk("", reflect.TypeOf(Profile{}), func(key string, _ reflect.StructField, _ []int) { known[key] = true })
	global := map[string]bool{}
	for _, k := range GlobalOnlyKeys() {
		global[k] = true
	}
	var errs []error
	for i, e := range list {
		m := stringMap(e)
		if m == nil {
			errs = append(errs, fmt.Errorf("profiles[%d]: not a mapping (name, clients, offerings, ...)", i))
			continue
		}
		id := fmt.Sprint(i)
		if n, ok := m["name"].(string); ok && n != "" {
			id = n
		}
		var keys []string
		flatten("", m, &keys)
		sort.Strings(keys)
		for _, k := range keys {
			top, _, _ := strings.Cut(k, ".")
			switch {
			case known[k]:
			case global[top]:
				errs = append(errs, fmt.Errorf("profiles[%s].%s: global only; set it at the top level (it applies to every profile)", id, top))
			default:
				msg := fmt.Sprintf("profiles[%s].%s: unknown key", id, k)
				if s := nearest(k, known); s != "" {
					msg += fmt.Sprintf("; did you mean %q?", s)
				}
				errs = append(errs, errors.New(msg))
			}
		}
	}
	return errors.Join(errs...)
}

// stringMap returns e as a map with string keys (lowercased, as viper
// spells keys), or nil when it is not a mapping.
func stringMap(e any) map[string]any {
	switch m := e.(type) {
	case map[string]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[strings.ToLower(k)] = v
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[strings.ToLower(fmt.Sprint(k))] = v
		}
		return out
	}
	return nil
}

// flatten appends the dotted keys of m's leaves to keys.
func flatten(prefix string, m map[string]any, keys *[]string) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub := stringMap(v); sub != nil {
			flatten(key, sub, keys)
			continue
		}
		*keys = append(*keys, key)
	}
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
