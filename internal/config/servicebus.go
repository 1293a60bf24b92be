package config

import "github.com/arcfence/arcfence/internal/servicebus"

// readServicebus reads a saved allowlist answer (see internal/servicebus).
func readServicebus(path string) ([]string, error) {
	return servicebus.ReadFile(path)
}
