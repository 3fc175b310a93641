package main

// The configuration: one struct with NMS's defaults, filled from flags,
// GMS_ environment variables and an NMS-shaped JSON config file, in that
// order of precedence, and checked before anything starts.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// config is the server's configuration. The zero value is not useful;
// defaultConfig returns the defaults of the NMS set-up gms replaces.
type config struct {
	RTMPAddr    string        // RTMP listen address
	HTTPAddr    string        // HTTP-FLV, WS-FLV, API and admin page listen address
	ChunkSize   int           // outgoing RTMP chunk size, sent as Set Chunk Size after connect
	GOPCache    bool          // keep the last GOP so that joiners start at once
	Ping        time.Duration // interval of RTMP PingRequest; 0 turns pings off
	PingTimeout time.Duration // a peer silent this long is dropped
	AllowOrigin string        // Access-Control-Allow-Origin on media answers (HTTP-FLV, WS-FLV)
	// Origins whose pages may read the API and admin page (comma-separated,
	// or *); empty: none. DELETE is allowed only to origins named here.
	APIAllowOrigin string
	QueueBytes     int           // most bytes queued for one viewer before it skips to the next keyframe
	QueueTime      time.Duration // most media time queued for one viewer before it skips to the next keyframe (0: no limit)
	StallTime      time.Duration // a viewer that takes nothing for this much media is disconnected (0: never)
	MemoryLimit    byteSize      // the Go runtime's soft memory limit (0: none; GOMEMLIMIT wins, see applyMemoryLimit)
	GCPercent      int           // the Go runtime's GC target percentage (GOGC wins, see applyMemoryLimit)
	WriteDelay     time.Duration // a viewer is written to at most once per this (0: every frame at once)
	MaxConns       int           // open connections, RTMP and HTTP together (0: no limit)
	MaxConnsIP     int           // open connections from one IP address (0: no limit)
	PlayWait       time.Duration // a player waiting for a publisher gives up after this (0: waits forever)
	Drain          time.Duration // at SIGTERM, how long clients may stay before they are closed (0: close at once)
	LogLevel       slog.Level
	LogFormat      logFormat // text or json

	// API and its HTTP Basic credentials (both empty: no auth).
	API              bool
	APIUser, APIPass string

	// Signed URLs, NMS's scheme: ?sign=EXPIRES-md5("/APP/NAME-EXPIRES-SECRET").
	Secret        string
	PublishSecret string // publishers' own secret; empty: Secret (NMS: one for both)
	PublishAuth   bool   // publishers must sign
	PlayAuth      bool   // players must sign
	TrustLoopback bool   // loopback clients need no signature (NMS v2 did this silently)

	// Hooks: URLs that get a JSON POST per event. Publish and play wait
	// for the answer; a non-2xx answer refuses the client.
	OnPublish, OnPlay, OnUnpublish, OnStop string
	HookTimeout                            time.Duration

	// RecordDir, if set: every published stream is recorded to
	// RecordDir/APP/NAME/<start time>.flv (or .mp4: RecordFormat).
	RecordDir    string
	RecordFormat string // flv or mp4 (fragmented)
	// RecordMP4Apps are recorded as MP4 whatever RecordFormat says (NMS
	// trans tasks with mp4: true); with RecordOnlyMP4Apps (those tasks
	// set the directory, -record did not) the other apps are not recorded.
	RecordMP4Apps     []string
	RecordOnlyMP4Apps bool

	// Relays (relay.go): pushes to other servers ([APP=]URL), an edge's
	// origins (rtmp://HOST[:PORT]), and NMS v2's relay tasks.
	RelayPush  []string
	Origins    []string
	RelayTasks []relayTaskConfig

	// HLS (hls.go): on for every live stream at /APP/NAME/index.m3u8.
	HLS        bool
	HLSSegment time.Duration // segments end at the first keyframe past this
	HLSPart    time.Duration // LL-HLS part target; 0: no parts (plain HLS)
	HLSWindow  int           // segments a playlist lists
	HLSAlways  string        // apps (comma-separated) whose streams are muxed from publish on, not from the first request

	// TLS: RTMPS and HTTPS/WSS listeners, with one certificate.
	RTMPSAddr, HTTPSAddr string
	TLSCert, TLSKey      string
}

func defaultConfig() config {
	return config{
		RTMPAddr:    ":1935",
		HTTPAddr:    ":8000",
		ChunkSize:   60000,
		GOPCache:    true,
		Ping:        60 * time.Second,
		PingTimeout: 30 * time.Second,
		AllowOrigin: "*",
		QueueBytes:  16 << 20,
		QueueTime:   3 * time.Second,
		StallTime:   5 * time.Second,
		GCPercent:   50,
		WriteDelay:  50 * time.Millisecond,
		MaxConns:    20000,
		PlayWait:    60 * time.Second,
		LogLevel:    slog.LevelInfo,
		LogFormat:   "text",
		API:         true,
		HookTimeout: 3 * time.Second,
		HLS:         true,
		HLSSegment:  2 * time.Second,
		HLSPart:     100 * time.Millisecond,
		HLSWindow:   6,

		RecordFormat: "flv",
	}
}

// parseFlags fills a config from the command line, the environment
// (lookupEnv, as os.LookupEnv; nil: none) and, with -config, a JSON file
// in NMS's shape. The command line wins over the environment, which wins
// over the file (applyEnv). Warnings about the file go to warn.
func parseFlags(args []string, lookupEnv func(string) (string, bool), stderr io.Writer, warn func(string, ...any)) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("gms", flag.ContinueOnError)
	fs.SetOutput(stderr)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.StringVar(&cfg.RTMPAddr, "rtmp", cfg.RTMPAddr, "RTMP listen `address`")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "HTTP listen `address` (HTTP-FLV, WS-FLV, /api, /admin/)")
	fs.IntVar(&cfg.ChunkSize, "chunk-size", cfg.ChunkSize, "outgoing RTMP chunk `size` (128 to 16777215)")
	fs.BoolVar(&cfg.GOPCache, "gop-cache", cfg.GOPCache, "send late joiners the last GOP so they start at once")
	fs.DurationVar(&cfg.Ping, "ping", cfg.Ping, "RTMP ping `interval` (0 = off)")
	fs.DurationVar(&cfg.PingTimeout, "ping-timeout", cfg.PingTimeout, "drop a peer silent this `duration`")
	fs.StringVar(&cfg.AllowOrigin, "allow-origin", cfg.AllowOrigin, "Access-Control-Allow-Origin `value` of media (HTTP-FLV, WS-FLV; empty = no CORS headers)")
	fs.StringVar(&cfg.APIAllowOrigin, "api-allow-origin", "", "`origins` (comma-separated, or *) whose pages may call the API and admin page; DELETE only for named ones")
	fs.IntVar(&cfg.QueueBytes, "queue-bytes", cfg.QueueBytes, "most `bytes` queued for one viewer; past it the viewer skips to the next keyframe")
	fs.DurationVar(&cfg.QueueTime, "queue-time", cfg.QueueTime, "most media `duration` queued for one viewer; past it the viewer skips to the next keyframe (0 = no limit)")
	fs.DurationVar(&cfg.StallTime, "stall-time", cfg.StallTime, "disconnect a viewer that takes nothing for this `duration` of media (0 = never)")
	fs.Var(&cfg.MemoryLimit, "memory-limit", "soft limit of the memory the Go runtime uses, a `size` in bytes or with B, KiB, MiB, GiB or TiB (0 = none; GOMEMLIMIT wins)")
	fs.IntVar(&cfg.GCPercent, "gc-percent", cfg.GCPercent, "the heap may grow this `percent` over what is live before a collection (as GOGC, which wins; -1 = off)")
	fs.DurationVar(&cfg.WriteDelay, "write-delay", cfg.WriteDelay, "write to each viewer at most once per `duration`, merging frames (0 = every frame at once)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "most open `connections`, RTMP and HTTP together (0 = no limit)")
	fs.IntVar(&cfg.MaxConnsIP, "max-conns-per-ip", cfg.MaxConnsIP, "most open `connections` from one IP address (0 = no limit)")
	fs.DurationVar(&cfg.Drain, "drain", 0, "at SIGTERM or SIGINT, let clients finish for up to this `duration` before closing them (health answers 503 meanwhile)")
	fs.DurationVar(&cfg.PlayWait, "play-wait", cfg.PlayWait, "a player waiting for a publisher gives up after this `duration` (0 = waits forever)")
	fs.TextVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log `level`: debug, info, warn or error")
	fs.TextVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log `format`: text (key=value) or json (one object a line)")
	fs.BoolVar(&cfg.API, "api", cfg.API, "serve the JSON API under /api and /metrics")
	fs.StringVar(&cfg.APIUser, "api-user", "", "HTTP Basic `user` for /api, /metrics and /admin/ (with -api-pass)")
	fs.StringVar(&cfg.APIPass, "api-pass", "", "HTTP Basic `password` for /api, /metrics and /admin/")
	fs.StringVar(&cfg.Secret, "auth-secret", "", "`secret` of signed URLs (?sign=EXPIRES-md5(\"/APP/NAME-EXPIRES-SECRET\"))")
	fs.StringVar(&cfg.PublishSecret, "auth-publish-secret", "", "publishers' own signing `secret`, so that a viewer's sign cannot publish (default: -auth-secret)")
	fs.BoolVar(&cfg.PublishAuth, "auth-publish", false, "publishers must present a valid ?sign=")
	fs.BoolVar(&cfg.PlayAuth, "auth-play", false, "players must present a valid ?sign=")
	fs.BoolVar(&cfg.TrustLoopback, "auth-trust-loopback", false, "skip signature checks for clients on 127.0.0.1 and ::1")
	fs.StringVar(&cfg.OnPublish, "on-publish", "", "`URL` to POST before accepting a publisher; non-2xx refuses it")
	fs.StringVar(&cfg.OnPlay, "on-play", "", "`URL` to POST before accepting a player; non-2xx refuses it")
	fs.StringVar(&cfg.OnUnpublish, "on-unpublish", "", "`URL` to POST when a publisher leaves")
	fs.StringVar(&cfg.OnStop, "on-stop", "", "`URL` to POST when a player leaves")
	fs.DurationVar(&cfg.HookTimeout, "hook-timeout", cfg.HookTimeout, "how long to wait for a hook's answer (a `duration`)")
	fs.StringVar(&cfg.RTMPSAddr, "rtmps", "", "RTMPS listen `address` (needs -tls-cert and -tls-key)")
	fs.StringVar(&cfg.HTTPSAddr, "https", "", "HTTPS/WSS listen `address` (needs -tls-cert and -tls-key)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate `file` (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key `file` (PEM)")
	fs.StringVar(&cfg.RecordDir, "record", "", "record every published stream to `dir`/APP/NAME/<start time>.flv (.mp4 with -record-format mp4)")
	fs.StringVar(&cfg.RecordFormat, "record-format", cfg.RecordFormat, "recording `format`: flv, or mp4 (fragmented MP4, readable while written and after a crash)")
	fs.Func("relay-push", "forward every published stream (or APP's, with `[APP=]URL`) to URL: rtmp://HOST/APP gets NAME appended, rtmp://HOST/APP/KEY is the target exactly (repeatable)", func(v string) error {
		cfg.RelayPush = append(cfg.RelayPush, v)
		return nil
	})
	fs.Func("origin", "be an edge of this origin: a player's APP/NAME not published here is pulled from `rtmp://HOST[:PORT]`/APP/NAME (repeatable: tried in turn)", func(v string) error {
		cfg.Origins = append(cfg.Origins, v)
		return nil
	})
	fs.BoolVar(&cfg.HLS, "hls", cfg.HLS, "serve HLS and LL-HLS at /APP/NAME/index.m3u8 (muxed in memory while requested)")
	fs.DurationVar(&cfg.HLSSegment, "hls-segment", cfg.HLSSegment, "HLS segment target `duration`: segments end at the first keyframe past it")
	fs.DurationVar(&cfg.HLSPart, "hls-part", cfg.HLSPart, "LL-HLS part target `duration`, rounded down to whole frames (0 = plain HLS, no parts)")
	fs.IntVar(&cfg.HLSWindow, "hls-window", cfg.HLSWindow, "`segments` an HLS playlist lists")
	fs.StringVar(&cfg.HLSAlways, "hls-always", "", "`apps` (comma-separated) whose streams are muxed for HLS from publish on (NMS trans tasks with hls or dash)")
	configFile := fs.String("config", "", "JSON config `file` in node-media-server's shape; flags and GMS_ variables win over it")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gms [flags]\n\nA live video server: publish RTMP, play RTMP, HTTP-FLV or WebSocket-FLV.\n\n")
		fmt.Fprintf(stderr, "Each flag can also come from the environment: %s=100 is -max-conns 100.\n\n", envName("max-conns"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *showVersion {
		return cfg, errShowVersion // before the config file: -version works without one
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := applyEnv(fs, set, lookupEnv); err != nil {
		return cfg, err
	}
	if *configFile != "" {
		data, err := os.ReadFile(*configFile)
		if err != nil {
			return cfg, err
		}
		if err := applyConfigFile(&cfg, data, set, warn); err != nil {
			return cfg, fmt.Errorf("%s: %w", *configFile, err)
		}
	}
	if cfg.ChunkSize < 128 || cfg.ChunkSize > 0xFFFFFF {
		return cfg, fmt.Errorf("-chunk-size %d out of range 128..16777215", cfg.ChunkSize)
	}
	if cfg.QueueBytes < 64<<10 {
		return cfg, fmt.Errorf("-queue-bytes %d below 65536", cfg.QueueBytes)
	}
	if cfg.QueueTime < 0 || cfg.StallTime < 0 {
		return cfg, fmt.Errorf("-queue-time and -stall-time must not be negative")
	}
	if cfg.PingTimeout <= 0 {
		return cfg, fmt.Errorf("-ping-timeout must be positive")
	}
	if cfg.PlayWait < 0 {
		return cfg, fmt.Errorf("-play-wait must not be negative")
	}
	if cfg.Drain < 0 {
		return cfg, fmt.Errorf("-drain must not be negative")
	}
	if cfg.WriteDelay < 0 || cfg.WriteDelay > time.Second {
		return cfg, fmt.Errorf("-write-delay %v out of range 0..1s", cfg.WriteDelay)
	}
	if cfg.HLSSegment < 100*time.Millisecond || cfg.HLSSegment > time.Minute {
		return cfg, fmt.Errorf("-hls-segment %v out of range 100ms..1m", cfg.HLSSegment)
	}
	if cfg.HLSPart != 0 && (cfg.HLSPart < 20*time.Millisecond || cfg.HLSPart > cfg.HLSSegment) {
		return cfg, fmt.Errorf("-hls-part %v out of range 20ms..-hls-segment (or 0)", cfg.HLSPart)
	}
	if cfg.HLSWindow < 3 || cfg.HLSWindow > 1000 {
		return cfg, fmt.Errorf("-hls-window %d out of range 3..1000", cfg.HLSWindow)
	}
	if cfg.RecordFormat != "flv" && cfg.RecordFormat != "mp4" {
		return cfg, fmt.Errorf("-record-format %q: want flv or mp4", cfg.RecordFormat)
	}
	if cfg.PlayAuth && cfg.Secret == "" {
		return cfg, fmt.Errorf("-auth-play needs -auth-secret")
	}
	if cfg.PublishAuth && cfg.Secret == "" && cfg.PublishSecret == "" {
		return cfg, fmt.Errorf("-auth-publish needs -auth-publish-secret or -auth-secret")
	}
	if cfg.PublishAuth && cfg.PlayAuth && cfg.PublishSecret == "" {
		warn("auth: publishers and players sign with one secret, so any viewer's sign can publish; set -auth-publish-secret")
	}
	if (cfg.RTMPSAddr != "" || cfg.HTTPSAddr != "") && (cfg.TLSCert == "" || cfg.TLSKey == "") {
		return cfg, fmt.Errorf("-rtmps and -https need -tls-cert and -tls-key")
	}
	if (cfg.APIUser == "") != (cfg.APIPass == "") {
		return cfg, fmt.Errorf("-api-user and -api-pass go together")
	}
	return cfg, nil
}

// envName is the environment variable of a flag: GMS_ and the flag's
// name upper-cased, with - as _ (-max-conns: GMS_MAX_CONNS).
func envName(flagName string) string {
	return "GMS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets each flag that is not in set (given on the command line)
// from its environment variable, when that exists, and adds it to set, so
// that the config file leaves it alone.
func applyEnv(fs *flag.FlagSet, set map[string]bool, lookupEnv func(string) (string, bool)) error {
	if lookupEnv == nil {
		return nil
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s: invalid value %q for -%s: %w", name, v, f.Name, e)
			return
		}
		set[f.Name] = true
	})
	return err
}

// nmsConfig mirrors the keys of an NMS v2 config that gms understands.
type nmsConfig struct {
	RTMP *struct {
		Port        *int  `json:"port"`
		ChunkSize   *int  `json:"chunk_size"`
		GOPCache    *bool `json:"gop_cache"`
		Ping        *int  `json:"ping"`
		PingTimeout *int  `json:"ping_timeout"`
		SSL         *struct {
			Port *int    `json:"port"`
			Cert *string `json:"cert"`
			Key  *string `json:"key"`
		} `json:"ssl"`
	} `json:"rtmp"`
	HTTP *struct {
		Port        *int    `json:"port"`
		AllowOrigin *string `json:"allow_origin"`
		API         *bool   `json:"api"`
		MediaRoot   *string `json:"mediaroot"`
	} `json:"http"`
	HTTPS *struct {
		Port *int    `json:"port"`
		Cert *string `json:"cert"`
		Key  *string `json:"key"`
	} `json:"https"`
	Auth *struct {
		Play    *bool   `json:"play"`
		Publish *bool   `json:"publish"`
		Secret  *string `json:"secret"`
		PubSec  *string `json:"publish_secret"`
		API     *bool   `json:"api"`
		APIUser *string `json:"api_user"`
		APIPass *string `json:"api_pass"`
	} `json:"auth"`
	// NMS v4's recording key.
	Record *struct {
		Path *string `json:"path"`
	} `json:"record"`
	Relay *struct {
		Tasks []relayTaskConfig `json:"tasks"`
	} `json:"relay"`
	LogType *int `json:"logType"`
	Trans   *struct {
		Tasks []nmsTransTask `json:"tasks"`
	} `json:"trans"`
}

// nmsTransTask is one of NMS's ffmpeg tasks; gms does HLS and DASH itself.
type nmsTransTask struct {
	App      string `json:"app"`
	HLS      bool   `json:"hls"`
	HLSFlags string `json:"hlsFlags"`
	DASH     bool   `json:"dash"`
	MP4      bool   `json:"mp4"`
	MP4Flags string `json:"mp4Flags"` // ffmpeg's options for that MP4; gms always writes fragmented MP4
}

// knownKeys are the config keys gms reads; others get a warning.
var knownKeys = map[string]bool{
	"rtmp": true, "rtmp.port": true, "rtmp.chunk_size": true, "rtmp.gop_cache": true,
	"rtmp.ping": true, "rtmp.ping_timeout": true,
	"rtmp.ssl": true, "rtmp.ssl.port": true, "rtmp.ssl.cert": true, "rtmp.ssl.key": true,
	"http": true, "http.port": true, "http.allow_origin": true, "http.api": true, "http.mediaroot": true,
	"https": true, "https.port": true, "https.cert": true, "https.key": true,
	"auth": true, "auth.play": true, "auth.publish": true, "auth.secret": true, "auth.publish_secret": true,
	"auth.api": true, "auth.api_user": true, "auth.api_pass": true,
	"record": true, "record.path": true,
	"relay": true, "relay.tasks": true, "relay.ffmpeg": true,
	"logType": true,
	"trans":   true, "trans.ffmpeg": true, "trans.tasks": true,
}

// applyConfigFile reads an NMS-shaped JSON config into cfg, leaving the
// fields whose flags were set on the command line alone.
func applyConfigFile(cfg *config, data []byte, set map[string]bool, warn func(string, ...any)) error {
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return jsonErrorAt(data, err)
	}
	for _, key := range flattenKeys("", raw) {
		if !knownKeys[key] {
			warn("config: unknown key ignored", "key", key)
		}
	}
	var nc nmsConfig
	if err := json.Unmarshal(data, &nc); err != nil {
		return jsonErrorAt(data, err)
	}
	if r := nc.RTMP; r != nil {
		if r.Port != nil && !set["rtmp"] {
			cfg.RTMPAddr = fmt.Sprintf(":%d", *r.Port)
		}
		if r.ChunkSize != nil && !set["chunk-size"] {
			cfg.ChunkSize = *r.ChunkSize
		}
		if r.GOPCache != nil && !set["gop-cache"] {
			cfg.GOPCache = *r.GOPCache
		}
		if r.Ping != nil && !set["ping"] {
			cfg.Ping = time.Duration(*r.Ping) * time.Second
		}
		if r.PingTimeout != nil && !set["ping-timeout"] {
			cfg.PingTimeout = time.Duration(*r.PingTimeout) * time.Second
		}
		if ssl := r.SSL; ssl != nil {
			setString(&cfg.RTMPSAddr, portAddr(ssl.Port), set["rtmps"])
			setString(&cfg.TLSCert, ssl.Cert, set["tls-cert"])
			setString(&cfg.TLSKey, ssl.Key, set["tls-key"])
		}
	}
	if h := nc.HTTPS; h != nil {
		setString(&cfg.HTTPSAddr, portAddr(h.Port), set["https"])
		setString(&cfg.TLSCert, h.Cert, set["tls-cert"])
		setString(&cfg.TLSKey, h.Key, set["tls-key"])
	}
	if a := nc.Auth; a != nil {
		setBool(&cfg.PlayAuth, a.Play, set["auth-play"])
		setBool(&cfg.PublishAuth, a.Publish, set["auth-publish"])
		setString(&cfg.Secret, a.Secret, set["auth-secret"])
		setString(&cfg.PublishSecret, a.PubSec, set["auth-publish-secret"])
		if a.API != nil && *a.API {
			setString(&cfg.APIUser, a.APIUser, set["api-user"])
			setString(&cfg.APIPass, a.APIPass, set["api-pass"])
		}
	}
	if h := nc.HTTP; h != nil {
		if h.Port != nil && !set["http"] {
			cfg.HTTPAddr = fmt.Sprintf(":%d", *h.Port)
		}
		if h.AllowOrigin != nil && !set["allow-origin"] {
			cfg.AllowOrigin = *h.AllowOrigin
		}
		setBool(&cfg.API, h.API, set["api"])
	}
	if r := nc.Relay; r != nil && !set["relay-push"] && !set["origin"] {
		cfg.RelayTasks = r.Tasks
	}
	if r := nc.Record; r != nil {
		setString(&cfg.RecordDir, r.Path, set["record"])
	}
	if tr := nc.Trans; tr != nil {
		var mediaRoot *string
		if nc.HTTP != nil {
			mediaRoot = nc.HTTP.MediaRoot
		}
		applyTransTasks(cfg, tr.Tasks, mediaRoot, set, warn)
	}
	// NMS logType: 0 none, 1 error, 2 normal, 3 debug, 4 ffdebug.
	if nc.LogType != nil && !set["log-level"] {
		cfg.LogLevel = map[int]slog.Level{0: slog.LevelError + 4, 1: slog.LevelError, 2: slog.LevelInfo}[*nc.LogType]
		if *nc.LogType >= 3 {
			cfg.LogLevel = slog.LevelDebug
		}
	}
	return nil
}

// applyTransTasks maps NMS's trans tasks: an app with hls or dash is
// muxed from publish on (-hls-always), and hlsFlags' hls_time and
// hls_list_size set -hls-segment and -hls-window (ffmpeg's hls muxer
// options, "[hls_time=2:hls_list_size=3:hls_flags=delete_segments]").
// An app with mp4 is recorded as fragmented MP4 (mp4Flags, ffmpeg's
// options, are not needed: the file is always fragmented), in -record's
// directory, or else in http.mediaroot where NMS v2 wrote them (default
// ./media, as NMS's); then only those apps are recorded.
func applyTransTasks(cfg *config, tasks []nmsTransTask, mediaRoot *string, set map[string]bool, warn func(string, ...any)) {
	var apps []string
	for _, task := range tasks {
		if !validName(task.App) {
			warn("config: trans task's app is not a valid name ([A-Za-z0-9_-]); task ignored", "app", task.App)
			continue
		}
		if task.MP4 {
			cfg.RecordMP4Apps = append(cfg.RecordMP4Apps, task.App)
		}
		if !task.HLS && !task.DASH {
			continue
		}
		apps = append(apps, task.App)
		for opt := range strings.SplitSeq(strings.Trim(task.HLSFlags, "[] "), ":") {
			k, v, _ := strings.Cut(opt, "=")
			switch k {
			case "hls_time":
				if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 && !set["hls-segment"] {
					cfg.HLSSegment = time.Duration(secs * float64(time.Second))
				}
			case "hls_list_size":
				if n, err := strconv.Atoi(v); err == nil && n > 0 && !set["hls-window"] {
					cfg.HLSWindow = max(n, 3)
				}
			}
		}
	}
	if len(apps) > 0 && !set["hls-always"] {
		cfg.HLSAlways = strings.Join(apps, ",")
	}
	if len(cfg.RecordMP4Apps) > 0 && cfg.RecordDir == "" {
		cfg.RecordDir, cfg.RecordOnlyMP4Apps = "media", true
		if mediaRoot != nil && *mediaRoot != "" {
			cfg.RecordDir = *mediaRoot
		}
	}
}

func setString(dst *string, v *string, flagSet bool) {
	if v != nil && !flagSet {
		*dst = *v
	}
}

func setBool(dst *bool, v *bool, flagSet bool) {
	if v != nil && !flagSet {
		*dst = *v
	}
}

func portAddr(port *int) *string {
	if port == nil {
		return nil
	}
	a := fmt.Sprintf(":%d", *port)
	return &a
}

// flattenKeys lists the dotted keys of a JSON object, sorted.
func flattenKeys(prefix string, m map[string]any) []string {
	var keys []string
	for k, v := range m {
		full := prefix + k
		keys = append(keys, full)
		if sub, ok := v.(map[string]any); ok && knownKeys[full] {
			keys = append(keys, flattenKeys(full+".", sub)...)
		}
	}
	sort.Strings(keys)
	return keys
}

// jsonErrorAt names the line and column of a JSON error.
func jsonErrorAt(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 {
		return err
	}
	before := data[:min(int(off), len(data))]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

// logFormat is -log-format: slog's text (key=value) or JSON handler.
type logFormat string

func (f logFormat) MarshalText() ([]byte, error) { return []byte(f), nil }

func (f *logFormat) UnmarshalText(b []byte) error {
	switch v := logFormat(b); v {
	case "text", "json":
		*f = v
		return nil
	}
	return errors.New("want text or json")
}

// byteSize is a number of bytes, written as GOMEMLIMIT is: an integer
// with an optional unit, B, KiB, MiB, GiB or TiB ("512MiB").
type byteSize int64

func (b *byteSize) String() string { return fmt.Sprint(int64(*b)) }

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	num, shift := s, uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return fmt.Errorf("%q: want bytes, or a number with B, KiB, MiB, GiB or TiB", s)
	}
	*b = byteSize(n << shift)
	return nil
}
