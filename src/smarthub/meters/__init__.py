"""Sans-I/O meter protocol codecs: bytes in, typed frames and `Reading`s out.

No module here opens a socket, reads a clock or touches storage (DESIGN.md).
"""

from smarthub.meters.errors import ChecksumError, DecodeError, MalformedFrame, TruncatedFrame

__all__ = ["ChecksumError", "DecodeError", "MalformedFrame", "TruncatedFrame"]
