package policy

import (
	"bytes"
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

//go:embed catalog.yaml
var catalogYAML []byte

// Catalog is the parsed list of Arc endpoints: one Entry per pattern.
type Catalog struct {
	// Entries in catalog order (the spec's order of first appearance).
	Entries []Entry `yaml:"entries" json:"entries"`

	// all caches the every-offering policy Hint searches (set by ParseCatalog).
	all *allCache
}

// allCache compiles a catalog's every-offering policy once.
type allCache struct {
	once sync.Once
	p    *Policy
	err  error
}

// Entry is one endpoint pattern of the spec with every section that lists it.
type Entry struct {
	// Pattern is the host as the spec writes it (https:// and a trailing /
	// stripped), with <region>, or <vmware.vcenter> / <scvmm.server> for the
	// rows whose URL the user supplies.
	Pattern string `yaml:"pattern" json:"pattern"`
	// Ports the row needs (443 unless the spec says otherwise).
	Ports []int `yaml:"ports" json:"ports"`
	// Scheme is "https", or "http" for port-80-only rows.
	Scheme string `yaml:"scheme" json:"scheme"`
	// Path restricts plain-HTTP requests to this prefix ("" = any).
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Note is arcfence's own remark on how the row is enforced.
	Note string `yaml:"note,omitempty" json:"note,omitempty"`
	// Sources are the spec rows that list the pattern, one per section.
	Sources []SpecRow `yaml:"sources" json:"sources"`
}

// SpecRow is one spec row listing an Entry's pattern: the section it is in
// and that row's conditions.
type SpecRow struct {
	// Section is the spec heading the row came from.
	Section string `yaml:"section" json:"section"`
	// Offering is the offering the section belongs to (kubernetes,
	// data-services, servers, sql-server, esu, resource-bridge, vmware, scvmm).
	Offering string `yaml:"offering" json:"offering"`
	// Features switch the row on (any one of them); empty = always needed by
	// the offering.
	Features []string `yaml:"features,omitempty" json:"features,omitempty"`
	// When is the normalized "When required": always, install, connect,
	// optional or conditional.
	When string `yaml:"when" json:"when"`
	// WhenText is the spec's own "When required" text ("" where the table has
	// no such column).
	WhenText string `yaml:"when_text,omitempty" json:"when_text,omitempty"`
	// PrivateLink is the spec's private-link mark: public, private, unused,
	// public-unless-rm-private-link, or "" where the table has no such column.
	PrivateLink string `yaml:"private_link,omitempty" json:"private_link,omitempty"`
	// DirectOnly marks data-services rows needed in direct mode only.
	DirectOnly bool `yaml:"direct_only,omitempty" json:"direct_only,omitempty"`
	// Description is the spec's description, service or notes text.
	Description string `yaml:"description" json:"description"`
}

// Normalized "when" values.
const (
	WhenAlways      = "always"
	WhenInstall     = "install"
	WhenConnect     = "connect"
	WhenOptional    = "optional"
	WhenConditional = "conditional"
)

// Private-link marks.
const (
	PrivateLinkPublic           = "public"
	PrivateLinkPrivate          = "private"
	PrivateLinkUnused           = "unused"
	PrivateLinkPublicUnlessRMPL = "public-unless-rm-private-link"
)

// EmbeddedCatalog parses the catalog built into the binary. It is parsed by
// ParseCatalog, the same loader a user-supplied catalog would go through.
// The result is parsed once per process and shared: callers must not modify it.
func EmbeddedCatalog() (*Catalog, error) {
	return embedded()
}

// embedded parses the embedded catalog once; the result is never modified.
var embedded = sync.OnceValues(func() (*Catalog, error) { return ParseCatalog(catalogYAML) })

// ParseCatalog parses and validates a catalog document.
func ParseCatalog(data []byte) (*Catalog, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.all = &allCache{}
	return &c, nil
}

func (c *Catalog) validate() error {
	seen := map[string]bool{}
	offs := Offerings()
	feats := Features()
	for i, e := range c.Entries {
		where := fmt.Sprintf("catalog entry %d (%q)", i, e.Pattern)
		if e.Pattern == "" {
			return fmt.Errorf("%s: empty pattern", where)
		}
		key := strings.ToLower(e.Pattern + e.Path)
		if seen[key] {
			return fmt.Errorf("%s: duplicate pattern", where)
		}
		seen[key] = true
		if !strings.HasPrefix(e.Pattern, "<vmware.") && !strings.HasPrefix(e.Pattern, "<scvmm.") {
			probe := strings.ReplaceAll(e.Pattern, "<region>", "eastus2")
			if _, err := compileHostPattern(probe); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		if len(e.Ports) == 0 {
			return fmt.Errorf("%s: no ports", where)
		}
		for _, p := range e.Ports {
			if p < 1 || p > 65535 {
				return fmt.Errorf("%s: port %d out of range", where, p)
			}
		}
		if e.Scheme != "https" && e.Scheme != "http" {
			return fmt.Errorf("%s: scheme %q; expected https or http", where, e.Scheme)
		}
		if e.Path != "" && !strings.HasPrefix(e.Path, "/") {
			return fmt.Errorf("%s: path %q must start with /", where, e.Path)
		}
		if len(e.Sources) == 0 {
			return fmt.Errorf("%s: no sources", where)
		}
		for _, s := range e.Sources {
			if s.Section == "" {
				return fmt.Errorf("%s: a source without section", where)
			}
			if !slices.Contains(offs, s.Offering) {
				return fmt.Errorf("%s: unknown offering %q", where, s.Offering)
			}
			for _, f := range s.Features {
				if !slices.Contains(feats, f) {
					return fmt.Errorf("%s: unknown feature %q", where, f)
				}
			}
			switch s.When {
			case WhenAlways, WhenInstall, WhenConnect, WhenOptional, WhenConditional:
			default:
				return fmt.Errorf("%s: unknown when %q", where, s.When)
			}
			switch s.PrivateLink {
			case "", PrivateLinkPublic, PrivateLinkPrivate, PrivateLinkUnused, PrivateLinkPublicUnlessRMPL:
			default:
				return fmt.Errorf("%s: unknown private_link %q", where, s.PrivateLink)
			}
		}
	}
	return nil
}

// Offerings returns the offerings of the sections that list the entry, without repeats.
func (e *Entry) Offerings() []string {
	var out []string
	for _, s := range e.Sources {
		if !slices.Contains(out, s.Offering) {
			out = append(out, s.Offering)
		}
	}
	return out
}
