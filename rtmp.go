package main

// RTMP: handshake (Adobe RTMP 1.0 §5.2, plus the digest handshake Flash
// clients use), chunk stream (§5.3), protocol control messages (§5.4),
// user control messages (§6.2, §7.1.7) and the NetConnection/NetStream
// commands (§7.2).

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// RTMP message type ids (§5.4, §7.1).
const (
	msgSetChunkSize     = 1
	msgAbort            = 2
	msgAck              = 3
	msgUserControl      = 4
	msgWindowAckSize    = 5
	msgSetPeerBandwidth = 6
	msgAudio            = 8
	msgVideo            = 9
	msgDataAMF3         = 15
	msgCommandAMF3      = 17
	msgDataAMF0         = 18
	msgCommandAMF0      = 20
)

// User control event types (§7.1.7).
const (
	ucStreamBegin  = 0
	ucStreamEOF    = 1
	ucStreamDry    = 2
	ucSetBufferLen = 3
	ucPingRequest  = 6
	ucPingResponse = 7
)

// Chunk stream ids we send on. 2 is reserved for protocol control (§5.3.1.1).
const (
	csidControl = 2
	csidCommand = 3
	csidAudio   = 4
	csidData    = 5
	csidVideo   = 6
)

// The message stream id every player and publisher gets from createStream.
// A connection carries at most one stream at a time, so one id is enough
// and lets all players share the same encoded chunks.
const mediaStreamID = 1

// Limits on what a peer may make us hold.
const (
	maxMessageLen    = 8 << 20  // 30 times a large 4K keyframe; the 24-bit field would allow 16 MiB
	maxChunkStreams  = 64       // distinct chunk stream ids one connection may use
	maxPendingBytes  = 32 << 20 // sum of partly received messages on one connection
	maxPeerChunkSize = 0x7FFFFFFF
	windowAckSize    = 5000000 // what NMS sends; peers ack us every this many bytes
	handshakeTimeout = 10 * time.Second
)

var (
	errRTMPVersion        = errors.New("rtmp: unsupported handshake version")
	errRTMPMessageTooLong = errors.New("rtmp: message longer than limit")
	errRTMPChunkStreams   = errors.New("rtmp: too many chunk streams")
	errRTMPPendingBytes   = errors.New("rtmp: too many bytes in partial messages")
	errRTMPChunkSize      = errors.New("rtmp: invalid chunk size")
	errRTMPNoHeader       = errors.New("rtmp: continuation chunk on a chunk stream with no header")
	errRTMPProtocol       = errors.New("rtmp: protocol violation")
)

// ---- Handshake (§5.2) ----

const handshakeSize = 1536

// Keys of the digest handshake that Flash Player and FMS use. The first
// 30 (client) and 36 (server) bytes are the ASCII texts; the full keys add
// the same 32 random-looking bytes.
var (
	handshakeKeyTail = []byte{
		0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1,
		0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB,
		0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
	}
	clientKeyText = []byte("Genuine Adobe Flash Player 001")
	serverKeyText = []byte("Genuine Adobe Flash Media Server 001")
	serverKeyFull = append(append([]byte{}, serverKeyText...), handshakeKeyTail...)
)

// digestOffset returns where the 32-byte digest sits in a C1/S1 for the
// given schema: schema 0 reads the offset bytes at 8..11, schema 1 at
// 772..775; the sum of the four bytes mod 728 is added to the base.
func digestOffset(p []byte, schema int) int {
	base := 8
	if schema == 1 {
		base = 772
	}
	sum := int(p[base]) + int(p[base+1]) + int(p[base+2]) + int(p[base+3])
	return base + 4 + sum%728
}

// handshakeDigest is the HMAC-SHA256 of p without the 32 bytes at off.
func handshakeDigest(p []byte, off int, key []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(p[:off])
	h.Write(p[off+32:])
	return h.Sum(nil)
}

// findClientDigest reports the schema and digest of a C1 signed the Flash
// way, or ok=false for a plain C1 (simple handshake).
func findClientDigest(c1 []byte) (schema int, digest []byte, ok bool) {
	for schema := range 2 {
		off := digestOffset(c1, schema)
		d := handshakeDigest(c1, off, clientKeyText)
		if hmac.Equal(d, c1[off:off+32]) {
			return schema, c1[off : off+32], true
		}
	}
	return 0, nil, false
}

// makeS1S2 builds the server's S1 and S2 for a given C1. For a plain C1
// (§5.2.3) S1 is time, zero and random bytes and S2 echoes C1. For a signed
// C1, S1 carries our digest at the client's schema and S2 ends with an HMAC
// keyed by the client's digest.
func makeS1S2(c1 []byte) (s1, s2 []byte) {
	s1 = make([]byte, handshakeSize)
	rand.Read(s1[8:])
	binary.BigEndian.PutUint32(s1[0:4], 0)
	schema, clientDigest, signed := findClientDigest(c1)
	if !signed {
		copy(s1[4:8], []byte{0, 0, 0, 0})
		s2 = append([]byte(nil), c1...)
		return s1, s2
	}
	copy(s1[4:8], []byte{4, 5, 0, 1}) // server version, non-zero marks a digest handshake
	off := digestOffset(s1, schema)
	copy(s1[off:], handshakeDigest(s1, off, serverKeyText))

	s2 = make([]byte, handshakeSize)
	rand.Read(s2)
	key := hmac.New(sha256.New, serverKeyFull)
	key.Write(clientDigest)
	h := hmac.New(sha256.New, key.Sum(nil))
	h.Write(s2[:handshakeSize-32])
	copy(s2[handshakeSize-32:], h.Sum(nil))
	return s1, s2
}

// serverHandshake runs the server side: read C0+C1, write S0+S1+S2, read C2.
func serverHandshake(r io.Reader, w io.Writer) error {
	c0c1 := make([]byte, 1+handshakeSize)
	if _, err := io.ReadFull(r, c0c1[:1]); err != nil {
		return fmt.Errorf("rtmp: reading C0: %w", err)
	}
	// §5.2.2: version 3 is RTMP; 6 is RTMPE, which we do not offer.
	// Check C0 before waiting for C1, so a stray HTTP request or scanner
	// is refused at once.
	switch v := c0c1[0]; {
	case v == 'G' || v == 'P' || v == 'H' || v == 'O' || v == 'D':
		return fmt.Errorf("%w %d (an HTTP request on the RTMP port?)", errRTMPVersion, v)
	case v != 3:
		return fmt.Errorf("%w %d", errRTMPVersion, v)
	}
	if _, err := io.ReadFull(r, c0c1[1:]); err != nil {
		return fmt.Errorf("rtmp: reading C1: %w", err)
	}
	s1, s2 := makeS1S2(c0c1[1:])
	out := make([]byte, 0, 1+2*handshakeSize)
	out = append(out, 3)
	out = append(out, s1...)
	out = append(out, s2...)
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("rtmp: writing S0/S1/S2: %w", err)
	}
	if _, err := io.ReadFull(r, c0c1[:handshakeSize]); err != nil {
		return fmt.Errorf("rtmp: reading C2: %w", err)
	}
	return nil
}

// ---- Chunk stream reading (§5.3) ----

// rtmpMessage is one reassembled message. Payload is only valid until the
// next call to readMessage on the same reader.
type rtmpMessage struct {
	Type     uint8
	StreamID uint32
	Time     uint32
	Payload  []byte
}

// chunkStream is the per-csid state the header compression refers back to.
type chunkStream struct {
	started   bool   // a type 0 header has been seen
	extended  bool   // the last type 0/1/2 header used an extended timestamp
	timeField uint32 // the last timestamp field: absolute (type 0) or delta
	time      uint32 // timestamp of the current/last message
	length    uint32
	typ       uint8
	streamID  uint32
	buf       []byte // the message being reassembled
}

// chunkReader reassembles messages from the chunk stream of one connection.
type chunkReader struct {
	r         *bufio.Reader
	chunkSize uint32
	streams   map[uint32]*chunkStream
	pending   int           // bytes held in partial messages
	bytesRead atomic.Uint64 // read by the API while the connection runs
	scratch   [16]byte
}

func newChunkReader(r *bufio.Reader) *chunkReader {
	return &chunkReader{r: r, chunkSize: 128, streams: map[uint32]*chunkStream{}}
}

func (cr *chunkReader) read(n int) ([]byte, error) {
	b := cr.scratch[:n]
	if _, err := io.ReadFull(cr.r, b); err != nil {
		return nil, err
	}
	cr.bytesRead.Add(uint64(n))
	return b, nil
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

// readMessage reads chunks until a message is complete. Protocol control
// messages that change the reader itself (Set Chunk Size, Abort) are
// applied here and also returned, so the caller can log or count them.
func (cr *chunkReader) readMessage() (rtmpMessage, error) {
	for {
		msg, done, err := cr.readChunk()
		if err != nil {
			return rtmpMessage{}, err
		}
		if !done {
			continue
		}
		switch msg.Type {
		case msgSetChunkSize:
			if len(msg.Payload) < 4 {
				return msg, fmt.Errorf("%w: short Set Chunk Size", errRTMPProtocol)
			}
			// §5.4.1: the top bit must be zero; 1..0x7FFFFFFF is valid.
			size := binary.BigEndian.Uint32(msg.Payload) & 0x7FFFFFFF
			if size == 0 {
				return msg, fmt.Errorf("%w: 0", errRTMPChunkSize)
			}
			cr.chunkSize = size
		case msgAbort:
			if len(msg.Payload) >= 4 {
				cr.abort(binary.BigEndian.Uint32(msg.Payload))
			}
		}
		return msg, nil
	}
}

// abort drops the partial message on a chunk stream (§5.4.2).
func (cr *chunkReader) abort(csid uint32) {
	if cs := cr.streams[csid]; cs != nil {
		cr.pending -= len(cs.buf)
		cs.buf = cs.buf[:0]
	}
}

func (cr *chunkReader) readChunk() (msg rtmpMessage, done bool, err error) {
	// §5.3.1.1 Chunk Basic Header: fmt in the top 2 bits, csid in the
	// low 6; 0 and 1 mean a 1- or 2-byte extension.
	b, err := cr.read(1)
	if err != nil {
		return msg, false, err
	}
	format := b[0] >> 6
	csid := uint32(b[0] & 0x3F)
	switch csid {
	case 0:
		if b, err = cr.read(1); err != nil {
			return msg, false, err
		}
		csid = 64 + uint32(b[0])
	case 1:
		if b, err = cr.read(2); err != nil {
			return msg, false, err
		}
		csid = 64 + uint32(b[0]) + uint32(b[1])<<8
	}
	cs := cr.streams[csid]
	if cs == nil {
		if len(cr.streams) >= maxChunkStreams {
			return msg, false, fmt.Errorf("%w (%d)", errRTMPChunkStreams, maxChunkStreams)
		}
		cs = &chunkStream{}
		cr.streams[csid] = cs
	}
	if format != 0 && !cs.started {
		return msg, false, fmt.Errorf("%w (csid %d, fmt %d)", errRTMPNoHeader, csid, format)
	}

	// §5.3.1.2 Chunk Message Header, 11/7/3/0 bytes for fmt 0/1/2/3.
	newMessage := len(cs.buf) == 0
	switch format {
	case 0:
		if b, err = cr.read(11); err != nil {
			return msg, false, err
		}
		cs.timeField = be24(b[0:3])
		cs.length = be24(b[3:6])
		cs.typ = b[6]
		cs.streamID = binary.LittleEndian.Uint32(b[7:11]) // §5.3.1.2.1: little-endian
	case 1:
		if b, err = cr.read(7); err != nil {
			return msg, false, err
		}
		cs.timeField = be24(b[0:3])
		cs.length = be24(b[3:6])
		cs.typ = b[6]
	case 2:
		if b, err = cr.read(3); err != nil {
			return msg, false, err
		}
		cs.timeField = be24(b[0:3])
	}
	if format != 3 {
		cs.extended = cs.timeField == 0xFFFFFF
		if !newMessage {
			// A new header in the middle of a message: the peer gave up on
			// the old one. Start over rather than splice garbage.
			cr.pending -= len(cs.buf)
			cs.buf = cs.buf[:0]
			newMessage = true
		}
	}
	// §5.3.1.3 Extended Timestamp: present when the field is 0xFFFFFF,
	// including on type 3 chunks that follow such a header.
	if cs.extended {
		if b, err = cr.read(4); err != nil {
			return msg, false, err
		}
		if format != 3 {
			cs.timeField = binary.BigEndian.Uint32(b)
		}
	}
	if newMessage {
		cs.started = true
		if format == 0 {
			cs.time = cs.timeField
		} else {
			// A delta; for type 3 after a type 0 it is the type 0's field,
			// which is how ffmpeg and librtmp read and write it.
			cs.time += cs.timeField
		}
		if cs.length > maxMessageLen {
			return msg, false, fmt.Errorf("%w: %d > %d", errRTMPMessageTooLong, cs.length, maxMessageLen)
		}
	}

	// Chunk Data: up to chunkSize bytes of the message. Read straight into
	// the message buffer, growing it as bytes arrive, so a peer can't make
	// us allocate for a length it never sends.
	n := cs.length - uint32(len(cs.buf))
	n = min(n, cr.chunkSize)
	if cr.pending+int(n) > maxPendingBytes {
		return msg, false, fmt.Errorf("%w (%d)", errRTMPPendingBytes, maxPendingBytes)
	}
	var err2 error
	if cs.buf, err2 = readGrowing(cr.r, cs.buf, int(n)); err2 != nil {
		return msg, false, err2
	}
	cr.bytesRead.Add(uint64(n))
	cr.pending += int(n)
	if uint32(len(cs.buf)) < cs.length {
		return msg, false, nil
	}
	msg = rtmpMessage{Type: cs.typ, StreamID: cs.streamID, Time: cs.time, Payload: cs.buf}
	cr.pending -= len(cs.buf)
	cs.buf = cs.buf[:0]
	return msg, true, nil
}

// readGrowing appends n bytes from r to b, growing b in steps of at most
// 64 KiB as the bytes arrive, so that a length a peer announces costs
// memory only as the peer really sends it.
func readGrowing(r io.Reader, b []byte, n int) ([]byte, error) {
	for n > 0 {
		step := min(n, 64<<10)
		start := len(b)
		b = growLen(b, step)
		if _, err := io.ReadFull(r, b[start:]); err != nil {
			return b[:start], err
		}
		n -= step
	}
	return b, nil
}

// growLen extends b by n bytes, reusing its capacity when it can.
func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, max(2*cap(b), len(b)+n))
	copy(nb, b)
	return nb
}

// ---- Chunk stream writing (§5.3) ----

// appendChunks encodes one message as chunks of at most chunkSize bytes:
// a type 0 header, then type 3 headers for the continuation chunks. Every
// message starts with a full header so that the same bytes can be sent to
// any player, whatever that player received before.
func appendChunks(dst []byte, csid uint32, typ uint8, streamID, ts uint32, payload []byte, chunkSize int) []byte {
	dst = appendBasicHeader(dst, 0, csid)
	field := min(ts, 0xFFFFFF)
	dst = append(dst, byte(field>>16), byte(field>>8), byte(field))
	n := len(payload)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n), typ)
	dst = binary.LittleEndian.AppendUint32(dst, streamID)
	if field == 0xFFFFFF {
		dst = binary.BigEndian.AppendUint32(dst, ts)
	}
	for {
		k := min(len(payload), chunkSize)
		dst = append(dst, payload[:k]...)
		payload = payload[k:]
		if len(payload) == 0 {
			return dst
		}
		dst = appendBasicHeader(dst, 3, csid)
		if field == 0xFFFFFF {
			dst = binary.BigEndian.AppendUint32(dst, ts)
		}
	}
}

// chunksLen is the length appendChunks will produce.
func chunksLen(csid uint32, ts uint32, n, chunkSize int) int {
	basic := 1
	if csid >= 64+256 {
		basic = 3
	} else if csid >= 64 {
		basic = 2
	}
	ext := 0
	if ts >= 0xFFFFFF {
		ext = 4
	}
	chunks := max(1, (n+chunkSize-1)/chunkSize)
	return basic + 11 + ext + n + (chunks-1)*(basic+ext)
}

func appendBasicHeader(dst []byte, format uint8, csid uint32) []byte {
	switch {
	case csid < 64:
		return append(dst, format<<6|byte(csid))
	case csid < 64+256:
		return append(dst, format<<6, byte(csid-64))
	default:
		return append(dst, format<<6|1, byte(csid-64), byte((csid-64)>>8))
	}
}

func appendControl(dst []byte, typ uint8, payload []byte) []byte {
	return appendChunks(dst, csidControl, typ, 0, 0, payload, 128)
}

func appendUint32Control(dst []byte, typ uint8, v uint32) []byte {
	return appendControl(dst, typ, binary.BigEndian.AppendUint32(nil, v))
}

// appendUserControl encodes a user control message (§7.1.7) with a 4-byte
// argument (a stream id or a timestamp).
func appendUserControl(dst []byte, event uint16, arg uint32) []byte {
	p := binary.BigEndian.AppendUint16(nil, event)
	p = binary.BigEndian.AppendUint32(p, arg)
	return appendControl(dst, msgUserControl, p)
}

// ---- Connection ----

// writeDeadline keeps a connection's write deadline about timeout ahead
// without a syscall-backed SetWriteDeadline on every write: it moves the
// deadline only when the last move is more than a second old (so a
// write may get up to a second less than timeout).
type writeDeadline struct{ set time.Time }

func (d *writeDeadline) refresh(nc net.Conn, timeout time.Duration) {
	now := time.Now()
	if now.Sub(d.set) < time.Second {
		return
	}
	d.set = now
	nc.SetWriteDeadline(now.Add(timeout))
}

// rtmpServer accepts RTMP connections and hands them to the hub.
type rtmpServer struct {
	cfg    *config
	hub    *hub
	log    *slog.Logger
	nextID atomic.Uint64

	mu     sync.Mutex
	conns  map[*rtmpConn]struct{}
	closed bool
	wg     sync.WaitGroup // one per connection
}

var errServerClosed = errors.New("gms: server closed")

// serve accepts until the listener is closed, in the manner of
// (*http.Server).Serve: back off on temporary errors, one goroutine per
// connection.
func (s *rtmpServer) serve(ctx context.Context, ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return errServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("rtmp accept", "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(nc)
		if c == nil {
			nc.Close() // shutting down
			continue
		}
		go func() {
			defer s.wg.Done()
			c.serve(ctx)
		}()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (s *rtmpServer) newConn(nc net.Conn) *rtmpConn {
	id := newClientID()
	c := &rtmpConn{
		srv:     s,
		nc:      nc,
		id:      id,
		log:     s.log.With("conn", id, "proto", "rtmp", "remote", nc.RemoteAddr().String()),
		created: time.Now(),
		out:     newSink(nc, s.cfg.PingTimeout, false, &s.hub.counters.bytesOut),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c
}

// closeAll closes every connection and refuses new ones, for shutdown.
func (s *rtmpServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.nc.Close()
	}
}

// wait waits for every connection's goroutine, after closeAll.
func (s *rtmpServer) wait() { s.wg.Wait() }

// rtmpConn is one RTMP connection: handshake, then commands, then either
// publishing (the read loop feeds the hub) or playing (a writer goroutine
// drains the subscriber queue while the read loop handles commands).
type rtmpConn struct {
	srv     *rtmpServer
	nc      net.Conn
	id      string
	log     *slog.Logger
	created time.Time
	in      drainReader // nc, noting whether a read took all there was
	br      *bufio.Reader
	cr      *chunkReader

	out        *sink  // every write to nc goes through it
	lastAck    uint64 // bytes read when we last sent an Acknowledgement
	counted    uint64 // bytes read already added to the server's counters
	peerWindow uint32 // the peer's Window Acknowledgement Size

	app      string
	appQuery string // a query that came with the app in connect
	tcURL    string
	encAMF3  bool // connect asked for objectEncoding 3

	pub     *publisher  // while publishing
	sub     *subscriber // while playing
	playing chan struct{}
}

// writeRaw writes already encoded chunks.
func (c *rtmpConn) writeRaw(b []byte) error {
	return c.out.write(b)
}

// writeCommand sends an AMF0 command on the command chunk stream.
func (c *rtmpConn) writeCommand(streamID uint32, values ...any) error {
	body := amf0AppendAll(nil, values...)
	return c.writeRaw(appendChunks(nil, csidCommand, msgCommandAMF0, streamID, 0, body, c.srv.cfg.ChunkSize))
}

func statusObject(level, code, desc string) amfObject {
	return amfObject{{"level", level}, {"code", code}, {"description", desc}}
}

func (c *rtmpConn) onStatus(level, code, desc string) error {
	return c.writeCommand(mediaStreamID, "onStatus", 0.0, nil, statusObject(level, code, desc))
}

func (c *rtmpConn) serve(ctx context.Context) {
	start := time.Now()
	reason := "closed"
	defer func() {
		if r := recover(); r != nil {
			reason = fmt.Sprintf("panic: %v", r)
			c.log.Error("rtmp panic", "panic", r)
		}
		c.cleanup()
		var in uint64
		if c.cr != nil {
			in = c.cr.bytesRead.Load()
		}
		c.log.Info("close", "reason", reason, "bytes_in", in, "reads", c.in.reads, "bytes_out", c.out.bytesOut.Load(),
			"duration", time.Since(start).Round(time.Millisecond))
	}()
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer stop()
	c.log.Info("connect")
	counters := &c.srv.hub.counters
	counters.accepted[protoRTMP].Add(1)
	counters.active[protoRTMP].Add(1)
	defer counters.active[protoRTMP].Add(-1)

	c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	c.in.r = c.nc
	c.br = bufio.NewReaderSize(&c.in, 16<<10)
	if err := serverHandshake(c.br, c.nc); err != nil {
		counters.handshakeFailures.Add(1)
		reason = closeReason(err)
		return
	}
	c.nc.SetDeadline(time.Time{})
	c.cr = newChunkReader(c.br)
	reason = closeReason(c.readLoop(ctx))
}

// closeReason turns the error that ended a connection into a log reason:
// normal closes read as such, anything else as the error.
func closeReason(err error) string {
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "peer closed"
	case errors.Is(err, net.ErrClosed):
		return "closed by server"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "peer reset"
	case errors.Is(err, errKicked), errors.Is(err, errViewerTooSlow):
		return err.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}

var errKicked = errors.New("kicked")

func (c *rtmpConn) cleanup() {
	if c.pub != nil {
		c.srv.hub.unpublish(c.pub)
	}
	if c.sub != nil {
		c.srv.hub.unsubscribe(c.sub)
	}
	c.nc.Close()
	c.srv.mu.Lock()
	delete(c.srv.conns, c)
	c.srv.mu.Unlock()
}

// readTimeout is how long the peer may stay silent. A publisher sends media
// all the time; a player only answers our pings, so it gets a ping interval
// more.
func (c *rtmpConn) readTimeout() time.Duration {
	if c.sub == nil {
		return c.srv.cfg.PingTimeout
	}
	if c.srv.cfg.Ping <= 0 {
		return 0 // no pings to answer: the write deadline finds a dead player
	}
	return c.srv.cfg.Ping + c.srv.cfg.PingTimeout
}

func (c *rtmpConn) readLoop(ctx context.Context) error {
	pingStop := c.startPinger()
	defer pingStop()
	for {
		var deadline time.Time
		if d := c.readTimeout(); d > 0 {
			deadline = time.Now().Add(d)
		}
		c.nc.SetReadDeadline(deadline)
		msg, err := c.cr.readMessage()
		if err != nil {
			return err
		}
		if err := c.ackIfDue(); err != nil {
			return err
		}
		read := c.cr.bytesRead.Load()
		c.srv.hub.counters.bytesIn.Add(read - c.counted)
		c.counted = read
		if err := c.handleMessage(msg); err != nil {
			return err
		}
		c.waitForTick()
	}
}

// waitForTick batches a publisher's reads with a write delay: once it has
// read all there was, it sleeps until the next tick of the flushers' grid
// and then reads what came meanwhile in one go. The frames would wait for
// that tick anyway; the publisher's goroutine wakes 20 times a second
// instead of once per message, which is most of what a small stream costs
// (a wake-up from the network poller is dearer than the read). Only on
// plain TCP: TLS reads come back short while more is buffered.
func (c *rtmpConn) waitForTick() {
	d := c.srv.cfg.WriteDelay
	if c.pub == nil || d == 0 || c.out.writeNonblock == nil || c.br.Buffered() > 0 || !c.in.drained ||
		!c.srv.hub.passesShort() {
		return
	}
	time.Sleep(time.Until(gridCeil(time.Now(), d)))
}

// drainReader notes whether the last read came back short, that is, took
// everything the socket had.
type drainReader struct {
	r       io.Reader
	drained bool
	reads   int // for the close log: how often the connection was read
}

func (d *drainReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.drained = n < len(p)
	d.reads++
	return n, err
}

// startPinger sends a PingRequest every ping interval (§7.1.7 event 6), so
// that a peer that vanished without a FIN is noticed by the idle timeout.
func (c *rtmpConn) startPinger() (stop func()) {
	if c.srv.cfg.Ping <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(c.srv.cfg.Ping)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ms := uint32(time.Since(c.created).Milliseconds())
				if c.writeRaw(appendUserControl(nil, ucPingRequest, ms)) != nil {
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// ackIfDue sends an Acknowledgement (§5.4.3) each time the bytes received
// pass another window of the size the peer asked for.
func (c *rtmpConn) ackIfDue() error {
	read := c.cr.bytesRead.Load()
	if c.peerWindow == 0 || read-c.lastAck < uint64(c.peerWindow) {
		return nil
	}
	c.lastAck = read
	return c.writeRaw(appendUint32Control(nil, msgAck, uint32(read)))
}

func (c *rtmpConn) handleMessage(msg rtmpMessage) error {
	switch msg.Type {
	case msgSetChunkSize, msgAbort, msgAck, msgSetPeerBandwidth:
		return nil
	case msgWindowAckSize:
		if len(msg.Payload) >= 4 {
			c.peerWindow = binary.BigEndian.Uint32(msg.Payload)
		}
		return nil
	case msgUserControl:
		return c.handleUserControl(msg.Payload)
	case msgCommandAMF0:
		return c.handleCommand(msg.Payload)
	case msgCommandAMF3:
		// §7.1.1: an AMF3 command starts with a format byte (0), then AMF0.
		if len(msg.Payload) == 0 {
			return nil
		}
		return c.handleCommand(msg.Payload[1:])
	case msgAudio, msgVideo, msgDataAMF0, msgDataAMF3:
		if c.pub == nil {
			return nil // media before publish: ignore, as FMS does
		}
		payload := msg.Payload
		if msg.Type == msgDataAMF3 {
			if len(payload) == 0 {
				return nil
			}
			payload = payload[1:]
		}
		return c.pub.write(msg.Type, msg.Time, payload)
	}
	return nil // §5.4: unknown message types are ignored
}

func (c *rtmpConn) handleUserControl(p []byte) error {
	if len(p) < 2 {
		return fmt.Errorf("%w: short user control message", errRTMPProtocol)
	}
	if binary.BigEndian.Uint16(p) == ucPingRequest && len(p) >= 6 {
		return c.writeRaw(appendUserControl(nil, ucPingResponse, binary.BigEndian.Uint32(p[2:])))
	}
	return nil
}

func (c *rtmpConn) handleCommand(body []byte) error {
	cmd, err := decodeCommand(body)
	if err != nil {
		return fmt.Errorf("rtmp: bad command: %w", err)
	}
	switch cmd.Name {
	case "connect":
		return c.onConnect(cmd)
	case "releaseStream", "FCPublish", "FCUnpublish", "FCSubscribe", "getStreamLength":
		return c.onStreamHelper(cmd)
	case "createStream":
		return c.writeCommand(0, "_result", cmd.TxnID, nil, float64(mediaStreamID))
	case "publish":
		return c.onPublish(cmd)
	case "play":
		return c.onPlay(cmd)
	case "deleteStream", "closeStream":
		return c.onDeleteStream()
	case "receiveAudio", "receiveVideo":
		if c.sub != nil && len(cmd.Args) > 0 {
			on, _ := cmd.Args[0].(bool)
			c.sub.setReceive(cmd.Name == "receiveAudio", on)
		}
		return nil
	case "pause", "pauseRaw":
		return c.onPause(cmd)
	case "_result", "_error", "onBWDone", "_checkbw", "onStatus":
		return nil // replies to our calls, or bandwidth-check noise
	}
	if cmd.TxnID != 0 {
		return c.writeCommand(0, "_error", cmd.TxnID, nil,
			statusObject("error", "NetConnection.Call.Failed", "unknown command "+truncate(cmd.Name, 64)))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (c *rtmpConn) onConnect(cmd rtmpCommand) error {
	if c.app != "" {
		return fmt.Errorf("%w: second connect", errRTMPProtocol)
	}
	obj, _ := cmd.Object.(amfObject)
	// Some encoders put the query on the server URL (OBS: rtmp://host/live?sign=...),
	// so it arrives in the app; it stands for the stream's query when that has none.
	app, appQuery, _ := strings.Cut(obj.String("app"), "?")
	app = strings.TrimSuffix(app, "/")
	if !validName(app) {
		c.writeCommand(0, "_error", cmd.TxnID, nil,
			statusObject("error", "NetConnection.Connect.Rejected", "invalid app name"))
		return fmt.Errorf("rtmp: connect rejected: invalid app %q", truncate(app, 64))
	}
	c.app, c.appQuery = app, appQuery
	c.tcURL = obj.String("tcUrl")
	enc, _ := obj.Number("objectEncoding")
	c.log = c.log.With("app", app)

	var out []byte
	out = appendUint32Control(out, msgWindowAckSize, windowAckSize)
	// §5.4.5 Set Peer Bandwidth: window size, limit type 2 (dynamic).
	out = appendControl(out, msgSetPeerBandwidth, append(binary.BigEndian.AppendUint32(nil, windowAckSize), 2))
	out = appendUint32Control(out, msgSetChunkSize, uint32(c.srv.cfg.ChunkSize))
	body := amf0AppendAll(nil, "_result", cmd.TxnID,
		amfObject{{"fmsVer", "FMS/3,0,1,123"}, {"capabilities", 31.0}},
		amfObject{
			{"level", "status"},
			{"code", "NetConnection.Connect.Success"},
			{"description", "Connection succeeded."},
			{"objectEncoding", enc},
		})
	out = appendChunks(out, csidCommand, msgCommandAMF0, 0, 0, body, c.srv.cfg.ChunkSize)
	return c.writeRaw(out)
}

// onStreamHelper answers the FMLE-style helper calls ffmpeg and OBS make
// around publish. They need no action here; FCPublish gets the
// onFCPublish notification encoders wait for.
func (c *rtmpConn) onStreamHelper(cmd rtmpCommand) error {
	switch cmd.Name {
	case "FCPublish":
		name, _ := argString(cmd, 0)
		c.writeCommand(0, "onFCPublish", 0.0, nil, statusObject("status", "NetStream.Publish.Start", truncate(name, 128)))
	case "getStreamLength":
		return c.writeCommand(0, "_result", cmd.TxnID, nil, 0.0)
	}
	if cmd.TxnID != 0 {
		return c.writeCommand(0, "_result", cmd.TxnID, nil, amfUndefined{})
	}
	return nil
}

func argString(cmd rtmpCommand, i int) (string, bool) {
	if i >= len(cmd.Args) {
		return "", false
	}
	s, ok := cmd.Args[i].(string)
	return s, ok
}

// admit checks a publish or play command before it reaches the hub: the
// connection's state, the stream name (status badName when it is not in
// the safe set), the signature and the hook (status "NetStream.Publish.
// Unauthorized" or "NetStream.Play.Unauthorized").
func (c *rtmpConn) admit(action string, cmd rtmpCommand, badName string) (streamKey, clientInfo, error) {
	if c.app == "" {
		return streamKey{}, clientInfo{}, fmt.Errorf("%w: %s before connect", errRTMPProtocol, action)
	}
	if c.pub != nil || c.sub != nil {
		return streamKey{}, clientInfo{}, fmt.Errorf("%w: %s on a busy stream", errRTMPProtocol, action)
	}
	raw, _ := argString(cmd, 0)
	name, query, _ := strings.Cut(raw, "?")
	if query == "" {
		query = c.appQuery
	}
	if !validName(name) {
		c.onStatus("error", badName, "invalid stream name")
		return streamKey{}, clientInfo{}, fmt.Errorf("rtmp: %s rejected: invalid name %q", action, truncate(name, 64))
	}
	key := streamKey{c.app, name}
	c.log = c.log.With("stream", name)
	info := clientInfo{ID: c.id, IP: remoteIP(c.nc), Protocol: "rtmp", Created: c.created, Query: query}
	if err := c.srv.hub.authorize(action, key, info); err != nil {
		status := map[string]string{"publish": "NetStream.Publish.Unauthorized", "play": "NetStream.Play.Unauthorized"}[action]
		c.onStatus("error", status, err.Error())
		return streamKey{}, clientInfo{}, fmt.Errorf("rtmp: %s refused: %w", action, err)
	}
	return key, info, nil
}

func (c *rtmpConn) onPublish(cmd rtmpCommand) error {
	key, info, err := c.admit("publish", cmd, "NetStream.Publish.BadName")
	if err != nil {
		return err
	}
	pub, err := c.srv.hub.publish(key, info, c.cr.bytesRead.Load, func() { c.nc.Close() })
	if err != nil {
		c.onStatus("error", "NetStream.Publish.BadName", "stream "+key.String()+" is already publishing")
		return fmt.Errorf("rtmp: publish rejected: %w", err)
	}
	c.pub = pub
	c.log.Info("publish", "query", info.Query)
	var out []byte
	out = appendUserControl(out, ucStreamBegin, mediaStreamID)
	if err := c.writeRaw(out); err != nil {
		return err
	}
	return c.onStatus("status", "NetStream.Publish.Start", key.String()+" is now published.")
}

func (c *rtmpConn) onPlay(cmd rtmpCommand) error {
	key, info, err := c.admit("play", cmd, "NetStream.Play.StreamNotFound")
	if err != nil {
		return err
	}
	// §7.2.2.1: start, duration and reset. Live streams ignore start and
	// duration; reset only decides whether Play.Reset is sent.
	reset := true
	if len(cmd.Args) > 3 {
		if b, ok := cmd.Args[3].(bool); ok {
			reset = b
		}
	}
	var out []byte
	out = appendUserControl(out, ucStreamBegin, mediaStreamID)
	if err := c.writeRaw(out); err != nil {
		return err
	}
	if reset {
		c.onStatus("status", "NetStream.Play.Reset", "Playing and resetting "+key.String()+".")
	}
	c.onStatus("status", "NetStream.Play.Start", "Started playing "+key.String()+".")

	c.sub = c.srv.hub.subscribe(key, info, formatRTMP, func() { c.nc.Close() })
	c.log.Info("play", "query", info.Query)
	go c.writeLoop(c.sub)
	return nil
}

// writeLoop sends the subscriber's queue to the player until the
// subscription ends or the connection fails. It gets sub as an argument:
// the read loop may drop c.sub (closeStream) while this runs.
func (c *rtmpConn) writeLoop(sub *subscriber) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("rtmp writer panic", "panic", r)
			c.nc.Close()
		}
	}()
	err := sub.serve(c.out)
	if err != nil && !errors.Is(err, errSubscriptionEnded) {
		c.log.Info("play stopped", "reason", closeReason(err))
		c.nc.Close() // the read loop then ends too
	}
}

func (c *rtmpConn) onDeleteStream() error {
	if c.pub != nil {
		c.srv.hub.unpublish(c.pub)
		c.pub = nil
		c.log.Info("unpublish")
	}
	if c.sub != nil {
		c.srv.hub.unsubscribe(c.sub)
		c.sub = nil
		c.log.Info("stop")
	}
	return nil
}

func (c *rtmpConn) onPause(cmd rtmpCommand) error {
	if c.sub == nil {
		return nil
	}
	pause := true
	if len(cmd.Args) > 0 {
		if b, ok := cmd.Args[0].(bool); ok {
			pause = b
		}
	}
	c.sub.setPaused(pause)
	if pause {
		return c.onStatus("status", "NetStream.Pause.Notify", "Paused live")
	}
	return c.onStatus("status", "NetStream.Unpause.Notify", "Unpaused live")
}

func remoteIP(nc net.Conn) string { return hostOf(nc.RemoteAddr().String()) }

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// newClientID returns 8 characters of A-Z0-9, the shape of NMS client ids.
func newClientID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [8]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// rtmpUnpublishNotify is what RTMP players get when the publisher leaves
// (what FMS and NMS send): onStatus NetStream.Play.UnpublishNotify, then
// Stream EOF.
func rtmpUnpublishNotify(key streamKey, chunkSize int) *frame {
	body := amf0AppendAll(nil, "onStatus", 0.0, nil,
		statusObject("status", "NetStream.Play.UnpublishNotify", key.String()+" is now unpublished."))
	b := appendChunks(nil, csidCommand, msgCommandAMF0, mediaStreamID, 0, body, chunkSize)
	return &frame{rtmp: appendUserControl(b, ucStreamEOF, mediaStreamID)}
}

// rtmpPublishNotify tells a waiting RTMP player that a publisher arrived:
// Stream Begin, then onStatus NetStream.Play.PublishNotify.
func rtmpPublishNotify(key streamKey, chunkSize int) *frame {
	b := appendUserControl(nil, ucStreamBegin, mediaStreamID)
	body := amf0AppendAll(nil, "onStatus", 0.0, nil,
		statusObject("status", "NetStream.Play.PublishNotify", key.String()+" is now published."))
	return &frame{rtmp: appendChunks(b, csidCommand, msgCommandAMF0, mediaStreamID, 0, body, chunkSize)}
}

// validName reports whether an app or stream name is in the safe set:
// 1 to 128 of A-Z a-z 0-9 _ - (the set NMS v4 enforces). Anything else
// could escape a path, confuse a log or collide in the API's JSON.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
