"""cjdns route labels, encoding schemes and label arithmetic (pkt-reference.md §2.2, §2.4).

A route label is a u64 made of per-hop *directors*, the first hop in the least significant bits, terminated
by the self-route director ``0001``. Each node encodes its interface numbers with an *encoding scheme*: a list
of forms ``(bit_count, prefix_len, prefix)``; the low ``prefix_len`` bits of a director select its form.

The default scheme is V358 (cjdns NumberCompress v3x5x8: 4, 7 or 10 bit directors, 257 interfaces).
Everything here is pure integer arithmetic. Bad inputs raise :class:`LabelError` (a ValueError).

Interface numbers <-> directors (what a switch does with its scheme): V358 uses cjdns NumberCompress v3x5x8 (0 and
1 swapped in the 4-bit form, 1 skipped in the wider ones); every other scheme uses cjdns' generic
``EncodingScheme_parseDirector``/``serializeDirector`` (the number itself, XOR 1 in a multi-form scheme), so
interface 1, the router, is director 0 of the first form: the self route ``0001``.

Hubs (a pktlab extension; cjdns refuses the 258th peer, ``SwitchCore_addInterface_OUT_OF_SPACE``): a node with
more interfaces than V358 numbers switches with ``V3_5_B = (3,1,0b1), (5,2,0b10), (B,2,0b00)``, V358's shape with a
wider last form (B = 9..13 bits, up to 8191 interfaces; ``scheme_for_interfaces``). It is an ordinary cjdns
encoding scheme: it is announced like V358, and labels through the hub are built and re-encoded with cjdns'
generic rules. 13 bits is the limit because a one-hop label must fit the 16-bit peerNum of an announcement.
"""
from __future__ import annotations

from dataclasses import dataclass

UINT64_MAX = (1 << 64) - 1
MAX_LABEL_BITS = 59          # usable bits in a label (the rest is reserved for the switch)
CANONICAL = "canonical"      # convert_label target meaning "the smallest form that fits"
MAX_V358_INTERFACE = 256     # V358 numbers 257 interfaces: 0..256


class LabelError(ValueError):
    """A label, label text or encoding scheme is malformed or cannot be built."""


class LabelTooLong(LabelError):
    """The spliced or re-encoded label would not fit in the 59 usable bits."""


def log2(x: int) -> int:
    """Index of the highest set bit, 0 for 0 (cjdns Bits_log2x64)."""
    return x.bit_length() - 1 if x > 0 else 0


def mask(bits: int) -> int:
    return (1 << bits) - 1


def _check_label(label: int, name: str = "label") -> int:
    if not isinstance(label, int) or isinstance(label, bool) or not 0 < label <= UINT64_MAX:
        raise LabelError(f"{name} must be an integer in 1..2^64-1, got {label!r}")
    return label


# -- encoding schemes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Form:
    bit_count: int
    prefix_len: int
    prefix: int

    @property
    def size(self) -> int:
        """Bits taken in a label by a director of this form, prefix included."""
        return self.bit_count + self.prefix_len


@dataclass(frozen=True)
class EncodingScheme:
    """An ordered tuple of forms, checked with the rules of cjdns EncodingScheme_isSane."""
    forms: tuple

    def __post_init__(self):
        forms = tuple(f if isinstance(f, Form) else Form(*f) for f in self.forms)
        object.__setattr__(self, "forms", forms)
        problem = _insanity(forms)
        if problem:
            raise LabelError(f"invalid encoding scheme {forms}: {problem}")

    def __len__(self) -> int:
        return len(self.forms)

    def __getitem__(self, i: int) -> Form:
        return self.forms[i]

    # -- interface numbers <-> directors (how a switch with this scheme numbers its interfaces) ---------------
    @property
    def legacy(self) -> bool:
        """V358 numbers its interfaces the NumberCompress way (EncodingScheme_is358)."""
        return self.forms == V358_FORMS

    @property
    def interfaces(self) -> int:
        """How many interface numbers (0..interfaces-1, 1 being the router) the scheme can direct to."""
        if self.legacy:
            return MAX_V358_INTERFACE + 1
        return 1 << self.forms[-1].bit_count

    def bits_for_label(self, label: int) -> int:
        """Bits (prefix included) of the first director of ``label``."""
        if self.legacy:
            return bits_for_label(label)
        return self.form_of(label).size

    def bits_for_number(self, n: int) -> int:
        """Bits of the smallest director for interface ``n``."""
        if self.legacy:
            return bits_for_number(n)
        for f in self.forms:
            if not n >> f.bit_count:
                return f.size
        raise LabelError(f"interface {n} does not fit the scheme (0..{self.interfaces - 1})")

    def compress(self, n: int, bits: int) -> int:
        """The director (without terminator) for interface ``n`` in the form ``bits`` wide."""
        if self.legacy:
            return compress(n, bits)
        f = self._form_of_size(bits)
        if not 0 <= n < self.interfaces or n >> f.bit_count:
            raise LabelError(f"interface {n} does not fit a {bits}-bit director")
        if n == 1 and len(self.forms) > 1:
            # the router is the self route 0001 in every width, as in V358: a switch writes it as the return hop of
            # what its router sends out a wide interface, and the answer must come back as a self route
            return 1
        return ((n ^ (len(self.forms) > 1)) << f.prefix_len) | f.prefix

    def decompress(self, label: int, bits: int) -> int:
        """The interface number of the first director of ``label`` read ``bits`` wide."""
        if self.legacy:
            return decompress(label, bits)
        f = self._form_of_size(bits)
        return ((label >> f.prefix_len) & mask(f.bit_count)) ^ (len(self.forms) > 1)

    def one_hop_label(self, n: int) -> int:
        """The label from a switch with this scheme to the peer on its interface ``n`` (SwitchCore_addInterface)."""
        bits = self.bits_for_number(n)
        return self.compress(n, bits) | (1 << bits)

    def director_functions(self) -> tuple:
        """(bits_for_label, bits_for_number, compress, decompress) for a switch's hot path: V358's are the plain
        NumberCompress functions."""
        if self.legacy:
            return bits_for_label, bits_for_number, compress, decompress
        return self.bits_for_label, self.bits_for_number, self.compress, self.decompress

    def _form_of_size(self, bits: int) -> Form:
        for f in self.forms:
            if f.size == bits:
                return f
        raise LabelError(f"the scheme has no {bits}-bit form")

    def get_form_num(self, label: int) -> int:
        """Index of the form used by the first director of ``label``, or -1."""
        if len(self.forms) == 1:
            return 0
        for i, f in enumerate(self.forms):
            if ((f.prefix ^ label) & mask(f.prefix_len)) == 0:
                return i
        return -1

    def form_of(self, label: int) -> Form:
        num = self.get_form_num(label)
        if num < 0:
            raise LabelError(f"label {label:#x} matches no form of the scheme")
        return self.forms[num]

    def serialize(self) -> bytes:
        """cjdns EncodingScheme_serialize: 5 bits prefixLen, 5 bits bitCount, prefix; LSB first."""
        out = bytearray()
        block = bits = 0
        for f in self.forms:
            block |= (f.prefix_len & 31) << bits
            bits += 5
            block |= (f.bit_count & 31) << bits
            bits += 5
            block |= (f.prefix & mask(f.prefix_len)) << bits
            bits += f.prefix_len
            while bits > 8:
                out.append(block & 0xFF)
                block >>= 8
                bits -= 8
        if bits > 0:
            out.append(block & 0xFF)
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> "EncodingScheme":
        """Inverse of serialize (cjdns EncodingScheme_deserialize); LabelError if malformed or insane."""
        value = int.from_bytes(bytes(data), "little")
        total = len(data) * 8
        pos = 0
        forms = []
        while True:
            if total - pos < 10:
                break
            prefix_len = (value >> pos) & 31
            bit_count = (value >> (pos + 5)) & 31
            if bit_count == 0:
                break
            if pos + 10 + prefix_len > total:
                raise LabelError("encoding scheme truncated inside a form")
            prefix = (value >> (pos + 10)) & mask(prefix_len)
            forms.append(Form(bit_count, prefix_len, prefix))
            pos += 10 + prefix_len
            if len(forms) > 31:
                raise LabelError("encoding scheme has more than 31 forms")
        # what is left over must be zero padding (cjdns accepts any number of zero bits here)
        if value >> pos:
            raise LabelError("encoding scheme has trailing data")
        return cls(tuple(forms))


def _insanity(forms: tuple) -> str:
    """Why a scheme is not sane (EncodingScheme_isSane), or '' if it is."""
    if not 1 <= len(forms) <= 31:
        return "needs 1..31 forms"
    for f in forms:
        if not all(isinstance(v, int) and v >= 0 for v in (f.bit_count, f.prefix_len, f.prefix)):
            return "form fields must be non-negative integers"
    if len(forms) == 1:
        f = forms[0]
        if f.prefix_len != 0 or f.prefix != 0:
            return "a fixed-width scheme has no prefix"
        if not 1 <= f.bit_count <= 31:
            return "bit count must be 1..31"
        return ""
    for i, f in enumerate(forms):
        if not 1 <= f.prefix_len <= 31:
            return "prefix length must be 1..31"
        if not 1 <= f.bit_count <= 31:
            return "bit count must be 1..31"
        if f.prefix >> f.prefix_len:
            return "prefix longer than prefix length"
        if f.size > MAX_LABEL_BITS:
            return "form larger than 59 bits"
        if i > 0 and f.bit_count <= forms[i - 1].bit_count:
            return "bit counts must be strictly ascending"
        for j, g in enumerate(forms):
            if j != i and (g.prefix & mask(f.prefix_len)) == f.prefix:
                return "forms are not distinguishable by their prefixes"
    return ""


V358_FORMS = (Form(3, 1, 0b1), Form(5, 2, 0b10), Form(8, 2, 0b00))
F4 = EncodingScheme(((4, 0, 0),))
F8 = EncodingScheme(((8, 0, 0),))
V48 = EncodingScheme(((4, 1, 0b1), (8, 1, 0b0)))
V358 = EncodingScheme(V358_FORMS)
V37 = EncodingScheme(((3, 1, 0b1), (7, 1, 0b0)))
SCHEMES = {"F4": F4, "F8": F8, "V48": V48, "V358": V358, "V37": V37}


# -- V358 number <-> director (cjdns NumberCompress v3x5x8) -------------------------------------------

MAX_HUB_BITS = 13          # a one-hop label of a V3_5_B hub must fit the 16-bit peerNum of an announcement


def scheme_for_interfaces(highest: int) -> EncodingScheme:
    """The scheme of a switch whose highest interface number is ``highest``: V358 (cjdns' default) up to 256,
    above that the hub scheme V3_5_B with the narrowest last form that numbers it (a pktlab extension)."""
    if highest <= MAX_V358_INTERFACE:
        return V358
    bits = highest.bit_length()
    if bits > MAX_HUB_BITS:
        raise LabelError(f"interface {highest}: a switch numbers at most {(1 << MAX_HUB_BITS) - 1} interfaces")
    return EncodingScheme(((3, 1, 0b1), (5, 2, 0b10), (bits, 2, 0b00)))



def bits_for_label(label: int) -> int:
    """Bits of the first V358 director of ``label`` (4, 7 or 10)."""
    if label & 1:
        return 4
    if label & 2:
        return 7
    return 10


def bits_for_number(n: int) -> int:
    """Bits of the smallest V358 director for interface ``n``."""
    if n < 8:
        return 4
    if n < 33:
        return 7
    return 10


def compress(n: int, bits: int) -> int:
    """The V358 director (without terminator) for interface ``n`` in a ``bits``-wide form."""
    if not 0 <= n <= MAX_V358_INTERFACE:
        raise LabelError(f"interface {n} outside V358 range 0..{MAX_V358_INTERFACE}")
    if n == 1:
        return 1                             # the router is always 0001
    if bits == 4:
        if n > 7:
            raise LabelError(f"interface {n} does not fit a 4-bit director")
        return 3 if n == 0 else (n << 1) | 1  # 0 and 1 swapped
    if bits == 7:
        if n > 32:
            raise LabelError(f"interface {n} does not fit a 7-bit director")
        return 2 if n == 0 else ((n - 1) << 2) | 2   # "skip the number 1"
    if bits == 10:
        return 0 if n == 0 else (n - 1) << 2
    raise LabelError(f"V358 has no {bits}-bit form")


def decompress(label: int, bits: int) -> int:
    """The interface number of the first V358 director of ``label`` read as ``bits`` wide."""
    if bits == 4:
        x = (label >> 1) & 7
        return 1 if x == 0 else (0 if x == 1 else x)
    if bits == 7:
        x = (label >> 2) & 0x1F
        return x + 1 if x else 0
    if bits == 10:
        x = (label >> 2) & 0xFF
        return x + 1 if x else 0
    raise LabelError(f"V358 has no {bits}-bit form")


def one_hop_label(iface_index: int) -> int:
    """V358 label from a switch to the peer on its interface ``iface_index`` (SwitchCore_addInterface)."""
    bits = bits_for_number(iface_index)
    return compress(iface_index, bits) | (1 << bits)


def bit_reverse64(x: int) -> int:
    """Reverse the 64 bits of ``x`` (bit i -> bit 63-i)."""
    return int(f"{x & UINT64_MAX:064b}"[::-1], 2)


# -- splicing -----------------------------------------------------------------------------------------------

def splice(go_here: int, via_here: int) -> int:
    """Label A->C from ``via_here`` (A->B) and ``go_here`` (B->C) (LabelSplicer_splice)."""
    _check_label(go_here, "go_here")
    _check_label(via_here, "via_here")
    if log2(go_here) + log2(via_here) > MAX_LABEL_BITS:
        raise LabelTooLong(f"splice of {go_here:#x} onto {via_here:#x} is too long")
    return ((go_here ^ 1) << log2(via_here)) ^ via_here


def splice_path(hops) -> int:
    """Splice one-hop labels given first hop first into the label of the whole path."""
    hops = list(hops)
    if not hops:
        raise LabelError("splice_path needs at least one hop")
    result = _check_label(hops[-1])
    for label in reversed(hops[:-1]):
        result = splice(result, label)
    return result


def unsplice(full_path: int, mid_path: int) -> int:
    """The label from the node at the end of ``mid_path`` onwards along ``full_path``."""
    _check_label(full_path, "full_path")
    _check_label(mid_path, "mid_path")
    return full_path >> log2(mid_path)


def routes_through(dest: int, mid: int) -> bool:
    """True if the path ``dest`` passes through the node at the end of ``mid``."""
    _check_label(dest, "dest")
    _check_label(mid, "mid")
    if mid > dest:
        return False
    if mid < 2:
        return True
    m = mask(log2(mid))
    return (dest & m) == (mid & m)


def is_self_route(scheme: EncodingScheme, label: int) -> bool:
    num = scheme.get_form_num(label)
    return num >= 0 and (label & mask(scheme[num].size)) == 1


def is_one_hop(scheme: EncodingScheme, label: int) -> bool:
    """True if ``label`` holds exactly one director and the terminator."""
    _check_label(label)
    num = scheme.get_form_num(label)
    if num < 0:
        return False
    return log2(label) == scheme[num].size


def convert_label(scheme: EncodingScheme, label: int, to_form) -> int:
    """Re-encode the first director of ``label`` into form ``to_form`` (an index or CANONICAL).

    EncodingScheme_convertLabel; for V358 the 0/1 swap of the 4-bit form and the "skip 1" of the wider forms
    are undone and redone (the Rust implementation restricts this "legacy special case" to V358).
    """
    _check_label(label)
    num = scheme.get_form_num(label)
    if num < 0:
        raise LabelError(f"label {label:#x} matches no form of the scheme")
    f = scheme[num]
    if len(scheme) == 1 or (label & mask(f.size)) == 1:
        if to_form in (0, CANONICAL):
            return label
        raise LabelError("fixed-width labels and self routes cannot be re-encoded")
    legacy = scheme == V358
    rest = label >> f.size
    d = (label >> f.prefix_len) & mask(f.bit_count)
    if legacy:
        if f.prefix == 1:
            d = 0 if d == 1 else d
        elif d:
            d += 1
    if to_form == CANONICAL:
        to_form = -1
        for i, g in enumerate(scheme.forms):
            need = log2(d) + 1 if (not legacy or g.prefix == 1) else log2(d - (d > 0)) + 1
            if g.bit_count >= need:
                to_form = i
                break
    if not isinstance(to_form, int) or isinstance(to_form, bool) or not 0 <= to_form < len(scheme):
        raise LabelError(f"no such form {to_form!r}")
    g = scheme[to_form]
    if legacy:
        if g.prefix == 1:
            d = 1 if d == 0 else d
        elif d:
            d -= 1
    if log2(d) + 1 > g.bit_count:
        raise LabelError(f"director {d} does not fit form {to_form}")
    if log2(rest) + g.size > MAX_LABEL_BITS:
        raise LabelTooLong("re-encoded label too long")
    out = (((rest << g.bit_count) | d) << g.prefix_len) | g.prefix
    if (out & mask(g.size)) == 1:
        raise LabelError("re-encoded label looks like a self route")
    return out


def convert_for_return(scheme: EncodingScheme, label: int, back: int) -> int:
    """``label`` from this node, for a packet that arrives on the interface ``back`` (our label back to where it
    came from) names: its first director re-encoded to back's form where that is wider (build_label's rule for
    one node; cjdns NumberCompress_getLabelFor)."""
    num_back = scheme.get_form_num(back)
    if num_back < 0 or scheme[num_back].size <= scheme.form_of(label).size:
        return label
    return convert_label(scheme, label, num_back)


def build_label(hops, scheme=V358) -> tuple[int, list[int]]:
    """Label of a path given per node ``(label_p, label_n)``: the label back to the previous node and the
    label to the next (None at the ends), first node first. Returns ``(label, path_labels)``; a next-hop label
    is re-encoded to the form of the reverse hop when that one is wider (splice.rs build_label).
    ``scheme`` is one EncodingScheme for every node, or a list with one scheme per node.
    """
    hops = [tuple(h) for h in hops]
    if len(hops) < 2 or any(len(h) != 2 for h in hops):
        raise LabelError("build_label needs at least two (label_p, label_n) pairs")
    schemes = list(scheme) if isinstance(scheme, (list, tuple)) else [scheme] * len(hops)
    if len(schemes) != len(hops):
        raise LabelError("one encoding scheme per node is needed")
    if hops[0][0] is not None or hops[0][1] is None or hops[-1][0] is None or hops[-1][1] is not None:
        raise LabelError("the first node needs only label_n and the last only label_p")
    path = [_check_label(hops[0][1])]
    for (label_p, label_n), node_scheme in zip(hops[1:-1], schemes[1:-1]):
        if label_p is None or label_n is None:
            raise LabelError("every middle node needs label_p and label_n")
        _check_label(label_p)
        _check_label(label_n)
        num_p = node_scheme.get_form_num(label_p)
        if num_p < 0:
            raise LabelError(f"label {label_p:#x} matches no form")
        if node_scheme[num_p].size > node_scheme.form_of(label_n).size:
            label_n = convert_label(node_scheme, label_n, num_p)
        path.append(label_n)
    return splice_path(path), path


# -- text form -------------------------------------------------------------------------------------------

def label_text(label: int) -> str:
    """``0000.0000.0000.0013``"""
    if not isinstance(label, int) or not 0 <= label <= UINT64_MAX:
        raise LabelError(f"not a 64-bit label: {label!r}")
    h = f"{label:016x}"
    return ".".join(h[i:i + 4] for i in range(0, 16, 4))


def parse_label_text(text: str) -> int:
    """Inverse of label_text (exactly 4 dot-separated groups of 4 hex digits)."""
    if not isinstance(text, str) or len(text) != 19:
        raise LabelError(f"a label is xxxx.xxxx.xxxx.xxxx, got {text!r}")
    groups = text.split(".")
    if len(groups) != 4 or any(len(g) != 4 or any(c not in "0123456789abcdefABCDEF" for c in g)
                               for g in groups):
        raise LabelError(f"a label is xxxx.xxxx.xxxx.xxxx, got {text!r}")
    return int("".join(groups), 16)
