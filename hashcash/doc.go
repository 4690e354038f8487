// Package hashcash parses, verifies and mints Hashcash version 1 stamps.
//
// A stamp is the text
//
//	1:bits:date:resource:ext:rand:counter
//
// whose SHA-1 hash begins with at least bits zero bits. Making one costs
// about 2^bits hashes; checking one costs a single hash. The format is
// that of the reference hashcash tool (hashcash.org, Debian package
// hashcash): stamps minted by Mint are accepted by `hashcash -c`, and
// stamps minted by `hashcash -m` are accepted by Policy.Verify.
//
// Dates are UTC and come in three widths: YYMMDD, YYMMDDhhmm and
// YYMMDDhhmmss. Two-digit years 70–99 are 1970–1999 and 00–69 are
// 2000–2069. Mint writes YYMMDDhhmmss unless told otherwise.
//
// # Verifying
//
// A Policy names the resource a stamp must be for, the bits it must
// carry, how long it stays valid (DefaultExpiry) and how far its date may
// run ahead of the local clock (DefaultSkew). Policy.Verify refuses a
// stamp with an *Error whose Reason a caller maps to its own error codes;
// errors.Is(err, ErrExpired) and the like test for one reason.
//
// The package keeps no record of spent stamps. A caller that needs
// double-spend protection keys a store by the stamp text, keeps each
// entry until Policy.ExpiresAt, and reports a replay as ReasonSpent.
//
// # Minting
//
// Mint searches on several goroutines at once. Each try hashes a single
// 64-byte SHA-1 block: the stamp is laid out so that the varying part of
// the counter lies in its final block, whose predecessors are hashed
// once, and the rounds and message-schedule words that do not depend on
// the varying characters are computed once per 64 or 262,144 tries
// (see sha1.go). Speed measures the resulting hash rate.
package hashcash
