// Command gms is a live video server: RTMP in; RTMP, HTTP-FLV and
// WebSocket-FLV out. See README.md.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gms:", err)
		}
		os.Exit(1)
	}
}

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
	WriteDelay     time.Duration // a viewer is written to at most once per this (0: every frame at once)
	MaxConns       int           // open connections, RTMP and HTTP together (0: no limit)
	MaxConnsIP     int           // open connections from one IP address (0: no limit)
	PlayWait       time.Duration // a player waiting for a publisher gives up after this (0: waits forever)
	LogLevel       slog.Level

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
		WriteDelay:  50 * time.Millisecond,
		MaxConns:    20000,
		PlayWait:    60 * time.Second,
		LogLevel:    slog.LevelInfo,
		API:         true,
		HookTimeout: 3 * time.Second,
	}
}

// parseFlags fills a config from the command line and, with -config, a
// JSON file in NMS's shape. Flags given on the command line win over the
// file. Warnings about the file go to log.
func parseFlags(args []string, stderr io.Writer, warn func(string, ...any)) (config, error) {
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
	fs.DurationVar(&cfg.WriteDelay, "write-delay", cfg.WriteDelay, "write to each viewer at most once per `duration`, merging frames (0 = every frame at once)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "most open `connections`, RTMP and HTTP together (0 = no limit)")
	fs.IntVar(&cfg.MaxConnsIP, "max-conns-per-ip", cfg.MaxConnsIP, "most open `connections` from one IP address (0 = no limit)")
	fs.DurationVar(&cfg.PlayWait, "play-wait", cfg.PlayWait, "a player waiting for a publisher gives up after this `duration` (0 = waits forever)")
	fs.TextVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log `level`: debug, info, warn or error")
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
	configFile := fs.String("config", "", "JSON config `file` in node-media-server's shape; flags win over it")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gms [flags]\n\nA live video server: publish RTMP, play RTMP, HTTP-FLV or WebSocket-FLV.\n\n")
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
	if *configFile != "" {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
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
	if cfg.PingTimeout <= 0 {
		return cfg, fmt.Errorf("-ping-timeout must be positive")
	}
	if cfg.PlayWait < 0 {
		return cfg, fmt.Errorf("-play-wait must not be negative")
	}
	if cfg.WriteDelay < 0 || cfg.WriteDelay > time.Second {
		return cfg, fmt.Errorf("-write-delay %v out of range 0..1s", cfg.WriteDelay)
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

// errShowVersion is parseFlags' answer to -version: run prints
// versionString and exits 0.
var errShowVersion = errors.New("-version")

// versionString is gms's version in one line, from the build info the go
// command writes into the binary: the module version, the commit and its
// time, whether the tree had uncommitted changes, and the Go release.
// The time is the commit's: builds are reproducible, so none records its
// own. A binary built without version control information (go run, go
// test, -buildvcs=false, or in a git worktree, which the go command does
// not recognise) says "devel" and "unknown commit".
func versionString() string {
	ver, commit, goVer := "devel", "unknown commit", runtime.Version()
	var when, modified string
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			ver = v
		}
		goVer = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = "commit " + s.Value[:min(12, len(s.Value))]
			case "vcs.time":
				when = " of " + s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
	}
	return fmt.Sprintf("gms %s (%s%s%s, %s %s/%s)", ver, commit, when, modified, goVer, runtime.GOOS, runtime.GOARCH)
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
	LogType *int `json:"logType"`
}

// knownKeys are the config keys gms reads; others get a warning.
var knownKeys = map[string]bool{
	"rtmp": true, "rtmp.port": true, "rtmp.chunk_size": true, "rtmp.gop_cache": true,
	"rtmp.ping": true, "rtmp.ping_timeout": true,
	"rtmp.ssl": true, "rtmp.ssl.port": true, "rtmp.ssl.cert": true, "rtmp.ssl.key": true,
	"http": true, "http.port": true, "http.allow_origin": true, "http.api": true,
	"https": true, "https.port": true, "https.cert": true, "https.key": true,
	"auth": true, "auth.play": true, "auth.publish": true, "auth.secret": true, "auth.publish_secret": true,
	"auth.api": true, "auth.api_user": true, "auth.api_pass": true,
	"logType": true,
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
	// NMS logType: 0 none, 1 error, 2 normal, 3 debug, 4 ffdebug.
	if nc.LogType != nil && !set["log-level"] {
		cfg.LogLevel = map[int]slog.Level{0: slog.LevelError + 4, 1: slog.LevelError, 2: slog.LevelInfo}[*nc.LogType]
		if *nc.LogType >= 3 {
			cfg.LogLevel = slog.LevelDebug
		}
	}
	return nil
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

// connLimiter counts open connections, in total and per IP, across all
// listeners, so that no one host can take every slot.
type connLimiter struct {
	maxTotal, maxPerIP int
	refused            *atomic.Uint64
	log                *slog.Logger

	mu      sync.Mutex
	total   int
	perIP   map[string]int
	lastLog time.Time
}

// take reserves a slot for ip, or says which limit it is over.
func (l *connLimiter) take(ip string) (limit string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.maxTotal > 0 && l.total >= l.maxTotal:
		return fmt.Sprintf("max-conns %d", l.maxTotal), false
	case l.maxPerIP > 0 && l.perIP[ip] >= l.maxPerIP:
		return fmt.Sprintf("max-conns-per-ip %d", l.maxPerIP), false
	}
	l.total++
	l.perIP[ip]++
	return "", true
}

func (l *connLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// limitListener closes connections over the limits as they are accepted,
// with at most one log line a second.
type limitListener struct {
	net.Listener
	limits *connLimiter
}

func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, isTCP := c.(*net.TCPConn)
		if !isTCP {
			return c, nil
		}
		ip := hostOf(c.RemoteAddr().String())
		limit, ok := ln.limits.take(ip)
		if ok {
			return &limitConn{TCPConn: tc, limits: ln.limits, ip: ip}, nil
		}
		l := ln.limits
		l.refused.Add(1)
		l.mu.Lock()
		if time.Since(l.lastLog) > time.Second {
			l.lastLog = time.Now()
			l.log.Warn("connection refused: over limit", "remote", c.RemoteAddr().String(), "limit", limit,
				"refused_total", l.refused.Load())
		}
		l.mu.Unlock()
		c.Close()
	}
}

// limitConn gives its slot back when closed, once. It embeds the
// *net.TCPConn itself, not a net.Conn, so that net.Buffers still finds
// the writev method through it.
type limitConn struct {
	*net.TCPConn
	limits *connLimiter
	ip     string
	once   sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.limits.release(c.ip) })
	return c.TCPConn.Close()
}

// playerReservePercent is the share of -max-conns that players (RTMP
// play, HTTP-FLV, WS-FLV) can never take: however many players come,
// watching or waiting for a publisher, publishers and the API find slots.
// At least one slot is reserved.
const playerReservePercent = 10

// errTooManyPlayers refuses a player over the players' share of -max-conns.
var errTooManyPlayers = errors.New("server busy: too many players")

// playerSlots counts players against their share of -max-conns, across
// RTMP and HTTP. A nil *playerSlots has no limit (-max-conns 0).
type playerSlots struct {
	max     int
	refused *atomic.Uint64
	log     *slog.Logger

	mu      sync.Mutex
	n       int
	lastLog time.Time
}

func newPlayerSlots(maxConns int, refused *atomic.Uint64, log *slog.Logger) *playerSlots {
	if maxConns <= 0 {
		return nil
	}
	return &playerSlots{max: maxConns - max(1, maxConns*playerReservePercent/100), refused: refused, log: log}
}

// take reserves a player's slot. Over the share it counts the refusal and
// logs at most one line a second: a flood of players must not flood the log.
func (p *playerSlots) take(remote string) bool {
	if p == nil {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n < p.max {
		p.n++
		return true
	}
	p.refused.Add(1)
	if time.Since(p.lastLog) > time.Second {
		p.lastLog = time.Now()
		p.log.Warn("player refused: over the players' share of max-conns", "remote", remote, "players", p.max,
			"refused_total", p.refused.Load())
	}
	return false
}

// release gives back a slot that take reserved.
func (p *playerSlots) release() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
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

// run starts the server and serves until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	var pending []func(*slog.Logger) // warnings from before the logger exists
	cfg, err := parseFlags(args, stderr, func(msg string, kv ...any) {
		pending = append(pending, func(l *slog.Logger) { l.Warn(msg, kv...) })
	})
	if errors.Is(err, errShowVersion) {
		fmt.Println(versionString())
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	for _, w := range pending {
		w(log)
	}
	srv, err := listen(&cfg, log)
	if err != nil {
		return err
	}
	rtmpPort := portOf(srv.rtmpLn.Addr())
	httpPort := portOf(srv.httpLn.Addr())
	log.Info("gms listening", "rtmp", srv.rtmpLn.Addr().String(), "http", srv.httpLn.Addr().String())
	log.Info("push with: ffmpeg -re -i input.mp4 -c copy -f flv rtmp://localhost:" + rtmpPort + "/live/NAME")
	log.Info("play with: ffplay rtmp://localhost:" + rtmpPort + "/live/NAME, http://localhost:" + httpPort +
		"/live/NAME.flv or ws://localhost:" + httpPort + "/live/NAME.flv; admin page: http://localhost:" + httpPort + "/admin/")
	return srv.serve(ctx)
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

// server is a running gms: listeners, hub and the connections they serve.
type server struct {
	cfg     *config
	log     *slog.Logger
	hub     *hub
	hooks   *hooks // nil without hook URLs
	rtmp    *rtmpServer
	web     *httpServer
	rtmpLn  net.Listener
	httpLn  net.Listener
	rtmpsLn net.Listener // nil without -rtmps
	httpsLn net.Listener // nil without -https
	httpSrv *http.Server
}

// listen opens every listener, so that a port in use fails before
// anything runs.
func listen(cfg *config, log *slog.Logger) (_ *server, err error) {
	var lns []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
		}
	}()
	h := newHub(cfg, log)
	limits := &connLimiter{maxTotal: cfg.MaxConns, maxPerIP: cfg.MaxConnsIP, perIP: map[string]int{},
		refused: &h.counters.tooManyConns, log: log}
	open := func(addr string, tlsCfg *tls.Config) (net.Listener, error) {
		raw, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		lns = append(lns, raw)
		var ln net.Listener = &limitListener{Listener: raw, limits: limits}
		if tlsCfg != nil {
			ln = tls.NewListener(ln, tlsCfg)
		}
		return ln, nil
	}
	tlsCfg, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	rtmpLn, err := open(cfg.RTMPAddr, nil)
	if err != nil {
		return nil, err
	}
	httpLn, err := open(cfg.HTTPAddr, nil)
	if err != nil {
		return nil, err
	}
	var rtmpsLn, httpsLn net.Listener
	if cfg.RTMPSAddr != "" {
		if rtmpsLn, err = open(cfg.RTMPSAddr, tlsCfg); err != nil {
			return nil, err
		}
	}
	if cfg.HTTPSAddr != "" {
		if httpsLn, err = open(cfg.HTTPSAddr, tlsCfg); err != nil {
			return nil, err
		}
	}
	hk := newHooks(cfg, log, &h.counters.hookDropped)
	admit := newAdmission(cfg, hk, &h.counters)
	s := &server{
		cfg:     cfg,
		log:     log,
		hub:     h,
		hooks:   hk,
		rtmp:    newRTMPServer(cfg, h, admit, log),
		web:     newHTTPServer(cfg, h, admit, log),
		rtmpLn:  rtmpLn,
		httpLn:  httpLn,
		rtmpsLn: rtmpsLn,
		httpsLn: httpsLn,
	}
	s.web.connLimits = limits
	players := newPlayerSlots(cfg.MaxConns, &h.counters.playersRefused, log)
	s.rtmp.players, s.web.players = players, players
	if a, ok := rtmpLn.Addr().(*net.TCPAddr); ok {
		s.web.rtmpPort = a.Port
	}
	s.httpSrv = &http.Server{
		Handler:           s.web.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       cfg.PingTimeout,
		MaxHeaderBytes:    16<<10 - 4096, // net/http reads this plus 4096 bytes: a 16 KiB request head in all
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// loadTLS reads the certificate for -rtmps and -https; nil without one.
func loadTLS(cfg *config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

// serve runs until ctx ends, then shuts down in order: stop accepting,
// let HTTP handlers finish, close the RTMP and hijacked connections that
// Shutdown does not know about, and wait for every goroutine.
func (s *server) serve(ctx context.Context) error {
	hubCtx, stopHub := context.WithCancel(context.Background())
	connCtx, closeConns := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.hub.run(hubCtx) })
	stopHooks := func() {}
	// At shutdown the hooks get one -hook-timeout for what is queued;
	// what is left then is counted and logged as lost.
	hooksCtx, cancelHooks := context.WithCancel(context.Background())
	defer cancelHooks()
	if hk := s.hooks; hk != nil {
		var events <-chan hubEvent
		events, stopHooks = s.hub.watchLossy(hk.lost)
		wg.Go(func() { hk.notify(hooksCtx, events) })
	}
	errc := make(chan error, 4)
	wg.Go(func() { errc <- s.rtmp.serve(connCtx, s.rtmpLn) })
	wg.Go(func() { errc <- s.httpSrv.Serve(s.httpLn) })
	if s.rtmpsLn != nil {
		wg.Go(func() { errc <- s.rtmp.serve(connCtx, s.rtmpsLn) })
	}
	if s.httpsLn != nil {
		wg.Go(func() { errc <- s.httpSrv.Serve(s.httpsLn) })
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.log.Info("shutting down")
	s.rtmpLn.Close()
	if s.rtmpsLn != nil {
		s.rtmpsLn.Close()
	}
	closeConns() // ends every RTMP connection
	s.web.closeAll()
	shutCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s.httpSrv.Shutdown(shutCtx)
	s.rtmp.shutdown()
	s.web.wait()
	stopHooks()
	time.AfterFunc(s.cfg.HookTimeout, cancelHooks)
	stopHub()
	wg.Wait()
	if errors.Is(err, errServerClosed) || errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
