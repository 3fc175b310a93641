// Command gms is a live video server: RTMP in; RTMP, HTTP-FLV and
// WebSocket-FLV out. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gms:", err)
		}
		os.Exit(1)
	}
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

// run starts the server and serves until ctx ends; `gms push` and `gms
// pull` run the RTMP client instead (push.go, pull.go). lookupEnv is
// os.LookupEnv, or nil for no environment.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] { // the client subcommands; anything else is the server's flags
		case "push":
			return runPush(ctx, args[1:], stderr)
		case "pull":
			return runPull(ctx, args[1:], stderr)
		}
	}
	var pending []func(*slog.Logger) // warnings from before the logger exists
	cfg, err := parseFlags(args, lookupEnv, stderr, func(msg string, kv ...any) {
		pending = append(pending, func(l *slog.Logger) { l.Warn(msg, kv...) })
	})
	if errors.Is(err, errShowVersion) {
		fmt.Println(versionString())
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(stderr, &cfg)
	for _, w := range pending {
		w(log)
	}
	applyMemoryLimit(int64(cfg.MemoryLimit), lookupEnv, log)
	applyGCPercent(cfg.GCPercent, lookupEnv, log)
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	srv.args, srv.lookupEnv, srv.hup = args, lookupEnv, hup
	return srv.serve(ctx)
}

// applyMemoryLimit makes limit the Go runtime's soft memory limit, unless
// GOMEMLIMIT is set: the runtime read that at start-up, and it wins. Near
// the limit the GC runs more often, so that the heap, and the RSS with
// it, stays close to what is live (queued media, GOP caches) instead of
// growing to twice that (GOGC=100) before a collection; the price is GC
// CPU when the live heap nears the limit (the runtime caps it at about
// half the CPU, so a limit set too low slows the server down rather than
// stopping it).
func applyMemoryLimit(limit int64, lookupEnv func(string) (string, bool), log *slog.Logger) {
	if limit <= 0 {
		return
	}
	if lookupEnv != nil {
		if v, ok := lookupEnv("GOMEMLIMIT"); ok && v != "" {
			log.Info("memory limit: GOMEMLIMIT wins over -memory-limit", "GOMEMLIMIT", v, "memory_limit", limit)
			return
		}
	}
	debug.SetMemoryLimit(limit)
	log.Info("memory limit", "bytes", limit)
}

// applyGCPercent sets the GC's target percentage, unless GOGC is set:
// the runtime read that at start-up, and it wins. gms's live heap is
// small and steady (a few KB a viewer, the GOP caches, queued media), and
// its garbage comes at the rate media comes in, so 50 instead of Go's 100
// keeps RSS nearer what is live for GC work that did not show in CPU per
// viewer (README, Performance).
func applyGCPercent(percent int, lookupEnv func(string) (string, bool), log *slog.Logger) {
	if lookupEnv != nil {
		if v, ok := lookupEnv("GOGC"); ok && v != "" {
			log.Debug("gc percent: GOGC wins over -gc-percent", "GOGC", v, "gc_percent", percent)
			return
		}
	}
	debug.SetGCPercent(percent)
}

// newLogger builds the server's logger: -log-format's handler at -log-level.
func newLogger(w io.Writer, cfg *config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
