package main

// Cheap byte scanning of bulk NDJSON. The sink never JSON-decodes documents:
// a full decode would cost more CPU than the agent spends producing them and
// the sink must not be the bottleneck.

import "bytes"

// fieldValue returns the bytes after `key` (a quoted key such as `"seq"`),
// the colon and any spaces, or nil. Matches where the key is not followed by
// a colon (e.g. the string "seq" used as a value) are skipped.
//
// The search anchors on one rare byte of the key (the 'q' of "seq", the 'w'
// of "wt") with IndexByte: bytes.Index would anchor on the leading quote,
// which occurs ~60 times per document, and that doubled the sink's CPU cost.
func fieldValue(b []byte, k fieldKey) []byte {
	key, anchor := k.key, k.anchor
	for off := 0; off < len(b); {
		i := bytes.IndexByte(b[off:], key[anchor])
		if i < 0 {
			return nil
		}
		hit := off + i
		off = hit + 1 // next search always starts past this anchor byte
		start := hit - anchor
		if start < 0 || start+len(key) > len(b) || !bytes.Equal(b[start:start+len(key)], key) {
			continue
		}
		j := start + len(key)
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		if j < len(b) && b[j] == ':' {
			j++
			for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
				j++
			}
			return b[j:]
		}
	}
	return nil
}

// parseInt parses a leading (optionally quoted, optionally negative) integer.
func parseInt(v []byte) (int64, bool) {
	if len(v) > 0 && v[0] == '"' {
		v = v[1:]
	}
	neg := false
	if len(v) > 0 && v[0] == '-' {
		neg, v = true, v[1:]
	}
	var n int64
	i := 0
	for ; i < len(v) && i < 19 && v[i] >= '0' && v[i] <= '9'; i++ {
		n = n*10 + int64(v[i]-'0')
	}
	if i == 0 {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// stringValue returns the raw (still JSON-escaped) contents of a leading
// JSON string, which can be echoed back verbatim inside quotes.
func stringValue(v []byte) ([]byte, bool) {
	if len(v) == 0 || v[0] != '"' {
		return nil, false
	}
	for i := 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			return v[1:i], true
		}
	}
	return nil, false
}

// actionOp returns the first key of an action line: create, index, update or delete.
func actionOp(line []byte) []byte {
	i := bytes.IndexByte(line, '"')
	if i < 0 {
		return nil
	}
	j := bytes.IndexByte(line[i+1:], '"')
	if j < 0 {
		return nil
	}
	return line[i+1 : i+1+j]
}

// nextLine splits b at the first '\n', trimming a trailing '\r'.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		line, rest = b, nil
	} else {
		line, rest = b[:i], b[i+1:]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

type fieldKey struct {
	key    []byte
	anchor int
}

func newKey(quoted string) fieldKey { return fieldKey{[]byte(quoted), rareByte([]byte(quoted))} }

// rareByte picks the key byte least frequent in English/JSON text.
func rareByte(key []byte) int {
	best, bestRank := 0, 1<<30
	for i, c := range key {
		r := bytes.IndexByte([]byte(`qjzxkvwbyg`), c) // rarest first
		if r < 0 {
			r = 100
		}
		if r < bestRank {
			best, bestRank = i, r
		}
	}
	return best
}
