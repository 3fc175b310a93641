package main

// gms as an RTMP client (Adobe RTMP 1.0 from the client's side): dial an
// rtmp:// or rtmps:// URL, the handshake (§5.2, with Flash's digest),
// connect
// (§7.2.1.1), then either publish, with the FMLE calls around it that
// ffmpeg and OBS make (releaseStream, FCPublish; FCUnpublish and
// deleteStream at the end), or play (§7.2.2.1). A publisher sends tags
// with writeTag; a player is a tagSource. The chunk stream is chunk.go's
// reader and writer, so every length the server announces is bounded the
// same way as a publisher's.

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	clientChunkSize   = 4096             // our outgoing chunk size, what OBS uses
	clientWindowAck   = 2500000          // the window we ask the server to ack, as ffmpeg does
	clientIdleTimeout = 2 * time.Minute  // a player hearing nothing this long gives up
	maxURLLen         = 4096             // longest rtmp:// URL taken
	clientDrainWait   = 2 * time.Second  // how long close waits for the server to see our last commands
	defaultRTMPPort   = "1935"           // rtmp://
	defaultRTMPSPort  = "443"            // rtmps://, as ffmpeg and OBS assume
	clientTimeout     = 10 * time.Second // dial, handshake and each answer, unless the options say otherwise
)

var (
	errRTMPURL             = errors.New("rtmp: bad URL")
	errRTMPRefused         = errors.New("rtmp: refused")
	errRTMPStopped         = errors.New("rtmp: the server ended the stream")
	errRTMPServerHandshake = errors.New("rtmp: bad handshake answer")
)

// rtmpURL is a parsed rtmp:// or rtmps:// URL: rtmp://HOST[:PORT]/APP/NAME[?QUERY].
// As ffmpeg reads it, APP is everything between the host and the last
// slash (so app/instance works) and the query stays on the stream name,
// where signed URLs (?sign=) and stream keys are checked.
type rtmpURL struct {
	Secure bool
	Addr   string // host:port to dial
	Host   string // host name, for TLS
	App    string
	TCURL  string // rtmp://HOST[:PORT]/APP, sent in connect
	Name   string // the stream name with its query
}

func parseRTMPURL(raw string) (rtmpURL, error) {
	if len(raw) > maxURLLen {
		return rtmpURL{}, fmt.Errorf("%w: longer than %d bytes", errRTMPURL, maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return rtmpURL{}, fmt.Errorf("%w: %v", errRTMPURL, err)
	}
	var r rtmpURL
	port := defaultRTMPPort
	switch strings.ToLower(u.Scheme) {
	case "rtmp":
	case "rtmps":
		r.Secure, port = true, defaultRTMPSPort
	default:
		return rtmpURL{}, fmt.Errorf("%w: %q: want rtmp:// or rtmps://", errRTMPURL, u.Scheme)
	}
	r.Host = u.Hostname()
	if r.Host == "" {
		return rtmpURL{}, fmt.Errorf("%w: no host in %q", errRTMPURL, raw)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	r.Addr = net.JoinHostPort(r.Host, port)
	path := strings.TrimPrefix(u.Path, "/")
	i := strings.LastIndexByte(path, '/')
	if i <= 0 || i == len(path)-1 {
		return rtmpURL{}, fmt.Errorf("%w: %q: want rtmp://HOST[:PORT]/APP/NAME", errRTMPURL, raw)
	}
	r.App, r.Name = path[:i], path[i+1:]
	if u.RawQuery != "" {
		r.Name += "?" + u.RawQuery
	}
	r.TCURL = strings.ToLower(u.Scheme) + "://" + u.Host + "/" + r.App
	return r, nil
}

// String is the URL as logs may show it: the query with credentials hidden.
func (r rtmpURL) String() string {
	name, query, _ := strings.Cut(r.Name, "?")
	if query != "" {
		name += "?" + redactQuery(query)
	}
	return r.TCURL + "/" + name
}

// rtmpClientOptions tune a client connection; the zero value is usable.
type rtmpClientOptions struct {
	Timeout time.Duration // dial, handshake and each answer from the server (0: clientTimeout)
	TLS     *tls.Config   // for rtmps:// (nil: the system's roots, the URL's host name)
	Log     *slog.Logger  // nil: none
}

// rtmpClientConn is one client connection to an RTMP server. Once
// publishing, a goroutine reads what the server sends (acks, pings, a
// refusal) while the caller writes tags; writes are serialised by wmu.
type rtmpClientConn struct {
	u       rtmpURL
	nc      net.Conn
	br      *bufio.Reader
	cr      *chunkReader
	timeout time.Duration
	log     *slog.Logger

	wmu      sync.Mutex
	wbuf     []byte
	bytesOut atomic.Uint64

	txn       float64
	streamID  uint32
	ackWindow uint32 // the server's Window Acknowledgement Size (§5.4.4)
	lastAck   uint64 // bytes read when we last acknowledged
	ourWindow uint32 // the window we last announced (§5.4.5)

	publishing bool
	playing    bool
	readerDone chan struct{}         // closed when the publisher's reader goroutine ends
	serverErr  atomic.Pointer[error] // why the server ended the publish, once known
	closeOnce  sync.Once
}

// dialRTMPClient dials the URL, runs the handshake and connect. The
// caller then calls publish or play, and close.
func dialRTMPClient(ctx context.Context, raw string, publish bool, opt rtmpClientOptions) (*rtmpClientConn, error) {
	u, err := parseRTMPURL(raw)
	if err != nil {
		return nil, err
	}
	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = clientTimeout
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", u.Addr)
	if err != nil {
		return nil, fmt.Errorf("rtmp: %w", err)
	}
	// The end of ctx interrupts the handshake and connect.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if u.Secure {
		cfg := opt.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = u.Host
		}
		tc := tls.Client(nc, cfg)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("rtmps: TLS handshake with %s: %w", u.Addr, err)
		}
		nc = tc
	}
	c := newRTMPClientConn(nc, u, opt)
	c.timeout = timeout
	if err := c.start(publish); err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return c, nil
}

// newRTMPClientConn wraps a connection that start will handshake on.
func newRTMPClientConn(nc net.Conn, u rtmpURL, opt rtmpClientOptions) *rtmpClientConn {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	br := bufio.NewReaderSize(nc, 16<<10)
	return &rtmpClientConn{u: u, nc: nc, br: br, cr: newChunkReader(br), timeout: clientTimeout,
		log: log.With("url", u.String())}
}

// start runs the handshake and connect, within one timeout.
func (c *rtmpClientConn) start(publish bool) error {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	defer c.nc.SetDeadline(time.Time{})
	if err := clientHandshakeFlash(c.br, c.nc); err != nil {
		return err
	}
	// Our chunk size first (§5.4.1), as ffmpeg does: everything we send,
	// connect included, is chunked at it.
	if err := c.writeControl(appendUint32Control(nil, msgSetChunkSize, clientChunkSize)); err != nil {
		return fmt.Errorf("rtmp: sending Set Chunk Size: %w", err)
	}
	return c.connect(publish)
}

// clientHandshakeFlash is the client side of the handshake as ffmpeg and
// Flash Player do it: C1 carries a client version and an HMAC-SHA256
// digest (schema 0, keyed with the Flash Player text), which servers that
// want the digest handshake (FMS, Wowza, some CDNs) require; others
// answer as to a plain C1 (§5.2.3). If S1 carries a valid server digest,
// C2 ends with the HMAC keyed by it; otherwise C2 echoes S1, as the simple
// handshake wants. A digest that does not verify is not an error:
// servers fill S1 in several ways, and the chunk stream that follows
// shows soon enough whether the peer speaks RTMP.
func clientHandshakeFlash(r io.Reader, w io.Writer) error {
	c0c1 := make([]byte, 1+handshakeSize)
	c0c1[0] = 3
	c1 := c0c1[1:]
	rand.Read(c1[8:])
	copy(c1[4:8], []byte{9, 0, 124, 2}) // a Flash Player version: non-zero asks for the digest handshake
	off := digestOffset(c1, 0)
	copy(c1[off:], handshakeDigest(c1, off, clientKeyText))
	if _, err := w.Write(c0c1); err != nil {
		return fmt.Errorf("rtmp: writing C0/C1: %w", err)
	}
	s := make([]byte, 1+2*handshakeSize)
	if _, err := io.ReadFull(r, s[:1]); err != nil {
		return fmt.Errorf("rtmp: reading S0: %w", err)
	}
	switch v := s[0]; {
	case v == 'H':
		return fmt.Errorf("%w: S0 is %q (an HTTP server on the RTMP port?)", errRTMPServerHandshake, v)
	case v != 3:
		return fmt.Errorf("%w: version %d", errRTMPServerHandshake, v)
	}
	if _, err := io.ReadFull(r, s[1:]); err != nil {
		return fmt.Errorf("rtmp: reading S1/S2: %w", err)
	}
	s1 := s[1 : 1+handshakeSize]
	c2 := s1 // the simple handshake's echo
	for schema := range 2 {
		off := digestOffset(s1, schema)
		if !hmac.Equal(handshakeDigest(s1, off, serverKeyText), s1[off:off+32]) {
			continue
		}
		c2 = make([]byte, handshakeSize)
		rand.Read(c2)
		key := hmac.New(sha256.New, clientKeyFull)
		key.Write(s1[off : off+32])
		h := hmac.New(sha256.New, key.Sum(nil))
		h.Write(c2[:handshakeSize-32])
		copy(c2[handshakeSize-32:], h.Sum(nil))
		break
	}
	if _, err := w.Write(c2); err != nil {
		return fmt.Errorf("rtmp: writing C2: %w", err)
	}
	return nil
}

// clientKeyFull keys C2's HMAC: the Flash Player text and the common tail.
var clientKeyFull = append(append([]byte{}, clientKeyText...), handshakeKeyTail...)

// ---- writing ----

func (c *rtmpClientConn) write(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.nc.Write(b)
	c.bytesOut.Add(uint64(n))
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("rtmp: %s closed the connection: %w", c.u.Addr, err)
	}
	return err
}

// command sends an AMF0 command with the next transaction id.
func (c *rtmpClientConn) command(streamID uint32, name string, args ...any) (float64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.txn++
	body := amf0AppendAll(nil, append([]any{name, c.txn}, args...)...)
	c.wbuf = appendChunks(c.wbuf[:0], csidCommand, msgCommandAMF0, streamID, 0, body, clientChunkSize)
	return c.txn, c.write(c.wbuf)
}

func (c *rtmpClientConn) writeControl(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(b)
}

// writeTag sends one FLV tag as a message on the publishing stream. A
// script tag's onMetaData goes out as @setDataFrame, as ffmpeg sends it,
// so that servers keep it for late joiners.
func (c *rtmpClientConn) writeTag(tag flvTag) error {
	var csid uint32
	payload := tag.Data
	switch tag.Type {
	case tagAudio:
		csid = csidAudio
	case tagVideo:
		csid = csidVideo
	case tagScript:
		csid = csidData
		if name, _, err := amf0Decode(payload); err == nil && name != "@setDataFrame" {
			payload = append(amf0Append(nil, "@setDataFrame"), payload...)
		}
	default:
		return nil
	}
	c.wmu.Lock()
	c.wbuf = appendChunks(c.wbuf[:0], csid, tag.Type, c.streamID, tag.Time, payload, clientChunkSize)
	err := c.write(c.wbuf)
	c.wmu.Unlock()
	if err != nil {
		if serr := c.serverErr.Load(); serr != nil {
			return *serr // why the server closed: more use than "broken pipe"
		}
		return fmt.Errorf("rtmp: sending to %s: %w", c.u.Addr, err)
	}
	return nil
}

// ---- reading ----

// readMessage reads the next message and deals with protocol control
// (§5.4) and user control (§7.1.7) on the way; those are returned too.
func (c *rtmpClientConn) readMessage() (rtmpMessage, error) {
	msg, err := c.cr.readMessage()
	if err != nil {
		return msg, err
	}
	// §5.4.3: acknowledge each window's worth of bytes received.
	if read := c.cr.bytesRead.Load(); c.ackWindow > 0 && read-c.lastAck >= uint64(c.ackWindow) {
		c.lastAck = read
		if err := c.writeControl(appendUint32Control(nil, msgAck, uint32(read))); err != nil {
			return msg, err
		}
	}
	switch msg.Type {
	case msgWindowAckSize:
		if len(msg.Payload) >= 4 {
			c.ackWindow = binary.BigEndian.Uint32(msg.Payload)
		}
	case msgSetPeerBandwidth:
		// §5.4.5: answer with a Window Acknowledgement Size when it differs
		// from what we announced last.
		if len(msg.Payload) >= 4 {
			if w := binary.BigEndian.Uint32(msg.Payload); w != c.ourWindow && w > 0 {
				c.ourWindow = w
				if err := c.writeControl(appendUint32Control(nil, msgWindowAckSize, w)); err != nil {
					return msg, err
				}
			}
		}
	case msgUserControl:
		if len(msg.Payload) >= 6 && binary.BigEndian.Uint16(msg.Payload) == ucPingRequest {
			err := c.writeControl(appendUserControl(nil, ucPingResponse, binary.BigEndian.Uint32(msg.Payload[2:])))
			if err != nil {
				return msg, err
			}
		}
	}
	return msg, nil
}

// readCommand returns the next command, skipping everything else
// (media before the answer we wait for included).
func (c *rtmpClientConn) readCommand() (rtmpCommand, error) {
	for {
		msg, err := c.readMessage()
		if err != nil {
			return rtmpCommand{}, c.readErr(err)
		}
		cmd, ok, err := messageCommand(msg)
		if err != nil {
			return rtmpCommand{}, err
		}
		if ok {
			return cmd, nil
		}
	}
}

// messageCommand decodes a command message, AMF0 or AMF3 (§7.1.1: a
// format byte, then AMF0); ok is false for other messages.
func messageCommand(msg rtmpMessage) (cmd rtmpCommand, ok bool, err error) {
	body := msg.Payload
	switch msg.Type {
	case msgCommandAMF0:
	case msgCommandAMF3:
		if len(body) == 0 {
			return cmd, false, nil
		}
		body = body[1:]
	default:
		return cmd, false, nil
	}
	if cmd, err = decodeCommand(body); err != nil {
		return cmd, false, fmt.Errorf("rtmp: bad command from the server: %w", err)
	}
	return cmd, true, nil
}

// readErr turns a read error into one that says what happened.
func (c *rtmpClientConn) readErr(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("rtmp: %s closed the connection", c.u.Addr)
	case errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("rtmp: %s closed the connection (reset)", c.u.Addr)
	case errors.Is(err, net.ErrClosed):
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("rtmp: %s did not answer in time: %w", c.u.Addr, err)
	}
	return fmt.Errorf("rtmp: reading from %s: %w", c.u.Addr, err)
}

// statusInfo is the code and description of an onStatus or _error info
// object, the first argument after the (null) command object.
func statusInfo(cmd rtmpCommand) (level, code, desc string) {
	if len(cmd.Args) == 0 {
		return "", "", ""
	}
	var props []amfProp
	switch o := cmd.Args[0].(type) {
	case amfObject:
		props = o
	case amfECMAArray:
		props = o
	}
	clean := func(s string) string { return truncate(strings.Map(printableRune, s), 200) }
	return clean(propString(props, "level")), clean(propString(props, "code")), clean(propString(props, "description"))
}

// printableRune keeps a server's text from putting control characters on
// the user's terminal.
func printableRune(r rune) rune {
	if r < 0x20 || r == 0x7F {
		return '?'
	}
	return r
}

func refusal(what string, cmd rtmpCommand) error {
	_, code, desc := statusInfo(cmd)
	if code == "" {
		code = truncate(strings.Map(printableRune, cmd.Name), 64)
	}
	if desc != "" {
		return fmt.Errorf("%w: server refused %s: %s (%s)", errRTMPRefused, what, code, desc)
	}
	return fmt.Errorf("%w: server refused %s: %s", errRTMPRefused, what, code)
}

// ---- commands ----

// connect sends connect (§7.2.1.1) and waits for its _result. A publisher
// says what ffmpeg says (type nonprivate, an FMLE flashVer); a player
// what a Flash player does, with the codecs it takes.
func (c *rtmpClientConn) connect(publish bool) error {
	obj := amfObject{{"app", c.u.App}}
	if publish {
		obj = append(obj, amfProp{"type", "nonprivate"}, amfProp{"flashVer", "FMLE/3.0 (compatible; gms)"},
			amfProp{"tcUrl", c.u.TCURL},
			// Enhanced RTMP: the codecs we may send beyond the legacy ones,
			// as ffmpeg declares them (some ingests want it for HEVC and AV1).
			amfProp{"fourCcList", []any{"hvc1", "av01", "vp09", "Opus"}})
	} else {
		obj = append(obj, amfProp{"flashVer", "LNX 9,0,124,2"}, amfProp{"tcUrl", c.u.TCURL},
			amfProp{"fpad", false}, amfProp{"capabilities", 15.0}, amfProp{"audioCodecs", 4071.0},
			amfProp{"videoCodecs", 252.0}, amfProp{"videoFunction", 1.0},
			// Enhanced RTMP: the codecs we take beyond the legacy ones.
			amfProp{"fourCcList", []any{"hvc1", "av01", "vp09", "Opus"}})
	}
	txn, err := c.command(0, "connect", obj)
	if err != nil {
		return fmt.Errorf("rtmp: sending connect: %w", err)
	}
	for {
		cmd, err := c.readCommand()
		if err != nil {
			return err
		}
		if cmd.TxnID != txn {
			continue // onBWDone and the like
		}
		switch cmd.Name {
		case "_result":
			if _, code, _ := statusInfo(cmd); code != "" && code != "NetConnection.Connect.Success" {
				return refusal("connect to app "+truncate(c.u.App, 64), cmd)
			}
			return nil
		case "_error":
			return refusal("connect to app "+truncate(c.u.App, 64), cmd)
		}
	}
}

// createStream asks for a message stream and returns its id.
func (c *rtmpClientConn) createStream() error {
	txn, err := c.command(0, "createStream", nil)
	if err != nil {
		return fmt.Errorf("rtmp: sending createStream: %w", err)
	}
	for {
		cmd, err := c.readCommand()
		if err != nil {
			return err
		}
		if cmd.TxnID != txn {
			continue
		}
		switch cmd.Name {
		case "_result":
			id, ok := 0.0, false
			if len(cmd.Args) > 0 {
				id, ok = cmd.Args[0].(float64)
			}
			if !ok || id < 0 || id > 1<<24 {
				return fmt.Errorf("%w: createStream answered without a stream id", errRTMPProtocol)
			}
			c.streamID = uint32(id)
			return nil
		case "_error":
			return refusal("createStream", cmd)
		}
	}
}

// awaitStatus reads until an onStatus with code want, or one of level
// error (a refusal), or a _error for txn.
func (c *rtmpClientConn) awaitStatus(what string, txn float64, want string) error {
	for {
		cmd, err := c.readCommand()
		if err != nil {
			return fmt.Errorf("%w, waiting for the answer to %s", err, what)
		}
		switch {
		case cmd.Name == "onStatus":
			level, code, _ := statusInfo(cmd)
			if code == want {
				return nil
			}
			if level == "error" {
				return refusal(what, cmd)
			}
		case cmd.Name == "_error" && cmd.TxnID == txn:
			return refusal(what, cmd)
		}
	}
}

// publish makes the connection a publisher of the URL's stream: FMLE's
// releaseStream and FCPublish (answers not awaited: servers differ), then
// createStream and publish (§7.2.2.6), and waits for
// NetStream.Publish.Start. Then a goroutine reads what the server sends.
func (c *rtmpClientConn) publish() error {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	defer c.nc.SetDeadline(time.Time{})
	if _, err := c.command(0, "releaseStream", nil, c.u.Name); err != nil {
		return err
	}
	if _, err := c.command(0, "FCPublish", nil, c.u.Name); err != nil {
		return err
	}
	if err := c.createStream(); err != nil {
		return err
	}
	txn, err := c.command(c.streamID, "publish", nil, c.u.Name, "live")
	if err != nil {
		return err
	}
	if err := c.awaitStatus("publish", txn, "NetStream.Publish.Start"); err != nil {
		return err
	}
	c.publishing = true
	c.readerDone = make(chan struct{})
	go c.readWhilePublishing()
	return nil
}

// readWhilePublishing answers pings and acks while the caller sends, and
// notes a server that ends the publish (an onStatus error, a close), then
// closes the connection so that the sender stops at once.
func (c *rtmpClientConn) readWhilePublishing() {
	defer close(c.readerDone)
	for {
		msg, err := c.readMessage()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.setServerErr(fmt.Errorf("%w: %w", errRTMPStopped, c.readErr(err)))
			}
			c.nc.Close()
			return
		}
		cmd, ok, err := messageCommand(msg)
		if err != nil {
			c.setServerErr(err)
			c.nc.Close()
			return
		}
		if ok && cmd.Name == "onStatus" {
			if level, code, desc := statusInfo(cmd); level == "error" {
				c.setServerErr(fmt.Errorf("%w: %s (%s)", errRTMPStopped, code, desc))
				c.nc.Close()
				return
			}
		}
	}
}

// setServerErr notes why the server ended the publish; the first reason stays.
func (c *rtmpClientConn) setServerErr(err error) { c.serverErr.CompareAndSwap(nil, &err) }

// play makes the connection a player of the URL's stream: createStream,
// play (start -2000: live, or recorded if there is no live stream, as
// ffmpeg asks), a buffer length, and waits for NetStream.Play.Start.
func (c *rtmpClientConn) play() error {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	defer c.nc.SetDeadline(time.Time{})
	if err := c.createStream(); err != nil {
		return err
	}
	txn, err := c.command(c.streamID, "play", nil, c.u.Name, -2000.0)
	if err != nil {
		return err
	}
	// §7.1.7 event 3, Set Buffer Length: stream id, then milliseconds.
	p := binary.BigEndian.AppendUint16(nil, ucSetBufferLen)
	p = binary.BigEndian.AppendUint32(p, c.streamID)
	p = binary.BigEndian.AppendUint32(p, 3000)
	if err := c.writeControl(appendControl(nil, msgUserControl, p)); err != nil {
		return err
	}
	if err := c.awaitStatus("play", txn, "NetStream.Play.Start"); err != nil {
		return err
	}
	c.playing = true
	return nil
}

// next returns the next media or data message of a stream being played
// (tagSource). The stream ends with io.EOF when the server says the
// publisher left or the play stopped, or closes the connection between
// messages. Data is valid until the next call.
func (c *rtmpClientConn) next() (flvTag, error) {
	for {
		c.nc.SetReadDeadline(time.Now().Add(clientIdleTimeout))
		msg, err := c.readMessage()
		if err == io.EOF {
			// A close between messages: some servers (ffmpeg -listen) end a
			// stream so, without a status. A close inside a message is an error.
			c.log.Info("the server closed the connection: the end of the stream")
			return flvTag{}, io.EOF
		}
		if err != nil {
			return flvTag{}, c.readErr(err)
		}
		switch msg.Type {
		case msgAudio, msgVideo, msgDataAMF0:
			return flvTag{Type: msg.Type, Time: msg.Time, Data: msg.Payload}, nil
		case msgDataAMF3:
			if len(msg.Payload) > 0 {
				return flvTag{Type: tagScript, Time: msg.Time, Data: msg.Payload[1:]}, nil
			}
			continue
		case msgUserControl:
			if len(msg.Payload) >= 2 && binary.BigEndian.Uint16(msg.Payload) == ucStreamEOF {
				return flvTag{}, io.EOF
			}
			continue
		}
		cmd, ok, err := messageCommand(msg)
		if err != nil {
			return flvTag{}, err
		}
		if !ok || cmd.Name != "onStatus" {
			continue
		}
		level, code, desc := statusInfo(cmd)
		switch {
		case code == "NetStream.Play.UnpublishNotify", code == "NetStream.Play.Stop", code == "NetStream.Play.Complete":
			return flvTag{}, io.EOF
		case level == "error":
			return flvTag{}, fmt.Errorf("%w: %s (%s)", errRTMPStopped, code, desc)
		}
	}
}

// close ends the session as ffmpeg does: a publisher sends FCUnpublish
// and deleteStream, a player deleteStream; then the connection closes.
func (c *rtmpClientConn) close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.publishing || c.playing {
			if c.publishing {
				_, err = c.command(0, "FCUnpublish", nil, c.u.Name)
			}
			if err == nil {
				_, err = c.command(0, "deleteStream", nil, float64(c.streamID))
			}
			if err == nil {
				c.drain()
			}
		}
		c.nc.Close()
		if c.readerDone != nil {
			<-c.readerDone
		}
	})
	return err
}

// drain half-closes a TCP connection after our last commands and waits a
// little for the server to close, so that the commands are read before
// the connection goes (a close with unread data could reset it).
func (c *rtmpClientConn) drain() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if c.readerDone != nil {
		select {
		case <-c.readerDone:
		case <-time.After(clientDrainWait):
		}
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(clientDrainWait))
	io.Copy(io.Discard, io.LimitReader(c.br, 1<<20))
}

// bytesIn is what the server has sent us.
func (c *rtmpClientConn) bytesIn() uint64 { return c.cr.bytesRead.Load() }
