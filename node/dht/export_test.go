package dht

import "time"

// SetClock sets the table's clock, for tests.
func (t *Table) SetClock(now func() time.Time) { t.now = now }

// FloodBurst is floodBurst, for tests.
const FloodBurst = floodBurst
