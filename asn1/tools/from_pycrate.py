#!/usr/bin/env python3
"""Emit the E2AP ASN.1 modules from pycrate's compiled E2AP object tree.

pycrate 0.8.1 ships E2AP (v03.01 procedures plus RIC Query and RIC Subscription
Audit) as a compiled Python module, `pycrate_asn1dir.E2AP`. It keeps no source
text, so this script rebuilds ASN.1 notation from the objects themselves:

* types (INTEGER, ENUMERATED, BIT/OCTET STRING, PrintableString, SEQUENCE,
  SEQUENCE OF, CHOICE) with their constraints and extension markers;
* the Constants module (procedure codes, IE ids, bounds);
* information object classes, sets and objects (E2AP-PROTOCOL-IES, the
  elementary procedures). pycrate does not keep `WITH SYNTAX` clauses, so a
  syntax is derived from the field names (`procedureCode` -> `PROCEDURE CODE`,
  a type field `&Value` -> `TYPE`);
* parameterised containers (ProtocolIE-Container, -SingleContainer, -Field):
  pycrate keeps only their instances, so each body is rebuilt from one instance
  with its object set replaced by the formal parameter. Parameterised types that
  E2AP never instantiates (the Pair and List containers) have no body to rebuild
  and are left out.

Numeric bounds are written as numbers (pycrate has resolved them); IE ids and
procedure codes in object sets are written as the `id-*` constants.

Usage: python3 asn1/tools/from_pycrate.py [OUTDIR]   (default: asn1/)
"""

import os
import re
import sys

from pycrate_asn1dir import E2AP  # noqa: F401  (registers the modules in GLOBAL)
from pycrate_asn1rt.glob import GLOBAL
from pycrate_asn1rt.refobj import ASN1RefType, ASN1RefClassField

MODULES = [
    "E2AP-CommonDataTypes",
    "E2AP-Constants",
    "E2AP-Containers",
    "E2AP-IEs",
    "E2AP-PDU-Contents",
    "E2AP-PDU-Descriptions",
]

PARAM_NAME = "IEsSetParam"


def mod(name):
    return GLOBAL.MOD[name]


def tname(o):
    return type(o).__name__


# ---------------------------------------------------------------- constants


def constant_names():
    """Reverse maps value -> constant name, per constant type."""
    rev = {}
    m = mod("E2AP-Constants")
    cls = E2AP.E2AP_Constants
    for name in cls._obj_:
        o = m[name]
        if o._typeref is None:
            continue  # plain INTEGER bounds: never looked up by value
        key = o._typeref.called[1]
        rev.setdefault(key, {})
        if o._val in rev[key]:
            raise SystemExit(f"ambiguous constant value {o._val} for {key}")
        rev[key][o._val] = name
    return rev


CONSTS = constant_names()


# ---------------------------------------------------------------- object sets


def named_sets():
    """All named object sets, with their position in their module."""
    out = []
    for mname in MODULES:
        cls = getattr(E2AP, mname.replace("-", "_"))
        for idx, name in enumerate(cls._obj_):
            if name in cls._set_:
                out.append((mname, idx, name, mod(mname)[name]))
    return out


def obj_sig(d):
    """Signature of one information object (a dict of field -> value)."""
    sig = []
    for k, v in d.items():
        if hasattr(v, "_typeref") and hasattr(v, "_mode"):
            ref = v._typeref.called if v._typeref is not None else tname(v)
            sig.append((k, str(ref)))
        else:
            sig.append((k, repr(v)))
    return tuple(sig)


def set_sig(s):
    val = s._val
    return tuple(obj_sig(d) for d in (val._rv or [])) + tuple(
        obj_sig(d) for d in (val._ev or [])
    )


NAMED_SETS = named_sets()


def find_set_name(tab, owner_mod, owner_idx):
    sig = set_sig(tab)
    cands = [(m, i, n) for (m, i, n, s) in NAMED_SETS if set_sig(s) == sig]
    if not cands:
        raise SystemExit(f"no named object set matches table {tab._name}")
    if len(cands) == 1:
        return cands[0][0], cands[0][2]
    # several sets with the same content: take the first one defined after
    # the type that uses it (sets follow their message in the source order)
    after = [c for c in cands if c[0] == owner_mod and c[1] > owner_idx]
    pick = min(after, key=lambda c: c[1]) if after else cands[0]
    return pick[0], pick[2]


# ---------------------------------------------------------------- emitter


class Emitter:
    def __init__(self, mname):
        self.mname = mname
        self.imports = {}  # module -> set of names
        self.owner_idx = 0
        self.param_mode = False

    def ref(self, called):
        m, n = called
        if m != self.mname:
            self.imports.setdefault(m, set()).add(n)
        return n

    # constraints ------------------------------------------------------

    @staticmethod
    def fmt_set(s):
        def item(x):
            if isinstance(x, int):
                return str(x)
            lb = "MIN" if x.lb is None else str(x.lb)
            ub = "MAX" if x.ub is None else str(x.ub)
            return f"{lb}..{ub}"

        root = " | ".join(item(x) for x in list(s._rv) + list(s._rr))
        if s._ev is None:
            return root
        ext = " | ".join(item(x) for x in list(s._ev) + list(s._er))
        return f"{root}, ..." + (f", {ext}" if ext else "")

    @staticmethod
    def same_set(a, b):
        if a is None or b is None:
            return a is b
        return str(a) == str(b)

    def constraint(self, o, base):
        """Constraint suffix of `o`, omitting what `base` already carries."""
        out = ""
        cv = getattr(o, "_const_val", None)
        if cv is not None and not self.same_set(cv, getattr(base, "_const_val", None)):
            out += f" ({self.fmt_set(cv)})"
        cs = getattr(o, "_const_sz", None)
        if cs is not None and not self.same_set(cs, getattr(base, "_const_sz", None)):
            out += f" (SIZE ({self.fmt_set(cs)}))"
        return out

    # types --------------------------------------------------------------

    def texpr(self, o, indent=1, top=False):
        tr = o._typeref
        if tr is not None and not top:
            return self.ref_expr(o, indent)
        t = tname(o)
        if t == "INT":
            return "INTEGER" + self.constraint(o, None)
        if t == "ENUM":
            return self.enum_expr(o)
        if t == "BIT_STR":
            if o._cont:
                raise SystemExit("named bits are not supported")
            return "BIT STRING" + self.constraint(o, None)
        if t == "OCT_STR":
            return "OCTET STRING" + self.constraint(o, None)
        if t == "STR_PRINT":
            return "PrintableString" + self.constraint(o, None)
        if t == "NULL":
            return "NULL"
        if t == "BOOL":
            return "BOOLEAN"
        if t in ("SEQ", "CHOICE"):
            return self.struct_expr(o, indent)
        if t == "SEQ_OF":
            size = ""
            if o._const_sz is not None:
                size = f" (SIZE ({self.fmt_set(o._const_sz)}))"
            return f"SEQUENCE{size} OF " + self.texpr(o._cont, indent)
        raise SystemExit(f"unsupported pycrate type {t} ({o._name})")

    def ref_expr(self, o, indent):
        tr = o._typeref
        if isinstance(tr, ASN1RefType):
            target = mod(tr.called[0])[tr.called[1]]
            name = self.ref(tr.called)
            if getattr(target, "_param", False):
                return f"{name} {{{{{self.param_actual(o)}}}}}"
            return name + self.constraint(o, target)
        if isinstance(tr, ASN1RefClassField):
            cls = self.ref(tr.called)
            expr = f"{cls}.&{tr.ced_path[0]}"
            tab = getattr(o, "_const_tab", None)
            if tab is not None:
                sname = self.set_name(tab)
                at = getattr(o, "_const_tab_at", None)
                if at:
                    expr += f" ({{{sname}}}{{@{at[-1]}}})"
                else:
                    expr += f" ({{{sname}}})"
            return expr
        raise SystemExit(f"unsupported reference {tr!r}")

    def set_name(self, tab):
        if self.param_mode:
            return PARAM_NAME
        m, n = find_set_name(tab, self.mname, self.owner_idx)
        return self.ref((m, n))

    def param_actual(self, o):
        """The object set an instance of a parameterised container uses."""
        tab = find_id_tab(o)
        return self.set_name(tab)

    def enum_expr(self, o):
        items = list(o._cont.items())
        ext = o._ext
        root = [(n, v) for (n, v) in items if ext is None or n not in ext]
        adds = [(n, v) for (n, v) in items if ext is not None and n in ext]
        plain = [v for (_, v) in root] == list(range(len(root))) and [
            v for (_, v) in adds
        ] == list(range(len(root), len(items)))
        fmt = (lambda n, v: n) if plain else (lambda n, v: f"{n}({v})")
        parts = [fmt(n, v) for (n, v) in root]
        if ext is not None:
            parts.append("...")
            parts += [fmt(n, v) for (n, v) in adds]
        return "ENUMERATED { " + ", ".join(parts) + " }"

    def struct_expr(self, o, indent):
        kw = "SEQUENCE" if tname(o) == "SEQ" else "CHOICE"
        pad = "\t" * indent
        ext = o._ext
        lines = []
        names = list(o._cont.keys())
        if getattr(o, "_ext_group", None):
            raise SystemExit(f"extension groups are not supported ({o._name})")
        root = [n for n in names if ext is None or n not in ext]
        adds = [n for n in names if ext is not None and n in ext]

        def field(n):
            c = o._cont[n]
            s = f"{pad}{n}\t{self.texpr(c, indent + 1)}"
            if getattr(c, "_opt", False):
                s += " OPTIONAL"
            d = getattr(c, "_def", None)
            if d is not None:
                s += f" DEFAULT {self.value(c, d)}"
            return s

        lines = [field(n) for n in root]
        if ext is not None:
            lines.append(f"{pad}...")
            lines += [field(n) for n in adds]
        body = ",\n".join(lines)
        if not lines:
            return f"{kw} {{ }}"
        return f"{kw} {{\n{body}\n" + "\t" * (indent - 1) + "}"

    def value(self, o, v):
        t = tname(o)
        if t == "ENUM":
            return v
        if t == "INT":
            return str(v)
        raise SystemExit(f"unsupported default value for {t}")

    # classes, sets, objects --------------------------------------------------

    @staticmethod
    def syntax_words(field):
        words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", field)
        return " ".join("TYPE" if w == "Value" else w.upper() for w in words)

    def class_def(self, o):
        fields = []
        syntax = []
        for n, f in o._cont.items():
            if f._mode == "TYPE":
                s = f"\t&{n}"
            else:
                s = f"\t&{n}\t{self.texpr(f, 2)}"
                if getattr(f, "_uniq", False):
                    s += " UNIQUE"
            optional = getattr(f, "_opt", False)
            d = getattr(f, "_def", None)
            if optional:
                s += " OPTIONAL"
            if d is not None:
                s += f" DEFAULT {self.value(f, d)}"
            fields.append(s)
            item = f"{self.syntax_words(n)}\t&{n}"
            syntax.append(f"\t[{item}]" if (optional or d is not None) else f"\t{item}")
        return (
            "CLASS {\n" + ",\n".join(fields) + "\n}\nWITH SYNTAX {\n" + "\n".join(syntax) + "\n}"
        )

    def object_body(self, cls, d):
        parts = []
        for n, f in cls._cont.items():
            if n not in d:
                continue
            v = d[n]
            if f._mode == "TYPE":
                val = self.texpr(v, 2)
            elif n == "id":
                val = self.ref(("E2AP-Constants", CONSTS["ProtocolIE-ID"][v]))
            elif n == "procedureCode":
                val = self.ref(("E2AP-Constants", CONSTS["ProcedureCode"][v]))
            else:
                val = self.value(f, v)
            parts.append(f"{self.syntax_words(n)}\t{val}")
        return "{ " + "\t".join(parts) + " }"

    def class_of(self, o):
        return mod(o._typeref.called[0])[o._typeref.called[1]]

    def set_def(self, name, o):
        cls = self.class_of(o)
        clsname = self.ref(o._typeref.called)
        val = o._val
        rv, ev = list(val._rv), val._ev
        # a union of other named sets of the same class?
        union = self.as_union(name, o)
        if union is not None:
            root = union
        else:
            root = [self.object_ref_or_body(cls, d) for d in rv]
        items = " |\n\t".join(root)
        body = "\t" + items if root else ""
        if ev is not None:
            body += (",\n" if root else "\t") + "\t..."
            if ev:
                body += ",\n\t" + " |\n\t".join(self.object_ref_or_body(cls, d) for d in ev)
        return f"{name} {clsname} ::= {{\n{body}\n}}"

    def object_ref_or_body(self, cls, d):
        if "procedureCode" in d:
            for name in E2AP.E2AP_PDU_Descriptions._val_:
                obj = mod("E2AP-PDU-Descriptions")[name]
                if obj._val.get("procedureCode") == d["procedureCode"]:
                    if obj_sig(obj._val) != obj_sig(d):
                        raise SystemExit(f"object {name} differs from its use")
                    return self.ref(("E2AP-PDU-Descriptions", name))
        return self.object_body(cls, d)

    def as_union(self, name, o):
        codes = [d.get("procedureCode") for d in o._val._rv]
        if None in codes:
            return None
        others = [
            (n, [d["procedureCode"] for d in s._val._rv])
            for (m, i, n, s) in NAMED_SETS
            if n != name and s._typeref.called == o._typeref.called
        ]
        for a, ca in others:
            for b, cb in others:
                if a != b and ca + cb == codes:
                    return [self.ref((self.mname, a)), self.ref((self.mname, b))]
        return None

    # definitions ------------------------------------------------------------

    def definition(self, name, idx):
        self.owner_idx = idx
        o = mod(self.mname)[name]
        cls = getattr(E2AP, self.mname.replace("-", "_"))
        t = tname(o)
        if name in cls._param_:
            return self.param_def(name, o)
        if t == "CLASS":
            if o._mode == "TYPE":
                return f"{name} ::= " + self.class_def(o)
            if o._mode == "SET":
                return self.set_def(name, o)
            if o._mode == "VALUE":
                cname = self.ref(o._typeref.called)
                return f"{name} {cname} ::= " + self.object_body(self.class_of(o), o._val)
        if o._mode == "VALUE":
            ty = self.ref(o._typeref.called) if o._typeref is not None else "INTEGER"
            return f"{name} {ty} ::= {self.value(o, o._val)}"
        if o._typeref is not None and isinstance(o._typeref, ASN1RefType):
            target = mod(o._typeref.called[0])[o._typeref.called[1]]
            return f"{name} ::= {self.ref(o._typeref.called)}{self.constraint(o, target)}"
        return f"{name} ::= {self.texpr(o, 1, top=True)}"

    def param_def(self, name, o):
        inst = PARAM_INSTANCES.get((self.mname, name))
        if inst is None:
            return None
        govern = self.ref(find_id_tab(inst)._typeref.called)
        self.param_mode = True
        try:
            tr = inst._typeref
            target = mod(tr.called[0])[tr.called[1]]
            if target is o and o._typeref is not None:
                # a parameterised alias, e.g. SingleContainer ::= Field {{..}}
                body = f"{self.ref(o._typeref.called)} {{{{{PARAM_NAME}}}}}"
            else:
                body = self.texpr(inst, 1, top=True)
        finally:
            self.param_mode = False
        return f"{name} {{{govern} : {PARAM_NAME}}} ::= {body}"


def find_id_tab(o):
    """The table constraint of the `id` field in a ProtocolIE instance."""
    t = tname(o)
    if t == "SEQ_OF":
        return find_id_tab(o._cont)
    if t == "SEQ" and "id" in o._cont:
        tab = getattr(o._cont["id"], "_const_tab", None)
        if tab is not None:
            return tab
    raise SystemExit(f"no id table under {o._name}")


def iter_all():
    """Every (module, object) reachable in the compiled modules."""
    for mname in MODULES:
        cls = getattr(E2AP, mname.replace("-", "_"))
        for name in cls._obj_:
            o = mod(mname)[name]
            yield from walk(o)


def walk(o):
    yield o
    t = tname(o)
    c = getattr(o, "_cont", None)
    if t in ("SEQ", "CHOICE") and c:
        for v in c.values():
            yield from walk(v)
    elif t == "SEQ_OF" and c is not None:
        yield from walk(c)


def param_instances():
    """One instance of each parameterised type that E2AP instantiates."""
    out = {}
    for o in iter_all():
        tr = getattr(o, "_typeref", None)
        if getattr(o, "_param", False):
            continue  # the formal definitions themselves (no body)
        if isinstance(tr, ASN1RefType):
            target = mod(tr.called[0])[tr.called[1]]
            if getattr(target, "_param", False) and tr.called not in out:
                out[tr.called] = o
    return out


PARAM_INSTANCES = param_instances()


def emit_module(mname):
    cls = getattr(E2AP, mname.replace("-", "_"))
    em = Emitter(mname)
    defs = []
    for idx, name in enumerate(cls._obj_):
        d = em.definition(name, idx)
        if d is not None:
            defs.append(d)
    oid = " ".join(str(x) for x in cls._oid_)
    out = [
        "-- E2AP ASN.1 for e2lb, rebuilt by asn1/tools/from_pycrate.py from",
        "-- pycrate_asn1dir.E2AP (pycrate 0.8.1). Do not edit: regenerate.",
        "",
        f"{mname} {{ {oid} }}",
        "",
        "DEFINITIONS AUTOMATIC TAGS ::=",
        "",
        "BEGIN",
        "",
    ]
    if em.imports:
        out.append("IMPORTS")
        blocks = []
        for m in MODULES:
            if m in em.imports:
                names = sorted(em.imports[m], key=lambda n: order_of(m, n))
                blocks.append("\t" + ",\n\t".join(names) + f"\nFROM {m}")
        out.append("\n".join(blocks) + ";")
        out.append("")
    for d in defs:
        out.append(d)
        out.append("")
    out.append("END")
    out.append("")
    return "\n".join(out)


def order_of(mname, name):
    cls = getattr(E2AP, mname.replace("-", "_"))
    return cls._obj_.index(name)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(here)
    os.makedirs(outdir, exist_ok=True)
    for mname in MODULES:
        path = os.path.join(outdir, f"{mname}.asn")
        with open(path, "w") as f:
            f.write(emit_module(mname))
        print(path)


if __name__ == "__main__":
    main()
