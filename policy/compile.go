package policy

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Policy is a compiled, immutable configuration. It is safe for concurrent
// use; a reload compiles a new Policy and swaps the pointer.
type Policy struct {
	cfg   Config
	rules []Rule

	allow     index
	deny      index
	allowAddr map[netip.Addr][]*crow
	denyAddr  map[netip.Addr][]*crow

	// all is the policy with every offering, feature and region on, used by
	// Hint; nil inside that policy itself.
	all *Policy
	// cat is the catalog view of the policy's revision and cloud; root is
	// the whole catalog it was selected from (Hint looks at other revisions).
	cat  *Catalog
	root *Catalog
	// revision and cloud are the resolved catalog.revision and cloud.
	revision, cloud string
	// selected is the set of selected canonical offerings.
	selected map[string]bool
	features map[string]bool
	regions  []string
	// conn is connection (default filled in); gateway the normalized
	// gateway.endpoint ("" with connection direct).
	conn, gateway string
}

// Rule is one effective allowlist row.
type Rule struct {
	// Pattern is the host pattern with its region filled, e.g.
	// "eastus2.obo.arc.azure.com", "*.his.arc.azure.com",
	// "azgn*.servicebus.windows.net", or an address for address entries.
	Pattern string `json:"pattern"`
	// Path restricts plain-HTTP requests ("" = any path).
	Path string `json:"path,omitempty"`
	// Ports the row admits.
	Ports []int `json:"ports"`
	// Scheme is "https", or "http" for port-80-only rows.
	Scheme string `json:"scheme"`
	// Offering is the selected offering that brought the row in ("" for allow entries).
	Offering string `json:"offering"`
	// Feature is the feature that switched the row on ("" when always needed).
	Feature string `json:"feature"`
	// When is the normalized "when required" of the admitting spec row.
	When string `json:"when"`
	// PrivateLink is the admitting spec row's private-link mark.
	PrivateLink string `json:"private_link"`
	// Section is the spec section of the admitting row.
	Section string `json:"section"`
	// Description is the admitting spec row's description.
	Description string `json:"description"`
	// Note is arcfence's remark on how the row is enforced.
	Note string `json:"note,omitempty"`
	// Revisions are the catalog revisions that list the row's pattern
	// (catalog rows only).
	Revisions []string `json:"revisions,omitempty"`
	// Clouds are the clouds whose tables list the row's pattern (catalog rows only).
	Clouds []string `json:"clouds,omitempty"`
	// Source is the kind of entry (catalog, allow, vcenter, scvmm).
	Source Source `json:"-"`
	// Written is the entry as the user wrote it (user entries only).
	Written string `json:"-"`
}

// Name returns the rule's name on a port, as Decision.Rule gives it.
func (r Rule) Name(port int) string {
	if r.Written != "" {
		return userRuleName(r.Written, port)
	}
	return r.Pattern + r.Path + ":" + strconv.Itoa(port)
}

// Wildcard reports whether the pattern contains '*'.
func (r Rule) Wildcard() bool { return strings.IndexByte(r.Pattern, '*') >= 0 }

// crow is a compiled row: one host pattern with its ports and attribution.
type crow struct {
	pat       hostPattern
	ports     []int    // nil = every port (deny entries without a port)
	names     []string // rule name per port (parallel to ports; one name when ports is nil)
	path      string
	offering  string
	feature   string
	source    Source
	tls       bool // catalog row served over TLS on ports other than 80
	privateOK bool
	featured  bool
	order     int
	entry     int    // catalog entry index, -1 for user entries
	region    string // the region the row was expanded for
	// written and anyPort serve deny rows without a port: their rule name is
	// the entry with ":port" added, precomputed for the common ports.
	written string
	anyPort [len(commonPorts)]string
}

// commonPorts are the ports whose rule names are precomputed for deny rows
// without a port; others are built when the refusal happens.
var commonPorts = [...]int{443, 80, 8084}

// denyName returns the rule name of deny row c for a refusal on port.
func (c *crow) denyName(i, port int) string {
	if c.written == "" || port == 0 {
		return c.names[i]
	}
	for k, p := range commonPorts {
		if p == port {
			return c.anyPort[k]
		}
	}
	return userRuleName(c.written, port)
}

// portIndex returns the index of port in the row's ports, or -1.
func (c *crow) portIndex(port int) int {
	if c.ports == nil {
		return 0
	}
	for i, p := range c.ports {
		if p == port {
			return i
		}
	}
	return -1
}

// index finds rows by host in specificity order.
type index struct {
	exact  map[string][]*crow
	glob   map[string][]*crow // rows by zone, while compiling
	suffix map[string][]*crow
	// globs are the first-label globs by zone, by prefix: a lookup costs one
	// map access per distinct prefix length, whatever the number of globs.
	globs map[string]*globZone
	// minZone and maxZone bound the label counts of the "*." zones: the
	// walk over a name's zones looks up only those in range.
	minZone, maxZone int
}

// globZone holds the first-label globs of one zone.
type globZone struct {
	lens     []int // distinct prefix lengths, longest first
	byPrefix map[string][]*crow
}

// empty reports whether the index has no rows.
func (ix *index) empty() bool {
	return len(ix.exact) == 0 && len(ix.glob) == 0 && len(ix.suffix) == 0
}

func newIndex() index {
	return index{exact: map[string][]*crow{}, glob: map[string][]*crow{}, suffix: map[string][]*crow{}}
}

func (ix *index) add(c *crow) {
	switch c.pat.kind {
	case kindExact:
		ix.exact[c.pat.key] = append(ix.exact[c.pat.key], c)
	case kindGlob:
		ix.glob[c.pat.key] = append(ix.glob[c.pat.key], c)
	case kindSuffix:
		ix.suffix[c.pat.key] = append(ix.suffix[c.pat.key], c)
	}
}

// sort orders each bucket: rows without a feature first, then catalog order;
// glob buckets put longer prefixes first.
func (ix *index) sort() {
	less := func(a, b *crow) int {
		if len(a.pat.prefix) != len(b.pat.prefix) {
			return len(b.pat.prefix) - len(a.pat.prefix)
		}
		if a.featured != b.featured {
			if a.featured {
				return 1
			}
			return -1
		}
		return a.order - b.order
	}
	for _, m := range []map[string][]*crow{ix.exact, ix.glob, ix.suffix} {
		for _, rows := range m {
			slices.SortStableFunc(rows, less)
		}
	}
	ix.minZone, ix.maxZone = math.MaxInt, 0
	for zone := range ix.suffix {
		n := strings.Count(zone, ".") + 1
		ix.minZone, ix.maxZone = min(ix.minZone, n), max(ix.maxZone, n)
	}
	ix.globs = map[string]*globZone{}
	for zone, rows := range ix.glob {
		gz := &globZone{byPrefix: map[string][]*crow{}}
		for _, c := range rows {
			if _, ok := gz.byPrefix[c.pat.prefix]; !ok {
				gz.lens = append(gz.lens, len(c.pat.prefix))
			}
			gz.byPrefix[c.pat.prefix] = append(gz.byPrefix[c.pat.prefix], c)
		}
		slices.Sort(gz.lens)
		gz.lens = slices.Compact(gz.lens)
		slices.Reverse(gz.lens)
		ix.globs[zone] = gz
	}
}

// Compile validates cfg and compiles it with the rows of cfg's revision and
// cloud of the catalog cat (nil = the embedded catalog). Errors name the
// config key and what is allowed.
func Compile(cfg Config, cat *Catalog) (*Policy, error) {
	if cat == nil {
		var err error
		if cat, err = EmbeddedCatalog(); err != nil {
			return nil, err
		}
	}
	p, err := compile(cfg, cat, false)
	if err != nil {
		return nil, err
	}
	if p.all, err = p.cat.allPolicy(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return p, nil
}

// allPolicy returns the every-offering policy of a view, compiled once per
// view (every time for a hand-built catalog).
func (c *Catalog) allPolicy() (*Policy, error) {
	if c.all == nil {
		return compileAll(c)
	}
	c.all.once.Do(func() { c.all.p, c.all.err = compileAll(c) })
	return c.all.p, c.all.err
}

// cloneConfig copies the configuration's slices, so that neither the
// caller's later edits nor edits of Config()'s result reach the policy.
func cloneConfig(c Config) Config {
	c.Regions = slices.Clone(c.Regions)
	c.Offerings = slices.Clone(c.Offerings)
	c.Features = slices.Clone(c.Features)
	c.Allow = slices.Clone(c.Allow)
	c.Deny = slices.Clone(c.Deny)
	c.ServicebusNames = slices.Clone(c.ServicebusNames)
	return c
}

// compileAll compiles the policy with every offering, every feature that
// adds rows, every region of the view's cloud and the onboarding phase:
// what Hint searches.
func compileAll(cat *Catalog) (*Policy, error) {
	var feats []string
	for _, f := range Features() {
		if f != FeaturePrivateLink && f != FeatureResourceMgmtPrivLink {
			feats = append(feats, f)
		}
	}
	var offs []string
	for _, o := range Offerings() {
		if o != OfferingVMware && o != OfferingSCVMM {
			offs = append(offs, o)
		}
	}
	rev, cloud := cat.revision, cat.cloud
	if cloud == "" {
		cloud = CloudPublic
	}
	return compile(Config{Regions: cloudRegions(cloud), Offerings: offs, Features: feats, Revision: rev, Cloud: cloud}, cat, true)
}

// tableOffering returns the offering whose table rows offering o needs to
// exist in a cloud (Azure Stack HCI has none of its own: the resource bridge's).
func tableOffering(o string) string {
	if o == OfferingAzureStackHCI {
		return OfferingResourceBridge
	}
	return o
}

// selectView validates catalog.revision and cloud and returns the view of
// root they select (nil after an error reported through bad).
func selectView(cfg Config, root *Catalog, bad func(string, ...any)) (rev, cloud string, view *Catalog) {
	rev, cloud = cfg.Revision, cfg.Cloud
	if rev == "" {
		rev = LatestRevision
	}
	if cloud == "" {
		cloud = CloudPublic
	}
	ok := true
	if !slices.Contains(Revisions(), rev) {
		bad("catalog.revision: unknown revision %q; expected one of %s", cfg.Revision, strings.Join(Revisions(), ", "))
		ok = false
	}
	if !slices.Contains(Clouds(), cloud) {
		bad("cloud: unknown cloud %q; expected one of %s", cfg.Cloud, strings.Join(Clouds(), ", "))
		ok = false
	}
	if !ok {
		return rev, cloud, nil
	}
	if has := root.CloudsOf(rev); !slices.Contains(has, cloud) {
		var with []string
		for _, r := range Revisions() {
			if slices.Contains(root.CloudsOf(r), cloud) {
				with = append(with, r)
			}
		}
		msg := fmt.Sprintf("cloud: %s has no tables in catalog.revision %s (its clouds: %s)", cloud, rev, strings.Join(has, ", "))
		if len(with) > 0 {
			msg += fmt.Sprintf("; set catalog.revision to %s or cloud to %s", strings.Join(with, " or "), strings.Join(has, " or "))
		}
		bad("%s", msg)
		return rev, cloud, nil
	}
	return rev, cloud, root.Select(rev, cloud)
}

func compile(cfg Config, root *Catalog, all bool) (*Policy, error) {
	cfg = cloneConfig(cfg)
	root = root.Whole()
	p := &Policy{
		cfg:       cfg,
		root:      root,
		allow:     newIndex(),
		deny:      newIndex(),
		allowAddr: map[netip.Addr][]*crow{},
		denyAddr:  map[netip.Addr][]*crow{},
		selected:  map[string]bool{},
		features:  map[string]bool{},
	}
	var errs problems
	p.revision, p.cloud, p.cat = selectView(cfg, root, errs.bad)
	p.selectKeys(cfg, all, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(p.selected) == 0 && len(cfg.Allow) == 0 {
		return nil, errors.New("offerings: none selected and no allow entries: nothing would be admitted; set offerings (e.g. servers)")
	}
	order := 0
	p.addCatalog(cfg, all, &order, &errs)
	for _, a := range cfg.Allow {
		errs.add(p.addUser(a, SourceAllow, "allow", &order, nil, attribution{}))
	}
	for _, d := range cfg.Deny {
		errs.add(p.addDeny(d, &order))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.allow.sort()
	p.deny.sort()
	return p, nil
}

// problems collects a compile's errors, each naming its key.
type problems []error

func (e *problems) bad(format string, a ...any) { *e = append(*e, fmt.Errorf(format, a...)) }

// add records err when it is not nil.
func (e *problems) add(err error) {
	if err != nil {
		*e = append(*e, err)
	}
}

// selectKeys validates the selection keys of cfg (offerings, features,
// regions, phase, data services mode, vCenter, SCVMM, the offerings the
// cloud has tables for) and records the selection in p.
func (p *Policy) selectKeys(cfg Config, all bool, errs *problems) {
	bad := errs.bad
	for _, o := range cfg.Offerings {
		n := strings.ToLower(strings.TrimSpace(o))
		if a, ok := offeringAliases[n]; ok {
			n = a
		}
		if !slices.Contains(Offerings(), n) {
			bad("offerings: unknown offering %q; expected one of %s (aliases: app-services, machine-learning)", o, strings.Join(Offerings(), ", "))
			continue
		}
		p.selected[n] = true
	}
	for _, f := range cfg.Features {
		n := strings.ToLower(strings.TrimSpace(f))
		if !slices.Contains(Features(), n) {
			bad("features: unknown feature %q; expected one of %s", f, strings.Join(Features(), ", "))
			continue
		}
		p.features[n] = true
	}
	if p.features[FeatureResourceMgmtPrivLink] {
		p.features[FeaturePrivateLink] = true
	}
	p.selectRegions(cfg.Regions, bad)
	switch cfg.Phase {
	case "", PhaseOnboarding, PhaseSteady:
	default:
		bad("phase: unknown phase %q; expected onboarding or steady", cfg.Phase)
	}
	p.compileGateway(cfg, bad)
	switch cfg.DataServicesMode {
	case "", DataServicesDirect, DataServicesIndirect:
	default:
		bad("data_services.mode: unknown mode %q; expected direct or indirect", cfg.DataServicesMode)
	}
	if p.selected[OfferingVMware] && strings.TrimSpace(cfg.VCenter) == "" {
		bad("vmware.vcenter: required with offering vmware (host, IP, host:port, IP:port or [IPv6]:port of the vCenter server)")
	}
	if !p.selected[OfferingVMware] && strings.TrimSpace(cfg.VCenter) != "" {
		bad("vmware.vcenter: set without offering vmware; add vmware to offerings or remove vmware.vcenter")
	}
	if p.selected[OfferingSCVMM] && strings.TrimSpace(cfg.SCVMMServer) == "" {
		bad("scvmm.server: required with offering scvmm (host, IP, host:port, IP:port or [IPv6]:port of the SCVMM management server)")
	}
	if !p.selected[OfferingSCVMM] && strings.TrimSpace(cfg.SCVMMServer) != "" {
		bad("scvmm.server: set without offering scvmm; add scvmm to offerings or remove scvmm.server")
	}
	if p.cat != nil && p.cloud != CloudPublic && !all {
		var has []string
		for _, o := range Offerings() {
			if tableOffering(o) == o && p.cat.hasOffering(o) {
				has = append(has, o)
			}
		}
		for _, o := range p.Selected() {
			if !p.cat.hasOffering(tableOffering(o)) {
				bad("cloud: offering %s has no table in cloud %s of catalog.revision %s (its tables there: %s); use cloud public or remove %s from offerings",
					o, p.cloud, p.revision, strings.Join(has, ", "), o)
			}
		}
	}
}

// selectRegions normalizes and checks the regions key against p's cloud.
func (p *Policy) selectRegions(regions []string, bad func(string, ...any)) {
	for _, r := range regions {
		n := NormalizeRegion(r)
		if knownRegion(n) && p.cat != nil && cloudOf(n) != p.cloud {
			bad("regions: %q is a region of cloud %s, not of cloud %s; set cloud to %s or use a %s region (e.g. %s)",
				r, cloudOf(n), p.cloud, cloudOf(n), p.cloud, exampleRegion(p.cloud))
			continue
		}
		if !knownRegion(n) {
			msg := fmt.Sprintf("regions: unknown Azure region %q", r)
			if c := closeRegions(n, p.cloud); len(c) > 0 {
				msg += "; did you mean " + strings.Join(c, ", ") + "?"
			} else {
				msg += "; use a name from 'az account list-locations -o table', e.g. " + exampleRegion(p.cloud)
			}
			bad("%s", msg)
			continue
		}
		if !slices.Contains(p.regions, n) {
			p.regions = append(p.regions, n)
		}
	}
}

// addCatalog adds the rows of the selected catalog view that the selection
// brings in, <region> expanded, the user-named rows (vCenter, SCVMM) as
// their entries.
func (p *Policy) addCatalog(cfg Config, all bool, order *int, errs *problems) {
	cat := p.cat
	if cat == nil {
		return
	}
	needRegion := ""
	for ei := range cat.Entries {
		e := &cat.Entries[ei]
		act := p.activeSources(e)
		if len(act) == 0 {
			continue
		}
		src := p.attribute(e, act)
		switch {
		case e.Pattern == PatternDNSServer:
			continue // the appliance asks its DNS servers directly, never through the proxy
		case e.Pattern == "<vmware.vcenter>":
			errs.add(p.addUser(cfg.VCenter, SourceVCenter, "vmware.vcenter", order, e, src))
			continue
		case e.Pattern == "<scvmm.server>":
			errs.add(p.addUser(cfg.SCVMMServer, SourceSCVMM, "scvmm.server", order, e, src))
			continue
		}
		if strings.Contains(e.Pattern, "<region>") && len(p.regions) == 0 && needRegion == "" {
			needRegion = e.Pattern
		}
		for _, pat := range p.entryPatterns(e, cfg, all, errs) {
			p.addCatalogRow(e, ei, pat, act, src, order, errs)
		}
	}
	if needRegion != "" {
		errs.bad("regions: none set, but the selected offerings need one for %s; set regions (e.g. eastus2)", needRegion)
	}
}

// entryPatterns returns the host patterns catalog entry e stands for: its
// pattern with <region> expanded once per region, the configured
// gateway.endpoint for the gateway endpoint row, or, for the wide
// servicebus row with a servicebus allowlist, the list's names.
func (p *Policy) entryPatterns(e *Entry, cfg Config, all bool, errs *problems) []string {
	patterns := []string{e.Pattern}
	if e.Pattern == PatternGatewayEndpoint {
		patterns[0] = p.gateway
	}
	if strings.Contains(e.Pattern, "<region>") {
		patterns = patterns[:0]
		for _, r := range p.regions {
			patterns = append(patterns, strings.ReplaceAll(e.Pattern, "<region>", r))
		}
	}
	if e.Pattern == "*.servicebus.windows.net" && cfg.ServicebusNames != nil && !all {
		patterns = patterns[:0]
		for _, n := range cfg.ServicebusNames {
			h, ok := NormalizeHost(n)
			if !ok || isIPForm(h) {
				errs.bad("servicebus.allowlist_file: %q is not a host name", n)
				continue
			}
			patterns = append(patterns, h)
		}
	}
	return patterns
}

// addCatalogRow adds the compiled row of pattern pat (from catalog entry
// e, index ei; act its active spec rows, src its attribution) and its Rule.
func (p *Policy) addCatalogRow(e *Entry, ei int, pat string, act []*SpecRow, src attribution, order *int, errs *problems) {
	hp, err := compileHostPattern(pat)
	if err != nil {
		errs.bad("catalog: %v", err)
		return
	}
	region := ""
	if strings.Contains(e.Pattern, "<region>") {
		region = regionOf(e.Pattern, pat)
	}
	c := &crow{
		pat:       hp,
		ports:     slices.Clone(e.Ports),
		path:      e.Path,
		offering:  src.offering,
		feature:   src.feature,
		source:    SourceCatalog,
		tls:       e.Scheme == "https",
		privateOK: p.privateOK(act),
		featured:  src.feature != "",
		order:     *order,
		entry:     ei,
		region:    region,
	}
	*order++
	for _, port := range e.Ports {
		c.names = append(c.names, pat+e.Path+":"+strconv.Itoa(port))
	}
	p.allow.add(c)
	p.rules = append(p.rules, Rule{
		Pattern: pat, Path: e.Path, Ports: slices.Clone(e.Ports), Scheme: e.Scheme,
		Offering: src.offering, Feature: src.feature, When: src.row.When,
		PrivateLink: src.row.PrivateLink, Section: src.row.Section,
		Description: src.row.Description, Note: e.Note, Source: SourceCatalog,
		Revisions: e.Revisions(), Clouds: e.Clouds(),
	})
}

// regionOf returns the region that filled <region> in pattern to give name.
func regionOf(pattern, name string) string {
	i := strings.Index(pattern, "<region>")
	tail := len(pattern) - i - len("<region>")
	return name[i : len(name)-tail]
}

// activeSources returns the entry's spec rows that the configuration switches on.
func (p *Policy) activeSources(e *Entry) []*SpecRow {
	var out []*SpecRow
	for i := range e.Sources {
		s := &e.Sources[i]
		if p.broughtBy(e, s) == "" {
			continue
		}
		if len(s.Features) > 0 && p.firstFeature(s) == "" {
			continue
		}
		if (s.When == WhenInstall || s.When == WhenConnect) && p.cfg.Phase == PhaseSteady {
			continue
		}
		if s.PrivateLink == PrivateLinkUnused && p.features[FeaturePrivateLink] {
			continue
		}
		out = append(out, s)
	}
	return out
}

// firstFeature returns the first of the row's features that is selected
// (with AllFeatures: the first feature when every one is selected), or "".
func (p *Policy) firstFeature(s *SpecRow) string {
	if s.AllFeatures {
		if p.missingFeature(s) != "" {
			return ""
		}
		return s.Features[0]
	}
	for _, f := range s.Features {
		if p.features[f] {
			return f
		}
	}
	return ""
}

// missingFeature returns the first feature the row still needs: its first
// feature when none of any-of features is on, the first one off of
// all-of features; "" when the row's features are satisfied.
func (p *Policy) missingFeature(s *SpecRow) string {
	if len(s.Features) == 0 {
		return ""
	}
	if !s.AllFeatures {
		for _, f := range s.Features {
			if p.features[f] {
				return ""
			}
		}
		return s.Features[0]
	}
	for _, f := range s.Features {
		if !p.features[f] {
			return f
		}
	}
	return ""
}

// hasOffering reports whether a row of the catalog belongs to offering o.
func (c *Catalog) hasOffering(o string) bool {
	for _, e := range c.Entries {
		for _, s := range e.Sources {
			if s.Offering == o {
				return true
			}
		}
	}
	return false
}

// signInOrARM are the rows indirect-mode data services need besides its own:
// management.azure.com and the sign-in rows.
var signInOrARM = []string{"management.azure.com", "login.microsoftonline.com", "login.windows.net", "<region>.login.microsoft.com"}

// broughtBy returns the first selected offering (in attribution order)
// whose composition includes the spec row s of entry e, or "".
func (p *Policy) broughtBy(e *Entry, s *SpecRow) string {
	for _, o := range Offerings() {
		if p.selected[o] && p.includes(o, e, s) {
			return o
		}
	}
	return ""
}

// includes reports whether the selected offering o brings in spec row s.
func (p *Policy) includes(o string, e *Entry, s *SpecRow) bool {
	if s.Gateway {
		return p.viaGateway(o, s.Offering)
	}
	return !p.replaced(o, s) && p.includesDirect(o, e, s)
}

// includesDirect reports whether the selected offering o brings in the
// direct spec row s under connection direct.
func (p *Policy) includesDirect(o string, e *Entry, s *SpecRow) bool {
	bridge := o == OfferingResourceBridge || o == OfferingVMware || o == OfferingSCVMM || o == OfferingAzureStackHCI
	indirect := p.cfg.DataServicesMode == DataServicesIndirect
	switch s.Offering {
	case OfferingKubernetes:
		if o == OfferingKubernetes || bridge {
			return true
		}
		if o == OfferingDataServices {
			return !indirect || slices.Contains(signInOrARM, e.Pattern)
		}
	case OfferingDataServices:
		return o == OfferingDataServices && (!s.DirectOnly || !indirect)
	case OfferingServers:
		if o == OfferingServers || o == OfferingSQLServer {
			return true
		}
		guest := o == OfferingVMware || o == OfferingSCVMM || o == OfferingAzureStackHCI
		return guest && p.features[FeatureGuestManagement]
	case OfferingResourceBridge:
		return bridge
	default:
		return o == s.Offering
	}
	return false
}

// attribution is the offering, feature and spec row that admit an entry.
type attribution struct {
	offering string
	feature  string
	row      *SpecRow
}

// attribute picks, among the entry's active spec rows, the one that names
// the row: the first selected offering in attribution order, then a spec row
// without a feature before one with.
func (p *Policy) attribute(e *Entry, act []*SpecRow) attribution {
	for _, o := range Offerings() {
		if !p.selected[o] {
			continue
		}
		var best *SpecRow
		for _, s := range act {
			if !p.includes(o, e, s) {
				continue
			}
			if best == nil || len(best.Features) > 0 && len(s.Features) == 0 {
				best = s
			}
		}
		if best != nil {
			return attribution{offering: o, feature: p.firstFeature(best), row: best}
		}
	}
	return attribution{row: act[0]}
}

// privateOK reports whether an active spec row lets the name resolve to
// private addresses: a Private row with private link, or the resource
// management row with a resource management private link.
func (p *Policy) privateOK(act []*SpecRow) bool {
	for _, s := range act {
		if s.PrivateLink == PrivateLinkPrivate && p.features[FeaturePrivateLink] {
			return true
		}
		if s.PrivateLink == PrivateLinkPublicUnlessRMPL && p.features[FeatureResourceMgmtPrivLink] {
			return true
		}
	}
	return false
}

// userEntry is a parsed allow/deny/vCenter/SCVMM entry.
type userEntry struct {
	host string     // normalized host pattern ("" for address entries)
	addr netip.Addr // address entries
	port int        // 0 = none given
	path string
}

// parseUserEntry parses host, host:port, host:port/path, host/path, IP,
// IP:port, [IPv6] or [IPv6]:port.
func parseUserEntry(s string) (userEntry, error) {
	var ue userEntry
	s = strings.TrimSpace(s)
	if s == "" {
		return ue, errors.New("empty entry")
	}
	if strings.Contains(s, "://") {
		return ue, fmt.Errorf("%q: write the host without a scheme (host, host:port or host:port/path)", s)
	}
	// bare IPv6 without brackets or port
	if a, err := netip.ParseAddr(s); err == nil {
		ue.addr = a.Unmap()
		if a.Zone() != "" {
			return ue, fmt.Errorf("%q: an address with a zone cannot be allowed", s)
		}
		return ue, nil
	}
	hp := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		hp, ue.path = s[:i], s[i:]
		if strings.ContainsAny(ue.path, "?#% \\") {
			return ue, fmt.Errorf("%q: a path may not contain ?, #, %%, spaces or backslashes", s)
		}
		ue.path = strings.TrimSuffix(ue.path, "/")
		if ue.path == "" {
			ue.path = ""
		}
	}
	host := hp
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return ue, fmt.Errorf("%q: missing ] after an IPv6 address", s)
		}
		host = hp[1:end]
		rest := hp[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return ue, fmt.Errorf("%q: expected :port after ]", s)
			}
			port, ok := parsePort(rest[1:])
			if !ok {
				return ue, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, rest[1:])
			}
			ue.port = port
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return ue, fmt.Errorf("%q: %q is not an IPv6 address", s, host)
		}
		ue.addr = a.Unmap()
		return ue, nil
	}
	if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		host = hp[:i]
		port, ok := parsePort(hp[i+1:])
		if !ok {
			return ue, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, hp[i+1:])
		}
		ue.port = port
	}
	if a, err := netip.ParseAddr(host); err == nil {
		ue.addr = a.Unmap()
		return ue, nil
	}
	hpat, err := compileHostPattern(host)
	if err != nil {
		return ue, fmt.Errorf("%q: %v", s, err)
	}
	ue.host = hpat.String()
	return ue, nil
}

// userRuleName returns a user entry's rule name: the entry as written, with
// ":port" added when it names none.
func userRuleName(written string, port int) string {
	ue, err := parseUserEntry(written)
	if err != nil || ue.port != 0 {
		return written
	}
	if ue.addr.Is6() && !strings.HasPrefix(written, "[") {
		return "[" + written + "]:" + strconv.Itoa(port)
	}
	return written + ":" + strconv.Itoa(port)
}

// addUser compiles an allow, vCenter or SCVMM entry.
func (p *Policy) addUser(written string, src Source, key string, order *int, e *Entry, at attribution) error {
	written = strings.TrimSpace(written)
	var expanded []string
	if strings.Contains(written, "<region>") {
		if len(p.regions) == 0 {
			return fmt.Errorf("%s: %q uses <region> but no regions are set", key, written)
		}
		for _, r := range p.regions {
			expanded = append(expanded, strings.ReplaceAll(written, "<region>", r))
		}
	} else {
		expanded = []string{written}
	}
	for _, w := range expanded {
		ue, err := parseUserEntry(w)
		if err != nil {
			return fmt.Errorf("%s: %v", key, err)
		}
		port := ue.port
		if port == 0 {
			port = 443
		}
		name := userRuleName(w, port)
		c := &crow{
			ports:     []int{port},
			names:     []string{name},
			path:      ue.path,
			source:    src,
			privateOK: true,
			featured:  false,
			order:     *order,
			entry:     -1,
		}
		*order++
		if src != SourceAllow && (ue.path != "" || strings.IndexByte(ue.host, '*') >= 0) {
			return fmt.Errorf("%s: %q: expected host, IP, host:port, IP:port or [IPv6]:port", key, w)
		}
		r := Rule{Pattern: ue.host, Path: ue.path, Ports: slices.Clone(c.ports), Scheme: "https", Source: src, Written: w}
		if port == 80 {
			r.Scheme = "http"
		}
		if e != nil {
			c.offering, c.feature = at.offering, at.feature
			r.Offering, r.Feature = at.offering, at.feature
			r.When, r.Section, r.Description, r.Note = at.row.When, at.row.Section, at.row.Description, e.Note
		} else {
			r.Section = "allow"
			r.Description = "allow entry of the configuration"
		}
		if ue.addr.IsValid() {
			r.Pattern = ue.addr.String()
			p.allowAddr[ue.addr] = append(p.allowAddr[ue.addr], c)
		} else {
			hp, _ := compileHostPattern(ue.host)
			c.pat = hp
			p.allow.add(c)
		}
		p.rules = append(p.rules, r)
	}
	return nil
}

// DenyEntry is one deny entry of a configuration, <region> expanded.
type DenyEntry struct {
	Entry string     // the entry, <region> expanded
	Host  string     // normalized host pattern; "" for an address entry
	Addr  netip.Addr // an address entry's address (IPv4-mapped unmapped)
	Port  int        // 0 = every port
}

// ParseDeny parses a deny entry as Compile does (host, host:port, IP,
// IP:port, [IPv6], [IPv6]:port; host may be a pattern; no path, no IPv6
// zone), one DenyEntry per region when it names <region>.
func ParseDeny(written string, regions []string) ([]DenyEntry, error) {
	written = strings.TrimSpace(written)
	expanded := []string{written}
	if strings.Contains(written, "<region>") {
		if len(regions) == 0 {
			return nil, fmt.Errorf("%q uses <region> but no regions are set", written)
		}
		expanded = expanded[:0]
		for _, r := range regions {
			expanded = append(expanded, strings.ReplaceAll(written, "<region>", r))
		}
	}
	out := make([]DenyEntry, 0, len(expanded))
	for _, w := range expanded {
		ue, err := parseUserEntry(w)
		if err != nil {
			return nil, err
		}
		if ue.path != "" || strings.Contains(w, "/") {
			return nil, fmt.Errorf("%q: a deny entry cannot have a path (deny is by host and port)", w)
		}
		out = append(out, DenyEntry{Entry: w, Host: ue.host, Addr: ue.addr, Port: ue.port})
	}
	return out, nil
}

// addDeny compiles a deny entry: no port = every port; a path is an error.
func (p *Policy) addDeny(written string, order *int) error {
	entries, err := ParseDeny(written, p.regions)
	if err != nil {
		return fmt.Errorf("deny: %v", err)
	}
	for _, de := range entries {
		w := de.Entry
		c := &crow{names: []string{w}, source: SourceDeny, order: *order, entry: -1}
		*order++
		if de.Port != 0 {
			c.ports = []int{de.Port}
		} else {
			c.written = w
			for i, port := range commonPorts {
				c.anyPort[i] = userRuleName(w, port)
			}
		}
		if de.Addr.IsValid() {
			p.denyAddr[de.Addr] = append(p.denyAddr[de.Addr], c)
			continue
		}
		c.pat, _ = compileHostPattern(de.Host)
		p.deny.add(c)
	}
	return nil
}

// Config returns the configuration the policy was compiled from.
func (p *Policy) Config() Config { return cloneConfig(p.cfg) }

// Rules returns the effective allowlist: catalog rows in catalog order with
// regions filled, then user entries. The slice is a copy.
func (p *Policy) Rules() []Rule {
	out := slices.Clone(p.rules)
	for i := range out {
		out[i].Ports = slices.Clone(out[i].Ports)
	}
	return out
}

// Selected returns the selected canonical offerings, in attribution order.
func (p *Policy) Selected() []string {
	var out []string
	for _, o := range Offerings() {
		if p.selected[o] {
			out = append(out, o)
		}
	}
	return out
}

// Regions returns the configured regions, normalized.
func (p *Policy) Regions() []string { return slices.Clone(p.regions) }

// Revision returns the catalog revision the policy was compiled from
// (catalog.revision with its default filled in).
func (p *Policy) Revision() string { return p.revision }

// Cloud returns the cloud whose tables the policy was compiled from.
func (p *Policy) Cloud() string { return p.cloud }

// Catalog returns the catalog view of the policy's revision and cloud.
func (p *Policy) Catalog() *Catalog { return p.cat }

// AllRules returns every catalog row, with <region> filled for each of
// regions (left as written when regions is empty) and the offerings of all
// sections that list it joined with ",": `arcfence catalog --all`.
func (c *Catalog) AllRules(regions []string) []Rule {
	var out []Rule
	for _, e := range c.Entries {
		pats := []string{e.Pattern}
		if strings.Contains(e.Pattern, "<region>") && len(regions) > 0 {
			pats = pats[:0]
			for _, r := range regions {
				pats = append(pats, strings.ReplaceAll(e.Pattern, "<region>", NormalizeRegion(r)))
			}
		}
		var feats []string
		for _, s := range e.Sources {
			for _, f := range s.Features {
				if !slices.Contains(feats, f) {
					feats = append(feats, f)
				}
			}
		}
		sort.Strings(feats)
		s0 := e.Sources[0]
		for _, pat := range pats {
			out = append(out, Rule{
				Pattern: pat, Path: e.Path, Ports: e.Ports, Scheme: e.Scheme,
				Offering: strings.Join(e.Offerings(), ","), Feature: strings.Join(feats, ","),
				When: s0.When, PrivateLink: s0.PrivateLink, Section: s0.Section,
				Description: s0.Description, Note: e.Note, Source: SourceCatalog,
				Revisions: e.Revisions(), Clouds: e.Clouds(),
			})
		}
	}
	return out
}
