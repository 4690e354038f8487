// Command hashcash compares the hash rate of this project's hashcash
// minter with that of the reference C tool (Debian package hashcash).
//
// It measures, in alternating rounds so that both see the same machine
// load:
//
//   - our minter on one worker, and on all CPUs (hashcash.Speed);
//   - the C tool's own figure, `hashcash -s`;
//   - the C tool minting for real: timed `hashcash -m -b BITS` runs, the
//     number of tries read from each stamp's counter (the C tool counts
//     up from zero in the alphabet 0-9A-Za-z+/, one try per value).
//
// and prints the medians, the ratio ours/C on one core and our speed-up
// from one worker to all.
//
// Usage:
//
//	go run ./bench/hashcash [-d 2s] [-rounds 5] [-bits 24]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
)

func main() {
	d := flag.Duration("d", 2*time.Second, "duration of each measurement")
	rounds := flag.Int("rounds", 5, "number of measurement rounds")
	bits := flag.Int("bits", 24, "bits of the stamps the C tool mints")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench/hashcash: ")

	ncpu := runtime.NumCPU()
	fmt.Printf("hashcash minter benchmark: %s %s/%s, %d CPUs, %d rounds of %v\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, ncpu, *rounds, *d)

	ctool, err := newCTool()
	if err != nil {
		log.Printf("no C tool, measuring ours only: %v", err)
	} else {
		defer ctool.close()
	}

	ctx := context.Background()
	var one, all, cSelf, cMint []float64
	for r := 1; r <= *rounds; r++ {
		one = append(one, hashcash.Speed(ctx, 1, *d))
		all = append(all, hashcash.Speed(ctx, ncpu, *d))
		line := fmt.Sprintf("round %d: ours 1 worker %s, %d workers %s", r, mhs(one[r-1]), ncpu, mhs(all[r-1]))
		if ctool != nil {
			s, err := ctool.selfSpeed()
			if err != nil {
				log.Fatal(err)
			}
			m, err := ctool.mintSpeed(*bits, *d)
			if err != nil {
				log.Fatal(err)
			}
			cSelf, cMint = append(cSelf, s), append(cMint, m)
			line += fmt.Sprintf("; C -s %s, C -m %s", mhs(s), mhs(m))
		}
		fmt.Println(line)
	}

	fmt.Println("\nmedians:")
	fmt.Printf("  ours, 1 worker:              %s\n", mhs(median(one)))
	fmt.Printf("  ours, %d workers:             %s  (speed-up %.2fx over 1 worker)\n", ncpu, mhs(median(all)), median(all)/median(one))
	if ctool != nil {
		fmt.Printf("  C hashcash -s:               %s\n", mhs(median(cSelf)))
		fmt.Printf("  C hashcash -m -b %d (timed): %s\n", *bits, mhs(median(cMint)))
		fmt.Printf("  ratio ours/C, one core:      %.2f (vs -m), %.2f (vs -s)\n",
			median(one)/median(cMint), median(one)/median(cSelf))
	}
}

func mhs(rate float64) string { return fmt.Sprintf("%6.2f M hashes/s", rate/1e6) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// cTool runs the reference hashcash tool in a scratch directory, so
// that nothing touches a double-spend database.
type cTool struct {
	path, dir string
}

func newCTool() (*cTool, error) {
	path, err := exec.LookPath("hashcash")
	if err != nil {
		return nil, fmt.Errorf("%w (install the Debian package hashcash)", err)
	}
	dir, err := os.MkdirTemp("", "bench-hashcash-")
	if err != nil {
		return nil, err
	}
	return &cTool{path: path, dir: dir}, nil
}

func (c *cTool) close() { os.RemoveAll(c.dir) }

func (c *cTool) run(args ...string) (string, error) {
	cmd := exec.Command(c.path, args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"HOME=" + c.dir, "TZ=UTC"}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hashcash %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// selfSpeed returns what `hashcash -s` reports: a one-number calibration
// of its fastest core.
func (c *cTool) selfSpeed() (float64, error) {
	out, err := c.run("-s", "-q")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseFloat(out, 64)
	if err != nil {
		return 0, fmt.Errorf("hashcash -s printed %q: %w", out, err)
	}
	return n, nil
}

// mintSpeed mints bits-bit stamps with the C tool for at least d and
// returns the tries per second of wall time.
func (c *cTool) mintSpeed(bits int, d time.Duration) (float64, error) {
	var tries, elapsed float64
	for i := 0; time.Duration(elapsed*float64(time.Second)) < d; i++ {
		start := time.Now()
		stamp, err := c.run("-m", "-q", "-u", "-b", strconv.Itoa(bits), "bench"+strconv.Itoa(i))
		if err != nil {
			return 0, err
		}
		elapsed += time.Since(start).Seconds()
		n, err := cTries(stamp)
		if err != nil {
			return 0, err
		}
		tries += n
	}
	return tries / elapsed, nil
}

// cTries returns the number of tries the C tool made for stamp: its
// counter read as a number in the alphabet 0-9A-Za-z+/, plus one.
func cTries(stamp string) (float64, error) {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/"
	counter := stamp[strings.LastIndexByte(stamp, ':')+1:]
	var n float64
	for i := 0; i < len(counter); i++ {
		v := strings.IndexByte(alphabet, counter[i])
		if v < 0 {
			return 0, fmt.Errorf("stamp %q: unexpected counter character %q", stamp, counter[i])
		}
		n = n*64 + float64(v)
	}
	return n + 1, nil
}
