package main

// Who may publish and play: NMS's signed URLs, HTTP hooks that accept or
// refuse a client and hear when it leaves, and HTTP Basic auth for the API
// and the admin page.

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// guard requires HTTP Basic auth (RFC 7617) when the config sets API
// credentials, comparing in constant time, and answers 401 with the realm
// NMS uses otherwise.
func (s *httpServer) guard(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.APIUser == "" {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		userOK := subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.APIUser))
		passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.APIPass))
		if userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="Authorization Required"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

var (
	errSignMissing = errors.New("signature missing")
	errSignExpired = errors.New("signature expired")
	errSignInvalid = errors.New("signature invalid")
)

// checkSign verifies NMS's signed-URL scheme: the query's sign is
// EXPIRES-HASH, EXPIRES a unix time in seconds not yet past, and HASH the
// lowercase hex md5 of "/APP/NAME-EXPIRES-SECRET". The hash is compared in
// constant time.
func checkSign(key streamKey, query, secret string, now time.Time) error {
	q, _ := url.ParseQuery(query)
	sign := q.Get("sign")
	if sign == "" {
		return errSignMissing
	}
	expires, hash, ok := strings.Cut(sign, "-")
	exp, err := strconv.ParseInt(expires, 10, 64)
	if !ok || err != nil {
		return errSignInvalid
	}
	sum := md5.Sum([]byte(key.String() + "-" + expires + "-" + secret))
	want := hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(hash), []byte(want)) != 1 {
		return errSignInvalid
	}
	if exp < now.Unix() {
		return errSignExpired
	}
	return nil
}

// hooks posts lifecycle events to the URLs the config names. A reload
// (SIGHUP) swaps its settings; a post in flight keeps the ones it began
// with.
type hooks struct {
	cur     atomic.Pointer[hookSettings]
	log     *slog.Logger
	dropped *atomic.Uint64 // counters.hookDropped, for /metrics

	dropMu       sync.Mutex
	dropLogged   time.Time // when the last line about lost events went out
	dropUnlogged uint64    // events lost since
}

// dropLogEvery spaces the log lines about lost hook events: a hook that
// stays slow would otherwise log a line per client leaving.
const dropLogEvery = 10 * time.Second

// hookSettings are a config's hook URLs and the client that posts to them.
type hookSettings struct {
	onPublish, onPlay, onUnpublish, onStop string
	client                                 *http.Client
}

// newHooks makes the hooks of cfg (which may name none yet). dropped
// counts the unpublish and stop events that never reach their hook.
func newHooks(cfg *config, log *slog.Logger, dropped *atomic.Uint64) *hooks {
	hk := &hooks{log: log, dropped: dropped}
	hk.set(cfg)
	return hk
}

// set makes cfg's hooks the current ones.
func (hk *hooks) set(cfg *config) {
	client := &http.Client{
		Timeout: cfg.HookTimeout,
		// A hook's answer is its own: a redirect is not followed. Go's
		// client would turn a 302 into a GET to the new target (whose 2xx
		// would admit the client) and repeat a 307 or 308 POST there, body
		// and all, with the client's IP and signed query (RFC 9110 §15.4);
		// post treats the 3xx as the refusal it is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	hk.cur.Store(&hookSettings{onPublish: cfg.OnPublish, onPlay: cfg.OnPlay, onUnpublish: cfg.OnUnpublish,
		onStop: cfg.OnStop, client: client})
}

var (
	errHookRefused = errors.New("refused by hook")
	errHookFailed  = errors.New("hook failed")
)

// redactURL is a hook URL as errors and logs may show it: scheme, host
// and path. The userinfo and the query, where a hook URL carries its
// credentials (http://user:pass@host/path?token=T), are left out.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a hook URL that does not parse)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// hookBody is the JSON each hook gets.
type hookBody struct {
	Action   action      `json:"action"`
	ID       string      `json:"id"`
	IP       string      `json:"ip"`
	App      string      `json:"app"`
	Name     string      `json:"name"`
	Query    string      `json:"query"`
	Protocol protocol    `json:"protocol"`
	Created  string      `json:"connectCreated"`
	Time     string      `json:"time"`
	Bytes    uint64      `json:"bytes,omitempty"`
	Reason   closeReason `json:"reason,omitempty"`
}

// post sends one event; it returns an error unless the answer is 2xx.
// The error names the hook by its redacted URL only: it reaches logs, and
// may reach the client that was refused.
func (hk *hooks) post(ctx context.Context, client *http.Client, hookURL string, body hookBody) error {
	shown := redactURL(hookURL)
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", hookURL, bytes.NewReader(data))
	if err != nil {
		// url.Error would quote the whole URL.
		return fmt.Errorf("%w: %s: bad URL", errHookFailed, shown)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		// The client's url.Error quotes the URL with its query (and the
		// user name); keep only what went wrong, a timeout or a refused
		// connection, so that errors.Is still sees it.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("%w: POST %s: %w", errHookFailed, shown, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused, up to a cap
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return fmt.Errorf("%w: %s answered %s, a redirect, which hooks do not follow", errHookRefused, shown, resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("%w: %s answered %s", errHookRefused, shown, resp.Status)
	}
	return nil
}

// allow asks the publish or play hook, if there is one, whether a client
// may go on. No answer in time counts as a refusal: a hook exists to check.
func (hk *hooks) allow(act action, key streamKey, c clientInfo) error {
	hs := hk.cur.Load()
	hookURL := hs.onPublish
	if act == actPlay {
		hookURL = hs.onPlay
	}
	if hookURL == "" {
		return nil
	}
	return hk.post(context.Background(), hs.client, hookURL, newHookBody(act, key, c, time.Now()))
}

func newHookBody(act action, key streamKey, c clientInfo, at time.Time) hookBody {
	return hookBody{Action: act, ID: c.ID, IP: c.IP, App: key.App, Name: key.Name, Query: c.Query,
		Protocol: c.Protocol, Created: isoTime(c.Created), Time: isoTime(at)}
}

// notifyURL is the hook that hears of an event after the fact: the
// unpublish or stop hook; "" for none.
func (hs *hookSettings) notifyURL(act action) string {
	switch act {
	case actUnpublish:
		return hs.onUnpublish
	case actStop:
		return hs.onStop
	}
	return ""
}

// notify posts unpublish and stop events as they happen, until events
// closes (events from hub.watchLossy(hk.lost)). One post at a time: while
// a slow hook keeps it waiting, events queue in the channel, and those
// that find it full are lost, counted and logged by lost. Once ctx ends
// (shutdown), what is still queued is lost too.
func (hk *hooks) notify(ctx context.Context, events <-chan hubEvent) {
	defer hk.noteLost(0, true)
	for ev := range events {
		hs := hk.cur.Load()
		hookURL := hs.notifyURL(ev.Type)
		if hookURL == "" {
			continue
		}
		if ctx.Err() != nil {
			hk.dropped.Add(1)
			hk.noteLost(1, false)
			continue
		}
		body := newHookBody(ev.Type, ev.Key, ev.Client, ev.Time)
		body.Bytes, body.Reason = ev.Bytes, ev.Reason
		if err := hk.post(ctx, hs.client, hookURL, body); err != nil {
			hk.log.Warn("hook failed", "action", ev.Type, "err", err)
		}
	}
}

// lost counts an event the notify queue had no room for, if a hook was
// to get it. The hub goroutine calls it, so it only adds and, at most
// once per dropLogEvery, logs.
func (hk *hooks) lost(ev hubEvent) {
	if hk.cur.Load().notifyURL(ev.Type) == "" {
		return
	}
	hk.dropped.Add(1)
	hk.noteLost(1, false)
}

// noteLost adds n lost events to those not logged yet, and logs them when
// dropLogEvery has passed since the last line, or at the end (final).
func (hk *hooks) noteLost(n uint64, final bool) {
	hk.dropMu.Lock()
	defer hk.dropMu.Unlock()
	hk.dropUnlogged += n
	now := time.Now()
	if hk.dropUnlogged == 0 || !final && now.Sub(hk.dropLogged) < dropLogEvery {
		return
	}
	hk.log.Warn("hook events dropped: the unpublish/stop hook answers slower than clients leave",
		"dropped", hk.dropUnlogged, "dropped_total", hk.dropped.Load())
	hk.dropLogged, hk.dropUnlogged = now, 0
}

var (
	errUnauthorized = errors.New("unauthorized")
	errDraining     = errors.New("server is shutting down")
)

// admission decides whether a publisher or player may go on: a signed URL
// when the config asks for one, then the publish or play hook. The
// protocol front ends (rtmp.go, http.go) ask it before they reach the hub.
type admission struct {
	rules    atomic.Pointer[authRules] // swapped by a reload
	draining atomic.Bool               // shutting down: nobody new
	hooks    *hooks                    // nil in tests without hooks
	counters *counters
}

// authRules are the signed-URL settings of a config.
type authRules struct {
	publishAuth, playAuth, trustLoopback bool
	secret, publishSecret                string
}

func newAdmission(cfg *config, hooks *hooks, counters *counters) *admission {
	a := &admission{hooks: hooks, counters: counters}
	a.set(cfg)
	return a
}

// set makes cfg's signed-URL settings and hooks the ones new clients
// meet (at start and on SIGHUP); clients admitted before stay.
func (a *admission) set(cfg *config) {
	a.rules.Store(&authRules{publishAuth: cfg.PublishAuth, playAuth: cfg.PlayAuth, trustLoopback: cfg.TrustLoopback,
		secret: cfg.Secret, publishSecret: cfg.PublishSecret})
	if a.hooks != nil {
		a.hooks.set(cfg)
	}
}

// check admits a publisher (actPublish) or a player (actPlay) of key.
// Publishers sign with the publish secret when there is one, so that a
// viewer's sign cannot publish.
func (a *admission) check(act action, key streamKey, c clientInfo) error {
	if err := a.checkSign(act, key, c); err != nil {
		return err
	}
	if a.hooks != nil {
		if err := a.hooks.allow(act, key, c); err != nil {
			a.counters.hookRejects.Add(1)
			return fmt.Errorf("%w: %w", errUnauthorized, err)
		}
	}
	return nil
}

// checkSign is check without the hooks: for HLS, where every playlist
// reload and part is a request of its own, and a hook per request would
// be a hook several times a second per viewer.
func (a *admission) checkSign(act action, key streamKey, c clientInfo) error {
	if a.draining.Load() {
		return errDraining
	}
	r := a.rules.Load()
	need, secret := r.publishAuth, r.secret
	if act == actPublish && r.publishSecret != "" {
		secret = r.publishSecret
	}
	if act == actPlay {
		need = r.playAuth
	}
	if ip := net.ParseIP(c.IP); need && !(r.trustLoopback && !c.Proxied && ip != nil && ip.IsLoopback()) {
		if err := checkSign(key, c.Query, secret, time.Now()); err != nil {
			a.counters.authFailures[c.Protocol].Add(1)
			return fmt.Errorf("%w: %w", errUnauthorized, err)
		}
	}
	return nil
}

// refusalText is all a refused client is told: why (a bad sign, a hook's
// answer) goes to the log, which is for the operator.
const refusalText = "not authorized"

// credentialKeys are query keys whose values are credentials: NMS's sign,
// and the stream keys and tokens that hooks check.
var credentialKeys = []string{"sign", "token", "key", "secret", "password", "pass", "passwd", "pwd",
	"auth", "access_token", "signature", "streamkey", "stream_key"}

func isCredentialKey(k string) bool {
	for _, c := range credentialKeys {
		if strings.EqualFold(k, c) {
			return true
		}
	}
	return false
}

// redactQuery hides the credentials in a raw query for the API, its
// events and the logs: a sign keeps its expiry (sign=1796431621-***),
// other credentials become ***. Keys are matched as checkSign and hooks
// read them (unescaped, case-insensitively); pairs split at ';' too, as
// some hook back ends do. Hooks get the query whole: checking a stream
// key is their job.
func redactQuery(raw string) string {
	var b strings.Builder
	for raw != "" {
		i := strings.IndexAny(raw, "&;")
		pair, sep := raw, ""
		if i >= 0 {
			pair, sep, raw = raw[:i], raw[i:i+1], raw[i+1:]
		} else {
			raw = ""
		}
		k, v, hasValue := strings.Cut(pair, "=")
		if key, err := url.QueryUnescape(k); err == nil && hasValue && isCredentialKey(key) {
			pair = k + "=" + redactValue(key, v)
		}
		b.WriteString(pair + sep)
	}
	return b.String()
}

// redactValue is what the API and logs show of a credential's value.
func redactValue(key, v string) string {
	if strings.EqualFold(key, "sign") {
		if exp, _, ok := strings.Cut(v, "-"); ok && exp != "" && strings.Trim(exp, "0123456789") == "" {
			return exp + "-***"
		}
	}
	return "***"
}

// forwarded tells whether a proxy says it forwarded r: RFC 7239's
// Forwarded, the de facto X-Forwarded-For and X-Real-IP, or Via (RFC 9110
// §7.6.3). Such a request's loopback address is the proxy's, on this
// machine, not the client's: behind a reverse proxy on this machine,
// "from this machine" (kicks, relays without -api-user) and
// -auth-trust-loopback would otherwise take in everyone. A client on
// this machine that sends one of these headers only gives up its trust.
func forwarded(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-IP", "Via"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// control lets a request that changes things (kicks; later relays and
// recording) through only with the API's credentials, or, when none are
// configured, from this machine. Reading stays open, as with NMS.
//
// A browser on this machine (or one that remembers the API's password)
// is "this machine" too, and any page it shows may send a plain form POST
// without a CORS preflight: POST /api/relay/push would then send a live
// stream wherever that page says. So a request that a browser marks as
// coming from another site's page is refused, unless -api-allow-origin
// names that site (net/http's CrossOriginProtection: Sec-Fetch-Site, or
// Origin against Host).
func (s *httpServer) control(h http.HandlerFunc) http.HandlerFunc {
	guarded := s.guard(h)
	crossOrigin := http.NewCrossOriginProtection()
	return func(w http.ResponseWriter, r *http.Request) {
		if _, named := s.apiOrigin(r.Header.Get("Origin")); !named {
			if err := crossOrigin.Check(r); err != nil {
				writeJSON(w, http.StatusForbidden, map[string]string{
					"error": "changing state from another site's page needs -api-allow-origin to name it"})
				return
			}
		}
		if s.cfg.APIUser == "" {
			if ip := net.ParseIP(hostOf(r.RemoteAddr)); ip == nil || !ip.IsLoopback() || forwarded(r) {
				writeJSON(w, http.StatusForbidden, map[string]string{
					"error": "changing state needs -api-user and -api-pass, or a request from this machine not forwarded by a proxy"})
				return
			}
		}
		guarded(w, r)
	}
}
