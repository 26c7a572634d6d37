#!/usr/bin/env python3
# A second implementation of Attest's contracts: it replays an `attest ledger export`
# (schema attest.export/1) from genesis and recomputes the state root after every block,
# written from docs/PROTOCOL.md (sections 2, 4, 6, 6a, 7, 10 and 10b) independently of the
# Rust crates. Needs only `pip install blake3` (signatures are verify_export.py's job).
# Usage: python3 docs/reference/replay.py EXPORT.jsonl
# Prints "OK ..." and exits 0 if every state root matches the chain's; prints
# "FAIL at height H: ..." and exits 1 at the first disagreement or refused transaction.
import bisect, json, sys, time
import blake3

PPM = 1_000_000
U128 = (1 << 128) - 1
EMPTY = bytes(32)


class Fail(Exception):
    pass


def H(tag, *parts):
    h = blake3.blake3(tag.encode() + b"\0")
    for p in parts:
        h.update(p)
    return h.digest()


# ---------------------------------------------------------------- canonical encoding (sec. 2)

def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def enc_bytes(b):
    return varint(len(b)) + b


def enc_str(s):
    return enc_bytes(s.encode())


def enc_opt(v, f):
    return b"\0" if v is None else b"\x01" + f(v)


class Reader:
    def __init__(self, data):
        self.d, self.i = data, 0

    def raw(self, n):
        if self.i + n > len(self.d):
            raise Fail("truncated encoding")
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def var(self):
        n, shift = 0, 0
        while True:
            b = self.raw(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    def bytes(self):
        return self.raw(self.var())

    def str(self):
        return self.bytes().decode()

    def proof(self):
        return [self.raw(32) for _ in range(self.var())]

    def end(self):
        if self.i != len(self.d):
            raise Fail("trailing bytes")


def decode_vote(r):
    signer, sig = r.raw(32), r.raw(64)
    height, rnd, kind = r.var(), r.var(), r.var()
    block = r.raw(32) if r.var() == 1 else None
    return {"signer": signer, "height": height, "round": rnd, "kind": kind, "block": block}


def decode_tx(body):
    """Section 4: Tx { nonce, fee, action }."""
    r = Reader(body)
    tx = {"nonce": r.var(), "fee": r.var()}
    k = r.var()
    if k == 0:
        a = {"kind": "transfer", "to": r.raw(32), "amount": r.var()}
    elif k == 1:
        a = {"kind": "stake", "amount": r.var(), "node": r.raw(32), "sig": r.raw(64),
             "device": r.str(), "memory": r.var()}
    elif k == 2:
        a = {"kind": "unstake", "amount": r.var()}
    elif k == 3:
        a = {"kind": "open", "model": r.str(), "input": r.bytes(), "max_tokens": r.var(),
             "provider": r.raw(32), "device": r.str(), "price": r.var(),
             "deadline_ms": r.var(), "check": r.var()}
    elif k == 4:
        a = {"kind": "commit", "job": r.raw(32), "output_hash": r.raw(32),
             "trace_root": r.raw(32), "step_count": r.var(), "tokens": r.var(),
             "final_activation": r.bytes(), "final_proof": r.proof()}
    elif k == 5:
        a = {"kind": "verdict", "job": r.raw(32)}
        if r.var() == 0:
            a["agree"] = True
        else:
            a.update(agree=False, trace_root=r.raw(32), final_leaf=r.raw(32), final_proof=r.proof())
    elif k == 6:
        a = {"kind": "dispute", "job": r.raw(32), "round": r.var()}
        if r.var() == 0:
            a.update(step="open", index=r.var(), leaf=r.raw(32), proof=r.proof())
        else:
            a.update(step="witness", activation=r.bytes())
    elif k == 7:
        a = {"kind": "equivocation", "first": decode_vote(r), "second": decode_vote(r)}
    else:
        raise Fail(f"unknown action {k}")
    r.end()
    tx["action"] = a
    return tx


# ---------------------------------------------------------------- Merkle proofs (sec. 6)

def merkle_verify(root, count, index, leaf, siblings):
    if index >= count:
        return False
    i, width, acc, s = index, count, leaf, list(siblings)
    while width > 1:
        if (i ^ 1) < width:
            if not s:
                return False
            sib = s.pop(0)
            acc = H("attest/merkle-node/v1", acc, sib) if i % 2 == 0 else H("attest/merkle-node/v1", sib, acc)
        i //= 2
        width = (width + 1) // 2
    return not s and acc == root


# ---------------------------------------------------------------- the workload (sec. 7)

MODELS = {"attest-tiny-1b": (1_100_000_000, 22, 2, 32, 10),
          "attest-base-8b": (8_030_000_000, 32, 2, 64, 10),
          "attest-large-70b": (70_550_000_000, 80, 2, 128, 11)}
_weights = {}


def s8(b):
    return b - 256 if b > 127 else b


def wrap8(v):
    v &= 0xFF
    return v - 256 if v > 127 else v


def wrap32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def weights(model):
    if model not in _weights:
        _, L, _, D, _ = MODELS[model]
        total = L * (D * D + D) + 257 * D + 95 * D
        w = [s8(b) for b in blake3.blake3(b"attest/weights/v1\0" + model.encode()).digest(length=total)]
        off, W, B = 0, [], []
        for _ in range(L):
            W.append([w[off + r * D:off + (r + 1) * D] for r in range(D)]); off += D * D
            B.append(w[off:off + D]); off += D
        E = [w[off + t * D:off + (t + 1) * D] for t in range(257)]; off += 257 * D
        U = [w[off + v * D:off + (v + 1) * D] for v in range(95)]
        _weights[model] = (W, B, E, U)
    return _weights[model]


def next_token(U, h):
    best, bv = None, 0
    for v in range(95):
        lg = wrap32(sum(U[v][j] * h[j] for j in range(len(h))))
        if best is None or lg > best:
            best, bv = lg, v
    return 0x20 + bv


def step(model, inp, max_tokens, index, prev):
    """One step of the workload from the previous activation (hidden lanes, then the 32-byte
    output accumulator): what a dispute referee runs."""
    _, L, _, D, S = MODELS[model]
    W, B, E, U = weights(model)
    pos, layer = divmod(index, L)
    h = [s8(b) for b in prev[:D]]
    acc_out = prev[D:]
    if layer == 0:
        t = 256 if pos == 0 else (inp[pos - 1] if pos <= len(inp) else next_token(U, h))
        x = [wrap8(h[j] + E[t][j]) for j in range(D)]
    else:
        x = h
    o = []
    for r in range(D):
        acc = wrap32((B[layer][r] << 6) + sum(W[layer][r][j] * x[j] for j in range(D)))
        q = max(-128, min(127, wrap32(acc + (1 << (S - 1))) >> S))
        o.append(wrap8(x[r] + (q if q >= 0 else q >> 2)))
    if layer == L - 1 and pos >= len(inp):
        acc_out = H("attest/output/v1", acc_out, bytes([next_token(U, o)]))
    return bytes(b & 0xFF for b in o) + acc_out


def leaf_hash(index, activation):
    return H("attest/trace-leaf/v1", index.to_bytes(8, "little"), activation)


def job_shape(model, inp, max_tokens):
    """(step_count, activation width), or a refusal."""
    if model not in MODELS:
        raise Refused("unknown model")
    if len(inp) > 4096:
        raise Refused("input too long")
    if not 1 <= max_tokens <= 1024:
        raise Refused("bad max_tokens")
    _, L, _, D, _ = MODELS[model]
    return (len(inp) + max_tokens) * L, D + 32


def can_run(memory, model):
    m = MODELS.get(model)
    return m is not None and m[0] * m[2] <= memory


# ---------------------------------------------------------------- the state tree (sec. 6a)

class StateTree:
    """The sparse Merkle tree over H(state-key, key) -> H(state-value, value), with the hash of
    every subtree of two or more leaves cached by (depth, prefix) and dropped along the paths
    of changed keys."""

    def __init__(self):
        self.keys, self.vals, self.cache = [], {}, {}

    def set(self, k, v):
        ki = int.from_bytes(k, "big")
        if v is None:
            if ki in self.vals:
                del self.vals[ki]
                self.keys.pop(bisect.bisect_left(self.keys, ki))
        else:
            if ki not in self.vals:
                bisect.insort(self.keys, ki)
            self.vals[ki] = v
        for d in range(257):
            self.cache.pop((d, ki >> (256 - d)), None)

    def root(self):
        return self._sub(0, len(self.keys), 0, 0)

    def _sub(self, lo, hi, d, prefix):
        if hi == lo:
            return EMPTY
        if hi - lo == 1:
            k = self.keys[lo]
            return H("attest/smt-leaf/v1", k.to_bytes(32, "big"), self.vals[k])
        c = self.cache.get((d, prefix))
        if c is None:
            split = ((prefix << 1) | 1) << (255 - d)
            mid = bisect.bisect_left(self.keys, split, lo, hi)
            c = H("attest/smt-node/v1", self._sub(lo, mid, d + 1, prefix << 1),
                  self._sub(mid, hi, d + 1, (prefix << 1) | 1))
            self.cache[(d, prefix)] = c
        return c


# ---------------------------------------------------------------- the contracts (sec. 10, 10b)

PARAMS = ["min_fee", "min_stake", "unbonding_ms", "evidence_blocks", "check_probability_ppm",
          "probation_jobs", "verdict_window_ms", "max_checker_redraws", "dispute_round_ms",
          "slash_fraction_ppm", "winner_share_ppm", "checker_fee", "challenge_bond",
          "protocol_share_ppm", "missed_deadline_penalty", "max_input_bytes", "max_deadline_ms",
          "retention_blocks", "max_validators"]
PHASES = ["open", "committed", "disputed", "settled", "refunded"]
ACTIVE, JAILED, BANNED = 0, 1, 2


class Refused(Exception):
    pass


def ppm_floor(a, ppm):
    return a * min(ppm, PPM) // PPM


def ppm_ceil(a, ppm):
    return -(-a * min(ppm, PPM) // PPM)


def rounds_for(steps):
    return 0 if steps == 1 else (steps - 1).bit_length()


def enc_counts(c):
    return b"".join(varint(c[p]) for p in PHASES)


def enc_reason(r):
    kind = r[0]
    if kind == "equivocation":
        return varint(3) + varint(r[1]) + varint(r[2]) + varint(r[3])
    return varint(["missed_commit", "missed_verdict", "dispute_lost"].index(kind)) + r[1]


def enc_committed(c):
    return (c["output_hash"] + c["trace_root"] + c["final_leaf"] + varint(c["tokens"])
            + varint(c["committed_at"]) + varint(c["committed_at_ms"]) + c["seed"])


def enc_phase(p):
    k = p["kind"]
    if k == "open":
        return varint(0) + varint(p["deadline_ms"])
    if k == "committed":
        ch = p["check"]
        if ch["kind"] == "unchecked":
            check = varint(0) + varint(ch["settle_at_ms"])
        else:
            check = (varint(1) + ch["checker"] + varint(ch["deadline_ms"]) + varint(ch["redraws"])
                     + varint(len(ch["failed"])) + b"".join(ch["failed"]))
        return varint(1) + enc_committed(p["result"]) + check
    if k == "disputed":
        d = p["dispute"]
        return (varint(2) + enc_committed(p["result"]) + d["challenger"] + varint(d["bond"])
                + d["challenger_root"] + varint(d["rounds"]) + varint(d["round"])
                + enc_opt(d["lo"], varint) + enc_opt(d["agreed_leaf"], bytes)
                + d["hi"][0] + d["hi"][1] + enc_opt(d["provider_leaf"], bytes)
                + enc_opt(d["challenger_leaf"], bytes) + varint(d["deadline_ms"]))
    return varint(PHASES.index(k))


def enc_job(j):
    review = j["review"]
    if review is None:
        rv = varint(0)
    elif review[0] == "agreed":
        rv = varint(1) + review[1]
    else:
        rv = varint(2) + review[1] + bytes([1 if review[2] else 0])
    return (j["client"] + j["provider"] + enc_str(j["model"]) + enc_bytes(j["input"])
            + varint(j["max_tokens"]) + enc_str(j["device"]) + varint(j["price"])
            + varint(j["step_count"]) + varint(j["escrow"]) + varint(j["opened_at"])
            + varint(j["check"]) + enc_phase(j["phase"])
            + varint(len(j["faults"])) + b"".join(w + enc_reason(r) for w, r in j["faults"]) + rv)


def enc_stake(s):
    return (s["node"] + varint(s["bonded"]) + varint(len(s["unbonding"]))
            + b"".join(varint(a) + varint(t) for a, t in s["unbonding"]) + varint(s["status"])
            + varint(s["disputes_lost"]) + varint(s["probation_left"])
            + enc_str(s["device"]) + varint(s["memory"]))


def deadline_of(phase):
    k = phase["kind"]
    if k == "open":
        return phase["deadline_ms"]
    if k == "committed":
        ch = phase["check"]
        return ch["settle_at_ms"] if ch["kind"] == "unchecked" else ch["deadline_ms"]
    if k == "disputed":
        return phase["dispute"]["deadline_ms"]
    return None


class State:
    def __init__(self, genesis):
        g = genesis["genesis"]
        self.chain_id = g["chain_id"]
        self.p = g["params"]
        if list(self.p) != PARAMS:
            raise Fail(f"genesis params are not the expected fields: {list(self.p)}")
        self.accounts, self.stakes, self.nodes, self.records, self.jobs = {}, {}, {}, {}, {}
        self.timers, self.releases, self.retire, self.evidence = set(), set(), set(), set()
        self.treasury, self.tree, self.dirty, self.at = 0, StateTree(), set(), 0
        supply = 0
        for a, amount in g["balances"]:
            a = bytes.fromhex(a)
            if a in self.accounts:
                raise Fail("duplicate genesis balance")
            self.accounts[a] = [amount, 0]
            supply += amount
        for a, node, amount, cap in g["stakes"]:
            a, node = bytes.fromhex(a), bytes.fromhex(node)
            if node in self.nodes or a in self.stakes:
                raise Fail("duplicate genesis stake")
            self.nodes[node] = a
            self.stakes[a] = {"node": node, "bonded": amount, "unbonding": [], "status": ACTIVE,
                              "disputes_lost": 0, "probation_left": 0,
                              "device": cap["device"], "memory": cap["memory_bytes"]}
            self.accounts.setdefault(a, [0, 0])
            supply += amount
        self.supply = supply
        self.meta = (enc_str(self.chain_id) + b"".join(varint(self.p[f]) for f in PARAMS)
                     + varint(supply))
        self.genesis_bytes = (varint(genesis["genesis_time_ms"]) + enc_str(self.chain_id)
                              + b"".join(varint(self.p[f]) for f in PARAMS)
                              + varint(len(g["balances"]))
                              + b"".join(bytes.fromhex(a) + varint(n) for a, n in g["balances"])
                              + varint(len(g["stakes"]))
                              + b"".join(bytes.fromhex(a) + bytes.fromhex(n) + varint(x)
                                         + enc_str(c["device"]) + varint(c["memory_bytes"])
                                         for a, n, x, c in g["stakes"]))
        self.dirty.update([("meta",), ("treasury",)])
        self.dirty.update(("account", a) for a in self.accounts)
        self.dirty.update(("stake", a) for a in self.stakes)
        self.dirty.update(("node", n) for n in self.nodes)

    # ---- entries and the root
    def key_bytes(self, k):
        t = k[0]
        if t == "meta":
            return varint(0)
        if t == "treasury":
            return varint(1)
        i = ["account", "stake", "node", "record", "job", "timer", "release", "retire",
             "evidence"].index(t) + 2
        if t in ("timer", "release", "retire"):
            return varint(i) + varint(k[1]) + k[2]
        if t == "evidence":
            return varint(i) + varint(k[1]) + k[2] + varint(k[3]) + varint(k[4])
        return varint(i) + k[1]

    def value_bytes(self, k):
        t = k[0]
        if t == "meta":
            return self.meta
        if t == "treasury":
            return varint(self.treasury)
        if t == "account":
            a = self.accounts.get(k[1])
            return None if a is None else varint(a[0]) + varint(a[1])
        if t == "stake":
            s = self.stakes.get(k[1])
            return None if s is None else enc_stake(s)
        if t == "node":
            return self.nodes.get(k[1])
        if t == "record":
            r = self.records.get(k[1])
            return None if r is None else (enc_counts(r["provided"]) + enc_counts(r["opened"])
                                           + varint(r["slashes"]) + varint(r["slashed"])
                                           + varint(r["earned"]) + varint(r["checks"])
                                           + varint(r["disputes_won"]) + varint(r["disputes_lost"]))
        if t == "job":
            j = self.jobs.get(k[1])
            return None if j is None else enc_job(j)
        member = {"timer": self.timers, "release": self.releases, "retire": self.retire,
                  "evidence": self.evidence}[t]
        return b"" if k[1:] in member else None

    def root(self):
        for k in self.dirty:
            v = self.value_bytes(k)
            self.tree.set(H("attest/state-key/v1", self.key_bytes(k)),
                          None if v is None else H("attest/state-value/v1", v))
        self.dirty.clear()
        return self.tree.root()

    # ---- writes
    def account(self, a):
        return list(self.accounts.get(a, [0, 0]))

    def put_account(self, a, acc):
        self.accounts[a] = acc
        self.dirty.add(("account", a))

    def credit(self, a, n):
        acc = self.account(a)
        acc[0] += n
        self.put_account(a, acc)

    def debit(self, a, n):
        acc = self.account(a)
        if acc[0] < n:
            raise Refused(f"insufficient balance: {acc[0]} < {n}")
        acc[0] -= n
        self.put_account(a, acc)

    def put_stake(self, a, s):
        self.stakes[a] = s
        self.dirty.add(("stake", a))

    def record(self, a):
        r = self.records.get(a)
        if r is None:
            r = {"provided": dict.fromkeys(PHASES, 0), "opened": dict.fromkeys(PHASES, 0),
                 "slashes": 0, "slashed": 0, "earned": 0, "checks": 0,
                 "disputes_won": 0, "disputes_lost": 0}
            self.records[a] = r
        self.dirty.add(("record", a))
        return r

    def credit_treasury(self, n):
        self.treasury += n
        self.dirty.add(("treasury",))

    def set_member(self, name, key, present):
        s = getattr(self, name)
        (s.add if present else s.discard)(key)
        self.dirty.add((name.rstrip("s") if name != "evidence" else "evidence",) + key)

    def put_job(self, jid, job):
        """Moves the job's timer, counts a phase change in its client's and provider's records,
        and once final drops its input and schedules its retirement."""
        old = self.jobs.get(jid)
        new_d, old_d = deadline_of(job["phase"]), deadline_of(old["phase"]) if old else None
        if old_d != new_d:
            if old_d is not None and (old_d, jid) in self.timers:
                self.set_member("timers", (old_d, jid), False)
            if new_d is not None:
                self.set_member("timers", (new_d, jid), True)
        new_p, old_p = job["phase"]["kind"], old["phase"]["kind"] if old else None
        if old_p != new_p:
            for who, role in ((job["provider"], "provided"), (job["client"], "opened")):
                r = self.record(who)
                if old_p is not None:
                    r[role][old_p] = max(0, r[role][old_p] - 1)
                r[role][new_p] += 1
            if new_p in ("settled", "refunded"):
                self.set_member("retire", (self.at + self.p["retention_blocks"], jid), True)
        if new_p in ("settled", "refunded"):
            job["input"] = b""
        self.jobs[jid] = job
        self.dirty.add(("job", jid))

    def eligible(self, s):
        return s["status"] == ACTIVE and s["bonded"] >= self.p["min_stake"] and s["bonded"] > 0

    def can_serve(self, s, model):
        return self.eligible(s) and can_run(s["memory"], model)

    # ---- slashing
    def take_stake(self, who, amount):
        s = self.stakes.get(who)
        if s is None:
            return 0
        s = dict(s, unbonding=[list(u) for u in s["unbonding"]])
        left = amount
        b = min(s["bonded"], left)
        s["bonded"] -= b
        left -= b
        for u in reversed(s["unbonding"]):
            t = min(u[0], left)
            u[0] -= t
            left -= t
        s["unbonding"] = [tuple(u) for u in s["unbonding"] if u[0] > 0]
        self.put_stake(who, s)
        return amount - left

    def earn(self, who, amount):
        """Counts what the protocol paid `who` for its work in its record."""
        if amount > 0:
            self.record(who)["earned"] += amount

    def slash(self, who, amount, winner):
        taken = self.take_stake(who, amount)
        share = 0
        if winner is not None and winner != who:
            share = ppm_ceil(taken, self.p["winner_share_ppm"])
            self.credit(winner, share)
            self.earn(winner, share)
        self.credit_treasury(taken - share)
        r = self.record(who)
        r["slashes"] += 1
        r["slashed"] += taken

    def slash_fraction(self, who, winner):
        s = self.stakes.get(who)
        total = 0 if s is None else s["bonded"] + sum(u[0] for u in s["unbonding"])
        self.slash(who, ppm_floor(total, self.p["slash_fraction_ppm"]), winner)

    def penalize(self, who):
        self.slash(who, self.p["missed_deadline_penalty"], None)

    def record_fault(self, jid, who, reason):
        job = dict(self.jobs[jid])
        job["faults"] = job["faults"] + [(who, reason)]
        self.put_job(jid, job)

    # ---- transactions
    def apply(self, ctx, signer, tx, tx_hash):
        self.at = ctx["height"]
        acc = self.account(signer)
        if tx["nonce"] != acc[1]:
            raise Refused(f"bad nonce {tx['nonce']}, expected {acc[1]}")
        if tx["fee"] < self.p["min_fee"]:
            raise Refused("fee too low")
        acc[1] += 1
        self.put_account(signer, acc)
        self.debit(signer, tx["fee"])
        self.credit(ctx["proposer"], tx["fee"])
        a = tx["action"]
        getattr(self, "do_" + a["kind"])(ctx, signer, a, tx_hash)

    def do_transfer(self, ctx, signer, a, _):
        if a["amount"] == 0:
            raise Refused("zero transfer")
        self.debit(signer, a["amount"])
        self.credit(a["to"], a["amount"])

    def do_stake(self, ctx, signer, a, _):
        if a["amount"] == 0:
            raise Refused("zero stake")
        # The node binding signature is checked by verify-class tools; a chain that carries
        # this transaction had it checked by every validator.
        bound = self.nodes.get(a["node"])
        if bound is not None and bound != signer:
            raise Refused("node taken")
        s = self.stakes.get(signer)
        if s is not None and s["node"] != a["node"]:
            raise Refused("node mismatch")
        if s is not None and s["status"] != ACTIVE:
            raise Refused("jailed")
        s = dict(s) if s else {"node": a["node"], "bonded": 0, "unbonding": [], "status": ACTIVE,
                               "disputes_lost": 0, "probation_left": 0}
        self.debit(signer, a["amount"])
        s["bonded"] += a["amount"]
        s["device"], s["memory"] = a["device"], a["memory"]
        self.put_stake(signer, s)
        if a["node"] not in self.nodes:
            self.nodes[a["node"]] = signer
            self.dirty.add(("node", a["node"]))

    def do_unstake(self, ctx, signer, a, _):
        if a["amount"] == 0:
            raise Refused("zero unstake")
        s = self.stakes.get(signer)
        if s is None or s["bonded"] < a["amount"]:
            raise Refused("insufficient stake")
        if len(s["unbonding"]) >= 32:
            raise Refused("too many unbonding entries")
        at = ctx["time_ms"] + self.p["unbonding_ms"]
        s = dict(s, bonded=s["bonded"] - a["amount"], unbonding=s["unbonding"] + [(a["amount"], at)])
        self.put_stake(signer, s)
        if (at, signer) not in self.releases:
            self.set_member("releases", (at, signer), True)

    def has_capable_checker(self, model, provider, client):
        return any(w != provider and w != client and self.can_serve(s, model)
                   for w, s in self.stakes.items())

    def do_open(self, ctx, client, a, tx_hash):
        if a["provider"] == client:
            raise Refused("self-deal")
        if len(a["input"]) > self.p["max_input_bytes"]:
            raise Refused("input over the chain's cap")
        steps, _ = job_shape(a["model"], a["input"], a["max_tokens"])
        if not 1 <= a["deadline_ms"] <= self.p["max_deadline_ms"]:
            raise Refused("bad deadline")
        s = self.stakes.get(a["provider"])
        if s is None or not self.can_serve(s, a["model"]):
            raise Refused("provider not eligible")
        if not self.has_capable_checker(a["model"], a["provider"], client):
            raise Refused("no capable checker")
        if tx_hash in self.jobs:
            raise Refused("duplicate job")
        escrow = a["price"] * a["max_tokens"] + self.p["checker_fee"]
        self.debit(client, escrow)
        self.put_job(tx_hash, {
            "client": client, "provider": a["provider"], "model": a["model"], "input": a["input"],
            "max_tokens": a["max_tokens"], "device": a["device"], "price": a["price"],
            "step_count": steps, "escrow": escrow, "opened_at": ctx["height"], "check": a["check"],
            "phase": {"kind": "open", "deadline_ms": ctx["time_ms"] + a["deadline_ms"]},
            "faults": [], "review": None})

    def job(self, jid):
        j = self.jobs.get(jid)
        if j is None:
            raise Refused("unknown job")
        return dict(j)

    def do_commit(self, ctx, signer, a, _):
        jid = a["job"]
        job = self.job(jid)
        ph = job["phase"]
        if ph["kind"] != "open" or signer != job["provider"] or ctx["time_ms"] > ph["deadline_ms"]:
            raise Refused("not an open job of this provider in time")
        if a["step_count"] != job["step_count"] or a["tokens"] != job["max_tokens"]:
            raise Refused("wrong step or token count")
        _, width = job_shape(job["model"], job["input"], job["max_tokens"])
        act = a["final_activation"]
        if len(act) != width or act[-32:] != a["output_hash"]:
            raise Refused("final activation")
        last = job["step_count"] - 1
        leaf = leaf_hash(last, act)
        if not merkle_verify(a["trace_root"], job["step_count"], last, leaf, a["final_proof"]):
            raise Refused("final proof")
        result = {"output_hash": a["output_hash"], "trace_root": a["trace_root"], "final_leaf": leaf,
                  "tokens": a["tokens"], "committed_at": ctx["height"],
                  "committed_at_ms": ctx["time_ms"],
                  "seed": H("attest/spot-check/v1", ctx["hash"], jid)}
        job["phase"] = {"kind": "committed", "result": result,
                        "check": self.draw_check(ctx, job, result)}
        self.put_job(jid, job)

    def draw_check(self, ctx, job, result):
        end = ctx["time_ms"] + self.p["verdict_window_ms"]
        ps = self.stakes.get(job["provider"])
        probation = ps is not None and ps["probation_left"] > 0
        p = self.p["check_probability_ppm"]
        top = int.from_bytes(result["seed"][:16], "big")
        selected = probation or job["check"] == 1 or p >= PPM or top < p * (U128 // PPM)
        unchecked = {"kind": "unchecked", "settle_at_ms": end}
        if not selected:
            return unchecked
        checker = self.pick_checker(result["seed"], 0, job, [])
        if checker is None:
            return unchecked
        if probation:
            self.put_stake(job["provider"], dict(ps, probation_left=ps["probation_left"] - 1))
        return {"kind": "pending", "checker": checker, "deadline_ms": end, "redraws": 0, "failed": []}

    def pick_checker(self, seed, k, job, failed):
        cands = [(w, s["bonded"]) for w, s in sorted(self.stakes.items())
                 if self.can_serve(s, job["model"]) and w not in (job["provider"], job["client"])
                 and w not in failed]
        total = sum(x for _, x in cands)
        if total == 0:
            return None
        t = int.from_bytes(H("attest/spot-check/v1", seed, k.to_bytes(4, "little"))[:16], "big") % total
        for w, x in cands:
            if t < x:
                return w
            t -= x
        return None

    def do_verdict(self, ctx, signer, a, _):
        jid = a["job"]
        job = self.job(jid)
        ph = job["phase"]
        if ph["kind"] != "committed":
            raise Refused("not committed")
        ch = ph["check"]
        end = ch["settle_at_ms"] if ch["kind"] == "unchecked" else ch["deadline_ms"]
        assigned = ch["kind"] == "pending" and ch["checker"] == signer
        if ctx["time_ms"] > end:
            raise Refused("window over")
        if not assigned:
            if a["agree"]:
                raise Refused("not the checker")
            if signer == job["provider"]:
                raise Refused("the provider may not challenge")
            if signer != job["client"]:
                s = self.stakes.get(signer)
                if s is None or not self.eligible(s):
                    raise Refused("may not challenge")
        if a["agree"]:
            self.record(signer)["checks"] += 1
            job["review"] = ("agreed", signer)
            self.put_job(jid, job)
            self.settle(jid, signer)
            return
        res = ph["result"]
        last = job["step_count"] - 1
        if (a["trace_root"] == res["trace_root"]
                or not merkle_verify(a["trace_root"], job["step_count"], last, a["final_leaf"], a["final_proof"])
                or a["final_leaf"] == res["final_leaf"]):
            raise Refused("bad disagreement")
        bond = 0 if assigned else self.p["challenge_bond"]
        if assigned:
            self.record(signer)["checks"] += 1
        if bond:
            self.debit(signer, bond)
        d = {"challenger": signer, "bond": bond, "challenger_root": a["trace_root"],
             "rounds": rounds_for(job["step_count"]), "round": 0, "lo": None, "agreed_leaf": None,
             "hi": (res["final_leaf"], a["final_leaf"]), "provider_leaf": None,
             "challenger_leaf": None, "deadline_ms": ctx["time_ms"] + self.p["dispute_round_ms"]}
        job["review"] = ("disputed", signer, assigned)
        job["phase"] = {"kind": "disputed", "result": res, "dispute": d}
        self.put_job(jid, job)
        self.try_resolve(jid)

    # ---- disputes
    def round_index(self, d, steps):
        base = 0 if d["lo"] is None else d["lo"] + 1
        if d["round"] < d["rounds"]:
            return min(base + (1 << (d["rounds"] - 1 - d["round"])) - 1, steps - 1)
        return base

    def referee(self, jid, previous):
        job = self.jobs[jid]
        d = job["phase"]["dispute"]
        hi = self.round_index(d, job["step_count"])
        act = step(job["model"], job["input"], job["max_tokens"], hi, previous)
        return "provider" if d["hi"][0] == leaf_hash(hi, act) else "challenger"

    def try_resolve(self, jid):
        job = self.jobs[jid]
        d = job["phase"]["dispute"]
        if d["round"] < d["rounds"] or d["lo"] is not None:
            return
        _, width = job_shape(job["model"], job["input"], job["max_tokens"])
        self.finish(jid, self.referee(jid, bytes(width)))

    def do_dispute(self, ctx, signer, a, _):
        jid = a["job"]
        job = self.job(jid)
        ph = job["phase"]
        if ph["kind"] != "disputed":
            raise Refused("not disputed")
        d = dict(ph["dispute"])
        side = "provider" if signer == job["provider"] else "challenger" if signer == d["challenger"] else None
        if side is None or ctx["time_ms"] > d["deadline_ms"] or a["round"] != d["round"]:
            raise Refused("not a party, late, or the wrong round")
        if d["round"] < d["rounds"]:
            if a["step"] != "open":
                raise Refused("a witness during bisection")
            mid = (0 if d["lo"] is None else d["lo"] + 1) + (1 << (d["rounds"] - 1 - d["round"])) - 1
            index = self.round_index(d, job["step_count"])
            root = ph["result"]["trace_root"] if side == "provider" else d["challenger_root"]
            if a["index"] != index or not merkle_verify(root, job["step_count"], index, a["leaf"], a["proof"]):
                raise Refused("bad opening")
            slot = side + "_leaf"
            if d[slot] is not None:
                raise Refused("moved twice")
            d[slot] = a["leaf"]
            done = d["provider_leaf"] is not None and d["challenger_leaf"] is not None
            if done:
                if d["provider_leaf"] == d["challenger_leaf"]:
                    d["lo"], d["agreed_leaf"] = mid, d["provider_leaf"]
                else:
                    d["hi"] = (d["provider_leaf"], d["challenger_leaf"])
                d["round"] += 1
                d["provider_leaf"] = d["challenger_leaf"] = None
                d["deadline_ms"] = ctx["time_ms"] + self.p["dispute_round_ms"]
            job["phase"] = dict(ph, dispute=d)
            self.put_job(jid, job)
            if done:
                self.try_resolve(jid)
            return
        if a["step"] != "witness" or side != "challenger" or d["lo"] is None:
            raise Refused("unexpected move")
        _, width = job_shape(job["model"], job["input"], job["max_tokens"])
        act = a["activation"]
        if len(act) != width or leaf_hash(d["lo"], act) != d["agreed_leaf"]:
            raise Refused("bad witness")
        self.put_job(jid, job)
        self.finish(jid, self.referee(jid, act))

    def finish(self, jid, winner):
        job = self.jobs[jid]
        d = job["phase"]["dispute"]
        prov, chal, bond = job["provider"], d["challenger"], d["bond"]
        w, l = (prov, chal) if winner == "provider" else (chal, prov)
        self.record(w)["disputes_won"] += 1
        self.record(l)["disputes_lost"] += 1
        reason = ("dispute_lost", jid)
        if winner == "provider" and bond > 0:
            share = ppm_ceil(bond, self.p["winner_share_ppm"])
            self.credit(prov, share)
            self.earn(prov, share)
            self.credit_treasury(bond - share)
            self.settle(jid, None)
        elif winner == "provider":
            self.record_fault(jid, l, reason)
            self.slash_fraction(l, w)
            self.settle(jid, None)
        else:
            self.record_fault(jid, l, reason)
            self.slash_fraction(l, w)
            if bond > 0:
                self.credit(w, bond)
            s = self.stakes.get(l)
            if s is not None:
                s = dict(s, disputes_lost=s["disputes_lost"] + 1)
                if s["disputes_lost"] >= 2:
                    s["status"] = BANNED
                else:
                    s["probation_left"] = self.p["probation_jobs"]
                self.put_stake(l, s)
            self.refund(jid)

    # ---- settlement
    def settle(self, jid, checker):
        job = dict(self.jobs[jid])
        ph = job["phase"]
        tokens = ph["result"]["tokens"] if ph["kind"] in ("committed", "disputed") else job["max_tokens"]
        payment = job["price"] * tokens
        fee = ppm_floor(payment, self.p["protocol_share_ppm"])
        checker_paid = self.p["checker_fee"] if checker is not None else 0
        refund = job["escrow"] - payment - checker_paid
        self.credit(job["provider"], payment - fee)
        self.earn(job["provider"], payment - fee)
        self.credit_treasury(fee)
        if checker is not None:
            self.credit(checker, checker_paid)
            self.earn(checker, checker_paid)
        self.credit(job["client"], refund)
        job["escrow"], job["phase"] = 0, {"kind": "settled"}
        self.put_job(jid, job)

    def refund(self, jid):
        job = dict(self.jobs[jid])
        self.credit(job["client"], job["escrow"])
        job["escrow"], job["phase"] = 0, {"kind": "refunded"}
        self.put_job(jid, job)

    def do_equivocation(self, ctx, reporter, a, _):
        f, s = a["first"], a["second"]
        if not (f["signer"] == s["signer"] and f["height"] == s["height"] and f["round"] == s["round"]
                and f["kind"] == s["kind"] and f["block"] != s["block"]):
            raise Refused("not conflicting")
        who = f["signer"]
        st = self.stakes.get(who)
        if st is None or st["bonded"] + sum(u[0] for u in st["unbonding"]) == 0:
            raise Refused("not a validator")
        if f["height"] > ctx["height"]:
            raise Refused("evidence from the future")
        if f["height"] + self.p["evidence_blocks"] <= ctx["height"]:
            raise Refused("evidence too old")
        key = (f["height"], who, f["round"], f["kind"])
        if key in self.evidence:
            raise Refused("duplicate evidence")
        self.set_member("evidence", key, True)
        self.slash_fraction(who, reporter)
        st = self.stakes[who]
        if st["status"] == ACTIVE:
            self.put_stake(who, dict(st, status=JAILED))

    # ---- end of block
    def end_block(self, ctx):
        self.at = ctx["height"]
        for t, jid in sorted(x for x in self.timers if x[0] <= ctx["time_ms"]):
            self.set_member("timers", (t, jid), False)
            job = self.jobs.get(jid)
            if job is None or (deadline_of(job["phase"]) or 1 << 64) > ctx["time_ms"]:
                continue
            ph = job["phase"]
            if ph["kind"] == "open":
                self.record_fault(jid, job["provider"], ("missed_commit", jid))
                self.penalize(job["provider"])
                self.refund(jid)
            elif ph["kind"] == "committed" and ph["check"]["kind"] == "unchecked":
                self.settle(jid, None)
            elif ph["kind"] == "committed":
                self.missed_verdict(ctx, jid)
            elif ph["kind"] == "disputed":
                d = ph["dispute"]
                missing = d["round"] < d["rounds"] and d["provider_leaf"] is None
                self.finish(jid, "challenger" if missing else "provider")
        for t, who in sorted(x for x in self.releases if x[0] <= ctx["time_ms"]):
            self.set_member("releases", (t, who), False)
            s = self.stakes.get(who)
            if s is None:
                continue
            released = sum(a for a, at in s["unbonding"] if at <= ctx["time_ms"])
            self.put_stake(who, dict(s, unbonding=[u for u in s["unbonding"] if u[1] > ctx["time_ms"]]))
            if released:
                self.credit(who, released)
        for h, jid in sorted(x for x in self.retire if x[0] <= ctx["height"]):
            self.set_member("retire", (h, jid), False)
            j = self.jobs.get(jid)
            if j is not None and j["phase"]["kind"] in ("settled", "refunded"):
                del self.jobs[jid]
                self.dirty.add(("job", jid))
        horizon = ctx["height"] - self.p["evidence_blocks"]
        if horizon >= 0:
            for key in sorted(e for e in self.evidence if e[0] <= horizon):
                self.set_member("evidence", key, False)

    def missed_verdict(self, ctx, jid):
        job = self.jobs[jid]
        ch = job["phase"]["check"]
        checker = ch["checker"]
        self.record_fault(jid, checker, ("missed_verdict", jid))
        self.penalize(checker)
        failed = ch["failed"] + [checker]
        nxt = ch["redraws"] + 1
        new = None
        if ch["redraws"] < self.p["max_checker_redraws"]:
            new = self.pick_checker(job["phase"]["result"]["seed"], nxt, job, failed)
        if new is None:
            self.settle(jid, None)
            return
        job = dict(self.jobs[jid])
        job["phase"] = {"kind": "committed", "result": job["phase"]["result"],
                        "check": {"kind": "pending", "checker": new,
                                  "deadline_ms": ctx["time_ms"] + self.p["verdict_window_ms"],
                                  "redraws": nxt, "failed": failed}}
        self.put_job(jid, job)


# ---------------------------------------------------------------- the replay

def main(path):
    start = time.monotonic()
    with open(path) as f:
        first = json.loads(f.readline())
        if first.get("type") != "genesis" or first.get("schema") != "attest.export/1":
            raise Fail("the first line is not an attest.export/1 genesis line")
        state = State(first["genesis"])
        if state.genesis_bytes != bytes.fromhex(first["hashed_bytes"]):
            raise Fail("the genesis encoding (section 10b) differs from the hashed bytes")
        root = state.root()
        block, matched, txs = None, 0, 0

        def close(claimed, height):
            nonlocal root, matched
            if block is not None:
                state.end_block(block)
                root = state.root()
            if root.hex() != claimed:
                raise Fail(f"at height {height}: state root {root.hex()}, the chain says {claimed}")
            matched += 1

        for line in f:
            rec = json.loads(line)
            t = rec["type"]
            if t == "block":
                h = rec["header"]
                close(h["state_root"], rec["height"])
                block = {"height": rec["height"], "time_ms": h["time_ms"],
                         "hash": bytes.fromhex(rec["hash"]), "proposer": bytes.fromhex(h["proposer"])}
            elif t == "tx":
                tx = decode_tx(bytes.fromhex(rec["body_bytes"]))
                try:
                    state.apply(block, bytes.fromhex(rec["signer"]), tx, bytes.fromhex(rec["hash"]))
                except Refused as e:
                    raise Fail(f"at height {rec['height']}: transaction {rec['index']} "
                               f"({tx['action']['kind']}) refused: {e}")
                txs += 1
            elif t == "end":
                close(rec["state_root"], f"{rec['last_height']} (the end line)")
                secs = time.monotonic() - start
                print(f"OK chain {state.chain_id}: {rec['blocks']} blocks, {txs} transactions "
                      f"replayed, {matched} state roots matched (genesis and after every block), "
                      f"{rec['blocks'] / secs:.0f} blocks/s ({secs:.1f} s)")
                return
        raise Fail("no end line: the export is truncated")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Fail as e:
        print(f"FAIL {e}")
        sys.exit(1)
