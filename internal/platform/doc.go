// Package platform holds the few operating-system facts arcfence asks for
// that have no portable form in the standard library, one build-tagged file
// per family, so that every release target (linux, darwin, windows) builds.
package platform
