package main

// seqSet is a paged bitset: seqs are dense integers (0..N for the workload,
// 1e9+ for the load generator), so a page map of 64 Ki-bit pages costs ~1 bit
// per seq instead of ~40 bytes per entry for a map[int64]struct{}.
type seqSet struct {
	pages    map[int64][]uint64
	lastKey  int64
	lastPage []uint64
	n        int64
}

const pageBits = 1 << 16

func newSeqSet() *seqSet { return &seqSet{pages: map[int64][]uint64{}, lastKey: -1 << 62} }

// add reports whether seq was new.
func (s *seqSet) add(seq int64) bool {
	key, bit := seq>>16, seq&(pageBits-1) // arithmetic shift: negative seqs get their own pages
	p := s.lastPage
	if key != s.lastKey || p == nil {
		p = s.pages[key]
		if p == nil {
			p = make([]uint64, pageBits/64)
			s.pages[key] = p
		}
		s.lastKey, s.lastPage = key, p
	}
	w, m := bit>>6, uint64(1)<<(bit&63)
	if p[w]&m != 0 {
		return false
	}
	p[w] |= m
	s.n++
	return true
}
