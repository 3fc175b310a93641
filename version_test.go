package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestVersion: -version stops parseFlags before anything else (a missing
// config file included), a binary without version control information
// says so, /api/server reports the same line, and a binary built from a
// git commit prints that commit, its time and whether the tree was
// modified, on one line of stdout, and exits 0.
func TestVersion(t *testing.T) {
	if _, err := parseFlags([]string{"-version", "-config", "/does/not/exist"}, io.Discard, func(string, ...any) {}); !errors.Is(err, errShowVersion) {
		t.Errorf("parseFlags(-version) = %v; want errShowVersion", err)
	}
	var help bytes.Buffer
	parseFlags([]string{"-h"}, &help, func(string, ...any) {})
	if !strings.Contains(help.String(), "-version") {
		t.Errorf("-h does not document -version")
	}

	// go test stamps no version control information.
	goOSArch := regexp.QuoteMeta(runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH)
	if got, want := versionString(), `^gms devel \(unknown commit, `+goOSArch+`\)$`; !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("versionString() = %q; want it to match %s", got, want)
	}
	ts := startServer(t, nil)
	var srv struct{ Version string }
	getJSON(t, "GET", "http://"+ts.httpAddr+"/api/server", &srv)
	if srv.Version != versionString() {
		t.Errorf("/api/server version = %q; want %q", srv.Version, versionString())
	}

	if testing.Short() {
		t.Skip("-short: not building gms from a git commit")
	}
	gitTool, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	// A repository of its own with this source: the go command does not
	// stamp builds in a git worktree, and the checkout may have changes.
	// No dot files: a worktree's .git file would lead git to the
	// checkout's own repository.
	dir := t.TempDir()
	files, _ := os.ReadDir(".")
	for _, f := range files {
		if !f.Type().IsRegular() || strings.HasPrefix(f.Name(), ".") || strings.HasSuffix(f.Name(), "_test.go") {
			continue
		}
		data, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gitTool, append([]string{"-c", "user.name=gms", "-c", "user.email=gms@example.com",
			"-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_DIR="+filepath.Join(dir, ".git"), "GIT_WORK_TREE="+dir,
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_DATE=2001-02-03T04:05:06Z", "GIT_COMMITTER_DATE=2001-02-03T04:05:06Z")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "version test")
	rev := git("rev-parse", "--short=12", "HEAD")

	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	versionOf := func() string {
		t.Helper()
		bin := filepath.Join(t.TempDir(), "gms")
		build := exec.Command(goTool, "build", "-buildvcs=true", "-o", bin, ".")
		build.Dir = dir
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "-version") // a server that starts instead is killed
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("gms -version: %v; stderr %q", err, stderr.String())
		}
		return stdout.String()
	}
	pseudo := `v0\.0\.0-20010203040506-` + rev
	if got, want := versionOf(), `^gms `+pseudo+` \(commit `+rev+` of 2001-02-03T04:05:06Z, `+goOSArch+`\)\n$`; !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("gms -version = %q; want it to match %s", got, want)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("uncommitted\n"), 0o644)
	if got, want := versionOf(), `^gms `+pseudo+`\+dirty \(commit `+rev+` of 2001-02-03T04:05:06Z, modified, `+goOSArch+`\)\n$`; !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("gms -version, tree modified = %q; want it to match %s", got, want)
	}
}
