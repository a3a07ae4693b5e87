"""A RecordIO writer and reader written for the tests from the byte layout, not from the package.

Layout (dmlc-core recordio, little-endian): each record is
`[magic u32][lrec u32][data][zeros to a multiple of 4]`, `lrec = cflag << 29 | length`.
A payload holding the magic word at a 4-byte-aligned offset (checked over
the aligned words that lie wholly inside the payload) is cut there, the
4 bytes dropped; the parts get cflag 1 (first), 2 (middle), 3 (last), and
only the last is padded. An image payload starts with `<IfQQ` (flag, label,
id, id2); `flag > 0` float32 labels follow when flag is non-zero.
"""

import pickle
import struct

MAGIC = 0xCED7230A


def header(label, record_id=0):
    """The image-record header and labels: a scalar label (flag 0) or a list of float32 labels."""
    if isinstance(label, (list, tuple)):
        return struct.pack("<IfQQ", len(label), 0.0, record_id, 0) + struct.pack(f"<{len(label)}f", *label)
    return struct.pack("<IfQQ", 0, float(label), record_id, 0)


def framed(payload):
    magic = struct.pack("<I", MAGIC)
    cuts = [i for i in range(0, len(payload) - len(payload) % 4, 4) if payload[i:i + 4] == magic]
    pieces = []
    start = 0
    for cut in cuts:
        pieces.append(payload[start:cut])
        start = cut + 4
    pieces.append(payload[start:])
    out = b""
    for n, piece in enumerate(pieces):
        if len(pieces) == 1:
            cflag = 0
        elif n == 0:
            cflag = 1
        elif n == len(pieces) - 1:
            cflag = 3
        else:
            cflag = 2
        out += struct.pack("<II", MAGIC, (cflag << 29) + len(piece)) + piece
    padding = (4 - len(pieces[-1]) % 4) % 4
    return out + bytes(padding)


def write_rec(rec_path, idx_path, records):
    """Writes `records`, a list of `(key, payload)`, in that order; the .idx lists each key's offset."""
    lines = []
    with open(rec_path, "wb") as f:
        for key, payload in records:
            lines.append(f"{key}\t{f.tell()}\n")
            f.write(framed(payload))
    with open(idx_path, "w") as f:
        f.write("".join(lines))


def write_insightface_layout(folder, images, labels, property_file=True):
    """insightface's layout: header record, images grouped by label at keys 1..N, identity records.

    Returns the expected `(key, image bytes, label)` of every image record.
    """
    order = sorted(range(len(labels)), key=lambda i: (labels[i], i))
    num_images, num_classes = len(labels), max(labels) + 1
    records = [(0, header([num_images + 1, num_images + 1 + num_classes]))]
    expected = []
    for key, i in enumerate(order, start=1):
        records.append((key, header(labels[i], key) + images[i]))
        expected.append((key, images[i], labels[i]))
    first = 1
    for c in range(num_classes):
        end = first + sum(1 for label in labels if label == c)
        records.append((num_images + 1 + c, header([first, end])))
        first = end
    write_rec(folder / "train.rec", folder / "train.idx", records)
    if property_file:
        (folder / "property").write_text(f"{num_classes},112,112")
    return expected


def read_all(rec_path):
    """Every record of a .rec in file order, parts joined, by a sequential scan (no .idx)."""
    data = open(rec_path, "rb").read()
    position, records, parts, start = 0, [], [], None
    while position < len(data):
        magic, lrec = struct.unpack_from("<II", data, position)
        assert magic == MAGIC, f"bad magic at {position}"
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        if cflag in (0, 1):
            start = position
        parts.append(data[position + 8:position + 8 + length])
        position += 8 + length + (4 - length % 4) % 4
        if cflag in (0, 3):
            records.append((start, struct.pack("<I", MAGIC).join(parts)))
            parts = []
    return records


def parse_payload(payload):
    """`(labels, record_id, image)`: labels a list (the scalar label alone when flag is 0)."""
    flag, label, record_id, _ = struct.unpack_from("<IfQQ", payload)
    if flag == 0:
        return [label], record_id, payload[24:]
    return list(struct.unpack_from(f"<{flag}f", payload, 24)), record_id, payload[24 + 4 * flag:]


def python2_bin(images, issame):
    """A .bin as Python 2's pickle protocol 2 writes `(list of str, list of bool)`.

    Opcodes from the pickle format: PROTO 2, EMPTY_LIST, MARK, BINSTRING
    (Python 2 `str`), APPENDS, NEWTRUE / NEWFALSE, TUPLE2, STOP.
    """
    out = b"\x80\x02" + b"]" + b"("
    for image in images:
        out += b"T" + struct.pack("<i", len(image)) + image
    out += b"e" + b"]" + b"("
    for same in issame:
        out += b"\x88" if same else b"\x89"
    out += b"e" + b"\x86" + b"."
    assert pickle.loads(out, encoding="bytes") == (list(images), list(issame))  # a valid pickle
    return out
