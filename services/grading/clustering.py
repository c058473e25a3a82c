"""Same-matter detection: which open incident a new message belongs to.

Two signals, both kept in memory per process and rebuilt from the database at start:
- near-duplicates (the same post reposted, a template sent by many): MinHash over character shingles,
  found by LSH banding (the bands datasketch's MinHashLSH would choose for the policy's threshold) and
  joined when the estimated Jaccard similarity is high enough;
- the same matter in other words: the message's rarest title words (by document frequency) point
  to incidents that used them; the one whose word centroid is closest (cosine) wins above a threshold.
Only incidents active within the policy's window are candidates. The caller checks the candidates
against the database (open or not, current incident after merges) and decides.

Memory is what bounds a replica, so the index keeps no Python object per message: a message is a slot
in numpy columns (the low 8 bits of each MinHash value, its time, incident and id as 16 bytes), its
32-bit LSH band keys and a 64-bit hash of its id live in sorted arrays, and words are numbered once per
process. Per incident: its word centroid packed in one bytes object. About 210 bytes per message plus a
few hundred per incident, instead of ~8 KB per message with datasketch's LSH, dict vectors and a dict of
ids.

Keeping 8 bits of each MinHash value is b-bit minwise hashing (Li & König, "b-Bit Minwise Hashing",
WWW 2010): two different values still agree in their low 8 bits once in 256, so the share of agreeing
values m over-reads the similarity J by (1 − J)/256, and (m − 1/256) / (1 − 1/256) reads it back. The
low bits, not the top ones: a minimum over many hashes is small, so its top bits are mostly zero.
"""

import hashlib
import heapq
import math
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter

import numpy as np

from services.grading.policy import Clustering
from services.grading.text import shingles, words

# b-bit minwise hashing: the bits of each MinHash value the index keeps, and how often two different
# values agree in them by chance (what the similarity estimate takes back out).
_SIG_MASK = np.uint32(0xFF)
_SIG_CHANCE = 1.0 / 256

# Band keys added since the last merge wait in a dict; past this many messages they join the sorted
# array (a linear merge), so the dict stays small and lookups stay two binary searches.
_RECENT_LIMIT = 4096
# Keys of one band: a 64-bit mix of the band's r values, cut to 32 bits with the band number in the top
# bits, so the bands of all messages share one sorted array of 4-byte keys. A collision (once in 2^24
# or more per pair and band) only adds a candidate the Jaccard estimate then drops.
# The odd multipliers are `np.random.default_rng(0x4D53).integers(1, 2**63, 16, np.uint64) | 1`, written
# out so a grading process need not load numpy.random (2.8 MB resident); a test draws them again.
_BAND_MIX = np.array(
    [
        0x5FD73CEBC8B4BAAF, 0x6126363B3B0F438F, 0x3287A9C3CC30FF4D, 0x2C96D30641ADFE4D,
        0x6EAA92A220F16E15, 0x7A9755138E30ABC7, 0x5B4E986DCEDB925D, 0x7E8BEED21F4D3BD5,
        0x5D36C97BD854F635, 0x27DF802E9B6AB0F1, 0x20E6B4F2DC5A5B9D, 0x1315D311287F4937,
        0x51BEE2B1169EED19, 0x3A32E40678ED0C4D, 0x18DCB91BBE8997FD, 0x78AAD561BB9CBD5B,
    ],
    dtype=np.uint64,
)  # fmt: skip


def _sorted_insert(
    keys: np.ndarray, slots: np.ndarray, new_keys: np.ndarray, new_slots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(key, slot) pairs sorted by key, with new pairs merged in (one linear pass)."""
    order = np.argsort(new_keys, kind="stable")
    pos = np.searchsorted(keys, new_keys[order], side="right")
    return np.insert(keys, pos, new_keys[order]), np.insert(slots, pos, new_slots[order])


def _live_pairs(
    keys: np.ndarray, slots: np.ndarray, alive: np.ndarray, renumber: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(key, slot) pairs of live slots only, the slots renumbered after a compaction."""
    keep = alive[slots]
    return keys[keep], renumber[slots[keep]].astype(np.int32)


def signature(hashvalues: np.ndarray) -> np.ndarray:
    """The b bits of each MinHash value that the index keeps."""
    return (hashvalues & _SIG_MASK).astype(np.uint8)


def jaccard_estimates(signatures: np.ndarray, hashvalues: np.ndarray) -> np.ndarray:
    """The Jaccard similarity of a message (its MinHash values) to each stored b-bit signature (rows)."""
    agree = (signatures == signature(hashvalues)).mean(axis=1)
    return np.maximum(0.0, (agree - _SIG_CHANCE) / (1.0 - _SIG_CHANCE))


def _id_key(message_id: str) -> int:
    """A 64-bit hash of a message id: what the sorted id array holds (the slot's id is then compared)."""
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "little")


def _uuid_bytes(message_id: str) -> bytes | None:
    """The 16 bytes of an id in canonical UUID form (intake's ids), else None."""
    try:
        u = uuid.UUID(message_id)
    except ValueError:
        return None
    return u.bytes if u.int and str(u) == message_id else None


# datasketch's MinHash (scheme affine32) and MinHashLSH parameters, computed here: importing datasketch
# imports SciPy (for one integral), ~35 MB of resident memory a grading process would carry for nothing.
# tests/…/test_clustering checks both against datasketch itself.
def affine32_permutations(num_perm: int, *, seed: int) -> np.ndarray:
    """`MinHash(num_perm, seed, scheme="affine32").permutations`: odd a and any b, 32 bits.

    datasketch draws them with `np.random.RandomState(seed).randint(…, dtype=np.uint32)`: for these
    power-of-two ranges that is the generator's next 32-bit words, masked to 31 bits for a. The stdlib's
    generator is the same Mersenne Twister, so it gives them started in RandomState's state (MT19937's
    `init_genrand`), and a grading process need not load numpy.random. A test compares the two.
    """
    state = [seed & 0xFFFFFFFF]
    for i in range(1, 624):
        prev = state[-1]
        state.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
    mt = random.Random()
    mt.setstate((3, (*state, 624), None))
    a = [(mt.getrandbits(32) & 0x7FFFFFFF) * 2 + 1 for _ in range(num_perm)]
    b = [mt.getrandbits(32) for _ in range(num_perm)]
    return np.array([a, b], dtype=np.uint32)


_GRID = np.linspace(0.0, 1.0, 4001)


def _integral(ys: np.ndarray, xs: np.ndarray) -> float:
    return float(((ys[:-1] + ys[1:]) * np.diff(xs)).sum() / 2)


def lsh_banding(threshold: float, num_perm: int, weights=(0.5, 0.5)) -> tuple[int, int]:
    """`MinHashLSH(threshold, num_perm).b, .r`: the bands × rows minimising weighted false positives
    (similarity below the threshold, yet a band matches) and false negatives."""
    below = np.append(_GRID[threshold > _GRID], threshold)
    above = np.insert(_GRID[threshold < _GRID], 0, threshold)
    best, opt = math.inf, (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integral(1 - (1 - below**r) ** b, below)
            fn = _integral((1 - above**r) ** b, above)
            error = fp * weights[0] + fn * weights[1]
            if error < best:
                best, opt = error, (b, r)
    if opt[0] < 2:
        raise ValueError(f"near_duplicate_jaccard {threshold} with {num_perm} permutations leaves one band")
    return opt


@dataclass
class Features:
    """What the index needs of one message (computed off the event loop)."""

    hashvalues: np.ndarray
    title_words: list[str]
    tf: dict[str, float]
    bands: np.ndarray | None = None  # LSH band keys, computed once by the index that reads them


@dataclass
class Candidate:
    """An incident the message may belong to."""

    incident_id: str
    similarity: float
    kind: str  # near_duplicate | same_matter
    message_id: str | None = None  # the closest message, for near-duplicates


class _Incident:
    """One incident's share of the index: its word centroid (ids sorted, weights), members, last time.

    The centroid is packed in one bytes object (n int32 word ids, then n float32 weights): two numpy
    arrays would cost ≈ 220 bytes of headers per incident, and most incidents have one message."""

    __slots__ = ("_vec", "key", "last_at", "members", "norm")

    def __init__(self, key: str):
        self.key = key
        self._vec = b""
        self.norm = 0.0
        self.members = 0
        self.last_at: float | None = None

    @property
    def ids(self) -> np.ndarray:
        """The centroid's word ids, sorted."""
        return np.frombuffer(self._vec, dtype=np.int32, count=len(self._vec) // 8)

    @property
    def weights(self) -> np.ndarray:
        """The centroid's weights, in the order of `ids`."""
        n = len(self._vec) // 8
        return np.frombuffer(self._vec, dtype=np.float32, count=n, offset=4 * n)

    def _set(self, ids: np.ndarray, weights: np.ndarray) -> None:
        packed = weights.astype(np.float32)
        self._vec = ids.astype(np.int32).tobytes() + packed.tobytes()
        self.norm = float(np.sqrt(np.dot(packed, packed, out=None)))

    def add(self, ids: np.ndarray, weights: np.ndarray, sign: float = 1.0) -> None:
        """Add (or take away) a vector; entries that fall to nothing are dropped."""
        if not self._vec and sign > 0:
            self._set(ids, weights)
            return
        all_ids = np.concatenate([self.ids, ids])
        uniq, inv = np.unique(all_ids, return_inverse=True)
        both = np.concatenate([self.weights.astype(np.float64), weights * sign])
        summed = np.bincount(inv, weights=both, minlength=len(uniq))
        keep = summed > 1e-6
        self._set(uniq[keep], summed[keep])


def _ts(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


class _Column:
    """A growable numpy column (capacity doubles; pages not yet written cost no memory)."""

    def __init__(self, dtype, width: int | None = None):
        self.shape_tail = (width,) if width else ()
        self.data = np.empty((64, *self.shape_tail), dtype=dtype)
        self.n = 0

    def append(self, value) -> int:
        if self.n == len(self.data):
            grown = np.empty((2 * len(self.data), *self.shape_tail), dtype=self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n] = value
        self.n += 1
        return self.n - 1

    def view(self) -> np.ndarray:
        return self.data[: self.n]

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the rows where mask is true (compaction)."""
        kept = self.data[: self.n][mask]
        self.data = np.empty((max(64, 2 * len(kept)), *self.shape_tail), dtype=self.data.dtype)
        self.data[: len(kept)] = kept
        self.n = len(kept)


class MatterIndex:
    """The in-memory same-matter index of one process (thread-safe)."""

    def __init__(self, policy: Clustering):
        self.policy = policy
        self.stopwords = frozenset(policy.stopwords)
        self._perm = affine32_permutations(policy.num_perm, seed=1)
        self._bands, self._rows = lsh_banding(policy.near_duplicate_jaccard, policy.num_perm)
        band_bits = max(1, (self._bands - 1).bit_length())
        if band_bits > 8:
            raise ValueError(f"{self._bands} LSH bands: at most 256 fit the index's band keys")
        self._band_shift = 32 - band_bits
        self._window = policy.window_days * 86400.0
        # One slot per indexed message.
        self._sig = _Column(np.uint8, policy.num_perm)
        self._at = _Column(np.float64)
        self._alive = _Column(np.bool_)
        self._slot_incident: list[_Incident | None] = []
        # Message ids: 16 bytes a slot (ids not in UUID form, as in tests, in a dict); found by a
        # 64-bit hash in a sorted array (+ those added since the last merge). A dict of str ids would
        # cost ≈ 170 bytes a message.
        self._mid = _Column(np.uint8, 16)
        self._odd_ids: dict[int, str] = {}
        self._id_keys = np.empty(0, dtype=np.uint64)
        self._id_slots = np.empty(0, dtype=np.int32)
        self._recent_ids: dict[int, int] = {}
        self._live = 0
        # LSH: (band key, slot) sorted by key, and what was added since the last merge.
        self._band_keys = np.empty(0, dtype=np.uint32)
        self._band_slots = np.empty(0, dtype=np.int32)
        self._recent: dict[int, list[int]] = {}
        self._recent_messages = 0
        # Words and incidents.
        self._vocab: dict[str, int] = {}
        self._df: list[int] = []
        self.docs = 0
        self.incidents: dict[str, _Incident] = {}
        self.postings: dict[int, list[_Incident]] = {}
        self._dead = 0
        self._scratch = np.zeros(1024)
        self.watermark = 0  # the highest database sequence this index has seen
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self._live

    def _message_of(self, slot: int) -> str | None:
        """The id of the message in a live slot."""
        if not self._alive.data[slot]:
            return None
        odd = self._odd_ids.get(slot)
        return odd if odd is not None else str(uuid.UUID(bytes=self._mid.data[slot].tobytes()))

    def _slot_of(self, message_id: str, key: int | None = None) -> int | None:
        """The live slot of a message id, if indexed (`key`: its `_id_key`, when known)."""
        key = _id_key(message_id) if key is None else key
        slot = self._recent_ids.get(key)
        if slot is not None and self._message_of(slot) == message_id:
            return slot
        lo, hi = (
            np.searchsorted(self._id_keys, np.uint64(key), side="left"),
            np.searchsorted(self._id_keys, np.uint64(key), side="right"),
        )
        for s in self._id_slots[lo:hi].tolist():  # usually one; more only after a remove and re-add
            if self._message_of(s) == message_id:
                return s
        return None

    # --- features -----------------------------------------------------------------------------------

    def features(self, title: str | None, content: str) -> Features:
        """MinHash and words of a message (pure CPU)."""
        text = f"{title or ''}{content[:400]}"
        tw = words(title or content[:60], self.stopwords)
        tf: Counter = Counter()
        for w in tw:
            tf[w] += self.policy.title_weight
        for w in words(content[:300], self.stopwords):
            tf[w] += 1.0
        return Features(self.minhash(text), list(dict.fromkeys(tw)), dict(tf))

    def minhash(self, text: str) -> np.ndarray:
        """datasketch's MinHash (affine32, SHA-1 of each shingle) of a text's shingles, the same values
        as `MinHash.update_batch` without its per-value function calls."""
        sh = shingles(text, self.policy.shingle_size)
        if not sh:
            return np.full(self.policy.num_perm, 0xFFFFFFFF, dtype=np.uint32)  # datasketch's empty MinHash
        sha1 = hashlib.sha1
        hv = np.fromiter(
            (int.from_bytes(sha1(s.encode()).digest()[:4], "little") for s in sh),
            dtype=np.uint32,
            count=len(sh),
        )
        hv ^= hv >> np.uint32(16)
        hv *= np.uint32(0x85EBCA6B)
        hv ^= hv >> np.uint32(13)
        hv *= np.uint32(0xC2B2AE35)
        hv ^= hv >> np.uint32(16)
        a, b = self._perm
        return (hv[:, None] * a + b).min(axis=0)

    def _band_keys_of(self, f: Features) -> np.ndarray:
        if f.bands is None:
            f.bands = self._hash_bands(f.hashvalues)
        return f.bands

    def _hash_bands(self, hashvalues: np.ndarray) -> np.ndarray:
        b, r = self._bands, self._rows
        bands = hashvalues[: b * r].astype(np.uint64).reshape(b, r)
        mixed = (bands * _BAND_MIX[:r]).sum(axis=1, dtype=np.uint64)
        mixed ^= mixed >> np.uint64(29)
        shift = self._band_shift
        top = (mixed >> np.uint64(64 - shift)).astype(np.uint32)
        return top | (np.arange(b, dtype=np.uint32) << np.uint32(shift))

    def _idf(self, word: str) -> float:
        i = self._vocab.get(word)
        df = self._df[i] if i is not None else 0
        return math.log((self.docs + 1) / (df + 1)) + 1.0

    def _vector(self, tf: dict[str, float]) -> dict[str, float]:
        vocab, df, log, docs = self._vocab.get, self._df, math.log, self.docs + 1
        v = {}
        for w, c in tf.items():
            if c > 0:
                i = vocab(w)
                v[w] = (1.0 + log(c)) * (log(docs / ((df[i] if i is not None else 0) + 1)) + 1.0)
        n = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / n for w, x in v.items()}

    def _keys(self, f: Features) -> list[str]:
        return sorted(f.title_words, key=lambda w: -self._idf(w))[: self.policy.key_terms]

    def _arrays(self, vec: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """A vector as sorted word ids and weights (words this process never indexed are left out)."""
        pairs = sorted((self._vocab[w], x) for w, x in vec.items() if w in self._vocab)
        ids = np.fromiter((p[0] for p in pairs), dtype=np.int32, count=len(pairs))
        return ids, np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))

    # --- lookup ---------------------------------------------------------------------------------------

    def _near(self, keys: np.ndarray) -> set[int]:
        lo = np.searchsorted(self._band_keys, keys, side="left")
        hi = np.searchsorted(self._band_keys, keys, side="right")
        slots: set[int] = set()
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            if b > a:
                slots.update(self._band_slots[a:b].tolist())
        if self._recent:
            for k in keys.tolist():
                slots.update(self._recent.get(k, ()))
        return slots

    def _near_duplicates(self, f: Features, t: float) -> list[tuple[int, float]]:
        """LSH candidates in the window whose estimated Jaccard similarity reaches the threshold."""
        alive, times, window = self._alive.data, self._at.data, self._window
        slots = [s for s in self._near(self._band_keys_of(f)) if alive[s] and abs(t - times[s]) <= window]
        if not slots:
            return []
        jac = jaccard_estimates(self._sig.data[slots], f.hashvalues)  # every candidate at once
        threshold = self.policy.near_duplicate_jaccard
        return [(s, j) for s, j in zip(slots, jac.tolist(), strict=True) if j >= threshold]

    def _sharing(self, f: Features, t: float) -> list[_Incident]:
        """Incidents in the window sharing the message's rarest title words, by the weight of what they
        share; only these few get the exact (costlier) centroid cosine."""
        shared: dict[_Incident, float] = {}
        for key in self._keys(f):
            w = self._idf(key)
            for state in self.postings.get(self._vocab.get(key, -1), ()):
                shared[state] = shared.get(state, 0.0) + w
        out = []
        for state, _ in heapq.nlargest(self.policy.candidates, shared.items(), key=itemgetter(1)):
            if self.incidents.get(state.key) is not state:
                continue
            if state.norm and state.last_at is not None and t - state.last_at <= self._window:
                out.append(state)
        return out

    def lookup(self, f: Features, at: datetime, *, limit: int = 5) -> list[Candidate]:
        """Incidents the message may join, best first (only those above the policy's thresholds)."""
        t = _ts(at)
        with self._lock:
            out: dict[str, Candidate] = {}
            for s, j in self._near_duplicates(f, t):
                inc = self._slot_incident[s].key
                if inc not in out or out[inc].similarity < j:
                    out[inc] = Candidate(inc, round(j, 4), "near_duplicate", self._message_of(s))
            states = [s for s in self._sharing(f, t) if s.key not in out]
            if states:
                v = self._vector(f.tf)
                q_ids = [self._vocab[w] for w in v if w in self._vocab]
                q_weights = [x for w, x in v.items() if w in self._vocab]
                # The cosines of all of them at once: the message's vector spread over a scratch row
                # as long as the vocabulary, each centroid's words picked out of it.
                if len(self._scratch) < len(self._df):
                    self._scratch = np.zeros(2 * len(self._df))
                q = self._scratch
                q[q_ids] = q_weights
                ids = np.concatenate([s.ids for s in states])
                weights = np.concatenate([s.weights for s in states])
                starts = np.cumsum([0] + [len(s.ids) for s in states[:-1]])
                dots = np.add.reduceat(q[ids] * weights, starts)
                q[q_ids] = 0.0
                threshold = self.policy.same_matter_similarity
                for state, dot in zip(states, dots.tolist(), strict=True):
                    sim = dot / state.norm
                    if sim >= threshold:
                        out[state.key] = Candidate(state.key, round(sim, 4), "same_matter")
            ranked = sorted(out.values(), key=lambda c: (c.kind != "near_duplicate", -c.similarity))
            return ranked[:limit]

    def related(self, f: Features, at: datetime) -> tuple[list[str], list[str]]:
        """Messages and incidents a lookup of this message could name (a superset, without the
        cosines): what a batch loads from the database at once before deciding."""
        t = _ts(at)
        with self._lock:
            near = self._near_duplicates(f, t)
            messages = [self._message_of(s) for s, _ in near]
            incidents = [self._slot_incident[s].key for s, _ in near]
            return messages, incidents + [s.key for s in self._sharing(f, t)]

    # --- changes --------------------------------------------------------------------------------------

    def add(self, message_id: str, incident_id: str, f: Features, at: datetime, *, seq: int = 0) -> None:
        """Index a message as a member of an incident."""
        with self._lock:
            self.watermark = max(self.watermark, seq)
            id_key = _id_key(message_id)
            known = self._slot_of(message_id, id_key)
            if known is not None:
                self._move_slot(known, self._incident(incident_id), f)
                return
            for w in f.tf:
                i = self._vocab.get(w)
                if i is None:
                    i = self._vocab[w] = len(self._df)
                    self._df.append(0)
                self._df[i] += 1
            self.docs += 1
            ids, weights = self._arrays(self._vector(f.tf))
            state = self._incident(incident_id)
            slot = self._sig.append(signature(f.hashvalues))
            self._at.append(_ts(at))
            self._alive.append(True)
            self._slot_incident.append(state)
            raw = _uuid_bytes(message_id)
            self._mid.append(np.frombuffer(raw, dtype=np.uint8) if raw else 0)
            if raw is None:
                self._odd_ids[slot] = message_id
            self._recent_ids[id_key] = slot
            self._live += 1
            for k in self._band_keys_of(f).tolist():
                self._recent.setdefault(k, []).append(slot)
            self._recent_messages += 1
            state.add(ids, weights)
            state.members += 1
            t = _ts(at)
            state.last_at = t if state.last_at is None or t > state.last_at else state.last_at
            self._post(state, self._keys(f))
            if self._recent_messages >= _RECENT_LIMIT:
                self._merge_recent()

    def _incident(self, incident_id: str) -> _Incident:
        state = self.incidents.get(incident_id)
        if state is None:
            state = self.incidents[incident_id] = _Incident(incident_id)
        return state

    def _post(self, state: _Incident, keys: list[str]) -> None:
        limit = self.policy.posting_limit
        for key in keys:
            i = self._vocab.get(key)
            if i is None:
                continue
            posting = self.postings.setdefault(i, [])
            if state not in posting:
                if len(posting) >= limit:
                    del posting[0]
                posting.append(state)

    def _merge_recent(self) -> None:
        """Move the band keys and ids added since the last merge into their sorted arrays."""
        if self._recent:
            keys = np.fromiter((k for k, slots in self._recent.items() for _ in slots), dtype=np.uint32)
            slots = np.fromiter(
                (s for v in self._recent.values() for s in v), dtype=np.int32, count=len(keys)
            )
            self._band_keys, self._band_slots = _sorted_insert(self._band_keys, self._band_slots, keys, slots)
            self._recent = {}
        if self._recent_ids:
            keys = np.fromiter(self._recent_ids.keys(), dtype=np.uint64, count=len(self._recent_ids))
            slots = np.fromiter(self._recent_ids.values(), dtype=np.int32, count=len(keys))
            self._id_keys, self._id_slots = _sorted_insert(self._id_keys, self._id_slots, keys, slots)
            self._recent_ids = {}
        self._recent_messages = 0

    def incident_of(self, message_id: str) -> str | None:
        """The incident an indexed message belongs to."""
        slot = self._slot_of(message_id)
        return self._slot_incident[slot].key if slot is not None else None

    def members(self, incident_id: str) -> int:
        """How many indexed messages an incident has."""
        state = self.incidents.get(incident_id)
        return state.members if state else 0

    def _move_slot(self, slot: int, target: _Incident, f: Features | None) -> None:
        source = self._slot_incident[slot]
        if source is target:
            return
        if f is not None:  # its words leave one centroid for the other (weights as idf has them now)
            ids, weights = self._arrays(self._vector(f.tf))
            source.add(ids, weights, -1.0)
            target.add(ids, weights)
            self._post(target, self._keys(f))
        source.members -= 1
        if source.members <= 0:
            self.incidents.pop(source.key, None)
        target.members += 1
        t = self._at.data[slot]
        target.last_at = t if target.last_at is None or t > target.last_at else target.last_at
        self._slot_incident[slot] = target

    def move(self, message_ids: list[str], incident_id: str, features: dict[str, Features]) -> None:
        """Messages now belong to another incident (a split): their words move with them."""
        with self._lock:
            target = self._incident(incident_id)
            for mid in message_ids:
                slot = self._slot_of(mid)
                if slot is not None:
                    self._move_slot(slot, target, features.get(mid))

    def merge_incident(self, source_id: str, target_id: str) -> None:
        """All of one incident's messages now belong to another (a merge): centroids add up."""
        with self._lock:
            source = self.incidents.pop(source_id, None)
            if source is None:
                return
            target = self._incident(target_id)
            target.add(source.ids, source.weights)
            target.members += source.members
            if source.last_at is not None and (target.last_at is None or source.last_at > target.last_at):
                target.last_at = source.last_at
            for s, state in enumerate(self._slot_incident):
                if state is source:
                    self._slot_incident[s] = target
            for posting in self.postings.values():
                if source in posting:
                    i = posting.index(source)
                    if target in posting:
                        del posting[i]
                    else:
                        posting[i] = target

    def remove(self, message_ids: list[str], features: dict[str, Features]) -> None:
        """Take messages out again as if never added (their transaction did not commit)."""
        with self._lock:
            for mid in message_ids:
                slot = self._slot_of(mid)
                if slot is None:
                    continue
                f = features.get(mid)
                state = self._slot_incident[slot]
                if f is not None:
                    ids, weights = self._arrays(self._vector(f.tf))
                    state.add(ids, weights, -1.0)
                    for w in f.tf:
                        i = self._vocab.get(w)
                        if i is not None and self._df[i] > 0:
                            self._df[i] -= 1
                    self.docs = max(0, self.docs - 1)
                self._kill(slot)

    def _kill(self, slot: int) -> None:
        self._alive.data[slot] = False
        state = self._slot_incident[slot]
        self._slot_incident[slot] = None
        self._odd_ids.pop(slot, None)
        self._live -= 1
        self._dead += 1
        if state is not None:
            state.members -= 1
            if state.members <= 0 and self.incidents.get(state.key) is state:
                del self.incidents[state.key]

    def forget_incident(self, incident_id: str) -> None:
        """An incident no longer takes new messages (closed): drop it from the candidates."""
        with self._lock:
            state = self.incidents.get(incident_id)
            if state is not None:
                state.last_at = None

    def evict(self, before: datetime) -> int:
        """Drop messages older than a moment (memory stays bounded by the window).

        An incident that still has messages in the window keeps the words of the dropped ones in its
        centroid (the matter remembers its history while it lives); one with none left goes.
        """
        cut = _ts(before)
        with self._lock:
            n = self._at.n
            old = np.nonzero(self._alive.data[:n] & (self._at.data[:n] < cut))[0].tolist()
            for slot in old:
                self._kill(slot)
            if self._dead > max(1024, self._live):
                self._compact()
            return len(old)

    def _compact(self) -> None:
        """Renumber the live slots (dead ones leave the columns and the band array)."""
        self._merge_recent()
        n = self._at.n
        alive = self._alive.data[:n].copy()
        renumber = np.cumsum(alive, dtype=np.int64) - 1
        self._band_keys, self._band_slots = _live_pairs(self._band_keys, self._band_slots, alive, renumber)
        self._id_keys, self._id_slots = _live_pairs(self._id_keys, self._id_slots, alive, renumber)
        self._odd_ids = {int(renumber[s]): m for s, m in self._odd_ids.items()}
        for col in (self._sig, self._at, self._alive, self._mid):
            col.keep(alive)
        self._slot_incident = [s for s, a in zip(self._slot_incident, alive.tolist(), strict=True) if a]
        live = set(self.incidents.values())
        for key in [k for k, p in self.postings.items() if not any(s in live for s in p)]:
            del self.postings[key]
        for posting in self.postings.values():
            posting[:] = [s for s in posting if s in live]
        self._dead = 0
