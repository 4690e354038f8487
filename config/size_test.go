package config

import "testing"

func TestDiskReserve(t *testing.T) {
	for v, want := range map[string]uint64{"64MiB": 64 << 20, "1GiB": 1 << 30, "500 MB": 500e6, "16777216": 16 << 20, "1TiB": 1 << 40} {
		s, err := Resolve(Map{Values: map[string]string{"disk-reserve": v}, Origin: "flag"})
		if err != nil || s.DiskReserve != want {
			t.Errorf("disk-reserve %q: %d, %v; want %d", v, s.DiskReserve, err, want)
		}
	}
	for _, v := range []string{"", "1MiB", "15MiB", "-1", "64XB", "MiB", "1.5GiB", "99999999999TiB"} {
		if _, err := Resolve(Map{Values: map[string]string{"disk-reserve": v}, Origin: "flag"}); err == nil {
			t.Errorf("disk-reserve %q accepted", v)
		}
	}
	s, err := Resolve()
	if err != nil || s.DiskReserve != 64<<20 {
		t.Fatalf("default disk-reserve: %d, %v", s.DiskReserve, err)
	}
}
