package policy

import (
	"slices"
	"sort"
	"strings"
)

// azureRegions are the public Azure region names (az account list-locations),
// in the normalized form the spec uses in regional endpoints.
var azureRegions = []string{
	"australiacentral", "australiacentral2", "australiaeast", "australiasoutheast",
	"austriaeast", "belgiumcentral", "brazilsouth", "brazilsoutheast",
	"canadacentral", "canadaeast", "centralindia", "centralus", "centraluseuap",
	"chilecentral", "denmarkeast", "eastasia", "eastus", "eastus2", "eastus2euap",
	"francecentral", "francesouth", "germanynorth", "germanywestcentral",
	"indonesiacentral", "israelcentral", "italynorth", "japaneast", "japanwest",
	"jioindiacentral", "jioindiawest", "koreacentral", "koreasouth",
	"malaysiasouth", "malaysiawest", "mexicocentral", "newzealandnorth",
	"northcentralus", "northeurope", "norwayeast", "norwaywest", "polandcentral",
	"qatarcentral", "southafricanorth", "southafricawest", "southcentralus",
	"southeastasia", "southindia", "spaincentral", "swedencentral", "swedensouth",
	"switzerlandnorth", "switzerlandwest", "taiwannorth", "taiwannorthwest",
	"uaecentral", "uaenorth", "uksouth", "ukwest", "westcentralus", "westeurope",
	"westindia", "westus", "westus2", "westus3",
	"usgovarizona", "usgovtexas", "usgovvirginia", "chinaeast", "chinaeast2",
	"chinaeast3", "chinanorth", "chinanorth2", "chinanorth3",
}

// Regions returns the known Azure region names, sorted.
func Regions() []string {
	out := slices.Clone(azureRegions)
	sort.Strings(out)
	return out
}

// NormalizeRegion returns a region name as the spec forms regional
// endpoints: lower case with spaces removed ("East US 2" -> "eastus2").
func NormalizeRegion(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), ""))
}

// knownRegion reports whether r (normalized) is an Azure region name.
func knownRegion(r string) bool {
	return slices.Contains(azureRegions, r)
}

// closeRegions returns up to three known regions nearest to r by edit
// distance (or sharing its prefix), for error messages.
func closeRegions(r string) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	for _, n := range azureRegions {
		d := editDistance(r, n)
		if strings.HasPrefix(n, r) || strings.HasPrefix(r, n) {
			d = min(d, 2)
		}
		if d <= max(2, len(r)/3) {
			cs = append(cs, cand{n, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].name < cs[j].name
	})
	var out []string
	for i := 0; i < len(cs) && i < 3; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
