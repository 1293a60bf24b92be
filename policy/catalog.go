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

//go:embed catalog-2026-08.yaml
var catalog202608YAML []byte

//go:embed catalog-gateway.yaml
var catalogGatewayYAML []byte

// Catalog is the parsed list of Arc endpoints: one Entry per pattern, with
// the rows of every revision and cloud. Select gives the view of one
// revision and cloud, which is what Compile works on.
type Catalog struct {
	// Entries in catalog order (the spec's order of first appearance, the
	// 2024-01 rows first, then the patterns later revisions add).
	Entries []Entry `yaml:"entries" json:"entries"`

	// all caches the every-offering policy Hint searches (set by ParseCatalog).
	all *allCache
	// views caches Select's results (set by ParseCatalog; nil in a view).
	views *viewCache
	// root is the catalog a view was selected from (nil when not a view).
	root *Catalog
	// revision and cloud are a view's selection ("" when not a view).
	revision, cloud string
}

// viewCache holds a catalog's views by revision and cloud.
type viewCache struct {
	mu sync.Mutex
	m  map[[2]string]*Catalog
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
	// Sources are the spec rows that list the pattern, one per section
	// and table (two when one table lists the pattern twice).
	Sources []SpecRow `yaml:"sources" json:"sources"`

	// revs and clouds are the revisions and clouds of every row listing
	// the pattern in the whole catalog (kept in a view's copy).
	revs, clouds []string
}

// SpecRow is one spec row listing an Entry's pattern: the section it is in
// and that row's conditions.
type SpecRow struct {
	// Section is the spec heading the row came from.
	Section string `yaml:"section" json:"section"`
	// Table is the source table: the page or file (and tab) of the row.
	Table string `yaml:"table,omitempty" json:"table,omitempty"`
	// Revisions are the catalog revisions that list the row (see
	// Revisions); empty = every revision (user catalogs).
	Revisions []string `yaml:"revisions,omitempty" json:"revisions,omitempty"`
	// Clouds are the clouds whose tables list the row (see Clouds);
	// empty = the public cloud only.
	Clouds []string `yaml:"clouds,omitempty" json:"clouds,omitempty"`
	// Offering is the offering the section belongs to (kubernetes,
	// data-services, servers, sql-server, esu, resource-bridge, vmware, scvmm).
	Offering string `yaml:"offering" json:"offering"`
	// Features switch the row on (any one of them, or every one with
	// AllFeatures); empty = always needed by the offering.
	Features []string `yaml:"features,omitempty" json:"features,omitempty"`
	// AllFeatures means the row needs every one of Features (the spec's
	// "Cluster Connect and Azure RBAC").
	AllFeatures bool `yaml:"all_features,omitempty" json:"all_features,omitempty"`
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
	// Gateway marks an Arc gateway row (offering servers or kubernetes):
	// only connection gateway or both admits it (see Config.Connection).
	Gateway bool `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// Description is the spec's description, service or notes text.
	Description string `yaml:"description" json:"description"`
	// Replaces names the rows of the previous revision this row took over
	// (pattern and path, comma-separated): `catalog diff` shows them as
	// changed rather than removed and added.
	Replaces string `yaml:"replaces,omitempty" json:"replaces,omitempty"`
}

// In reports whether the row is in the tables of revision and cloud.
func (s *SpecRow) In(revision, cloud string) bool {
	if len(s.Revisions) > 0 && !slices.Contains(s.Revisions, revision) {
		return false
	}
	if len(s.Clouds) == 0 {
		return cloud == CloudPublic
	}
	return slices.Contains(s.Clouds, cloud)
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

// EmbeddedCatalog parses the catalog built into the binary: every revision
// (catalog.yaml holds 2024-01, catalog-2026-08.yaml 2026-08, and
// catalog-gateway.yaml the Arc gateway rows of 2026-08). It is parsed by
// ParseCatalog, the same loader a user-supplied catalog would go through.
// The result is parsed once per process and shared: callers must not modify it.
func EmbeddedCatalog() (*Catalog, error) {
	return embedded()
}

// embedded parses the embedded catalog once; the result is never modified.
var embedded = sync.OnceValues(func() (*Catalog, error) { return ParseCatalog(catalogYAML, catalog202608YAML, catalogGatewayYAML) })

// ParseCatalog parses and validates catalog documents and merges them into
// one catalog: an entry of a later document whose pattern and path an
// earlier one has adds its sources to that entry (its ports are the union),
// other entries are appended in order.
func ParseCatalog(data []byte, more ...[]byte) (*Catalog, error) {
	var c Catalog
	for i, d := range append([][]byte{data}, more...) {
		dec := yaml.NewDecoder(bytes.NewReader(d))
		dec.KnownFields(true)
		var part Catalog
		if err := dec.Decode(&part); err != nil {
			if i == 0 {
				return nil, fmt.Errorf("catalog: %w", err)
			}
			return nil, fmt.Errorf("catalog document %d: %w", i+1, err)
		}
		if err := part.validate(); err != nil {
			return nil, err
		}
		c.merge(part.Entries)
	}
	for i := range c.Entries {
		e := &c.Entries[i]
		e.revs, e.clouds = e.sourceRevisions(), e.sourceClouds()
	}
	c.all = &allCache{}
	c.views = &viewCache{m: map[[2]string]*Catalog{}}
	return &c, nil
}

// merge adds entries to the catalog, joining those with a pattern and path
// it already has.
func (c *Catalog) merge(entries []Entry) {
	at := map[string]int{}
	for i, e := range c.Entries {
		at[strings.ToLower(e.Pattern+e.Path)] = i
	}
	for _, e := range entries {
		i, ok := at[strings.ToLower(e.Pattern+e.Path)]
		if !ok {
			c.Entries = append(c.Entries, e)
			continue
		}
		old := &c.Entries[i]
		old.Sources = append(old.Sources, e.Sources...)
		for _, p := range e.Ports {
			if !slices.Contains(old.Ports, p) {
				old.Ports = append(old.Ports, p)
			}
		}
		if old.Note == "" {
			old.Note = e.Note
		}
	}
}

// Select returns the view of the catalog that holds only the rows of
// revision and cloud (as given: callers validate them, see Compile), in
// catalog order; entries without such rows are left out. Views are made
// once per catalog and shared: callers must not modify them.
func (c *Catalog) Select(revision, cloud string) *Catalog {
	if c.root != nil {
		return c.root.Select(revision, cloud)
	}
	if c.views == nil { // a Catalog built by hand rather than parsed
		return c.selectNew(revision, cloud)
	}
	c.views.mu.Lock()
	defer c.views.mu.Unlock()
	k := [2]string{revision, cloud}
	if v, ok := c.views.m[k]; ok {
		return v
	}
	v := c.selectNew(revision, cloud)
	c.views.m[k] = v
	return v
}

func (c *Catalog) selectNew(revision, cloud string) *Catalog {
	v := &Catalog{all: &allCache{}, root: c, revision: revision, cloud: cloud}
	for _, e := range c.Entries {
		var src []SpecRow
		for _, s := range e.Sources {
			if s.In(revision, cloud) {
				src = append(src, s)
			}
		}
		if len(src) == 0 {
			continue
		}
		if e.revs == nil {
			e.revs, e.clouds = e.sourceRevisions(), e.sourceClouds()
		}
		e.Sources = src
		v.Entries = append(v.Entries, e)
	}
	return v
}

// Revision returns the revision a view was selected for ("" for a whole catalog).
func (c *Catalog) Revision() string { return c.revision }

// Cloud returns the cloud a view was selected for ("" for a whole catalog).
func (c *Catalog) Cloud() string { return c.cloud }

// Whole returns the whole catalog a view was selected from (c itself when c
// is not a view).
func (c *Catalog) Whole() *Catalog {
	if c.root != nil {
		return c.root
	}
	return c
}

// CloudsOf returns the clouds whose tables revision has, in Clouds order.
func (c *Catalog) CloudsOf(revision string) []string {
	var out []string
	for _, cl := range Clouds() {
		for _, e := range c.Whole().Entries {
			if slices.ContainsFunc(e.Sources, func(s SpecRow) bool { return s.In(revision, cl) }) {
				out = append(out, cl)
				break
			}
		}
	}
	return out
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
		if !placeholder(e.Pattern) {
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
		if e.Scheme != "https" && e.Scheme != "http" && e.Scheme != "udp" {
			return fmt.Errorf("%s: scheme %q; expected https, http or udp", where, e.Scheme)
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
			if s.AllFeatures && len(s.Features) < 2 {
				return fmt.Errorf("%s: all_features with fewer than two features", where)
			}
			for _, r := range s.Revisions {
				if !slices.Contains(Revisions(), r) {
					return fmt.Errorf("%s: unknown revision %q; expected one of %s", where, r, strings.Join(Revisions(), ", "))
				}
			}
			for _, cl := range s.Clouds {
				if !slices.Contains(Clouds(), cl) {
					return fmt.Errorf("%s: unknown cloud %q; expected one of %s", where, cl, strings.Join(Clouds(), ", "))
				}
			}
			if s.Gateway && s.Offering != OfferingServers && s.Offering != OfferingKubernetes {
				return fmt.Errorf("%s: a gateway row of offering %q; expected servers or kubernetes", where, s.Offering)
			}
			if e.Pattern == PatternGatewayEndpoint && !s.Gateway {
				return fmt.Errorf("%s: %s in a row without gateway: true", where, PatternGatewayEndpoint)
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

// placeholder reports whether a pattern is a value the user supplies
// (<vmware.vcenter>, <scvmm.server>) or a row that names no host
// (<dns-server>) rather than a host pattern.
func placeholder(pattern string) bool {
	return strings.HasPrefix(pattern, "<vmware.") || strings.HasPrefix(pattern, "<scvmm.") ||
		pattern == PatternDNSServer || pattern == PatternGatewayEndpoint
}

// PatternGatewayEndpoint is the Arc gateway row whose host is the
// configured gateway.endpoint (<prefix>.gw.arc.azure.com).
const PatternGatewayEndpoint = "<gateway.endpoint>"

// PatternDNSServer is the resource bridge's "Your DNS server IP(s)" row
// (2026-08): the appliance asks its DNS servers directly, so the row is in
// the catalog and its exports but never admits anything through the proxy.
const PatternDNSServer = "<dns-server>"

// Revisions returns the entry's revisions in the whole catalog, oldest first.
func (e *Entry) Revisions() []string {
	if e.revs != nil {
		return slices.Clone(e.revs)
	}
	return e.sourceRevisions()
}

// Clouds returns the clouds whose tables list the entry in the whole catalog.
func (e *Entry) Clouds() []string {
	if e.clouds != nil {
		return slices.Clone(e.clouds)
	}
	return e.sourceClouds()
}

func (e *Entry) sourceRevisions() []string {
	out := []string{}
	for _, r := range Revisions() {
		if slices.ContainsFunc(e.Sources, func(s SpecRow) bool { return len(s.Revisions) == 0 || slices.Contains(s.Revisions, r) }) {
			out = append(out, r)
		}
	}
	return out
}

func (e *Entry) sourceClouds() []string {
	out := []string{}
	for _, cl := range Clouds() {
		if slices.ContainsFunc(e.Sources, func(s SpecRow) bool { return s.In(s.firstRevision(), cl) }) {
			out = append(out, cl)
		}
	}
	return out
}

// firstRevision returns a revision the row is in.
func (s *SpecRow) firstRevision() string {
	if len(s.Revisions) > 0 {
		return s.Revisions[0]
	}
	return LatestRevision
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
