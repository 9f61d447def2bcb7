// Package version holds the release version that the build stamps into both binaries, for their
// --version flag, their tenancy_build_info metric and their start-up log line.
package version
