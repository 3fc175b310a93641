package main

// The configuration: flags, the NMS config file, GMS_ environment
// variables and their precedence, and the log format.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsonLogLines parses a JSON log, one object a line.
func jsonLogLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(log) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not a JSON object: %v\n%s", err, line)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestLogFormatJSON runs the server as main does, with GMS_LOG_FORMAT=json
// (-log-format json from the environment, so run's is used too): every
// line is one JSON object with time, level and msg, and an RTMP
// publisher's connect and publish lines carry their attributes as keys.
func TestLogFormatJSON(t *testing.T) {
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	env := envMap(map[string]string{"GMS_LOG_FORMAT": "json"})
	go func() {
		done <- run(ctx, []string{"-rtmp", "127.0.0.1:0", "-http", "127.0.0.1:0"}, env, logs)
	}()
	var rtmpAddr string
	waitFor(t, "the listening line", func() bool {
		for _, m := range jsonLogLines(t, logs.String()) {
			if m["msg"] == "gms listening" {
				rtmpAddr, _ = m["rtmp"].(string)
				return true
			}
		}
		return false
	})
	pub := dialRTMP(t, rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, "s1?sign=SECRET", "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish status %q", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return in 10 s")
	}

	want := map[string][]string{
		"connect": {"conn", "proto", "remote"},
		"publish": {"conn", "proto", "remote", "app", "stream", "query"},
		"close":   {"conn", "proto", "remote", "reason", "bytes_in", "duration"},
	}
	lines := jsonLogLines(t, logs.String())
	for _, m := range lines {
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k].(string); !ok {
				t.Errorf("line without string %q: %v", k, m)
			}
		}
		if ts, _ := m["time"].(string); ts != "" {
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Errorf("time %q: %v", ts, err)
			}
		}
		msg, _ := m["msg"].(string)
		keys, ok := want[msg]
		if !ok {
			continue
		}
		delete(want, msg)
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("%q line without %q: %v", msg, k, m)
			}
		}
		if msg == "publish" && (m["app"] != "live" || m["stream"] != "s1" || m["query"] != "sign=***") {
			t.Errorf("publish line = %v; want app live, stream s1, query sign=***", m)
		}
	}
	for msg := range want {
		t.Errorf("no %q line in the log:\n%s", msg, logs.String())
	}
	if len(lines) < 5 {
		t.Errorf("%d log lines; want the start-up, connect, publish, shutdown and close lines", len(lines))
	}
}

// TestLogFormatFlag: -log-format takes text or json and nothing else.
func TestLogFormatFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want logFormat
	}{
		{nil, "text"},
		{[]string{"-log-format", "text"}, "text"},
		{[]string{"-log-format", "json"}, "json"},
	} {
		cfg, err := parseFlags(tc.args, nil, io.Discard, func(string, ...any) {})
		if err != nil || cfg.LogFormat != tc.want {
			t.Errorf("parseFlags(%q) = %q, %v; want %q", tc.args, cfg.LogFormat, err, tc.want)
		}
	}
	for _, bad := range []string{"xml", "JSON", ""} {
		_, err := parseFlags([]string{"-log-format", bad}, nil, io.Discard, func(string, ...any) {})
		if err == nil || !strings.Contains(err.Error(), "-log-format") {
			t.Errorf("-log-format %q: error %v; want one naming -log-format", bad, err)
		}
	}
}

// envMap is a lookupEnv over a map.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// TestEnvConfig: every flag can come from GMS_ + its name; the command
// line wins over the environment, the environment over -config's file,
// the file over the defaults. GMS_CONFIG names the file.
func TestEnvConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "nms.json")
	os.WriteFile(file, []byte(`{"rtmp":{"port":1936,"chunk_size":4096},"auth":{"secret":"file-secret"}}`), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want func(*config) // applied to defaultConfig
	}{
		{"no environment", nil, nil, func(*config) {}},
		{"int", nil, map[string]string{"GMS_MAX_CONNS": "100", "GMS_MAX_CONNS_PER_IP": "5"},
			func(c *config) { c.MaxConns, c.MaxConnsIP = 100, 5 }},
		{"strings and bools", nil, map[string]string{"GMS_AUTH_SECRET": "x", "GMS_AUTH_PLAY": "true", "GMS_GOP_CACHE": "false",
			"GMS_API_USER": "admin", "GMS_API_PASS": "pw", "GMS_RTMP": ":1937"},
			func(c *config) {
				c.Secret, c.PlayAuth, c.GOPCache, c.APIUser, c.APIPass, c.RTMPAddr = "x", true, false, "admin", "pw", ":1937"
			}},
		{"durations, level, format", nil, map[string]string{"GMS_PING": "10s", "GMS_LOG_LEVEL": "debug", "GMS_LOG_FORMAT": "json"},
			func(c *config) { c.Ping, c.LogLevel, c.LogFormat = 10*time.Second, slog.LevelDebug, "json" }},
		{"media limits, memory limit", []string{"-memory-limit", "512MiB"}, map[string]string{"GMS_QUEUE_TIME": "2s", "GMS_STALL_TIME": "0"},
			func(c *config) { c.MemoryLimit, c.QueueTime, c.StallTime = 512<<20, 2*time.Second, 0 }},
		{"memory limit in bytes, from the environment", nil, map[string]string{"GMS_MEMORY_LIMIT": "1000000"},
			func(c *config) { c.MemoryLimit = 1000000 }},
		{"gc percent", []string{"-gc-percent", "100"}, nil, func(c *config) { c.GCPercent = 100 }},
		{"gc percent from the environment", nil, map[string]string{"GMS_GC_PERCENT": "-1"}, func(c *config) { c.GCPercent = -1 }},
		{"set but empty", nil, map[string]string{"GMS_ALLOW_ORIGIN": ""}, func(c *config) { c.AllowOrigin = "" }},
		{"other names ignored", nil, map[string]string{"MAX_CONNS": "1", "gms_max_conns": "2", "GMS_MAXCONNS": "3", "GMS_MAX-CONNS": "4"},
			func(*config) {}},
		{"flag beats env", []string{"-max-conns", "50"}, map[string]string{"GMS_MAX_CONNS": "100"},
			func(c *config) { c.MaxConns = 50 }},
		{"flag beats a bad env value", []string{"-max-conns", "50"}, map[string]string{"GMS_MAX_CONNS": "lots"},
			func(c *config) { c.MaxConns = 50 }},
		{"env beats file, file beats default", []string{"-config", file}, map[string]string{"GMS_RTMP": ":1937"},
			func(c *config) { c.RTMPAddr, c.ChunkSize, c.Secret = ":1937", 4096, "file-secret" }},
		{"flag beats env beats file", []string{"-config", file, "-chunk-size", "16384"},
			map[string]string{"GMS_CHUNK_SIZE": "8192", "GMS_AUTH_SECRET": "env-secret"},
			func(c *config) { c.RTMPAddr, c.ChunkSize, c.Secret = ":1936", 16384, "env-secret" }},
		{"GMS_CONFIG", nil, map[string]string{"GMS_CONFIG": file},
			func(c *config) { c.RTMPAddr, c.ChunkSize, c.Secret = ":1936", 4096, "file-secret" }},
		{"-config beats GMS_CONFIG", []string{"-config", file}, map[string]string{"GMS_CONFIG": "/does/not/exist"},
			func(c *config) { c.RTMPAddr, c.ChunkSize, c.Secret = ":1936", 4096, "file-secret" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, envMap(tc.env), io.Discard, func(string, ...any) {})
			if err != nil {
				t.Fatal(err)
			}
			want := defaultConfig()
			tc.want(&want)
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("parseFlags(%q) with %v =\n%+v; want\n%+v", tc.args, tc.env, cfg, want)
			}
		})
	}

	for _, tc := range []struct {
		env  map[string]string
		want string // in the error
	}{
		{map[string]string{"GMS_MAX_CONNS": "lots"}, `GMS_MAX_CONNS: invalid value "lots" for -max-conns`},
		{map[string]string{"GMS_GOP_CACHE": "maybe"}, "GMS_GOP_CACHE"},
		{map[string]string{"GMS_PING": "10"}, "GMS_PING"},
		{map[string]string{"GMS_LOG_FORMAT": "xml"}, "GMS_LOG_FORMAT"},
		{map[string]string{"GMS_CONFIG": "/does/not/exist"}, "/does/not/exist"},
		{map[string]string{"GMS_CHUNK_SIZE": "10"}, "-chunk-size 10"}, // checked after, as flags are
	} {
		_, err := parseFlags(nil, envMap(tc.env), io.Discard, func(string, ...any) {})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags with %v: error %v; want one containing %q", tc.env, err, tc.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := parseFlags(nil, nil, io.Discard, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	// NMS's set-up: port 1935, chunk size 60000, GOP cache, ping 60 s,
	// ping timeout 30 s, HTTP port 8000, CORS *; then gms's own.
	want := config{RTMPAddr: ":1935", HTTPAddr: ":8000", ChunkSize: 60000, GOPCache: true,
		Ping: 60 * time.Second, PingTimeout: 30 * time.Second, AllowOrigin: "*", QueueBytes: 16 << 20,
		QueueTime: 3 * time.Second, StallTime: 5 * time.Second, GCPercent: 50,
		WriteDelay: 50 * time.Millisecond, MaxConns: 20000, PlayWait: time.Minute, LogLevel: slog.LevelInfo, LogFormat: "text",
		API: true, HookTimeout: 3 * time.Second,
		HLS: true, HLSSegment: 2 * time.Second, HLSPart: 100 * time.Millisecond, HLSWindow: 6, RecordFormat: "flv"}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults = %+v; want %+v", cfg, want)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nms.json")
	os.WriteFile(path, []byte(`{"rtmp":{"port":1936,"chunk_size":4096,"gop_cache":false,"ping":10,"ping_timeout":5,"bogus":1},
"http":{"port":8001,"allow_origin":"https://example.com","mediaroot":"./media"},"logType":3,"fission":{},"record":{"path":"/var/rec"},
"relay":{"ffmpeg":"/usr/bin/ffmpeg","tasks":[{"app":"live","mode":"push","edge":"rtmp://b/live"}]}}`), 0o644)
	var warnings []string
	warn := func(msg string, kv ...any) { warnings = append(warnings, fmt.Sprint(msg, kv)) }
	cfg, err := parseFlags([]string{"-config", path, "-chunk-size", "8192"}, nil, io.Discard, warn)
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.RTMPAddr, want.HTTPAddr, want.ChunkSize, want.GOPCache = ":1936", ":8001", 8192, false
	want.Ping, want.PingTimeout, want.AllowOrigin, want.LogLevel = 10*time.Second, 5*time.Second, "https://example.com", slog.LevelDebug
	want.RecordDir = "/var/rec"
	want.RelayTasks = []relayTaskConfig{{App: "live", Mode: "push", Edge: "rtmp://b/live"}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config = %+v; want %+v", cfg, want)
	}
	joined := strings.Join(warnings, "\n")
	for _, key := range []string{"rtmp.bogus", "fission"} {
		if !strings.Contains(joined, key) {
			t.Errorf("no warning for unknown key %s in %q", key, joined)
		}
	}

	os.WriteFile(path, []byte("{\n  \"rtmp\": {\n    \"port\": 1935,\n  }\n}\n"), 0o644)
	_, err = parseFlags([]string{"-config", path}, nil, io.Discard, warn)
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("malformed config error = %v; want it to name line 4", err)
	}
	os.WriteFile(path, []byte("{\"rtmp\": {\"port\": \"x\"}}"), 0o644)
	if _, err = parseFlags([]string{"-config", path}, nil, io.Discard, warn); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("wrong-type config error = %v; want it to name line 1", err)
	}
}

// TestConfigTrans: NMS's trans tasks with hls (or dash) make their apps
// muxed from publish on, with hlsFlags' hls_time and hls_list_size; mp4
// records its app as MP4 in http.mediaroot (only that app), or in
// -record's directory (with every other app); flags win.
func TestConfigTrans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nms.json")
	os.WriteFile(path, []byte(`{"http":{"mediaroot":"/srv/media"},"trans":{"ffmpeg":"/usr/bin/ffmpeg","tasks":[
{"app":"live","hls":true,"hlsFlags":"[hls_time=3:hls_list_size=4:hls_flags=delete_segments]","hlsKeep":true},
{"app":"tv","dash":true,"dashFlags":"[f=dash:window_size=3]"},{"app":"rec","mp4":true,"mp4Flags":"[movflags=frag_keyframe+empty_moov]"}]}}`), 0o644)
	var warnings []string
	warn := func(msg string, kv ...any) { warnings = append(warnings, fmt.Sprint(msg, kv)) }
	cfg, err := parseFlags([]string{"-config", path}, nil, io.Discard, warn)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HLSAlways != "live,tv" || cfg.HLSSegment != 3*time.Second || cfg.HLSWindow != 4 {
		t.Errorf("hls-always %q, segment %v, window %d; want live,tv, 3s, 4", cfg.HLSAlways, cfg.HLSSegment, cfg.HLSWindow)
	}
	if cfg.RecordDir != "/srv/media" || !slices.Equal(cfg.RecordMP4Apps, []string{"rec"}) || !cfg.RecordOnlyMP4Apps || cfg.RecordFormat != "flv" {
		t.Errorf("record dir %q, mp4 apps %q, only %v, format %q; want /srv/media, [rec], true, flv", cfg.RecordDir, cfg.RecordMP4Apps, cfg.RecordOnlyMP4Apps, cfg.RecordFormat)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings %q; want none", warnings)
	}
	cfg, err = parseFlags([]string{"-config", path, "-hls-segment", "1s", "-hls-always", "x", "-record", "/rec"}, nil, io.Discard, warn)
	if err != nil || cfg.HLSSegment != time.Second || cfg.HLSAlways != "x" || cfg.HLSWindow != 4 {
		t.Errorf("with flags: %v, segment %v, always %q, window %d; want 1s, x, 4", err, cfg.HLSSegment, cfg.HLSAlways, cfg.HLSWindow)
	}
	if cfg.RecordDir != "/rec" || !slices.Equal(cfg.RecordMP4Apps, []string{"rec"}) || cfg.RecordOnlyMP4Apps {
		t.Errorf("with -record: dir %q, mp4 apps %q, only %v; want /rec, [rec], false", cfg.RecordDir, cfg.RecordMP4Apps, cfg.RecordOnlyMP4Apps)
	}
	os.WriteFile(path, []byte(`{"trans":{"tasks":[{"app":"rec","mp4":true}]}}`), 0o644)
	if cfg, err = parseFlags([]string{"-config", path}, nil, io.Discard, warn); err != nil || cfg.RecordDir != "media" {
		t.Errorf("without http.mediaroot: %v, record dir %q; want NMS's default, media", err, cfg.RecordDir)
	}
	warnings = nil
	os.WriteFile(path, []byte(`{"trans":{"tasks":[{"app":"../etc","mp4":true,"hls":true}]}}`), 0o644)
	if cfg, err = parseFlags([]string{"-config", path}, nil, io.Discard, warn); err != nil || cfg.RecordDir != "" || cfg.HLSAlways != "" ||
		len(warnings) != 1 || !strings.Contains(warnings[0], "../etc") {
		t.Errorf("a task with a bad app: %v, record dir %q, hls-always %q, warnings %q; want none, none, one naming it", err, cfg.RecordDir, cfg.HLSAlways, warnings)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{{"-chunk-size", "10"}, {"-record-format", "mkv"}, {"-ping-timeout", "0s"}, {"-play-wait", "-1s"}, {"extra"}, {"-nope"}, {"-config", "/does/not/exist"}} {
		if _, err := parseFlags(args, nil, io.Discard, func(string, ...any) {}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	var help bytes.Buffer
	parseFlags([]string{"-h"}, nil, &help, func(string, ...any) {})
	for _, f := range []string{"-rtmp", "-http", "-chunk-size", "-gop-cache", "-ping", "-ping-timeout", "-allow-origin", "-log-level", "-config"} {
		if !strings.Contains(help.String(), f) {
			t.Errorf("-h does not document %s", f)
		}
	}
}

// TestByteSize reads sizes as GOMEMLIMIT writes them.
func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "123": 123, "10B": 10, "4KiB": 4 << 10, "512MiB": 512 << 20, "2GiB": 2 << 30, "1TiB": 1 << 40} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "12x", "1.5GiB", "MiB", "1 MiB", "9999999TiB", "1mib"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d; want an error", in, b)
		}
	}
}

// TestApplyMemoryLimit: -memory-limit sets the runtime's limit, unless
// GOMEMLIMIT is set, which wins.
func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	applyMemoryLimit(300<<20, envMap(map[string]string{"GOMEMLIMIT": "1GiB"}), log)
	if got := debug.SetMemoryLimit(-1); got != prev {
		t.Errorf("with GOMEMLIMIT set, the limit became %d; want it left at %d", got, prev)
	}
	applyMemoryLimit(300<<20, envMap(nil), log)
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("limit %d; want %d", got, 300<<20)
	}
}

// TestApplyGCPercent: -gc-percent sets the GC's target, unless GOGC is
// set, which wins.
func TestApplyGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	applyGCPercent(37, envMap(map[string]string{"GOGC": "200"}), log)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set, the target became %d; want it left at 100", got)
	}
	applyGCPercent(37, envMap(nil), log)
	if got := debug.SetGCPercent(100); got != 37 {
		t.Errorf("target %d; want 37", got)
	}
}

// FuzzByteSize: any text either fails or gives a non-negative size that
// prints back as the same number of bytes.
func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"0", "512MiB", "2GiB", "1TiB", "10B", "4KiB", "12x", "-1", "8388607TiB", "8388608TiB", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b byteSize
		if err := b.Set(s); err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("Set(%q) = %d", s, b)
		}
		var again byteSize
		if err := again.Set(b.String()); err != nil || again != b {
			t.Fatalf("Set(%q) = %d; Set(%q) = %d, %v", s, b, b.String(), again, err)
		}
	})
}
