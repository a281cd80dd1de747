"""Image fingerprints: PDQ hashes (``phash``) and the in-memory exact match index (``match``)."""
