package policy

// Config is the part of arcfence's configuration that shapes the policy.
// The zero value of each field means its documented default.
type Config struct {
	// Regions are Azure region names ("eastus2", or "East US 2": normalized
	// by NormalizeRegion). <region> patterns expand once per region.
	Regions []string
	// Offerings are Arc offerings (see Offerings); aliases are accepted.
	Offerings []string
	// Features switch on the catalog's conditional rows (see Features).
	Features []string
	// Phase is "onboarding" (default) or "steady".
	Phase string
	// DataServicesMode is "direct" (default) or "indirect".
	DataServicesMode string
	// Allow are extra entries: host, host:port, host:port/path, IP, IP:port
	// or [IPv6]:port. No port means 443.
	Allow []string
	// Deny are entries refused whatever else matches: host, host:port, IP,
	// IP:port or [IPv6]:port, <region> expanded. No port means every port.
	Deny []string
	// VCenter is vmware.vcenter: host, IP, host:port, IP:port or [IPv6]:port.
	VCenter string
	// SCVMMServer is scvmm.server, in the same forms as VCenter.
	SCVMMServer string
	// ServicebusNames, when non-nil, replace the wide *.servicebus.windows.net
	// rows with these names (the azgn* row stays): the answer of the
	// guestnotificationservice allowlist call.
	ServicebusNames []string
}

// Offering names, canonical, in the order that attributes a row to an
// offering when several selected offerings bring it in.
const (
	OfferingKubernetes     = "kubernetes"
	OfferingDataServices   = "data-services"
	OfferingServers        = "servers"
	OfferingSQLServer      = "sql-server"
	OfferingESU            = "esu"
	OfferingResourceBridge = "resource-bridge"
	OfferingVMware         = "vmware"
	OfferingSCVMM          = "scvmm"
	OfferingAzureStackHCI  = "azure-stack-hci"
)

// Offerings returns the canonical offering names in attribution order.
func Offerings() []string {
	return []string{OfferingKubernetes, OfferingDataServices, OfferingServers, OfferingSQLServer,
		OfferingESU, OfferingResourceBridge, OfferingVMware, OfferingSCVMM, OfferingAzureStackHCI}
}

// offeringAliases maps accepted aliases to their canonical offering.
var offeringAliases = map[string]string{
	"app-services":     OfferingKubernetes,
	"machine-learning": OfferingKubernetes,
}

// Feature names.
const (
	FeatureClusterConnect       = "cluster-connect"
	FeatureCustomLocations      = "custom-locations"
	FeatureAzureRBAC            = "azure-rbac"
	FeaturePortal               = "portal"
	FeatureAutoUpgrade          = "auto-upgrade"
	FeatureWindowsAdminCenter   = "windows-admin-center"
	FeatureSSH                  = "ssh"
	FeatureESU                  = "esu"
	FeatureGuestManagement      = "guest-management"
	FeatureLegacyTelemetry      = "legacy-telemetry"
	FeatureLegacyImageDownload  = "legacy-image-download"
	FeaturePrivateLink          = "private-link"
	FeatureResourceMgmtPrivLink = "resource-management-private-link"
)

// Features returns every feature name.
func Features() []string {
	return []string{FeatureClusterConnect, FeatureCustomLocations, FeatureAzureRBAC, FeaturePortal,
		FeatureAutoUpgrade, FeatureWindowsAdminCenter, FeatureSSH, FeatureESU, FeatureGuestManagement,
		FeatureLegacyTelemetry, FeatureLegacyImageDownload, FeaturePrivateLink, FeatureResourceMgmtPrivLink}
}

// Phases.
const (
	PhaseOnboarding = "onboarding"
	PhaseSteady     = "steady"
)

// Data services connectivity modes.
const (
	DataServicesDirect   = "direct"
	DataServicesIndirect = "indirect"
)
