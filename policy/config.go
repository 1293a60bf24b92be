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
	// Revision is catalog.revision: which of Microsoft's tables (see
	// Revisions); "" = LatestRevision.
	Revision string
	// Cloud is cloud: public (default, ""), usgov or china (see Clouds).
	Cloud string
	// ServicebusNames, when non-nil, replace the wide *.servicebus.windows.net
	// rows with these names (the azgn* row stays): the answer of the
	// guestnotificationservice allowlist call.
	ServicebusNames []string
	// Connection is connection: direct (default, ""), gateway or both
	// (see ConnectionGateway).
	Connection string
	// GatewayEndpoint is gateway.endpoint, <prefix>.gw.arc.azure.com
	// ("https://" and a trailing "/" allowed): required with connection
	// gateway or both (see NormalizeGatewayEndpoint).
	GatewayEndpoint string
	// GatewayResourceID is gateway.resource_id, the gateway resource's ARM
	// id: agent-config fills it into the gateway commands; it does not
	// change the policy.
	GatewayResourceID string
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
	// Features of conditions the 2026-08 tables added.

	// FeatureClusterExtensions: Arc-enabled Kubernetes extensions are used
	// (linuxgeneva-microsoft.azurecr.io).
	FeatureClusterExtensions = "cluster-extensions"
	// FeatureExtensionMonitoring: Azure IoT Operations, the Key Vault Secret
	// Store extension or cert-manager run on the cluster (their monitoring hosts).
	FeatureExtensionMonitoring = "extension-monitoring"
	// FeatureWindowsServerLicensing: hotpatching, Windows Server Azure
	// Benefits or Windows Server pay-as-you-go billing (dls.microsoft.com).
	FeatureWindowsServerLicensing = "windows-server-licensing"
	// FeatureSQLEntraAuth: SQL Server enabled by Azure Arc uses Entra
	// authentication (its key vault and Microsoft Graph).
	FeatureSQLEntraAuth = "sql-entra-auth"
	// FeatureSQLServerESU: ESUs for SQL Server on an ESU-only machine.
	FeatureSQLServerESU = "sql-server-esu"
	// FeatureWindowsNTP: the resource bridge's time source is Windows NTP
	// (time.windows.com, 123/UDP).
	FeatureWindowsNTP = "windows-ntp"
)

// Features returns every feature name.
func Features() []string {
	return []string{FeatureClusterConnect, FeatureCustomLocations, FeatureAzureRBAC, FeaturePortal,
		FeatureAutoUpgrade, FeatureWindowsAdminCenter, FeatureSSH, FeatureESU, FeatureGuestManagement,
		FeatureLegacyTelemetry, FeatureLegacyImageDownload, FeaturePrivateLink, FeatureResourceMgmtPrivLink,
		FeatureClusterExtensions, FeatureExtensionMonitoring, FeatureWindowsServerLicensing,
		FeatureSQLEntraAuth, FeatureSQLServerESU, FeatureWindowsNTP}
}

// Catalog revisions: each is one set of Microsoft's Arc endpoint tables.
const (
	// Revision202401 is the requirements page the catalog was first built
	// from (Microsoft's tables around January 2024), public cloud only.
	Revision202401 = "2024-01"
	// Revision202608 is Microsoft's tables as of August 2026: public cloud,
	// Azure Government and Azure operated by 21Vianet.
	Revision202608 = "2026-08"
	// LatestRevision is the default of catalog.revision.
	LatestRevision = Revision202608
)

// Revisions returns the catalog revisions, oldest first.
func Revisions() []string { return []string{Revision202401, Revision202608} }

// Clouds (config cloud).
const (
	// CloudPublic is Azure (the default).
	CloudPublic = "public"
	// CloudUSGov is Azure Government.
	CloudUSGov = "usgov"
	// CloudChina is Azure operated by 21Vianet.
	CloudChina = "china"
)

// Clouds returns the cloud names, the default first.
func Clouds() []string { return []string{CloudPublic, CloudUSGov, CloudChina} }

// GatewayCloud reports whether the Arc gateway (issue 16: connection
// gateway or both) exists in cloud: the gateway pages cover the public
// cloud only, so Compile refuses a gateway connection elsewhere.
func GatewayCloud(cloud string) bool { return cloud == "" || cloud == CloudPublic }

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
