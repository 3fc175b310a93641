package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"
)

// A running gms: its listeners, the hub and the servers on them; start-up,
// reload on SIGHUP, drain and shutdown.

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

// server is a running gms: listeners, hub and the connections they serve.
type server struct {
	cfg     *config
	log     *slog.Logger
	hub     *hub
	hooks   *hooks
	admit   *admission
	rtmp    *rtmpServer
	web     *httpServer
	rtmpLn  net.Listener
	httpLn  net.Listener
	rtmpsLn net.Listener // nil without -rtmps
	httpsLn net.Listener // nil without -https
	httpSrv *http.Server
	rec     *recorder // nil without -record
	relays  *relays

	args      []string                    // the command line, read again on reload
	lookupEnv func(string) (string, bool) // the environment, likewise; nil: none
	hup       <-chan os.Signal            // SIGHUP: reload; nil: no reloads
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
		admit:   admit,
		rtmp:    newRTMPServer(cfg, h, admit, log),
		web:     newHTTPServer(cfg, h, admit, log),
		rtmpLn:  rtmpLn,
		httpLn:  httpLn,
		rtmpsLn: rtmpsLn,
		httpsLn: httpsLn,
	}
	s.web.connLimits = limits
	if s.relays, err = newRelays(cfg, h, log); err != nil {
		return nil, err
	}
	h.tap(s.relays.tap)
	h.demand = s.relays.demand
	s.web.relays = s.relays
	if cfg.RecordDir != "" {
		s.rec = newRecorder(cfg.RecordDir, log)
		s.rec.setFormats(cfg.RecordFormat, cfg.RecordMP4Apps, cfg.RecordOnlyMP4Apps)
		if cfg.RecordOnlyMP4Apps {
			log.Info("record: on for NMS trans tasks with mp4", "dir", cfg.RecordDir, "format", "mp4", "apps", strings.Join(cfg.RecordMP4Apps, ","))
		} else {
			log.Info("record: on", "dir", cfg.RecordDir, "format", cfg.RecordFormat, "mp4_apps", strings.Join(cfg.RecordMP4Apps, ","))
		}
		h.tap(s.rec.tap)
		s.web.rec = s.rec
	}
	players := newPlayerSlots(cfg.MaxConns, &h.counters.playersRefused, log)
	s.rtmp.players, s.web.players = players, players
	if a, ok := rtmpLn.Addr().(*net.TCPAddr); ok {
		s.web.rtmpPort = a.Port
	}
	s.httpSrv = &http.Server{
		Handler:           s.web.handler(),
		ReadHeaderTimeout: requestHeadTimeout,
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
	// The notifier runs even with no hook URLs: a reload may add some. At
	// shutdown it gets one -hook-timeout for what is queued; what is left
	// then is counted and logged as lost.
	hooksCtx, cancelHooks := context.WithCancel(context.Background())
	defer cancelHooks()
	events, stopHooks := s.hub.watchLossy(s.hooks.lost)
	wg.Go(func() { s.hooks.notify(hooksCtx, events) })
	relaysCtx, stopRelays := context.WithCancel(context.Background())
	defer stopRelays()
	relaysDone := make(chan struct{})
	go func() { s.relays.run(relaysCtx); close(relaysDone) }()
	errc := make(chan error, 4)
	wg.Go(func() { errc <- s.rtmp.serve(connCtx, s.rtmpLn) })
	wg.Go(func() { errc <- s.httpSrv.Serve(s.httpLn) })
	if s.rtmpsLn != nil {
		wg.Go(func() { errc <- s.rtmp.serve(connCtx, s.rtmpsLn) })
	}
	if s.httpsLn != nil {
		wg.Go(func() { errc <- s.httpSrv.Serve(s.httpsLn) })
	}

	s.log.Info("ready: accepting connections")
	err := s.waitForEnd(ctx, errc)
	if err == nil && s.cfg.Drain > 0 {
		s.drain()
	}
	s.log.Info("shutting down")
	s.rtmpLn.Close()
	if s.rtmpsLn != nil {
		s.rtmpsLn.Close()
	}
	stopRelays() // before the connections: a pull's players then hear its end
	<-relaysDone
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
	if s.rec != nil {
		s.rec.wait() // the hub has ended every recording: their files close now
	}
	if errors.Is(err, errServerClosed) || errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// waitForEnd serves reloads until ctx ends or a listener fails.
func (s *server) waitForEnd(ctx context.Context, errc <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-s.hup:
			s.reload()
		}
	}
}

// reload reads the configuration again: the same command line, the
// config file (and environment) anew. Signed-URL settings and hooks take
// effect for the clients that come next; streams and viewers stay. A file
// that does not parse or validate is logged and the old config stays.
// Settings that are fixed while serving (listen addresses, limits, ...)
// are logged as taking a restart.
func (s *server) reload() {
	var warnings []string
	cfg, err := parseFlags(s.args, s.lookupEnv, io.Discard, func(msg string, kv ...any) {
		warnings = append(warnings, fmt.Sprint(append([]any{msg}, kv...)...))
	})
	if err != nil {
		s.log.Error("reload refused: keeping the running config", "err", err)
		return
	}
	for _, w := range warnings {
		s.log.Warn("reload: " + w)
	}
	if fixed := changedFixed(s.cfg, &cfg); len(fixed) > 0 {
		s.log.Warn("reload: these settings changed and take a restart", "settings", strings.Join(fixed, ", "))
	}
	s.admit.set(&cfg)
	s.log.Info("reloaded: signed URLs and hooks apply to new connections")
}

// reloadable are the config fields a reload applies.
var reloadable = map[string]bool{
	"Secret": true, "PublishSecret": true, "PublishAuth": true, "PlayAuth": true, "TrustLoopback": true,
	"OnPublish": true, "OnPlay": true, "OnUnpublish": true, "OnStop": true, "HookTimeout": true,
}

// changedFixed names the fields that differ between old and new and that
// a reload cannot apply.
func changedFixed(old, new *config) []string {
	var names []string
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem()
	for i := range ov.NumField() {
		name := ov.Type().Field(i).Name
		if !reloadable[name] && !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			names = append(names, name)
		}
	}
	return names
}

// drain lets the streams end by themselves before shutdown: no new
// connections, no new players or publishers (HTTP 503, health 503), and
// those connected keep going until they have all left or -drain passes.
func (s *server) drain() {
	s.admit.draining.Store(true)
	s.rtmpLn.Close()
	if s.rtmpsLn != nil {
		s.rtmpsLn.Close()
	}
	c := &s.hub.counters
	clients := func() int64 {
		return c.active[protoRTMP].Load() + c.active[protoHTTP].Load() + c.active[protoWS].Load()
	}
	s.log.Info("draining: waiting for clients to leave", "clients", clients(), "at_most", s.cfg.Drain)
	deadline := time.NewTimer(s.cfg.Drain)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for clients() > 0 {
		select {
		case <-deadline.C:
			s.log.Info("drain time passed: closing the rest", "clients", clients())
			return
		case <-tick.C:
		}
	}
	s.log.Info("drained: every client has left")
}
