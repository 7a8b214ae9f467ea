package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// installServiceApp is the CLI with install-service registered (main.go
// registers it; the fallback keeps this test independent of that line).
func installServiceApp(stdout, stderr *bytes.Buffer) *cli.App {
	app := newApp()
	found := false
	for _, c := range app.Commands {
		if c.Name == "install-service" {
			found = true
		}
	}
	if !found {
		c := installServiceCommand()
		addGlobalFlags(c)
		app.Commands = append(app.Commands, c)
	}
	app.Writer = stdout
	app.ErrWriter = stderr
	return app
}

// runInstallService runs `warden-agent install-service args...` in process
// with XDG_CONFIG_HOME in a temporary directory, and returns the unit
// directory and the output.
func runInstallService(t *testing.T, args ...string) (unitDir, stdout, stderr string, err error) {
	t.Helper()
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	var out, errOut bytes.Buffer
	err = installServiceApp(&out, &errOut).Run(append([]string{"warden-agent", "install-service"}, args...))
	return filepath.Join(cfgHome, "systemd", "user"), out.String(), errOut.String(), err
}

// fakeSystemctl puts a systemctl on PATH that logs its arguments to the
// returned file and exits with code.
func fakeSystemctl(t *testing.T, code int) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$*\" >> '" + log + "'\necho \"fake systemctl: $*\"\nexit " + string(rune('0'+code)) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

func selfExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// The files in contrib/systemd are exactly what install-service writes,
// with the default ExecStart path.
func TestInstallServiceContribMatches(t *testing.T) {
	for name, want := range map[string]string{
		socketUnitName:  socketUnit,
		serviceUnitName: serviceUnit,
	} {
		got, err := os.ReadFile(filepath.Join("..", "..", "contrib", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("contrib/systemd/%s differs from the unit install-service writes (installservice.go);"+
				" copy the constant into the file\n--- contrib\n%s\n--- installservice.go\n%s", name, got, want)
		}
	}
	// install-service changes the ExecStart line and nothing else.
	const exe = "/opt/warden/bin/warden-agent"
	if got, want := serviceUnitFor(exe), strings.Replace(serviceUnit, "ExecStart="+defaultExecStart+" run", "ExecStart="+exe+" run", 1); got != want {
		t.Errorf("serviceUnitFor(%s):\n%s\nwant:\n%s", exe, got, want)
	}
	if !strings.Contains(serviceUnit, "\nExecStart="+defaultExecStart+" run\n") {
		t.Error("the canonical service unit has no ExecStart line with the default path")
	}
}

func TestInstallServiceNoEnable(t *testing.T) {
	calls := fakeSystemctl(t, 0)
	dir, out, _, err := runInstallService(t, "--no-enable")
	if err != nil {
		t.Fatal(err)
	}
	exe := selfExe(t)
	for name, want := range map[string]string{socketUnitName: socketUnit, serviceUnitName: serviceUnitFor(exe)} {
		path := filepath.Join(dir, name)
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s:\n%s\nwant:\n%s", name, got, want)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", name, fi.Mode().Perm())
		}
		if !strings.Contains(out, "wrote "+path) {
			t.Errorf("output does not report %s:\n%s", path, out)
		}
	}
	svc, _ := os.ReadFile(filepath.Join(dir, serviceUnitName))
	if !strings.Contains(string(svc), "\nExecStart="+systemdExecQuote(exe)+" run\n") {
		t.Errorf("ExecStart does not point at %s:\n%s", exe, svc)
	}
	for _, want := range []string{profileLine, "Not enabled (--no-enable)", "systemctl --user enable --now warden-agent.socket"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(calls); err == nil {
		t.Error("--no-enable ran systemctl")
	}

	// A second run leaves identical files alone.
	var out2, errOut2 bytes.Buffer
	if err := installServiceApp(&out2, &errOut2).Run([]string{"warden-agent", "install-service", "--no-enable"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out2.String(), "unchanged "+filepath.Join(dir, serviceUnitName)) {
		t.Errorf("second run:\n%s", out2.String())
	}
}

func TestInstallServiceDryRun(t *testing.T) {
	calls := fakeSystemctl(t, 0)
	dir, out, _, err := runInstallService(t, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("--dry-run created %s", dir)
	}
	if _, err := os.Stat(calls); err == nil {
		t.Error("--dry-run ran systemctl")
	}
	for _, want := range []string{
		"# would write " + filepath.Join(dir, socketUnitName), socketUnit,
		"# would write " + filepath.Join(dir, serviceUnitName), serviceUnitFor(selfExe(t)),
		"# would run:\n  systemctl --user daemon-reload\n  systemctl --user enable --now warden-agent.socket\n",
		profileLine,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}
}

func TestInstallServiceEnable(t *testing.T) {
	calls := fakeSystemctl(t, 0)
	dir, out, _, err := runInstallService(t)
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if want := "--user daemon-reload\n--user enable --now warden-agent.socket\n"; string(log) != want {
		t.Errorf("systemctl calls:\n%s\nwant:\n%s", log, want)
	}
	if _, err := os.Stat(filepath.Join(dir, serviceUnitName)); err != nil {
		t.Error(err)
	}
	for _, want := range []string{"enabled and started warden-agent.socket", profileLine} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A failing or missing systemctl is reported with the manual commands;
// the units are written and the command succeeds.
func TestInstallServiceSystemctlUnavailable(t *testing.T) {
	t.Run("fails", func(t *testing.T) {
		fakeSystemctl(t, 1)
		dir, _, stderr, err := runInstallService(t)
		if err != nil {
			t.Fatalf("a failing systemctl made install-service fail: %v", err)
		}
		for _, want := range []string{"`systemctl --user daemon-reload` failed: fake systemctl: --user daemon-reload", "Enable them by hand", manualEnable} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, socketUnitName)); err != nil {
			t.Error(err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, _, stderr, err := runInstallService(t)
		if err != nil {
			t.Fatalf("a missing systemctl made install-service fail: %v", err)
		}
		for _, want := range []string{"systemctl is not installed here", manualEnable} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})
}

func TestInstallServiceUnwritable(t *testing.T) {
	// A file where the directory should be (root writes anywhere else).
	cfgHome := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfgHome, "systemd"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	var out, errOut bytes.Buffer
	err := installServiceApp(&out, &errOut).Run([]string{"warden-agent", "install-service", "--no-enable"})
	if err == nil {
		t.Fatalf("install-service into an unwritable directory: err=%v", err)
	}
}

func TestSystemdExecQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/local/bin/warden-agent":        "/usr/local/bin/warden-agent",
		"/opt/my apps/warden-agent":          `"/opt/my apps/warden-agent"`,
		"/home/a%b/bin/warden-agent":         "/home/a%%b/bin/warden-agent",
		"/home/$USER/bin/warden-agent":       "/home/$$USER/bin/warden-agent",
		`/odd"dir\x/warden-agent`:            `"/odd\"dir\\x/warden-agent"`,
		"/home/user/.local/bin/warden-agent": "/home/user/.local/bin/warden-agent",
	} {
		if got := systemdExecQuote(in); got != want {
			t.Errorf("systemdExecQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// The units pass `systemd-analyze verify`: the contrib files with the
// default %h/.local/bin path, and the units install-service writes for a
// binary in a directory with a space.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	home := t.TempDir()
	runtimeDir := t.TempDir()
	if err := os.Chmod(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("XDG_STATE_HOME", "")
	exe := wardenExe
	if exe == "" {
		exe = selfExe(t)
	}
	for _, bin := range []string{filepath.Join(home, ".local", "bin", "warden-agent"), filepath.Join(home, "my tools", "warden-agent")} {
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(exe, bin); err != nil {
			t.Fatal(err)
		}
	}

	verify := func(t *testing.T, units ...string) {
		t.Helper()
		out, err := exec.Command(analyze, append([]string{"--user", "verify"}, units...)...).CombinedOutput()
		var ours []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(line, "warden-agent") {
				ours = append(ours, line)
			} else if line != "" {
				t.Logf("systemd-analyze: %s", line)
			}
		}
		if err != nil || len(ours) > 0 {
			t.Errorf("systemd-analyze --user verify %s: %v\n%s", strings.Join(units, " "), err, out)
		}
	}

	t.Run("contrib", func(t *testing.T) {
		dir := filepath.Join("..", "..", "contrib", "systemd")
		verify(t, filepath.Join(dir, socketUnitName), filepath.Join(dir, serviceUnitName))
	})
	t.Run("installed", func(t *testing.T) {
		dir := t.TempDir()
		for name, text := range map[string]string{
			socketUnitName:  socketUnit,
			serviceUnitName: serviceUnitFor(filepath.Join(home, "my tools", "warden-agent")),
		} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		verify(t, filepath.Join(dir, socketUnitName), filepath.Join(dir, serviceUnitName))
	})
	t.Run("catches errors", func(t *testing.T) {
		// The check itself works: a unit with an unknown key fails it.
		dir := t.TempDir()
		bad := strings.Replace(serviceUnit, "UMask=0177", "UMask=0177\nNoSuchSetting=yes", 1)
		os.WriteFile(filepath.Join(dir, socketUnitName), []byte(socketUnit), 0o644)
		os.WriteFile(filepath.Join(dir, serviceUnitName), []byte(bad), 0o644)
		out, _ := exec.Command(analyze, "--user", "verify", filepath.Join(dir, socketUnitName), filepath.Join(dir, serviceUnitName)).CombinedOutput()
		if !strings.Contains(string(out), "NoSuchSetting") {
			t.Errorf("systemd-analyze did not report an unknown setting:\n%s", out)
		}
	})
}
