package main

import "testing"

// testBinary returns the phpchat-node binary built for the end-to-end
// tests.
//
// TEMPORARY STAND-IN: e2e_test.go (another branch) provides the real
// testBinary with this signature. DELETE THIS FILE AT MERGE.
func testBinary(t testing.TB) string {
	t.Helper()
	return binary
}
