package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPageIsCurrent fails when a command or flag changed without
// `make man`.
func TestManPageIsCurrent(t *testing.T) {
	app := newApp()
	app.Setup() // adds --help and --version, as Run does before `man` prints
	want, err := manPage(app)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", "docs", "warden-agent.1"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/warden-agent.1 is out of date with the CLI: run `make man`")
	}
}

// TestCompletionScripts: each shell's script is printed, and the bash
// one, sourced by a real bash, completes a command name.
func TestCompletionScripts(t *testing.T) {
	e := newTestEnv(t)
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out := e.mustWarden("completion", sh); !strings.Contains(out, "warden-agent") {
			t.Errorf("completion %s: %q", sh, out)
		}
	}
	if r := e.warden("completion", "tcsh"); r.code != 2 {
		t.Errorf("completion tcsh: %s", r)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := `source <(warden-agent completion bash)
COMP_WORDS=(warden-agent sta); COMP_CWORD=1
_warden_agent_complete
echo "${COMPREPLY[@]}"`
	r := e.run(nil, "bash", "-c", script)
	if r.code != 0 || !strings.Contains(r.stdout, "status") {
		t.Fatalf("bash completion of 'sta': %s", r)
	}
}

// TestEveryCommandHasHelpWithExample: `--help` of every command shows a
// usage text with an example.
func TestEveryCommandHasHelpWithExample(t *testing.T) {
	for _, c := range newApp().Commands {
		if c.Hidden || c.Name == "help" {
			continue
		}
		if c.Usage == "" || !strings.Contains(c.UsageText, "warden-agent") {
			t.Errorf("command %s: Usage %q, UsageText %q (want an example invocation)", c.Name, c.Usage, c.UsageText)
		}
	}
}
