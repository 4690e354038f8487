package hashcash

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests in this file check interoperation with the reference
// hashcash tool, in both directions. Notes on the tool (1.22):
//
//   - `hashcash -c -b BITS -r RESOURCE STAMP` exits 0 only when it also
//     checked for double spending in a database (-d); without one it
//     exits 2 ("ok but not fully checked"). -y makes it exit 0 for a
//     valid stamp anyway. It exits 1 for an invalid one.
//   - -d keeps spent stamps in hashcash.sdb in the working directory, so
//     the tests never pass -d, and run the tool in a temporary
//     directory with HOME pointing there.
//   - It lowercases the resource when minting, and compares resources
//     case-insensitively (with wildcards) when checking.
//   - It writes the date in UTC whatever TZ says (-u changes nothing
//     here; checked below with a zone far from UTC).

// cTool returns a function that runs the hashcash tool with args in a
// scratch directory, or skips the test if the tool is not installed.
func cTool(t *testing.T) func(args ...string) (string, error) {
	t.Helper()
	return cToolIn(t, "UTC")
}

// cToolIn is cTool with the time zone TZ set to tz.
func cToolIn(t *testing.T, tz string) func(args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("hashcash")
	if err != nil {
		t.Skip("hashcash tool not on PATH; install the Debian package hashcash to run this test")
	}
	dir := t.TempDir()
	return func(args ...string) (string, error) {
		cmd := exec.Command(path, args...)
		cmd.Dir = dir
		cmd.Env = []string{"HOME=" + dir, "TZ=" + tz, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

// exitCode returns the exit code in err from running a command, 0 for
// a nil err, or -1 if the command did not run.
func exitCode(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	return -1
}

func TestCToolAcceptsOurStamps(t *testing.T) {
	hashcash := cTool(t)
	tests := []struct {
		name     string
		resource string
		bits     int
		opts     []Option
	}{
		{"12-digit date", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", 16, nil},
		{"10-digit date", "node", 12, []Option{WithDateWidth(DateMinute)}},
		{"6-digit date", "node", 12, []Option{WithDateWidth(DateDay)}},
		{"extension", "a@example.org", 10, []Option{WithExt("x=1;y=2")}},
		{"mixed-case resource", "NodeID", 10, nil},
		{"two-block stamp", strings.Repeat("r", 100), 12, nil},
		{"one worker", "node", 14, []Option{WithWorkers(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Mint(context.Background(), tt.resource, tt.bits, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			stamp := s.String()
			out, err := hashcash("-c", "-y", "-b", strconv.Itoa(tt.bits), "-r", tt.resource, stamp)
			if code := exitCode(err); code != 0 {
				t.Errorf("hashcash -c refused %s: exit %d (%v)\n%s", stamp, code, err, out)
			}
		})
	}
}

// TestCToolExitCodes pins down the tool's exit codes that the test above
// relies on, so that a change in the tool does not pass unnoticed.
func TestCToolExitCodes(t *testing.T) {
	hashcash := cTool(t)
	s, err := Mint(context.Background(), "node", 12)
	if err != nil {
		t.Fatal(err)
	}
	stamp := s.String()
	tampered := stamp[:len(stamp)-1] + "x"
	if stamp == tampered {
		tampered = stamp[:len(stamp)-1] + "y"
	}
	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"valid, no database", []string{"-c", "-b", "12", "-r", "node", stamp}, 2},
		{"valid, -y", []string{"-c", "-y", "-b", "12", "-r", "node", stamp}, 0},
		{"more bits required", []string{"-c", "-y", "-b", "13", "-r", "node", stamp}, 1},
		{"wrong resource", []string{"-c", "-y", "-b", "12", "-r", "other", stamp}, 1},
	} {
		out, err := hashcash(tt.args...)
		if code := exitCode(err); code != tt.want {
			t.Errorf("%s: hashcash %s: exit %d, want %d\n%s", tt.name, strings.Join(tt.args, " "), code, tt.want, out)
		}
	}
	// A tampered stamp almost never keeps 12 zero bits; skip the check
	// in the rare case that it does.
	if ZeroBits(tampered) < 12 {
		out, err := hashcash("-c", "-y", "-b", "12", "-r", "node", tampered)
		if code := exitCode(err); code != 1 {
			t.Errorf("hashcash -c accepted tampered %s: exit %d\n%s", tampered, code, out)
		}
	}
}

func TestWeAcceptCToolStamps(t *testing.T) {
	hashcash := cTool(t)
	for _, width := range []string{"6", "10", "12"} {
		t.Run("width "+width, func(t *testing.T) {
			const resource = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
			out, err := hashcash("-m", "-q", "-u", "-z", width, "-b", "16", resource)
			if err != nil {
				t.Fatalf("hashcash -m: %v\n%s", err, out)
			}
			stamp := strings.TrimSpace(out)
			s, err := Policy{MinBits: 16, Resource: resource}.Verify(stamp)
			if err != nil {
				t.Fatalf("Verify(%q): %v", stamp, err)
			}
			if s.String() != stamp {
				t.Errorf("parsed stamp formats as %q, want %q", s, stamp)
			}
			if age := time.Since(s.Date); age < 0 || age > 24*time.Hour {
				t.Errorf("stamp %s dated %v, %v ago", stamp, s.Date, age)
			}
			if _, err := (Policy{MinBits: 17, Resource: resource}).Verify(stamp); !errors.Is(err, ErrBits) {
				t.Errorf("Verify with 17 bits required: %v, want ErrBits", err)
			}
		})
	}
}

// The tool's plain form, `hashcash -m -b BITS RESOURCE`, with no options
// and a local zone far from UTC, makes a stamp we accept.
func TestWeAcceptPlainCToolStamps(t *testing.T) {
	for _, tz := range []string{"Pacific/Kiritimati", "America/Los_Angeles"} {
		t.Run(tz, func(t *testing.T) {
			hashcash := cToolIn(t, tz)
			const resource = "pc1ln5pp5kcap5plpsdulxasyj2jsszvvzvhcq782dk2dy8z99nmdlsc92u6f"
			out, err := hashcash("-m", "-b", "16", resource)
			if err != nil {
				t.Fatalf("hashcash -m: %v\n%s", err, out)
			}
			stamp := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "hashcash stamp:"))
			if _, err := (Policy{MinBits: 16, Resource: resource}).Verify(stamp); err != nil {
				t.Fatalf("Verify(%q): %v", stamp, err)
			}
		})
	}
}

// The tool lowercases a resource when minting: a check that folds case,
// as the tool's own does, accepts its stamp for the resource as typed; the
// protocol's exact check does not.
func TestCToolStampForMixedCaseResource(t *testing.T) {
	hashcash := cTool(t)
	out, err := hashcash("-m", "-q", "-b", "10", "NodeID")
	if err != nil {
		t.Fatalf("hashcash -m: %v\n%s", err, out)
	}
	stamp := strings.TrimSpace(out)
	if _, err := (Policy{MinBits: 10, Resource: "NodeID", FoldCase: true}).Verify(stamp); err != nil {
		t.Fatalf("Verify with FoldCase(%q): %v", stamp, err)
	}
	if _, err := (Policy{MinBits: 10, Resource: "NodeID"}).Verify(stamp); !errors.Is(err, ErrResource) {
		t.Fatalf("exact Verify(%q): %v, want ErrResource", stamp, err)
	}
}
