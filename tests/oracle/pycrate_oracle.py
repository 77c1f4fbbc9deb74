#!/usr/bin/env python3
"""pycrate oracle for e2lb's E2AP codec tests.

Subcommands:

  corpus --seed N --per-type K [--small] [--vectors FILE.tsv]... OUT.jsonl
      Generate a deterministic corpus of E2AP PDUs with pycrate 0.8.1: every
      procedure of E2AP-ELEMENTARY-PROCEDURES and every message type it has
      (initiating, successful, unsuccessful), K PDUs each, with random IE
      values drawn by walking pycrate's type tree (INTEGER within constraints,
      BIT/OCTET STRING sizes, CHOICE alternatives, optional fields, small
      SEQUENCE OF counts, open types through the IE object sets), plus a few
      PDUs of 16 KiB and more (fragmented APER lengths). With --vectors, the
      FlexRIC captures (label<TAB>bytes<TAB>hex) are appended. Each line holds
      the hex PDU and pycrate's own decode of the routing keys. --small keeps
      only one large PDU (for the checked-in corpus).

  jer
      Read hex PDUs (one per line) on stdin, decode each with pycrate and print
      one JSON line per PDU: {"jer": <pycrate's JER>} or {"error": "..."}.

pycrate's plain from_aper() misreads fragmented lengths, so every decode here
uses from_aper_ws().
"""

import json
import random
import sys

from pycrate_asn1dir import E2AP
from pycrate_asn1rt.glob import GLOBAL

PDU = E2AP.E2AP_PDU_Descriptions.E2AP_PDU
KINDS = [
    ("InitiatingMessage", "initiatingMessage"),
    ("SuccessfulOutcome", "successfulOutcome"),
    ("UnsuccessfulOutcome", "unsuccessfulOutcome"),
]
PRINTABLE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"

# Probability of using an extension addition (SEQUENCE extension field,
# CHOICE extension alternative, ENUMERATED extension value). Such PDUs are
# flagged "uses_ext": e2lb's generated codec is not required to round-trip them.
P_EXT = 0.06


def tname(o):
    return type(o).__name__


def proc_names():
    out = {}
    consts = GLOBAL.MOD["E2AP-Constants"]
    for name in E2AP.E2AP_Constants._obj_:
        o = consts[name]
        if o._typeref is not None and o._typeref.called[1] == "ProcedureCode":
            out[o._val] = name[len("id-"):]
    return out


class Gen:
    def __init__(self, rng):
        self.rng = rng
        self.used_ext = False
        self.short_var_string = False

    def note_short(self, o, bits):
        """asn1-codecs 0.7.2 does not octet-align the content of a variable-size
        BIT STRING / character string of 16 bits or less (X.691 §16.11, §30.5.7
        require it): flag such values so the test can tell this limit apart."""
        cs = getattr(o, "_const_sz", None)
        if cs is not None and cs.lb != cs.ub and 0 < bits <= 16:
            self.short_var_string = True

    # ------------------------------------------------------------ scalars

    def pick_range(self, cset, default_lb=0, default_ub=40):
        if cset is None:
            return self.rng.randint(default_lb, default_ub)
        items = list(cset._rv) + list(cset._rr)
        it = self.rng.choice(items)
        if isinstance(it, int):
            return it
        lb = default_lb if it.lb is None else it.lb
        ub = max(lb, default_ub) if it.ub is None else it.ub
        r = self.rng.random()
        if r < 0.2:
            return lb
        if r < 0.4:
            return ub
        return self.rng.randint(lb, ub)

    def size(self, o, default_ub=24):
        cs = getattr(o, "_const_sz", None)
        n = self.pick_range(cs, 0, default_ub)
        if cs is None and self.rng.random() < 0.05:
            n = self.rng.randint(128, 600)  # 2-octet length determinants
        return n

    def value(self, o):
        t = tname(o)
        if t == "INT":
            return self.pick_range(o._const_val, -1000, 1000)
        if t == "ENUM":
            ext = o._ext or []
            if ext and self.rng.random() < P_EXT:
                self.used_ext = True
                return self.rng.choice(ext)
            return self.rng.choice(o._root)
        if t == "BIT_STR":
            n = self.size(o, 64)
            self.note_short(o, n)
            return (self.rng.getrandbits(n) if n else 0, n)
        if t == "OCT_STR":
            n = self.size(o)
            self.note_short(o, 8 * n)
            return bytes(self.rng.getrandbits(8) for _ in range(n))
        if t == "STR_PRINT":
            n = max(1, self.size(o, 20))
            self.note_short(o, 8 * n)
            return "".join(self.rng.choice(PRINTABLE) for _ in range(n))
        if t == "NULL":
            return 0
        if t == "BOOL":
            return self.rng.random() < 0.5
        if t == "SEQ":
            return self.seq(o)
        if t == "CHOICE":
            ext = o._ext or []
            if ext and self.rng.random() < P_EXT:
                self.used_ext = True
                alt = self.rng.choice(ext)
            else:
                alt = self.rng.choice(o._root)
            return (alt, self.value(o._cont[alt]))
        if t == "SEQ_OF":
            return self.seq_of(o)
        raise ValueError(f"no generator for {t} {o._name}")

    # ------------------------------------------------------------ constructed

    @staticmethod
    def key_field(o):
        """The field that selects the row of a table-constrained SEQUENCE."""
        for name, f in o._cont.items():
            if getattr(f, "_const_tab", None) is not None and f._const_tab_at is None:
                return name
        return None

    @staticmethod
    def rows(tab):
        val = tab._val
        return list(val._rv) + list(val._ev or [])

    def open_value(self, o, row, field):
        """(type name, value) for an open-type field, from a table row."""
        tid = o._cont[field]._const_tab_id
        t = row[tid]
        return (t._typeref.called[1], self.value(t))

    def from_row(self, o, key, row):
        out = {}
        for name, f in o._cont.items():
            tid = getattr(f, "_const_tab_id", None)
            if name == key:
                out[name] = row[tid]
            elif tname(f) == "OPEN":
                out[name] = self.open_value(o, row, name)
            else:
                out[name] = row[tid]
        return out

    def seq(self, o):
        key = self.key_field(o)
        if key is not None:
            row = self.rng.choice(self.rows(o._cont[key]._const_tab))
            return self.from_row(o, key, row)
        out = {}
        ext = o._ext or []
        for name, f in o._cont.items():
            if name in ext:
                if self.rng.random() < P_EXT:
                    self.used_ext = True
                    out[name] = self.value(f)
                continue
            if name in o._root_opt and self.rng.random() < 0.5:
                continue
            out[name] = self.value(f)
        return out

    def seq_of(self, o):
        item = o._cont
        key = self.key_field(item) if tname(item) == "SEQ" else None
        if key is not None and o._const_sz is not None and o._const_sz.ub == 65535:
            # ProtocolIE-Container: each IE of the set at most once, in order
            rows = self.rows(item._cont[key]._const_tab)
            out = []
            for row in rows:
                if row.get("presence") == "mandatory" or self.rng.random() < 0.5:
                    out.append(self.from_row(item, key, row))
            return out
        cs = o._const_sz
        lb = 0 if cs is None else (cs.lb or 0)
        ub = lb + 3 if cs is None or cs.ub is None else min(cs.ub, lb + 2)
        return [self.value(item) for _ in range(self.rng.randint(lb, ub))]


# ---------------------------------------------------------------- pycrate's view


def ie_value(ies, ie_id):
    for ie in ies:
        if ie["id"] == ie_id:
            return ie["value"][1]
    return None


def aper_hex(module, typ, val):
    t = GLOBAL.MOD[module][typ]
    t.set_val(val)
    return t.to_aper().hex()


def keys_of(pdu_bytes):
    """Decode with pycrate and extract what e2lb's peek must report."""
    PDU.from_aper_ws(pdu_bytes)
    kind, msg = PDU.get_val()
    ies = msg["value"][1].get("protocolIEs", [])
    tid = ie_value(ies, 49)
    rid = ie_value(ies, 29)
    ranf = ie_value(ies, 5)
    node = ie_value(ies, 3)
    ric = ie_value(ies, 4)
    return {
        "kind": kind,
        "procedure_code": msg["procedureCode"],
        "criticality": msg["criticality"],
        "ie_ids": [ie["id"] for ie in ies],
        "transaction_id": tid,
        "ric_request_id": None
        if rid is None
        else {"requestor": rid["ricRequestorID"], "instance": rid["ricInstanceID"]},
        "ran_function_id": ranf,
        "global_e2node_id": None
        if node is None
        else aper_hex("E2AP-IEs", "GlobalE2node-ID", node),
        "global_ric_id": None if ric is None else aper_hex("E2AP-IEs", "GlobalRIC-ID", ric),
    }


# ---------------------------------------------------------------- corpus


def set_ie(val, ie_id, new):
    for ie in val[1]["value"][1]["protocolIEs"]:
        if ie["id"] == ie_id:
            ie["value"] = (ie["value"][0], new)
            return True
    return False


def message_types():
    names = proc_names()
    out = []
    for row in E2AP.E2AP_PDU_Descriptions.E2AP_ELEMENTARY_PROCEDURES._val._rv:
        code = row["procedureCode"]
        for field, kind in KINDS:
            if field in row:
                out.append((code, names[code], kind, field, row))
    return out


def generate(rng, code, kind, field, row):
    g = Gen(rng)
    t = row[field]
    body = (t._typeref.called[1], g.value(t))
    val = (kind, {"procedureCode": code, "criticality": row["criticality"], "value": body})
    return g, val


def encode(val):
    PDU.set_val(val)
    return PDU.to_aper()


def corpus(args):
    seed, per_type, out_path, vectors, small = args
    rng = random.Random(seed)
    lines = []

    def emit(label, source, data, g):
        lines.append(
            {
                "label": label,
                "source": source,
                "hex": data.hex(),
                "uses_ext": g is not None and g.used_ext,
                "short_var_string": g is not None and g.short_var_string,
                "pycrate": keys_of(data),
            }
        )

    types = message_types()
    for code, name, kind, field, row in types:
        for i in range(per_type):
            g, val = generate(rng, code, kind, field, row)
            emit(f"{name}/{kind}/{i}", "generated", encode(val), g)

    # PDUs of 16 KiB and more: fragmented APER lengths
    big = [
        (5, "initiatingMessage", "InitiatingMessage", 26, 100_000),
        (5, "initiatingMessage", "InitiatingMessage", 26, 65_536),
        (5, "initiatingMessage", "InitiatingMessage", 26, 20_000),
        (4, "initiatingMessage", "InitiatingMessage", 23, 70_000),
    ]
    if small:
        big = big[2:3]
    rows = {r["procedureCode"]: r for r in E2AP.E2AP_PDU_Descriptions.E2AP_ELEMENTARY_PROCEDURES._val._rv}
    for code, kind, field, ie_id, size in big:
        g, val = generate(rng, code, kind, field, rows[code])
        payload = bytes(rng.getrandbits(8) for _ in range(size))
        if not set_ie(val, ie_id, payload):
            raise SystemExit("big payload IE missing")
        emit(f"{proc_names()[code]}/{kind}/big-{size}", "generated", encode(val), g)

    for path in vectors:
        tag = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        with open(path) as f:
            for n, line in enumerate(f):
                if line.startswith("#") or not line.strip():
                    continue
                label, _, hx = line.rstrip("\n").split("\t")
                emit(f"{tag}/{label}/{n}", "flexric", bytes.fromhex(hx), None)

    with open(out_path, "w") as f:
        for entry in lines:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
    print(f"{len(lines)} PDUs, {len(types)} message types", file=sys.stderr)


def jer():
    for line in sys.stdin:
        hx = line.strip()
        if not hx:
            continue
        try:
            PDU.from_aper_ws(bytes.fromhex(hx))
            print(json.dumps({"jer": json.loads(PDU.to_jer())}))
        except Exception as e:  # report, do not stop: one line per input
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.stdout.flush()


def main():
    argv = sys.argv[1:]
    if not argv:
        raise SystemExit(__doc__)
    if argv[0] == "jer":
        return jer()
    if argv[0] == "corpus":
        seed, per_type, vectors, out, small = 1, 5, [], None, False
        rest = argv[1:]
        while rest:
            a = rest.pop(0)
            if a == "--seed":
                seed = int(rest.pop(0))
            elif a == "--per-type":
                per_type = int(rest.pop(0))
            elif a == "--small":
                small = True
            elif a == "--vectors":
                vectors.append(rest.pop(0))
            else:
                out = a
        if out is None:
            raise SystemExit("corpus: output path missing")
        return corpus((seed, per_type, out, vectors, small))
    raise SystemExit(f"unknown subcommand {argv[0]}")


if __name__ == "__main__":
    main()
