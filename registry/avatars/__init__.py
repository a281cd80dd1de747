"""Avatar uploads: safe decoding of reference images and parsing of avatar model files (VRM, Live2D)."""
