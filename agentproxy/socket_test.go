package agentproxy

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// Listen makes a missing directory 0700, even under the service's umask
// 0177 (which alone would leave it without the search bit).
func TestListenCreatesPrivateDir(t *testing.T) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "a", "warden")
	ln, err := Listen(filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if m := mode(t, dir); m.Perm() != 0o700 {
		t.Errorf("created directory has mode %v, want 0700", m)
	}
	if m := mode(t, filepath.Join(dir, "agent.sock")); m.Perm() != 0o600 {
		t.Errorf("socket has mode %v, want 0600", m)
	}
}

// Listen never changes the mode of a directory it did not create (issue
// 12): a shared or readable one is refused with the fix named, and keeps
// its mode.
func TestListenRefusesSharedDir(t *testing.T) {
	for _, c := range []struct {
		name string
		mode fs.FileMode
		want string
	}{
		{"0755 directory of ours", 0o755, "mode 0755"},
		{"0711 directory of ours", 0o711, "mode 0711"},
		{"sticky shared directory like /tmp", 0o777 | fs.ModeSticky, "mode 1777"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shared")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, c.mode); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "agent.sock")
			ln, err := Listen(sock)
			if err == nil {
				ln.Close()
				t.Fatalf("Listen in a %v directory succeeded", c.mode)
			}
			msg := err.Error()
			for _, want := range []string{c.want, dir, "chmod 700", "--socket " + filepath.Join(dir, "warden", "agent.sock")} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			if m := mode(t, dir); m != c.mode|fs.ModeDir {
				t.Errorf("directory mode changed to %v, was %v", m, c.mode)
			}
			if _, err := os.Lstat(sock); err == nil {
				t.Error("a socket was created in the shared directory")
			}
			// The fix the error names works.
			ln, err = Listen(filepath.Join(dir, "warden", "agent.sock"))
			if err != nil {
				t.Fatalf("the suggested --socket: %v", err)
			}
			ln.Close()
		})
	}
}

// The real /tmp (1777, root's) as root: refused, untouched.
func TestListenInTmpAsRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the /tmp case is about root, whose directory /tmp is")
	}
	before := mode(t, "/tmp")
	if before&fs.ModeSticky == 0 {
		t.Skipf("/tmp here is %v, not a sticky shared directory", before)
	}
	sock := filepath.Join("/tmp", "warden-listen-test.sock")
	ln, err := Listen(sock)
	if err == nil {
		ln.Close()
		os.Remove(sock)
		t.Fatal("Listen in /tmp as root succeeded")
	}
	if after := mode(t, "/tmp"); after != before {
		t.Fatalf("Listen changed /tmp from %v to %v", before, after)
	}
}

// An existing private directory of ours is used as it is; one of another
// user is refused.
func TestListenExistingDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if os.Getuid() != 0 {
		return
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 64011, 64011); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(other, "agent.sock")); err == nil || !strings.Contains(err.Error(), "belongs to uid 64011") {
		t.Errorf("directory of another uid: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(filepath.Join(file, "agent.sock")); err == nil {
		t.Error("a file as the socket directory was accepted")
	}
}
