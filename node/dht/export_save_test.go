package dht

import "time"

// SetSaveEvery sets how often Run saves a changed table, for tests that
// start their nodes after it; restore sets it back.
func SetSaveEvery(d time.Duration) (restore func()) {
	old := saveEvery
	saveEvery = d
	return func() { saveEvery = old }
}

// TableKey is the Meta name of the saved table, for tests.
const TableKey = tableKey
