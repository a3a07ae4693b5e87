"""MXNet / dmlc-core RecordIO without MXNet: record framing, the image record header, `.idx` files.

A `.rec` file is a sequence of records, each framed as (little-endian)

    [magic u32 = 0xced7230a][lrec u32][data][zero padding to a multiple of 4]

with `length = lrec & (2**29 - 1)` and `cflag = lrec >> 29`. A writer that
meets the magic word at a 4-byte-aligned offset of a payload splits the
payload there and drops those 4 bytes: cflag 1 / 2 / 3 mark the first /
middle / last part, and a reader puts the magic word back between them.
cflag 0 is a whole record. The `.idx` beside it has one `key<TAB>offset` line
per record, the offset of its first magic word.

The payload of an image record starts with the header `<IfQQ` (flag, label,
id, id2: 24 bytes). When `flag > 0`, `flag` float32 labels follow it (and the
header's own label field is 0); then come the encoded image bytes.
"""

import os
import struct

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
MAX_LENGTH = (1 << LENGTH_BITS) - 1
HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2


class RecordIOError(ValueError):
    """A `.rec` / `.idx` file that does not follow the RecordIO layout; the message names file and offset."""


def pack_payload(label, image=b"", record_id=0, record_id2=0):
    """An image record's payload: the `<IfQQ` header, the labels, the image bytes.

    Args:
        label: a number (stored in the header, flag 0) or a sequence of
            numbers (stored as float32 after the header, flag = their count).
        image: the encoded image (or nothing, for index records).
        record_id, record_id2: the header's two id fields.
    """
    if np.ndim(label) == 0:
        return HEADER.pack(0, float(label), record_id, record_id2) + bytes(image)
    labels = np.asarray(label, dtype="<f4").reshape(-1)
    return HEADER.pack(len(labels), 0.0, record_id, record_id2) + labels.tobytes() + bytes(image)


def unpack_payload(payload):
    """Splits a payload into `(flag, labels, record_id, image)`.

    `labels` is a float32 array: the header's label alone when `flag == 0`,
    else the `flag` labels that follow the header.

    Raises:
        ValueError: the payload is shorter than its header says.
    """
    if len(payload) < HEADER.size:
        raise ValueError(f"the payload has {len(payload)} bytes, fewer than the {HEADER.size}-byte header")
    flag, label, record_id, _ = HEADER.unpack_from(payload)
    if flag == 0:
        return flag, np.array([label], "float32"), record_id, payload[HEADER.size:]
    end = HEADER.size + 4 * flag
    if len(payload) < end:
        raise ValueError(f"the header announces {flag} labels but the payload has only {len(payload)} bytes")
    labels = np.frombuffer(payload, "<f4", count=flag, offset=HEADER.size).astype("float32")
    return flag, labels, record_id, payload[end:]


def frame(payload):
    """The bytes a dmlc-core writer puts in the file for one payload (split where needed).

    Raises:
        ValueError: the payload is 2**29 bytes or longer.
    """
    payload = bytes(payload)
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"a RecordIO record holds at most {MAX_LENGTH} bytes; this one has {len(payload)}")
    parts = []
    start = 0
    # the magic word at an aligned offset ends one part; its 4 bytes are not written
    position = payload.find(MAGIC_BYTES)
    while position != -1:
        if position % 4 == 0 and position + 4 <= len(payload) // 4 * 4:
            parts.append(payload[start:position])
            start = position + 4
            position = payload.find(MAGIC_BYTES, start)
        else:
            position = payload.find(MAGIC_BYTES, position + 1)
    parts.append(payload[start:])
    out = []
    for i, part in enumerate(parts):
        if len(parts) == 1:
            cflag = 0
        else:
            cflag = 1 if i == 0 else 3 if i == len(parts) - 1 else 2
        out.append(struct.pack("<II", MAGIC, (cflag << LENGTH_BITS) | len(part)))
        out.append(part)
    out.append(b"\0" * (-len(parts[-1]) % 4))
    return b"".join(out)


class RecordFile:
    """Random access to the records of a `.rec` file by byte offset (thread-safe `pread`).

    Args:
        path: the `.rec` file.

    Example:

    ```pycon
    >>> records = RecordFile("faces_emore/train.rec")
    >>> payload = records.read(0)   # the record whose magic word is at byte 0
    ```
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def _read_exactly(self, offset, size, what):
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise RecordIOError(
                f"{self.path}: truncated record: {what} at byte offset {offset} needs {size} bytes, "
                f"the file ends after {len(data)}"
            )
        return data

    def read(self, offset):
        """The payload of the record whose first magic word is at byte `offset`, parts joined."""
        parts = []
        position = offset
        while True:
            magic, lrec = struct.unpack("<II", self._read_exactly(position, 8, "a record frame"))
            if magic != MAGIC:
                raise RecordIOError(
                    f"{self.path}: bad magic word 0x{magic:08x} at byte offset {position} "
                    f"(expected 0x{MAGIC:08x}; is the .idx for this .rec?)"
                )
            cflag, length = lrec >> LENGTH_BITS, lrec & MAX_LENGTH
            expected = (0, 1) if position == offset else (2, 3)
            if cflag not in expected:
                raise RecordIOError(
                    f"{self.path}: a record part at byte offset {position} has cflag {cflag}, "
                    f"expected one of {expected}"
                )
            parts.append(self._read_exactly(position + 8, length, "record data"))
            position += 8 + (length + 3) // 4 * 4
            if cflag in (0, 3):
                return MAGIC_BYTES.join(parts)

    def read_headers(self, offsets):
        """`(flag, first_label)` of the image records at `offsets`, reading 32 bytes of each.

        The label is the header's when `flag == 0`, else the first of the
        labels after it. Vectorized over a memory map, for opening sets whose
        labels are only in the records; a record split inside its first 28
        bytes is read whole.
        """
        offsets = np.asarray(offsets, dtype="int64")
        flags = np.zeros(len(offsets), "uint32")
        labels = np.zeros(len(offsets), "float32")
        width = 8 + HEADER.size + 4
        memory = np.memmap(self.path, dtype="uint8", mode="r") if self.size else None
        for start in range(0, len(offsets), 1 << 18):  # bounded scratch memory
            chunk = offsets[start:start + (1 << 18)]
            near_end = chunk + width > self.size
            gathered = np.nonzero(~near_end)[0]
            words = memory[chunk[gathered, None] + np.arange(width)].view("<u4")
            # per record: magic, lrec, flag, label, id (2 words), id2 (2 words), first label
            bad = np.nonzero(words[:, 0] != MAGIC)[0]
            if bad.size:
                raise RecordIOError(
                    f"{self.path}: bad magic word 0x{int(words[bad[0], 0]):08x} at byte offset "
                    f"{int(chunk[gathered[bad[0]]])} (expected 0x{MAGIC:08x}; is the .idx for this .rec?)"
                )
            flag = words[:, 2]
            flags[start + gathered] = flag
            labels[start + gathered] = np.where(flag == 0, words[:, 3].view("<f4"), words[:, 8].view("<f4"))
            # records that end within those bytes, or whose first part is too short: read whole
            cflag, length = words[:, 1] >> LENGTH_BITS, words[:, 1] & MAX_LENGTH
            whole = np.r_[np.nonzero(near_end)[0], gathered[(cflag != 0) & (length < HEADER.size + 4)]]
            for i in whole.tolist():
                flag, record_labels, _, _ = self.read_image_record(int(chunk[i]))
                flags[start + i], labels[start + i] = flag, record_labels[0]
        return flags, labels

    def read_image_record(self, offset):
        """`(flag, labels, record_id, image)` of the image record at byte `offset`; see `unpack_payload`."""
        try:
            return unpack_payload(self.read(offset))
        except RecordIOError:
            raise
        except ValueError as error:
            raise RecordIOError(f"{self.path}: the record at byte offset {offset}: {error}") from None

def read_index(path):
    """Reads an `.idx` file: `key<TAB>offset` per line.

    Returns:
        `(keys, offsets)`, int64 arrays in file order.

    Raises:
        RecordIOError: a line that is not two non-negative integers, naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No RecordIO index at {path!r} (a .rec needs its .idx beside it)")
    try:
        table = np.loadtxt(path, dtype="int64", ndmin=2, comments=None)
    except ValueError as error:
        raise RecordIOError(f"{path}: not an index of `key<TAB>offset` lines: {error}") from None
    if table.size == 0:
        return np.zeros(0, "int64"), np.zeros(0, "int64")
    if table.shape[1] != 2:
        raise RecordIOError(f"{path}: each line must be `key<TAB>offset`; found {table.shape[1]} fields")
    if (table < 0).any():
        row = int(np.nonzero((table < 0).any(axis=1))[0][0])
        raise RecordIOError(f"{path}, line {row + 1}: negative key or offset {table[row].tolist()}")
    return table[:, 0].copy(), table[:, 1].copy()


def write_index(path, keys, offsets):
    """Writes `key<TAB>offset` lines, as MXNet's `MXIndexedRecordIO` does."""
    with open(path, "w") as f:
        f.writelines(f"{k}\t{o}\n" for k, o in zip(np.asarray(keys).tolist(), np.asarray(offsets).tolist()))
