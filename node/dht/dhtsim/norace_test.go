//go:build !race

package dhtsim

const raceEnabled = false
