"""TensorBoard event files: CRC32C and record framing are right, and scalars read back."""

import struct

from hyv_jax.training.event_file import EventFileWriter, _masked, crc32c


def _records(data: bytes):
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        assert data[pos + 8:pos + 12] == _masked(data[pos:pos + 8])
        payload = data[pos + 12:pos + 12 + n]
        assert data[pos + 12 + n:pos + 16 + n] == _masked(payload)
        yield payload
        pos += 16 + n


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C (Castagnoli) check value


def test_scalars_are_framed_records(tmp_path):
    w = EventFileWriter(tmp_path)
    w.scalars(3, {"loss": 0.5, "lr": 1e-4})
    w.close()
    recs = list(_records(w.path.read_bytes()))
    assert len(recs) == 2 and b"brain.Event:2" in recs[0]
    assert b"loss" in recs[1] and struct.pack("<f", 0.5) in recs[1] and struct.pack("<f", 1e-4) in recs[1]
    assert b"\x10\x03" in recs[1]  # field 2 (step), varint 3
