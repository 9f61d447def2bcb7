//go:build race

package faults_test

// raceEnabled says the tests run with the race detector; the suite builds the binaries alike.
const raceEnabled = true
