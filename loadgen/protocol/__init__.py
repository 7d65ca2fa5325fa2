"""The wire contract, without IO: constants, statuses, validation, auth, Connect errors, signing, keys, codecs.

Everything here is what the Dispatch protocol says (``/work/shared/PROTOCOL.md``), as the SDKs
implement it; it imports only :mod:`loadgen.pb` and libraries.
"""
