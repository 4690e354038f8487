package hashcash_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
)

func ExampleMint() {
	s, err := hashcash.Mint(context.Background(), "node-42", 12)
	if err != nil {
		log.Fatal(err)
	}
	// Send s.String() along with the request it pays for.
	_, err = hashcash.Policy{MinBits: 12, Resource: "node-42"}.Verify(s.String())
	fmt.Println(err)
	// Output: <nil>
}

func ExamplePolicy_Verify() {
	p := hashcash.Policy{
		MinBits:  20,
		Resource: "mint2",
		Now:      func() time.Time { return time.Date(2014, 4, 23, 12, 0, 0, 0, time.UTC) },
	}
	for _, stamp := range []string{
		"1:20:140422:mint2:ext2:salt2:256507",
		"1:20:140422:mint2:ext2:salt2:256508",
		"1:20:140422:mint3:ext2:salt2:256507",
		"1:20:140420:mint2:ext2:salt2:256507",
		"1:2O:140422:mint2:ext2:salt2:256507",
	} {
		_, err := p.Verify(stamp)
		var herr *hashcash.Error
		if errors.As(err, &herr) {
			fmt.Printf("refused (%v): %v\n", herr.Reason, err)
			continue
		}
		fmt.Println("accepted")
	}
	// Output:
	// accepted
	// refused (insufficient bits): hashcash: insufficient bits: stamp claims 20 bits, hash has 0
	// refused (wrong resource): hashcash: wrong resource: stamp is for "mint3", want "mint2"
	// refused (expired stamp): hashcash: expired stamp: dated 2014-04-20T00:00:00Z, expired at 2014-04-22T00:00:00Z
	// refused (malformed stamp): hashcash: malformed stamp: field 2 (bits): "2O" is not a decimal number
}
