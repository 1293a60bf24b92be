package policy

import (
	"slices"
	"sort"
	"strings"

	"github.com/arcfence/arcfence/internal/suggest"
)

// azureRegions are the Azure region names of every cloud (az account
// list-locations), in the normalized form the spec uses in regional endpoints.
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

// cloudOf returns the cloud whose region r (normalized) is: Azure
// Government regions start with "usgov" (the 2026-08 tables name
// usgovvirginia), 21Vianet's with "china" (chinanorth3, ...).
func cloudOf(r string) string {
	switch {
	case strings.HasPrefix(r, "usgov"):
		return CloudUSGov
	case strings.HasPrefix(r, "china"):
		return CloudChina
	}
	return CloudPublic
}

// cloudRegions returns the known regions of cloud, in azureRegions order.
func cloudRegions(cloud string) []string {
	var out []string
	for _, r := range azureRegions {
		if cloudOf(r) == cloud {
			out = append(out, r)
		}
	}
	return out
}

// exampleRegion returns a region of cloud to name in error messages.
func exampleRegion(cloud string) string {
	switch cloud {
	case CloudUSGov:
		return "usgovvirginia"
	case CloudChina:
		return "chinanorth3"
	}
	return "eastus2"
}

// Regions returns the known Azure region names of every cloud, sorted.
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

// closeRegions returns up to three regions of cloud nearest to r by edit
// distance (a shared prefix counts as close), for error messages.
func closeRegions(r, cloud string) []string {
	dist := func(a, b string) int {
		d := suggest.Distance(a, b)
		if strings.HasPrefix(b, a) || strings.HasPrefix(a, b) {
			d = min(d, 2)
		}
		return d
	}
	return suggest.Nearest(r, cloudRegions(cloud), max(2, len(r)/3), 3, dist)
}
