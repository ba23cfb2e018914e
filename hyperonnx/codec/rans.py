"""Interleaved rANS: the lossless entropy coder for θ streams (docs/format.md, "rANS streams").

A static, order-0 coder: each alphabet's frequencies are normalised to 2^12 and stored once; the coder state
is 32 bits with 16-bit renormalisation, so a symbol moves at most one 16-bit word. Symbols are dealt round-robin
to ``lanes`` coder states that share one word stream in the order the decoder reads it: symbol i belongs to
lane i mod lanes, and at each step every active lane decodes one symbol, in lane order, then the lanes whose
state fell below 2^16 read one word each, in lane order. Numpy vectorises over the lanes; a C++ decoder
runs the same loop. Decoding ends with every lane back at the initial state 2^16 and every word read: a
corrupt or truncated stream is detected, never silently decoded.
"""

from __future__ import annotations

import numpy as np

from hyperonnx.codec import native

PROB_BITS = 12
PROB_SCALE = 1 << PROB_BITS
STATE_LOW = 1 << 16  # L: the state lives in [L, 2^32)
MAX_SYMBOLS = 256


SYMBOLS_PER_LANE = 4096  # one 32-bit initial state per 4096 symbols: < 0.01 bits a symbol


def lanes_for(count: int) -> int:
    """Coder states for ``count`` symbols: about one per 4096 symbols, 8 to 4096 (part of the format)."""
    return int(min(4096, max(8, -(-count // SYMBOLS_PER_LANE))))


def normalise(counts: np.ndarray) -> np.ndarray:
    """Frequencies summing to 2^12, at least 1 for every symbol that occurs (deterministic)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total <= 0:
        raise ValueError("rANS: no symbols to model")
    freq = np.where(counts > 0, np.maximum(1, (counts * PROB_SCALE) // total), 0).astype(np.int64)
    # Hand the rounding difference to the largest frequencies, one unit at a time, never below 1.
    diff = PROB_SCALE - int(freq.sum())
    order = np.argsort(-freq, kind="stable")
    i = 0
    while diff != 0:
        s = order[i % order.size]
        if diff > 0:
            freq[s] += 1
            diff -= 1
        elif freq[s] > 1:
            freq[s] -= 1
            diff += 1
        i += 1
    return freq


COUNT_CHUNK = 1 << 20  # symbols counted at a time: np.bincount widens its input to int64 (8 bytes a symbol)


def _counts(flat: np.ndarray) -> np.ndarray:
    """np.bincount(flat), a chunk at a time: a whole large tensor's symbols widened at once would cost 8 bytes a
    weight of transient memory in every job. The library counts uint8 symbols without widening them."""
    fast = native.symbol_counts(flat)
    if fast is not None:
        return fast
    counts = np.bincount(flat[:COUNT_CHUNK], minlength=1)
    for start in range(COUNT_CHUNK, flat.size, COUNT_CHUNK):
        more = np.bincount(flat[start : start + COUNT_CHUNK], minlength=counts.size)
        if more.size > counts.size:
            more[: counts.size] += counts
            counts = more
        else:
            counts += more
    return counts


class Model:
    """One alphabet's frequency table: symbols lo .. lo + len(freq) − 1."""

    def __init__(self, lo: int, freq: np.ndarray):
        freq = np.asarray(freq, dtype=np.int64)
        if not 0 <= lo < MAX_SYMBOLS or not 1 <= freq.size <= MAX_SYMBOLS - lo:
            raise ValueError(f"rANS: alphabet [{lo}, {lo + freq.size}) outside 0..{MAX_SYMBOLS - 1}")
        if int(freq.sum()) != PROB_SCALE or int(freq.min()) < 0:
            raise ValueError(f"rANS: frequencies must be non-negative and sum to {PROB_SCALE}")
        self.lo, self.freq = int(lo), freq
        self.cum = np.concatenate([[0], np.cumsum(freq)[:-1]]).astype(np.int64)
        self.slot_symbol = np.repeat(np.arange(freq.size, dtype=np.int64), freq)  # 4096 entries

    @classmethod
    def fit(cls, symbols: np.ndarray) -> Model:
        return cls.from_counts(_counts(symbols.ravel()))

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> Model:
        """The model :meth:`fit` makes of symbols with these counts (indexed by symbol; some must be > 0)."""
        nonzero = np.flatnonzero(counts)
        lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
        return cls(lo, normalise(counts[lo:hi]))

    def header(self) -> bytes:
        return (np.array([self.lo, self.freq.size], "<u2").tobytes() + self.freq.astype("<u2").tobytes())

    @classmethod
    def parse(cls, blob: np.ndarray, pos: int) -> tuple[Model, int]:
        if pos + 4 > blob.size:
            raise ValueError("rANS: truncated frequency table")
        lo, n = (int(v) for v in blob[pos : pos + 4].view("<u2"))
        end = pos + 4 + 2 * n
        if n == 0 or end > blob.size:
            raise ValueError("rANS: truncated or empty frequency table")
        return cls(lo, blob[pos + 4 : end].view("<u2").astype(np.int64)), end


class Mixed:
    """A phase whose symbols each pick their model from ``models`` by a context id (``ids``, one per symbol).

    For decoding, ``ids`` may be a function of the phases decoded before this one (their symbol arrays), called
    when the phase starts: a context computed from earlier symbols of the same stream."""

    def __init__(self, models: list[Model], ids):
        self.models, self.ids = models, ids
        self.lo = np.array([m.lo for m in models], dtype=np.int64)
        self.freq = np.zeros((len(models), MAX_SYMBOLS), dtype=np.int64)
        self.cum = np.zeros((len(models), MAX_SYMBOLS), dtype=np.int64)
        self.slot_symbol = np.empty((len(models), PROB_SCALE), dtype=np.int64)
        for k, m in enumerate(models):
            self.freq[k, : m.freq.size], self.cum[k, : m.cum.size] = m.freq, m.cum
            self.slot_symbol[k] = m.slot_symbol
        # The same tables indexed by the symbol itself (0 outside a model's alphabet), flat: the encoder looks a
        # symbol up as one take at id · 256 + symbol.
        self.by_symbol = np.zeros((2, len(models), MAX_SYMBOLS), dtype=np.int64)
        for k, m in enumerate(models):
            self.by_symbol[:, k, m.lo : m.lo + m.freq.size] = m.freq, m.cum
        self.by_symbol = self.by_symbol.reshape(2, -1)

    def resolve(self, decoded: list[np.ndarray]) -> np.ndarray:
        ids = self.ids(decoded) if callable(self.ids) else self.ids
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= len(self.models)):
            raise ValueError("rANS: a context id outside the model set")
        return ids


def _freq_cum(symbols: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    symbols = np.asarray(symbols, np.int64)
    if isinstance(model, Mixed):
        ids = model.resolve([])
        if symbols.size and (int(symbols.min()) < 0 or int(symbols.max()) >= MAX_SYMBOLS):
            raise ValueError("rANS: a symbol has no frequency in its model")
        at = ids * MAX_SYMBOLS + symbols  # a symbol below its model's lo finds frequency 0: refused by the caller
        return model.by_symbol[0].take(at), model.by_symbol[1].take(at)
    at = symbols - model.lo
    if at.size and (int(at.min()) < 0 or int(at.max()) >= model.freq.size):  # outside the model's alphabet
        raise ValueError("rANS: a symbol has no frequency in its model")
    return model.freq[at], model.cum[at]


def symbol_frequencies(phases: list[tuple[np.ndarray, Model | Mixed]]) -> tuple[np.ndarray, np.ndarray]:
    """Per symbol of the whole sequence (the phases in turn): its (freq, cum) in its model, int64; ValueError for a
    symbol its model has no frequency for."""
    pairs = [_freq_cum(s, m) for s, m in phases]
    freq = np.concatenate([f for f, _ in pairs])
    cum = np.concatenate([c for _, c in pairs])
    if int(freq.min(initial=1)) <= 0:
        raise ValueError("rANS: a symbol has no frequency in its model")
    return freq, cum


def encode(phases: list[tuple[np.ndarray, Model | Mixed]]) -> bytes:
    """One stream holding each phase's symbols in turn (each with its own model), all on the same lanes.

    Layout: lanes × u32 initial states, u32 word count, words (u16). Lanes follow from the total count.
    """
    total = sum(int(s.size) for s, _ in phases)
    lanes = lanes_for(total)
    freq, cum = symbol_frequencies(phases)
    state = np.full(lanes, STATE_LOW, dtype=np.uint64)
    steps = -(-total // lanes)
    # Per symbol, once: its frequency, cumulative frequency and renormalisation bound (x_max = f · 2^20), uint64.
    freq = freq.astype(np.uint64)
    cum = cum.astype(np.uint64)
    bound = freq << np.uint64(32 - PROB_BITS)
    shift, mask, bits = np.uint64(16), np.uint64(0xFFFF), np.uint64(PROB_BITS)
    words: list[np.ndarray] = []  # pushed in reverse of the decoder's reading order
    for t in range(steps - 1, -1, -1):
        first = t * lanes
        n = min(lanes, total - first)
        f, c = freq[first : first + n], cum[first : first + n]
        x = state[:n]
        renorm = x >= bound[first : first + n]
        if renorm.any():
            # The decoder reads lanes in increasing order: pushing them in decreasing order reverses to that.
            words.append((x[renorm] & mask).astype(np.uint16)[::-1])
            x[renorm] >>= shift
        quotient, remainder = np.divmod(x, f)
        state[:n] = (quotient << bits) + remainder + c
    stream = np.concatenate(words)[::-1] if words else np.zeros(0, np.uint16)
    return (state.astype("<u4").tobytes() + np.array([stream.size], "<u4").tobytes()
            + stream.astype("<u2").tobytes())


def decode(blob: np.ndarray, pos: int, phases: list[tuple[int, Model | Mixed]]) -> tuple[list[np.ndarray], int]:
    """Decode a stream written by :func:`encode` at ``blob[pos:]``; returns each phase's symbols and the end."""
    total = sum(count for count, _ in phases)
    lanes = lanes_for(total)
    head = pos + 4 * lanes + 4
    if head > blob.size:
        raise ValueError("rANS: truncated stream header")
    state = blob[pos : pos + 4 * lanes].view("<u4").astype(np.uint64)
    nwords = int(blob[pos + 4 * lanes : head].view("<u4")[0])
    end = head + 2 * nwords
    if end > blob.size:
        raise ValueError("rANS: truncated stream")
    if int(state.min()) < STATE_LOW:
        raise ValueError("rANS: corrupt stream (state out of range)")
    words = blob[head:end].view("<u2").astype(np.uint64)
    outputs, read, t = [], 0, 0
    mask = np.uint64(PROB_SCALE - 1)
    for count, model in phases:
        out = np.empty(count, dtype=np.uint8)
        mixed = isinstance(model, Mixed)
        if mixed:
            ids = model.resolve(outputs)
            if ids.size != count:
                raise ValueError("rANS: context ids do not match the phase")
        slot_symbol, freq, cum = model.slot_symbol, model.freq.astype(np.uint64), model.cum.astype(np.uint64)
        done = 0
        while done < count:  # steps continue across phases: symbol i is on lane i mod lanes
            lane0 = t % lanes
            n = min(lanes - lane0, count - done)
            x = state[lane0 : lane0 + n]
            slot = x & mask
            if mixed:
                k = ids[done : done + n]
                s = slot_symbol[k, slot.astype(np.int64)]
                out[done : done + n] = s + model.lo[k]
                x = freq[k, s] * (x >> np.uint64(PROB_BITS)) + slot - cum[k, s]
            else:
                s = slot_symbol[slot.astype(np.int64)]
                out[done : done + n] = s + model.lo
                x = freq[s] * (x >> np.uint64(PROB_BITS)) + slot - cum[s]
            need = x < STATE_LOW
            k = int(np.count_nonzero(need))
            if k:
                if read + k > nwords:
                    raise ValueError("rANS: corrupt stream (ran out of words)")
                x[need] = (x[need] << np.uint64(16)) | words[read : read + k]
                read += k
            state[lane0 : lane0 + n] = x
            done += n
            t += n
        outputs.append(out)
    if read != nwords or np.any(state != STATE_LOW):
        raise ValueError("rANS: corrupt stream (final state check failed)")
    return outputs, end
