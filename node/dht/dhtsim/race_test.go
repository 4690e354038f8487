//go:build race

package dhtsim

// raceEnabled is true when the race detector slows the tests down.
const raceEnabled = true
