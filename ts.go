package main

// An MPEG-TS reader for push (ISO/IEC 13818-1): 188-byte transport
// packets, the PAT and PMT, and the PES packets of H.264 (stream_type
// 0x1B), H.265 (0x24) and AAC in ADTS (0x0F), turned into FLV tag bodies.
// H.264 and AAC become classic FLV tags; H.265 becomes Enhanced RTMP
// (hvc1). Annex B byte streams become length-prefixed NAL units
// (ISO/IEC 14496-15), and the parameter sets become the avcC / hvcC
// sequence header, sent before the first frame and again if they change.
//
// A transport stream is made to survive damage, so this reader does too:
// a packet with a bad header, a PES cut by lost packets or a frame with a
// bad header is skipped (and counted); errors are for what is not a
// transport stream at all.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
)

const (
	tsPacketLen   = 188
	tsSyncByte    = 0x47
	tsHeaderLen   = 4
	tsMaxAFLen    = tsPacketLen - tsHeaderLen - 1 // adaptation_field_length
	tsMaxResync   = 1 << 20                       // bytes searched for a sync byte
	tsMaxPES      = maxFLVTagData - 16            // one PES packet, reassembled
	tsMaxSection  = 1024                          // PSI sections are at most 1024 bytes (§2.4.4.11)
	tsMaxStreams  = 16                            // elementary streams read
	tsMaxQueued   = 2048                          // tags held back to interleave streams
	tsMaxQueueMem = 64 << 20                      // and their bytes
	tsFindPMT     = 8 << 20                       // bytes read at open to find the PMT
	tsPESHead     = 9                             // PES header up to PES_header_data_length
	tsMaxParamSet = 1 << 16                       // a parameter set's length is 16 bits in avcC/hvcC

	tsPIDPAT  = 0
	tsPIDNull = 0x1FFF
	tsNoPID   = -1

	// stream_type (Table 2-34; 0x0F is ISO/IEC 13818-7 ADTS).
	tsStreamAVC  = 0x1B
	tsStreamHEVC = 0x24
	tsStreamAAC  = 0x0F

	// PTS and DTS: 33 bits of a 90 kHz clock (§2.4.3.7).
	tsClock      = 90000
	tsWrap       = int64(1) << 33
	tsHalfWrap   = tsWrap / 2
	tsTicksPerMS = tsClock / 1000
	tsMSRound    = tsTicksPerMS / 2
	tsSI24Max    = int64(mp4SI24Max)
	tsSI24Min    = int64(mp4SI24Min)

	tsAACFrame = 1024 // samples per AAC raw data block

	// NAL unit types: H.264 Table 7-1, H.265 Table 7-1.
	tsAVCIDR     = 5
	tsAVCSPS     = 7
	tsAVCPPS     = 8
	tsHEVCVPS    = 32
	tsHEVCSPS    = 33
	tsHEVCPPS    = 34
	tsMinAVCSPS  = 4          // NAL header, profile, constraints, level
	tsMinHEVCSPS = 2 + 1 + 12 // NAL header, ids, general profile_tier_level

	tsDamagedLog = "ts: damaged input skipped"
	tsNotTS      = "ts: not an MPEG transport stream"
)

var tsAACRateTable = [...]int64{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// tsFrame is one access unit or sequence header waiting to be sent.
type tsFrame struct {
	dts, pts int64 // 90 kHz, unwrapped
	key      bool
	header   bool   // data is a whole tag body already
	data     []byte // AVCC NAL units, a raw AAC frame, or a tag body
}

type tsStream struct {
	pid      uint16
	typ      byte
	cc       int // last continuity_counter, -1 before the first packet
	pes      []byte
	pesOff   int64 // offset of the packet that started the PES
	inPES    bool
	queue    []tsFrame
	header   []byte // the sequence header sent last
	vps      []byte
	sps, pps []byte
	carry    []byte // the start of an ADTS frame that runs on into the next PES
	carryTS  int64
	aacRate  int64 // sample rate of the last ADTS frame
}

// tsReader is the tagSource of an MPEG transport stream.
type tsReader struct {
	br      *bufio.Reader
	off     int64 // offset of the next unread byte
	pktOff  int64 // offset of the packet being handled
	pkt     [tsPacketLen]byte
	packets int64

	pmtPID   int
	skipped  map[uint16]bool // PIDs of audio or video it cannot push, warned about once
	sections map[uint16][]byte
	streams  map[uint16]*tsStream
	order    []*tsStream

	last, base int64 // unwrapping reference; the time that becomes 0 ms
	haveLast   bool
	haveBase   bool
	eof        bool
	queued     int
	queuedMem  int

	damaged    int   // packets, PES packets and frames skipped
	damagedOff int64 // where the first was
	body       []byte
}

// openTS reads until the program map table is known.
func openTS(r io.Reader) (tagSource, error) {
	t := &tsReader{br: bufio.NewReaderSize(r, 64<<10), pmtPID: tsNoPID, sections: map[uint16][]byte{},
		streams: map[uint16]*tsStream{}, damagedOff: -1}
	for len(t.order) == 0 {
		if t.off > tsFindPMT {
			return nil, fmt.Errorf("%s: no program map table with H.264, H.265 or AAC in the first %d bytes", tsNotTS, t.off)
		}
		if err := t.readPacket(); err == io.EOF {
			return nil, fmt.Errorf("%s: no program map table with H.264, H.265 or AAC in %d bytes", tsNotTS, t.off)
		} else if err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *tsReader) damage(what string, args ...any) {
	if t.damaged == 0 {
		t.damagedOff = t.pktOff
		slog.Debug(tsDamagedLog, "offset", t.pktOff, "what", fmt.Sprintf(what, args...))
	}
	t.damaged++
}

// next returns tags in decode order across streams.
func (t *tsReader) next() (flvTag, error) {
	for {
		if f, s, ok := t.pop(); ok {
			return t.tag(s, f), nil
		}
		if t.eof {
			if t.damaged > 0 {
				slog.Warn(tsDamagedLog, "count", t.damaged, "first_offset", t.damagedOff)
				t.damaged = 0
			}
			return flvTag{}, io.EOF
		}
		err := t.readPacket()
		if err == io.EOF {
			t.eof = true
			for _, s := range t.order {
				t.endPES(s)
			}
			continue
		}
		if err != nil {
			return flvTag{}, err
		}
	}
}

// pop takes the earliest frame once every stream has one queued (or the
// input ended, or too much is held), so that tags leave in decode order
// although a multiplexer may send a stream's PES packets well ahead of
// another's.
func (t *tsReader) pop() (tsFrame, *tsStream, bool) {
	var best *tsStream
	for _, s := range t.order {
		if len(s.queue) == 0 {
			if !t.eof && t.queued < tsMaxQueued && t.queuedMem < tsMaxQueueMem {
				return tsFrame{}, nil, false
			}
			continue
		}
		if best == nil || s.queue[0].dts < best.queue[0].dts {
			best = s
		}
	}
	if best == nil {
		return tsFrame{}, nil, false
	}
	if !t.haveBase {
		t.base, t.haveBase = best.queue[0].dts, true
	}
	f := best.queue[0]
	best.queue[0] = tsFrame{}
	best.queue = best.queue[1:]
	t.queued--
	t.queuedMem -= len(f.data)
	return f, best, true
}

func (t *tsReader) ms(ts int64) int64 {
	d := ts - t.base
	if d < 0 {
		return 0
	}
	return (d + tsMSRound) / tsTicksPerMS
}

// tag wraps a frame in its codec's tag header.
func (t *tsReader) tag(s *tsStream, f tsFrame) flvTag {
	dts := t.ms(f.dts)
	typ := uint8(tagVideo)
	if s.typ == tsStreamAAC {
		typ = tagAudio
	}
	if f.header {
		return flvTag{Type: typ, Time: uint32(dts), Data: f.data}
	}
	cto := max(tsSI24Min, min(tsSI24Max, t.ms(f.pts)-dts))
	if f.pts < t.base {
		cto = max(0, (f.pts-f.dts+tsMSRound)/tsTicksPerMS)
	}
	frameType := byte(2)
	if f.key {
		frameType = 1
	}
	b := t.body[:0]
	switch s.typ {
	case tsStreamAVC:
		b = append(b, frameType<<4|codecAVC, 1, byte(cto>>16), byte(cto>>8), byte(cto))
	case tsStreamHEVC:
		if cto == 0 {
			b = append(b, exVideoHead(f.key, exCodedFramesX, "hvc1")...)
		} else {
			b = append(b, exVideoHead(f.key, exCodedFrames, "hvc1")...)
			b = append(b, byte(cto>>16), byte(cto>>8), byte(cto))
		}
	case tsStreamAAC:
		b = append(b, aacTagByte, 1)
	}
	b = append(b, f.data...)
	t.body = b
	return flvTag{Type: typ, Time: uint32(dts), Data: b}
}

// readPacket reads one transport packet (§2.4.3.2), finding the sync byte
// again after garbage: a 0x47 followed by another 188 bytes later.
func (t *tsReader) readPacket() error {
	skipped := 0
	for {
		b, err := t.br.Peek(1)
		if err != nil {
			return io.EOF
		}
		if b[0] == tsSyncByte {
			if p, _ := t.br.Peek(tsPacketLen + 1); len(p) <= tsPacketLen || p[tsPacketLen] == tsSyncByte {
				break
			}
		}
		t.br.Discard(1)
		t.off++
		if skipped++; skipped > tsMaxResync {
			return fmt.Errorf("%s: no sync byte in %d bytes before offset %d", tsNotTS, skipped-1, t.off)
		}
	}
	if skipped > 0 {
		t.pktOff = t.off - int64(skipped)
		t.damage("%d bytes without a sync byte", skipped)
	}
	if n, err := io.ReadFull(t.br, t.pkt[:]); err != nil {
		if n > 0 { // a cut last packet (a download or recording cut short): said, not an error
			t.pktOff = t.off
			t.damage("last packet cut at %d of %d bytes", n, tsPacketLen)
		}
		return io.EOF
	}
	t.pktOff, t.off = t.off, t.off+tsPacketLen
	t.packets++
	p := t.pkt[:]
	if p[1]&0x80 != 0 { // transport_error_indicator
		t.damage("transport_error_indicator")
		return nil
	}
	pusi := p[1]&0x40 != 0
	pid := uint16(p[1]&0x1F)<<8 | uint16(p[2])
	afc := p[3] >> 4 & 3
	cc := int(p[3] & 0x0F)
	payload := p[tsHeaderLen:]
	discontinuity := false
	if afc&2 != 0 { // adaptation_field (§2.4.3.4)
		n := int(p[4])
		if n > tsMaxAFLen {
			t.damage("adaptation_field_length %d", n)
			return nil
		}
		discontinuity = n > 0 && p[5]&0x80 != 0 // discontinuity_indicator: the counter may jump
		payload = p[tsHeaderLen+1+n:]
	}
	if afc&1 == 0 {
		payload = nil
	}
	if pid == tsPIDNull || len(payload) == 0 {
		return nil
	}
	if pid == tsPIDPAT || int(pid) == t.pmtPID {
		t.section(pid, pusi, payload)
		return nil
	}
	s := t.streams[pid]
	if s == nil {
		return nil
	}
	if s.cc >= 0 && cc != (s.cc+1)&0x0F && !discontinuity {
		if cc == s.cc {
			return nil // a duplicate packet (§2.4.3.3)
		}
		// A jump at the start of a PES (HLS segments joined with cat restart
		// their counters) ends the previous PES as it is, as ffmpeg does;
		// one inside a PES means it lost a piece.
		if !pusi {
			if s.inPES {
				t.damage("PID %d: continuity_counter %d after %d", pid, cc, s.cc)
			}
			s.inPES, s.pes = false, s.pes[:0]
		}
	}
	s.cc = cc
	return t.feedPES(s, pusi, payload)
}

// section reassembles a PSI section (§2.4.4) and reads the PAT or PMT.
func (t *tsReader) section(pid uint16, pusi bool, payload []byte) {
	sec, started := t.sections[pid]
	if pusi {
		ptr := int(payload[0]) // pointer_field
		if 1+ptr > len(payload) {
			t.damage("pointer_field %d", ptr)
			return
		}
		sec, started = append(sec[:0], payload[1+ptr:]...), true
	} else if started && sec != nil {
		sec = append(sec, payload...)
	} else {
		return
	}
	t.sections[pid] = sec
	if len(sec) < 3 {
		return
	}
	if sec[0] == 0xFF { // stuffing: no section here
		t.sections[pid] = nil
		return
	}
	n := 3 + int(binary.BigEndian.Uint16(sec[1:])&0x0FFF)
	if n > tsMaxSection+3 || n < 12 {
		t.damage("section_length %d", n-3)
		t.sections[pid] = nil
		return
	}
	if len(sec) < n {
		return
	}
	t.sections[pid] = nil
	sec = sec[:n]
	if tsCRC32(sec) != 0 {
		t.damage("PSI section CRC")
		return
	}
	body := sec[8 : n-4]
	switch {
	case pid == tsPIDPAT && sec[0] == 0x00: // program_association_section (§2.4.4.3)
		for i := 0; i+4 <= len(body); i += 4 {
			if program := binary.BigEndian.Uint16(body[i:]); program != 0 {
				t.pmtPID = int(binary.BigEndian.Uint16(body[i+2:]) & 0x1FFF)
				break
			}
		}
	case int(pid) == t.pmtPID && sec[0] == 0x02: // TS_program_map_section (§2.4.4.8)
		if len(body) < 4 {
			return
		}
		infoLen := int(binary.BigEndian.Uint16(body[2:]) & 0x0FFF)
		for es := body[min(4+infoLen, len(body)):]; len(es) >= 5; {
			typ := es[0]
			espid := binary.BigEndian.Uint16(es[1:]) & 0x1FFF
			esInfo := int(binary.BigEndian.Uint16(es[3:]) & 0x0FFF)
			es = es[min(5+esInfo, len(es)):]
			if typ != tsStreamAVC && typ != tsStreamHEVC && typ != tsStreamAAC {
				t.skip(espid, typ)
				continue
			}
			if t.streams[espid] != nil || len(t.order) == tsMaxStreams {
				continue
			}
			s := &tsStream{pid: espid, typ: typ, cc: -1}
			t.streams[espid] = s
			t.order = append(t.order, s)
		}
	}
}

// tsUnpushable names the audio and video stream_types (Table 2-34, and
// ATSC A/52 for AC-3) that push cannot send; streams of other types
// (ID3 timed metadata, private data, subtitles) are left out silently.
var tsUnpushable = map[byte]string{
	0x01: "MPEG-1 video", 0x02: "MPEG-2 video", 0x03: "MPEG-1 audio (MP3)", 0x04: "MPEG-2 audio (MP3)",
	0x10: "MPEG-4 Part 2 video", 0x11: "AAC in LATM", 0x81: "AC-3", 0x87: "E-AC-3",
}

// skip warns, once per stream, that an audio or video stream of the file
// is left out: a file pushed without its sound should not be a surprise.
func (t *tsReader) skip(pid uint16, typ byte) {
	name, ok := tsUnpushable[typ]
	if !ok || t.skipped[pid] {
		return
	}
	if t.skipped == nil {
		t.skipped = map[uint16]bool{}
	}
	t.skipped[pid] = true
	slog.Warn("ts: stream skipped: only H.264, H.265 and AAC (ADTS) are pushed", "pid", pid,
		"stream_type", fmt.Sprintf("0x%02X", typ), "codec", name)
}

// tsCRC32 is the CRC of PSI sections (Annex A: polynomial 0x04C11DB7,
// not reflected, initial value all ones); over a whole section with its
// CRC_32 it is 0.
func tsCRC32(b []byte) uint32 {
	crc := uint32(0xFFFFFFFF)
	for _, c := range b {
		crc ^= uint32(c) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04C11DB7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// feedPES gathers a PES packet; it ends at the next payload_unit_start,
// or when PES_packet_length is reached (§2.4.3.6).
func (t *tsReader) feedPES(s *tsStream, pusi bool, payload []byte) error {
	if pusi {
		t.endPES(s)
		s.inPES, s.pesOff = true, t.pktOff
	}
	if !s.inPES {
		return nil
	}
	if len(s.pes)+len(payload) > tsMaxPES {
		return fmt.Errorf("ts: PID %d: PES packet at offset %d larger than %d bytes", s.pid, s.pesOff, tsMaxPES)
	}
	s.pes = append(s.pes, payload...)
	if len(s.pes) >= 6 {
		if n := int(binary.BigEndian.Uint16(s.pes[4:])); n != 0 && len(s.pes) >= 6+n {
			t.endPES(s)
		}
	}
	return nil
}

// endPES parses a whole PES packet's header and hands its payload to the
// codec.
func (t *tsReader) endPES(s *tsStream) {
	p := s.pes
	was := s.inPES
	s.pes, s.inPES = s.pes[:0], false
	if !was || len(p) == 0 {
		return
	}
	if len(p) < tsPESHead || p[0] != 0 || p[1] != 0 || p[2] != 1 {
		t.damage("PID %d: PES at offset %d: no start code", s.pid, s.pesOff)
		return
	}
	if n := int(binary.BigEndian.Uint16(p[4:])); n != 0 && 6+n < len(p) {
		p = p[:6+n] // the rest is stuffing
	}
	flags, hdrLen := p[7], int(p[8])
	if tsPESHead+hdrLen > len(p) || flags&0x80 == 0 || (flags&0xC0 == 0xC0 && hdrLen < 10) || hdrLen < 5 {
		t.damage("PID %d: PES at offset %d: no PTS", s.pid, s.pesOff)
		return
	}
	pts := tsTimestamp(p[9:])
	dts := pts
	if flags&0xC0 == 0xC0 {
		dts = tsTimestamp(p[14:])
	}
	// Unwrap the 33-bit clock (§2.4.3.7) against the last time seen:
	// a step of less than half the range is taken as the nearer way.
	ext := t.unwrap(dts)
	ptsExt := ext + tsSigned(pts-dts)
	data := p[tsPESHead+hdrLen:]
	switch s.typ {
	case tsStreamAVC, tsStreamHEVC:
		t.video(s, ext, ptsExt, data)
	case tsStreamAAC:
		t.audio(s, ext, data)
	}
}

func tsTimestamp(b []byte) int64 {
	return int64(b[0]>>1&7)<<30 | int64(b[1])<<22 | int64(b[2]>>1)<<15 | int64(b[3])<<7 | int64(b[4]>>1)
}

// tsSigned maps a difference of 33-bit times to [-2^32, 2^32).
func tsSigned(d int64) int64 {
	d = ((d % tsWrap) + tsWrap) % tsWrap
	if d >= tsHalfWrap {
		d -= tsWrap
	}
	return d
}

func (t *tsReader) unwrap(raw int64) int64 {
	if !t.haveLast {
		t.last, t.haveLast = raw, true
		return raw
	}
	t.last += tsSigned(raw - t.last)
	return t.last
}

func (t *tsReader) queue(s *tsStream, f tsFrame) {
	s.queue = append(s.queue, f)
	t.queued++
	t.queuedMem += len(f.data)
}

// tsNALUnits splits an Annex B byte stream (H.264 Annex B) at its start
// codes; zero bytes before a start code belong to no NAL unit. The last
// NAL unit keeps its trailing zeros (cabac_zero_words may end a slice), as
// ffmpeg's own conversion does.
func tsNALUnits(b []byte) [][]byte {
	var nals [][]byte
	start := -1
	for i := 0; i+2 < len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				nals = append(nals, bytes.TrimRight(b[start:i], "\x00"))
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 {
		nals = append(nals, b[start:])
	}
	return nals
}

// video turns one access unit into length-prefixed NAL units and keeps
// the parameter sets for the sequence header.
func (t *tsReader) video(s *tsStream, dts, pts int64, data []byte) {
	hevc := s.typ == tsStreamHEVC
	key := false
	var out []byte
	for _, nal := range tsNALUnits(data) {
		if len(nal) == 0 {
			continue
		}
		if hevc {
			if len(nal) < 2 {
				continue
			}
			switch typ := nal[0] >> 1 & 0x3F; {
			case typ == tsHEVCVPS:
				s.vps = bytes.Clone(nal)
			case typ == tsHEVCSPS:
				s.sps = bytes.Clone(nal)
			case typ == tsHEVCPPS:
				s.pps = bytes.Clone(nal)
			case typ >= 16 && typ <= 23: // IRAP pictures (H.265 §7.4.2.2)
				key = true
			}
		} else {
			switch nal[0] & 0x1F {
			case tsAVCSPS:
				s.sps = bytes.Clone(nal)
			case tsAVCPPS:
				s.pps = bytes.Clone(nal)
			case tsAVCIDR:
				key = true
			}
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(nal)))
		out = append(out, nal...)
	}
	if len(out) == 0 {
		return
	}
	var header []byte
	if hevc {
		header = tsHvcC(s.vps, s.sps, s.pps)
		if header != nil {
			header = append(exVideoHead(true, exSequenceStart, "hvc1"), header...)
		}
	} else {
		header = tsAvcC(s.sps, s.pps)
		if header != nil {
			header = append([]byte{0x10 | codecAVC, 0, 0, 0, 0}, header...)
		}
	}
	if header == nil {
		t.damage("PID %d: a frame before the parameter sets", s.pid)
		return
	}
	if !bytes.Equal(header, s.header) {
		s.header = header
		t.queue(s, tsFrame{dts: dts, pts: dts, header: true, data: header})
	}
	t.queue(s, tsFrame{dts: dts, pts: pts, key: key, data: out})
}

// tsAvcC builds an AVCDecoderConfigurationRecord (ISO/IEC 14496-15
// §5.3.3.1) with one SPS and one PPS and 4-byte NAL lengths.
func tsAvcC(sps, pps []byte) []byte {
	if len(sps) < tsMinAVCSPS || len(pps) == 0 || len(sps) >= tsMaxParamSet || len(pps) >= tsMaxParamSet {
		return nil
	}
	b := []byte{1, sps[1], sps[2], sps[3], 0xFC | 3, 0xE0 | 1}
	b = binary.BigEndian.AppendUint16(b, uint16(len(sps)))
	b = append(b, sps...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(pps)))
	return append(b, pps...)
}

// tsRBSP removes emulation_prevention_three_bytes (H.265 §7.4.2).
func tsRBSP(nal []byte) []byte {
	out := make([]byte, 0, len(nal))
	zeros := 0
	for _, c := range nal {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

// tsHvcC builds an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15
// §8.3.3.1) from the VPS, SPS and PPS: profile, tier and level copied from
// the SPS's general profile_tier_level (H.265 §7.3.3), chroma format and
// bit depths read from the rest of the SPS (§7.3.2.2).
func tsHvcC(vps, sps, pps []byte) []byte {
	if len(vps) == 0 || len(pps) == 0 || len(sps) < tsMinHEVCSPS ||
		len(vps) >= tsMaxParamSet || len(sps) >= tsMaxParamSet || len(pps) >= tsMaxParamSet {
		return nil
	}
	rbsp := tsRBSP(sps[2:])
	if len(rbsp) < 13 {
		return nil
	}
	maxSubLayers := int(rbsp[0] >> 1 & 7)
	nesting := rbsp[0] & 1
	chroma, depthLuma, depthChroma := uint(1), uint(0), uint(0)
	r := &bitReader{b: rbsp[13:]}
	var present []uint
	for range maxSubLayers {
		present = append(present, r.bits(2)) // sub_layer_profile_present_flag, sub_layer_level_present_flag
	}
	if maxSubLayers > 0 {
		r.bits(2 * (8 - maxSubLayers)) // reserved_zero_2bits
	}
	for _, p := range present {
		if p&2 != 0 {
			r.bits(88)
		}
		if p&1 != 0 {
			r.bits(8)
		}
	}
	r.ue() // sps_seq_parameter_set_id
	if c := r.ue(); c <= 3 {
		chroma = c
	}
	if chroma == 3 {
		r.bit() // separate_colour_plane_flag
	}
	r.ue()            // pic_width_in_luma_samples
	r.ue()            // pic_height_in_luma_samples
	if r.bit() == 1 { // conformance_window_flag
		r.ue()
		r.ue()
		r.ue()
		r.ue()
	}
	if l, c := r.ue(), r.ue(); !r.err && l <= 8 && c <= 8 {
		depthLuma, depthChroma = l, c
	}
	b := []byte{1}
	b = append(b, rbsp[1:13]...) // general_profile_space ... general_level_idc
	b = append(b,
		0xF0, 0x00, // min_spatial_segmentation_idc
		0xFC,                   // parallelismType
		0xFC|byte(chroma),      // chromaFormat
		0xF8|byte(depthLuma),   // bitDepthLumaMinus8
		0xF8|byte(depthChroma), // bitDepthChromaMinus8
		0, 0,                   // avgFrameRate
		byte(maxSubLayers+1)<<3|nesting<<2|3, // numTemporalLayers, temporalIdNested, lengthSizeMinusOne
		3)                                    // numOfArrays
	for _, ps := range []struct {
		typ byte
		nal []byte
	}{{tsHEVCVPS, vps}, {tsHEVCSPS, sps}, {tsHEVCPPS, pps}} {
		b = append(b, 0x80|ps.typ, 0, 1) // array_completeness, NAL_unit_type, numNalus
		b = binary.BigEndian.AppendUint16(b, uint16(len(ps.nal)))
		b = append(b, ps.nal...)
	}
	return b
}

// audio splits a PES of ADTS frames (ISO/IEC 13818-7 §6.2) into raw AAC
// frames, each stamped from the PES time and the samples before it. A
// frame may run on into the next PES: it keeps the time it began at, and
// the next PES's PTS is that of the first frame that begins in it
// (§2.4.3.7).
func (t *tsReader) audio(s *tsStream, pts int64, data []byte) {
	ts, carried := pts, len(s.carry)
	if carried > 0 {
		data = append(s.carry, data...)
		ts, s.carry = s.carryTS, nil
	}
	var samples int64
	for off := 0; off < len(data); {
		if carried > 0 && off >= carried { // the first frame that begins in this PES
			ts, samples, carried = pts, 0, 0
		}
		rest := data[off:]
		if len(rest) < 7 && rest[0] == 0xFF {
			s.carry, s.carryTS = bytes.Clone(rest), ts
			if s.aacRate > 0 {
				s.carryTS += samples * tsClock / s.aacRate
			}
			return
		}
		if len(rest) < 7 || rest[0] != 0xFF || rest[1]&0xF6 != 0xF0 {
			t.damage("PID %d: PES at offset %d: no ADTS header", s.pid, s.pesOff)
			return
		}
		protectionAbsent := rest[1]&1 == 1
		profile := rest[2] >> 6
		rateIndex := int(rest[2] >> 2 & 0x0F)
		channels := rest[2]&1<<2 | rest[3]>>6
		frameLen := int(rest[3]&3)<<11 | int(rest[4])<<3 | int(rest[5]>>5)
		blocks := int64(rest[6]&3) + 1
		headerLen := 7
		if !protectionAbsent {
			headerLen = 9
		}
		if frameLen <= headerLen || rateIndex >= len(tsAACRateTable) {
			t.damage("PID %d: PES at offset %d: ADTS frame_length %d", s.pid, s.pesOff, frameLen)
			return
		}
		rate := tsAACRateTable[rateIndex]
		s.aacRate = rate
		if frameLen > len(rest) {
			s.carry, s.carryTS = bytes.Clone(rest), ts+samples*tsClock/rate
			return
		}
		// AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): audioObjectType
		// is the ADTS profile + 1.
		asc := []byte{(profile+1)<<3 | byte(rateIndex>>1), byte(rateIndex&1)<<7 | channels<<3}
		header := append([]byte{aacTagByte, 0}, asc...)
		at := ts + samples*tsClock/rate
		if !bytes.Equal(header, s.header) {
			s.header = header
			t.queue(s, tsFrame{dts: at, pts: at, header: true, data: header})
		}
		t.queue(s, tsFrame{dts: at, pts: at, key: true, data: bytes.Clone(rest[headerLen:frameLen])})
		samples += blocks * tsAACFrame
		off += frameLen
	}
}
